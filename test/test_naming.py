"""Naming a label-free head's ids: one-to-one matching on labelled scenes, stored in the sidecar, shown in
the overlay legend; without names the ids stay anonymous."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import training.name_classes as name_classes_cli
from ssvif_ros.checkpoint import load_checkpoint, save_checkpoint
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.fusion.overlay import LEGEND_ROW, MaskOverlay, class_palette, legend_names
from ssvif_ros.models import SegHead, create_model


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("named")
    write_dataset(out, 3, seed=4, width=64, height=48, num_classes=3, progress=False)
    return out


def test_names_are_matched_stored_and_the_weights_untouched(tmp_path, scenes):
    torch.manual_seed(0)
    model = create_model("lightunet")
    weights = save_checkpoint(tmp_path / "h.safetensors", model, SegHead(model.feature_channels, 4, 8))
    before = weights.read_bytes()
    assert FusionEngine(weights=weights).class_names is None  # never named: anonymous
    assert name_classes_cli.main(["--weights", str(weights), "--data", str(scenes)]) == 0
    names = FusionEngine(weights=weights).class_names
    assert len(names) == 4
    known = json.loads((scenes / "classes.json").read_text())["names"]
    named = [n for n in names if n is not None]
    assert named and set(named) <= set(known) and len(set(named)) == len(named)  # one-to-one
    assert weights.read_bytes() == before
    assert load_checkpoint(weights).meta["class_names_from"]["pairs"] == 3


def test_a_checkpoint_without_a_head_is_refused(tmp_path, scenes, capsys):
    weights = save_checkpoint(tmp_path / "n.safetensors", create_model("lightunet"))
    assert name_classes_cli.main(["--weights", str(weights), "--data", str(scenes)]) == 2
    assert "no segmentation head" in capsys.readouterr().err


def test_the_overlay_legend_lists_the_classes_in_the_frame():
    labels = np.zeros((60, 80), np.uint8)
    labels[30:, :] = 2
    image = np.full((60, 80, 3), 100, np.uint8)
    plain = MaskOverlay(class_palette(3), 0.5).blend(image, labels)
    with_legend = MaskOverlay(class_palette(3), 0.5, legend_names(["road", None, "sky"], 3)).blend(
        image, labels
    )
    differs = np.flatnonzero(np.any(plain != with_legend, axis=(1, 2)))
    assert differs.size and differs.max() < 2 + 2 * LEGEND_ROW  # two entries (ids 0 and 2) at the top
    assert legend_names(None, 3) == [None, None, None]  # anonymous ids: "id k"


def test_named_ids_take_their_class_colour_and_every_id_stays_distinct():
    from ssvif_ros.data.synthetic import CLASS_NAMES, PALETTE
    from ssvif_ros.fusion.overlay import named_palette

    names = [None, None, "building", None, None, "road", None, "sky", None]
    table = named_palette(names, 9)
    assert (table[7] == PALETTE[CLASS_NAMES.index("sky")]).all()
    assert (table[5] == PALETTE[CLASS_NAMES.index("road")]).all()
    assert len({tuple(c) for c in table.tolist()}) == 9
    assert (named_palette(None, 9) == class_palette(9)).all()
