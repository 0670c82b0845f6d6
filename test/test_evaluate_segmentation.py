"""training/evaluate_segmentation.py: labelled pairs, splits, a short training that must learn, outputs."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training.evaluate_segmentation as seg_cli
from ssvif_ros.config import load_config
from ssvif_ros.data import synthetic
from ssvif_ros.eval import segmentation as seg

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "evaluate_segmentation.py"

# One short epoch on 80x64 scenes: enough to exercise every step, seconds in all.
FAST = ["training.epochs=1", "training.crop=[48,64]", "training.batch_size=4", "--threads", "1"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """10 labelled synthetic scenes (K=9), written with the synthetic CLI."""
    root = tmp_path_factory.mktemp("scenes")
    synthetic.main(["--out", str(root), "-n", "10", "--size", "80x64", "--num-classes", "9"])
    return root


def _write_pairs(root: Path, vis: list[np.ndarray], ir: list[np.ndarray], labels: dict[int, np.ndarray],
                 label_dir: str = "label") -> None:  # fmt: skip
    for sub in ("vi", "ir", label_dir):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (v, t) in enumerate(zip(vis, ir, strict=True)):
        Image.fromarray(v).save(root / "vi" / f"{i:03d}.png")
        Image.fromarray(t).save(root / "ir" / f"{i:03d}.png")
        if i in labels:
            Image.fromarray(labels[i]).save(root / label_dir / f"{i:03d}.png")


def test_end_to_end_two_methods_two_seeds(tmp_path, scenes):
    out = tmp_path / "out"
    argv = ["--data", str(scenes), "--methods", "visible", "average", "--seeds", "0,1",
            "--test-fraction", "0.2", "--out", str(out), *FAST]  # fmt: skip
    assert seg_cli.main(argv) == 0
    payload = json.loads((out / "segmentation.json").read_text())
    names = synthetic.class_names(9)
    assert payload["data"]["class_names"] == list(names)
    assert (payload["data"]["train_count"], payload["data"]["test_count"]) == (8, 2)
    assert payload["config"]["training"]["epochs"] == 1  # the override reached the config
    assert "--methods visible average" in payload["command"]
    assert list(payload["methods"]) == ["visible", "average"]
    for result in payload["methods"].values():
        assert [r["seed"] for r in result["per_seed"]] == [0, 1]
        for r in result["per_seed"]:
            assert len(r["iou"]) == 9
            assert all(v is None or 0.0 <= v <= 1.0 for v in r["iou"])
            assert 0.0 <= r["miou"] <= 1.0
            assert np.asarray(r["confusion"]).sum() > 0
        mean = result["summary"]["miou"]["mean"]
        assert mean == pytest.approx(np.mean([r["miou"] for r in result["per_seed"]]))
        assert set(result["summary"]["iou"]) == set(names)
    with (out / "segmentation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (2 + 2)  # per method: two seeds, mean, std
    assert [r["seed"] for r in rows[:4]] == ["0", "1", "mean", "std"]
    assert all(0.0 <= float(r["mIoU"]) <= 1.0 for r in rows if r["seed"] != "std")
    table = (out / "segmentation.md").read_text().splitlines()
    assert table[0].count("|") == 1 + 9 + 2  # method, 9 classes, mIoU
    assert table[2].startswith("| visible |") and table[3].startswith("| average |")
    assert (
        "2 test images" in table[-1] and "8 fused training images" in table[-1] and "2 seed(s)" in table[-1]
    )
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporary file


def test_folds_cover_each_labelled_pair_once_and_skip_unlabelled(tmp_path, scenes):
    data = tmp_path / "data"
    shutil.copytree(scenes, data)
    (data / "label" / "00003.png").unlink()  # a pair without a label is skipped, not an error
    out = tmp_path / "out"
    argv = ["--data", str(data), "--methods", "infrared", "--folds", "3", "--out", str(out), *FAST,
            "training.val_fraction=0"]  # fmt: skip
    assert seg_cli.main(argv) == 0
    payload = json.loads((out / "segmentation.json").read_text())
    labelled = [f"{i:05d}" for i in range(10) if i != 3]
    assert (payload["data"]["labelled"], payload["data"]["skipped_unlabelled"]) == (9, 1)
    tested = [name for fold in payload["data"]["test_names"] for name in fold]
    assert sorted(tested) == labelled  # each labelled pair in exactly one test fold
    per_seed = payload["methods"]["infrared"]["per_seed"][0]
    assert [f["test"] for f in per_seed["folds"]] == [3, 3, 3]
    assert all(f["train"] == 6 for f in per_seed["folds"])
    pooled = np.asarray(per_seed["confusion"])
    assert pooled.sum() == 9 * 80 * 64  # every test pixel of every fold counted once (no ignore labels)
    assert payload["methods"]["infrared"]["summary"]["fold_miou"]["count"] == 3
    assert "fold mIoU" in (out / "segmentation.md").read_text()


def test_kfold_assignment_is_a_balanced_partition_independent_of_order():
    names = [f"scene{i}" for i in range(11)]
    folds = seg.kfold_assignment(names, 4)
    assert sorted(np.bincount(folds).tolist()) == [2, 3, 3, 3]
    again = seg.kfold_assignment(names[::-1], 4)
    assert folds == again[::-1]  # a name's fold does not depend on the listing order
    with pytest.raises(seg.SegEvalError, match="exceeds"):
        seg.kfold_assignment(names[:3], 4)


def test_binary_maps_0_255_masks_and_bad_ids_name_the_file(tmp_path, caplog):
    rng = np.random.default_rng(0)
    vis = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    ir = [rng.integers(0, 255, (40, 48), dtype=np.uint8) for _ in range(3)]
    masks = {i: np.where(rng.random((40, 48)) < 0.3, 255, 0).astype(np.uint8) for i in range(3)}
    _write_pairs(tmp_path, vis, ir, masks, label_dir="mask")
    pairs = seg.find_labelled_pairs([tmp_path], "mask")
    samples = seg.load_samples(pairs.files, binary=True, num_classes=2)
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(s.label, (masks[i] > 0).astype(np.uint8))
    with caplog.at_level(logging.WARNING, logger="evaluate_segmentation"):
        plain = seg.load_samples(pairs.files, binary=False, num_classes=2)
    assert set(np.unique(plain[0].label)) == {0, 255}  # 255 = ignore without --binary
    assert "--binary" in caplog.text
    bad = masks[1].copy()
    bad[0, 0] = 7
    Image.fromarray(bad).save(tmp_path / "mask" / "001.png")
    with pytest.raises(seg.SegEvalError, match=r"001\.png.*label id\(s\) \[7\]"):
        seg.load_samples(pairs.files, binary=False, num_classes=2)


def test_missing_label_folder_and_unknown_method_are_clear_errors(tmp_path, scenes, capsys):
    with pytest.raises(seg.SegEvalError, match=r"nope: label folder not found.*label"):
        seg.find_labelled_pairs([scenes], "nope")
    argv = ["--data", str(scenes), "--label-dir", "nope", "--methods", "visible", "--out", str(tmp_path)]
    assert seg_cli.main(argv) == 2
    assert "nope: label folder not found" in capsys.readouterr().err
    with pytest.raises(seg.SegEvalError, match="no_such_method"):
        seg.resolve_method("no_such_method")
    with pytest.raises(seg.SegEvalError, match=r"missing\.safetensors does not exist"):
        seg.resolve_method(str(tmp_path / "missing.safetensors"))


def test_crops_pad_small_images_with_ignore():
    image = np.full((20, 30, 3), 200, np.uint8)
    label = np.ones((20, 30), np.uint8)
    x, y = seg.random_crop_batch([image], [label], (32, 24), hflip=True, rng=np.random.default_rng(0))
    assert x.shape == (1, 3, 32, 24) and y.shape == (1, 32, 24)
    assert (y[0, :20] == 1).all() and (y[0, 20:] == seg.IGNORE_INDEX).all()
    assert torch.allclose(x[0, :, :20], torch.tensor(200 / 255)) and (x[0, :, 20:] == 0).all()


def test_same_seed_same_model(scenes):
    samples = seg.load_samples(seg.find_labelled_pairs([scenes]).files[:4], binary=False, num_classes=9)
    data = [(s.vis, s.label) for s in samples]
    cfg = load_config(None, ["training.epochs=2", "training.crop=[32,32]", "training.batch_size=2"],
                          defaults=seg.DEFAULTS, open_keys=seg.OPEN_KEYS)  # fmt: skip
    a = seg.train_segformer(data, [], cfg, 9, seed=3).model.state_dict()
    b = seg.train_segformer(data, [], cfg, 9, seed=3).model.state_dict()
    c = seg.train_segformer(data, [], cfg, 9, seed=4).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _thermal_only_targets(root: Path, count: int = 16) -> None:
    """Warm rectangles seen only in the thermal image; the visible image is unrelated smooth noise."""
    rng = np.random.default_rng(7)
    vis, ir, labels = [], [], {}
    for i in range(count):
        label = np.zeros((64, 80), np.uint8)
        for _ in range(2):
            h, w = rng.integers(14, 26, size=2)
            top, left = rng.integers(0, 64 - h), rng.integers(0, 80 - w)
            label[top : top + h, left : left + w] = 1
        background = rng.normal(70, 12, (64, 80))
        ir.append(np.clip(np.where(label == 1, 190, background) + rng.normal(0, 6, (64, 80)), 0, 255))
        noise = np.kron(rng.integers(0, 255, (8, 10, 3)), np.ones((8, 8, 1)))  # blocky, target-blind
        vis.append(noise.astype(np.uint8))
        labels[i] = label * 255
    _write_pairs(root, vis, [t.astype(np.uint8) for t in ir], labels)


def test_training_learns_a_thermal_only_target(tmp_path):
    """If training or evaluation were broken, infrared could not beat visible by a wide margin."""
    _thermal_only_targets(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["--data", str(tmp_path / "data"), "--binary", "--methods", "visible", "infrared",
            "--test-fraction", "0.25", "--out", str(out), "--threads", "1", "training.epochs=12",
            "training.crop=[64,80]", "training.batch_size=4", "training.val_fraction=0",
            "training.warmup_epochs=1"]  # fmt: skip
    assert seg_cli.main(argv) == 0
    methods = json.loads((out / "segmentation.json").read_text())["methods"]
    target = {m: methods[m]["per_seed"][0]["iou"][1] or 0.0 for m in ("visible", "infrared")}
    assert target["infrared"] > 0.6, target
    assert target["infrared"] > target["visible"] + 0.3, target
    assert not math.isnan(methods["infrared"]["summary"]["miou"]["mean"])


def test_real_masks_are_found_and_binarised(shared_data):
    for folder, label_dir, count in (
        ("tno_stdfusionnet_masks", "ir_mask", 20),
        ("msrs_subset", "mask_binary", 8),
    ):
        pairs = seg.find_labelled_pairs([shared_data / folder], label_dir)
        assert len(pairs.files) == count, folder
        samples = seg.load_samples(pairs.files, binary=True, num_classes=2)
        for s in samples:
            assert set(np.unique(s.label).tolist()) == {0, 1}, s.name
            assert s.label.shape == s.vis.shape[:2] == s.ir.shape


def test_named_methods_and_per_seed_checkpoints(tmp_path, scenes):
    """``NAME=SPEC`` names the row; ``{seed}`` pairs segmentation seed k with checkpoint seed k."""
    from ssvif_ros.checkpoint import save_checkpoint
    from ssvif_ros.models import create_model

    for seed in (0, 1):
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / f"seed{seed}" / "best.safetensors", create_model("lightunet").eval())
    out = tmp_path / "out"
    template = str(tmp_path / "seed{seed}" / "best.safetensors")
    argv = ["--data", str(scenes), "--methods", f"mine={template}", "visible", "--seeds", "0,1",
            "--test-fraction", "0.2", "--out", str(out), *FAST]  # fmt: skip
    assert seg_cli.main(argv) == 0
    payload = json.loads((out / "segmentation.json").read_text())
    assert list(payload["methods"]) == ["mine", "visible"]
    assert payload["methods"]["mine"]["spec"] == template
    assert seg.seed_spec(template, 1) == str(tmp_path / "seed1" / "best.safetensors")
    assert seg.split_method_name("a=b.safetensors") == ("a", "b.safetensors")
    assert seg.split_method_name("runs/a=b/x.safetensors") == (None, "runs/a=b/x.safetensors")
    missing = ["--data", str(scenes), "--methods", str(tmp_path / "seed{seed}" / "best.safetensors"),
               "--seeds", "0,2", "--out", str(tmp_path / "out2"), *FAST]  # fmt: skip
    assert seg_cli.main(missing) == 2  # seed 2's checkpoint does not exist: found before any training


def test_dice_weight_is_part_of_the_training_loss(tmp_path):
    """``training.dice_weight`` adds the soft Dice to the CE (same seed and crops: only the loss differs)."""
    _thermal_only_targets(tmp_path / "data")
    base = ["--data", str(tmp_path / "data"), "--binary", "--methods", "infrared", "--test-fraction",
            "0.25", "--threads", "1", "training.epochs=1", "training.crop=[64,80]",
            "training.val_fraction=0"]  # fmt: skip
    losses = {}
    for weight in (0, 1):
        out = tmp_path / f"out{weight}"
        assert seg_cli.main([*base, "--out", str(out), f"training.dice_weight={weight}"]) == 0
        run = json.loads((out / "segmentation.json").read_text())["methods"]["infrared"]["per_seed"][0]
        losses[weight] = [row["loss"] for fold in run["folds"] for row in fold["history"]]
    assert losses[1][0] > losses[0][0]  # one epoch: the Dice term (about 0.5 at the start) is added
    bad = [*base, "--out", str(tmp_path / "bad"), "training.dice_weight=-1"]
    assert seg_cli.main(bad) == 2
