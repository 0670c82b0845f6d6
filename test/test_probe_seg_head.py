"""training/probe_seg_head.py: the matched scores and the image dependence of a segmentation head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import training.probe_seg_head as probe_cli
from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.data.synthetic import main as synthetic_main
from ssvif_ros.eval import probe
from ssvif_ros.models import SegHead, create_model

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "probe_seg_head.py"


def test_a_relabelled_ground_truth_scores_one_after_matching_but_not_before():
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 4, (6, 7)).astype(np.uint8) for _ in range(3)]
    permutation = np.array([2, 0, 3, 1, 4, 5], dtype=np.uint8)  # the head has 6 ids, uses 4
    preds = [permutation[label] for label in labels]
    scores = probe.matched_scores(probe.pooled_confusion(preds, labels, 4, 6))
    assert scores["matched_miou"] == pytest.approx(1.0)
    assert scores["matched_pixel_accuracy"] == pytest.approx(1.0)
    assert scores["identity_miou"] < 0.5
    assert scores["matching"] == [2, 0, 3, 1]
    assert scores["ids_used"] == 4


def test_a_constant_map_scores_the_largest_class_share_and_has_no_image_dependence():
    labels = [
        np.array([[0, 0, 1], [1, 1, 255]], dtype=np.uint8),
        np.array([[1, 1, 1], [0, 2, 2]], dtype=np.uint8),
    ]
    preds = [np.full((2, 3), 5, dtype=np.uint8) for _ in labels]
    cm = probe.pooled_confusion(preds, labels, 3, 9)
    assert cm.sum() == 11  # the 255 pixel is skipped
    scores = probe.matched_scores(cm)
    assert scores["matched_pixel_accuracy"] == pytest.approx(6 / 11)  # class 1 everywhere
    assert scores["constant_pixel_accuracy"] == pytest.approx(6 / 11)
    assert scores["matched_miou"] == pytest.approx((6 / 11) / 3)  # IoU 6/11 for class 1, 0 for the others
    assert probe.image_dependence(preds, 9) == 0.0
    assert probe.image_dependence([labels[0] % 255, labels[1]], 3) > 0.0
    assert probe.image_dependence([np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8)], 1) is None


def test_cli_writes_a_report_for_a_checkpoint_with_a_head(tmp_path):
    data = tmp_path / "scenes"
    synthetic_main(["--out", str(data), "-n", "3", "--size", "64x48", "--num-classes", "5"])
    torch.manual_seed(0)
    model = create_model("lightunet").eval()
    head = SegHead(model.feature_channels, num_classes=7, hidden_channels=8).eval()
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, head)
    out = tmp_path / "probe"
    assert probe_cli.main(["--data", str(data), "--checkpoints", str(ckpt), "--out", str(out)]) == 0
    report = json.loads((out / "probe.json").read_text())
    assert report["pairs"] == 3 and report["num_classes"] == 5
    r = report["results"][str(ckpt)]
    assert 0.0 <= r["matched_miou"] <= 1.0 and r["head_classes"] == 7
    assert 0.0 <= r["matched_pixel_accuracy"] <= 1.0 and 1 <= r["ids_used"] <= 7
    assert "matched mIoU" in (out / "probe.md").read_text()
