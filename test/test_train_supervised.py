"""training/train.py with ``ssvif.supervision=labels``: the label-supervised reference (SeAFusion-like).

One tiny supervised run on labelled synthetic scenes (module fixture) serves several tests: it goes through
Stage II with a finite supervised loss, and its SegHead ends up agreeing with the ground truth far better
than any constant map (a CSC run of the same length does not: measured 0.34 vs a majority share of 0.50).
The rest is fast: the loss itself, label/crop alignment, the data and config errors, the ablate variant.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import training.ablate as ablate_cli
import training.train as train_cli
from ssvif_ros.checkpoint import load_checkpoint
from ssvif_ros.config import load_config
from ssvif_ros.train import config as train_config
from ssvif_ros.train import data as train_data
from ssvif_ros.train.losses import soft_dice_loss, supervised_seg_loss

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "training" / "train.py"
TINY = REPO / "config" / "train" / "tiny.yaml"
NUM_CLASSES = 9  # tiny.yaml's ssvif.num_classes; the synthetic scenes are written with it


def _args(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY), f"data.roots=[{data}]", f"run.dir={run_dir}", *extra]


def _supervised_cfg(data: Path) -> dict:
    overrides = [f"data.roots=[{data}]", "ssvif.supervision=labels"]
    return load_config(TINY, overrides, defaults=train_config.DEFAULTS, open_keys=train_config.OPEN_KEYS)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def labelled_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic 64×48 scenes with 9-class labels (road, building, sky, … : a simple label map)."""
    from ssvif_ros.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("labelled") / "scenes"
    write_dataset(root, 12, seed=0, width=64, height=48, num_classes=NUM_CLASSES, progress=False)
    return root


@pytest.fixture(scope="module")
def supervised_run(labelled_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 Stage I epochs (tiny.yaml's stage1_max_epochs), then 8 Stage II epochs of 5 steps."""
    run_dir = tmp_path_factory.mktemp("runs") / "supervised"
    extra = ["ssvif.supervision=labels", "training.max_epochs=10", "training.seg_lr=0.01"]
    assert train_cli.main(_args(labelled_data, run_dir, *extra)) == 0
    return run_dir


# ------------------------------------------------------------------------------------------ the loss


def test_supervised_loss_is_ce_plus_dice_on_labelled_pixels() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 4, 6, 5, generator=gen, requires_grad=True)
    b = torch.randn(2, 4, 6, 5, generator=gen)
    labels = torch.randint(0, 4, (2, 6, 5), generator=gen)
    loss, info = supervised_seg_loss(a, b, labels)
    expected = 0.5 * sum(F.cross_entropy(x, labels) + soft_dice_loss(x, labels) for x in (a, b))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert info["labelled_fraction"].item() == 1.0

    # 255 = ignore: what the logits say there changes neither the loss nor gets a gradient
    ignored = labels.clone()
    ignored[0, :3] = 255
    loss_1, info_1 = supervised_seg_loss(a, b, ignored)
    shaken = a.detach().clone()
    shaken[0, :, :3] += 10 * torch.randn(4, 3, 5, generator=gen)
    loss_2, _ = supervised_seg_loss(shaken, b, ignored)
    assert loss_1.item() == pytest.approx(loss_2.item(), rel=1e-6) and loss_1.item() != loss.item()
    loss_1.backward()
    assert torch.all(a.grad[0, :, :3] == 0) and a.grad[1].abs().sum() > 0
    assert info_1["labelled_fraction"].item() == pytest.approx(1 - 15 / 60)

    # perfect logits: accuracy 1, loss near 0; every pixel ignored: a finite 0, not NaN
    perfect = 50.0 * F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    loss_p, info_p = supervised_seg_loss(perfect, perfect, labels)
    assert info_p["accuracy_a"].item() == 1.0 and loss_p.item() < 0.05
    assert supervised_seg_loss(a, b, torch.full_like(labels, 255))[0].item() == 0.0
    with pytest.raises(ValueError, match="labels"):
        supervised_seg_loss(a, b, labels[:, :3])


# ------------------------------------------------------------------------------------ data alignment


def _find_crop(full: np.ndarray, crop: np.ndarray) -> tuple[int, int, bool]:
    """(top, left, h-flipped) where ``crop`` (c,c,3) sits in ``full`` (H,W,3); exactly one match."""
    c = crop.shape[0]
    hits = []
    for flipped in (False, True):
        source = full[:, ::-1] if flipped else full
        for top in range(full.shape[0] - c + 1):
            for left in range(full.shape[1] - c + 1):
                if np.array_equal(source[top : top + c, left : left + c], crop):
                    hits.append((top, left, flipped))
    assert len(hits) == 1, hits
    return hits[0]


def test_items_carry_labels_cropped_and_flipped_with_the_images(labelled_data: Path) -> None:
    items, val_items, _ = train_data.build_data(_supervised_cfg(labelled_data))
    flips = set()
    for epoch in range(3):
        for position in range(4):
            item = items[(epoch, position)]
            full = items.base.read_arrays(items.indices[position], load_labels=True)
            vis = (item["vis"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            top, left, flipped = _find_crop(full["vis"], vis)
            flips.add(flipped)
            label = full["label"][:, ::-1] if flipped else full["label"]
            assert item["label"].dtype == torch.int64 and item["label"].shape == (32, 32)
            assert np.array_equal(item["label"].numpy(), label[top : top + 32, left : left + 32])
    assert flips == {False, True}  # both cases were seen
    val = val_items[(0, 0)]
    full = val_items.base.read_arrays(val_items.indices[0], load_labels=True)
    assert np.array_equal(val["label"].numpy(), full["label"][8:40, 16:48])  # the centre 32×32 of 48×64


# ------------------------------------------------------------------------------------- the training run


def test_supervised_run_goes_through_stage_two_with_a_finite_loss(supervised_run: Path) -> None:
    rows = _rows(supervised_run / "metrics.csv")
    stages = [int(r["stage"]) for r in rows]
    assert len(rows) == 10 and stages[0] == 1 and stages[-1] == 2
    stage2 = [r for r in rows if r["stage"] == "2"]
    assert len(stage2) >= 8
    for r in stage2:  # the supervised loss is logged in the csc columns; no teacher without pseudo labels
        assert math.isfinite(float(r["train_csc"])) and float(r["train_csc"]) > 0
        assert math.isfinite(float(r["val_csc"])) and r["train_teacher_a"] == ""
        assert float(r["grad_norm_csc"]) > 0  # GDWA measured the supervised task's gradient
    assert float(stage2[-1]["train_csc"]) < 0.85 * float(stage2[0]["train_csc"])
    steps = [r for r in _rows(supervised_run / "steps.csv") if r["stage"] == "2"]
    assert steps and all(math.isfinite(float(r["csc"])) and r["teacher_a"] == "" for r in steps)
    summary = json.loads((supervised_run / "summary.json").read_text())
    assert summary["stage"] == 2 and summary["status"].startswith("training.max_epochs")
    meta = json.loads((supervised_run / "last.json").read_text())
    assert meta["config"]["ssvif"]["supervision"] == "labels"
    assert meta["seg_head"]["num_classes"] == NUM_CLASSES


def test_trained_seg_head_follows_the_labels(supervised_run: Path, labelled_data: Path) -> None:
    """Only labels can teach the head the ground truth's class ids: CSC finds its own (permuted) ones."""
    ckpt = load_checkpoint(supervised_run / "last.safetensors")
    cfg = _supervised_cfg(labelled_data)
    items, _, _ = train_data.build_data(cfg)
    every = train_data.PairItems(items.base, list(range(len(items.base))), cfg, train=False)  # centre crops
    batch = [every[(0, p)] for p in range(len(every))]
    vis, ir = torch.stack([b["vis"] for b in batch]), torch.stack([b["ir"] for b in batch])
    labels = torch.stack([b["label"] for b in batch])
    ckpt.model.eval()
    ckpt.seg_head.eval()
    with torch.no_grad():
        fused, features = ckpt.model(vis, ir)
        predicted = ckpt.seg_head(features, tuple(fused.shape[-2:])).argmax(dim=1)
    accuracy = (predicted == labels).float().mean().item()
    best_constant = torch.bincount(labels.flatten()).max().item() / labels.numel()
    assert accuracy > best_constant + 0.1, (accuracy, best_constant)


# --------------------------------------------------------------------------------------------- errors


def _copy(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    return dest


def test_missing_labels_stop_with_the_file_named(
    labelled_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_labels = _copy(labelled_data, tmp_path / "no_labels")
    shutil.rmtree(no_labels / "label")
    assert train_cli.main(_args(no_labels, tmp_path / "r1", "ssvif.supervision=labels")) == 2
    err = capsys.readouterr().err
    assert "ssvif.supervision=labels" in err and "no label folder found" in err and str(no_labels) in err
    assert not (tmp_path / "r1" / "metrics.csv").exists()
    # the same root trains fine without labels (the default supervision never looks for them)
    assert train_cli.main(_args(no_labels, tmp_path / "r1b", "training.max_epochs=1")) == 0

    one_missing = _copy(labelled_data, tmp_path / "one_missing")
    (one_missing / "label" / "00003.png").unlink()
    assert train_cli.main(_args(one_missing, tmp_path / "r2", "ssvif.supervision=labels")) == 2
    err = capsys.readouterr().err
    assert str(one_missing / "vi" / "00003.png") in err and "no label" in err

    bad_ids = _copy(labelled_data, tmp_path / "bad_ids")
    label = np.asarray(Image.open(bad_ids / "label" / "00005.png")).copy()
    label[0, :4] = [12, 255, 9, 0]  # 255 is fine (ignore), 9 and 12 are not for 9 classes
    Image.fromarray(label).save(bad_ids / "label" / "00005.png")
    assert train_cli.main(_args(bad_ids, tmp_path / "r3", "ssvif.supervision=labels")) == 2
    err = capsys.readouterr().err
    assert str(bad_ids / "label" / "00005.png") in err and "[9, 12]" in err and "num_classes=9" in err


def test_config_errors(labelled_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        ("ssvif.supervision=labels", "--framework", "original"): "labels needs framework=ssvif",
        ("ssvif.supervision=labels", "framework=original"): "labels needs framework=ssvif",
        ("ssvif.supervision=labels", "ssvif.csc=false"): "labels needs ssvif.csc=true",
        ("ssvif.supervision=pseudo",): "must be csc or labels",
    }
    for extra, message in cases.items():
        assert train_cli.main(_args(labelled_data, tmp_path / "never", *extra)) == 2, extra
        err = capsys.readouterr().err
        assert f"config: ssvif.supervision {message}" in err, (extra, err)
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------------------------------------- ablate


def test_ablate_supervised_variant_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ablate"
    argv = ["--config", str(TINY), "--out", str(out), "--variants", "supervised,ssvif_gdwa"]
    assert ablate_cli.main([*argv, "--seeds", "1", "--dry-run", "ssvif.supervision=csc"]) == 0
    lines = [shlex.split(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    by_variant = {Path(next(a for a in args if a.startswith("run.dir="))).parent.name: args for args in lines}
    assert set(by_variant) == {"supervised", "ssvif_gdwa"} and not out.exists()
    supervised = by_variant["supervised"]
    assert supervised[1] == str(TRAIN_PY) and supervised[2:4] == ["--config", str(TINY)]
    assert "ssvif.supervision=labels" in supervised and "seed=1" in supervised
    assert supervised.index("ssvif.supervision=csc") < supervised.index("ssvif.supervision=labels")  # wins
    assert f"run.dir={out.resolve() / 'lightunet' / 'supervised' / 'seed1'}" in supervised
    assert "ssvif.supervision=labels" not in by_variant["ssvif_gdwa"]
