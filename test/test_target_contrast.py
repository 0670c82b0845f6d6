"""training/target_contrast.py: target-vs-ring contrast and AUC on binary masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import training.target_contrast as tc_cli
from ssvif_ros.eval import contrast as tc

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "target_contrast.py"


def test_scores_of_a_bright_a_hidden_and_a_dark_target():
    target = np.zeros((20, 20), bool)
    target[8:12, 8:12] = True
    ring = tc.ring_mask(target, 3)
    assert not (ring & target).any() and ring.sum() > 0
    assert ring[5, 10] and not ring[2, 10]  # 3 px from the target is in, 6 px is out
    bright = np.where(target, 200.0, 50.0)
    assert tc.target_scores(bright, target, ring) == pytest.approx(
        {"contrast": 150 / 255, "auc": 1.0, "separability": 1.0}
    )
    flat = np.full((20, 20), 90.0)
    assert tc.target_scores(flat, target, ring) == pytest.approx(
        {"contrast": 0.0, "auc": 0.5, "separability": 0.0}  # ties: half
    )
    dark = tc.target_scores(255.0 - bright, target, ring)
    assert dark["auc"] == pytest.approx(0.0) and dark["separability"] == pytest.approx(1.0)


def test_cli_ranks_infrared_above_visible_when_targets_are_thermal_only(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("vi", "ir", "mask"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(3):
        mask = np.zeros((48, 64), np.uint8)
        mask[10 + i : 26 + i, 20:30] = 255
        vis = rng.integers(60, 120, (48, 64, 3), dtype=np.uint8)  # the target is invisible here
        ir = np.where(mask > 0, 220, 70).astype(np.uint8)
        Image.fromarray(vis).save(tmp_path / "data" / "vi" / f"{i}.png")
        Image.fromarray(ir).save(tmp_path / "data" / "ir" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "data" / "mask" / f"{i}.png")
    out = tmp_path / "out"
    argv = ["--data", str(tmp_path / "data"), "--label-dir", "mask", "--methods", "visible", "infrared",
            "fused=max", "--out", str(out)]  # fmt: skip
    assert tc_cli.main(argv) == 0
    report = json.loads((out / "contrast.json").read_text())
    assert len(report["pairs"]) == 3
    auc = {m: r["mean"]["auc"] for m, r in report["methods"].items()}
    assert auc["infrared"] == pytest.approx(1.0)
    assert 0.3 < auc["visible"] < 0.7  # noise: no better than chance
    assert auc["fused"] > 0.9  # max-luminance keeps the warm target
    assert "target AUC" in (out / "contrast.md").read_text()


def test_methods_with_the_same_name_get_their_own_rows(tmp_path):
    for sub in ("vi", "ir", "mask"):
        (tmp_path / sub).mkdir()
    mask = np.zeros((32, 40), np.uint8)
    mask[8:20, 10:20] = 255
    Image.fromarray(np.full((32, 40, 3), 90, np.uint8)).save(tmp_path / "vi" / "0.png")
    Image.fromarray(np.where(mask > 0, 200, 60).astype(np.uint8)).save(tmp_path / "ir" / "0.png")
    Image.fromarray(mask).save(tmp_path / "mask" / "0.png")
    report = tc.measure([tmp_path], "mask", ["a=visible", "a=infrared"], ring=5.0)
    assert list(report["methods"]) == ["a", "a#2"]
    assert report["methods"]["a"]["spec"] == "visible" and report["methods"]["a#2"]["spec"] == "infrared"


def test_class_against_class_on_multi_class_labels(tmp_path):
    """A lane marking (class 1) on a road (class 0): visible shows it, the thermal image does not."""
    for sub in ("vi", "ir", "label"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    (tmp_path / "data" / "classes.json").write_text('{"num_classes": 3, "names": ["road", "lane", "sky"]}')
    label = np.zeros((40, 60), np.uint8)
    label[:10] = 2
    label[20:40, 28:32] = 1
    vis = np.where(label == 1, 200, 40).astype(np.uint8)
    ir = np.where(label == 2, 30, 160).astype(np.uint8)
    for i in range(2):
        Image.fromarray(np.stack([vis] * 3, axis=-1)).save(tmp_path / "data" / "vi" / f"{i}.png")
        Image.fromarray(ir).save(tmp_path / "data" / "ir" / f"{i}.png")
        Image.fromarray(label).save(tmp_path / "data" / "label" / f"{i}.png")
    report = tc.measure([tmp_path / "data"], None, ["visible", "infrared"], 5.0, "lane", "road")
    assert report["methods"]["visible"]["mean"]["separability"] == pytest.approx(1.0)
    assert report["methods"]["infrared"]["mean"]["separability"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="not in the data's classes"):
        tc.measure([tmp_path / "data"], None, ["visible"], 5.0, "person", None)
