"""MultiTaskVIF (issue 16): the shared trunk, the loss, mixed labelled/unlabelled data, a tiny run, export.

One tiny run (module fixture) on 9-class synthetic scenes plus a folder of the same pairs without labels:
its checkpoint carries the trunk, a 9-class head and the class names, opens in the engine with named
classes, and exports to ONNX with the same outputs (the training-only parts are none: the head is the
checkpoint's segmentation output)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import training.train as train_cli
from ssvif_ros.checkpoint import load_checkpoint, save_checkpoint
from ssvif_ros.data.pairs import LABELS_WHERE_PRESENT, PairedFolderDataset
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.models import create_model
from ssvif_ros.models.base import SharedTrunk
from ssvif_ros.train.frameworks import MultiTaskVIF
from ssvif_ros.train.losses import soft_dice_loss

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "train" / "tiny.yaml"


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(labelled 9-class scenes, the same kind of scenes without their label folder)."""
    from ssvif_ros.data.synthetic import write_dataset

    base = tmp_path_factory.mktemp("mtl")
    write_dataset(base / "labelled", 12, seed=0, width=64, height=48, num_classes=9, progress=False)
    write_dataset(base / "raw", 6, seed=1, width=64, height=48, num_classes=9, progress=False)
    shutil.rmtree(base / "raw" / "label")
    (base / "raw" / "classes.json").unlink()
    return base / "labelled", base / "raw"


@pytest.fixture(scope="module")
def mtl_run(mixed_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "mtl"
    labelled, raw = mixed_data
    argv = ["--config", str(TINY), "--framework", "multitask", f"data.roots=[{labelled},{raw}]"]
    assert train_cli.main([*argv, f"run.dir={run_dir}", "training.max_epochs=3"]) == 0
    return run_dir


def test_the_shared_trunk_starts_as_the_identity_on_backbone_features() -> None:
    trunk = SharedTrunk(8).eval()
    x = torch.rand(2, 8, 5, 7)  # post-ReLU features are non-negative
    assert torch.equal(trunk(x), x)
    torch.manual_seed(0)
    plain = create_model("lightunet").eval()
    torch.manual_seed(0)
    multi = create_model("lightunet", multitask=True).eval()
    vis, ir = torch.rand(1, 3, 32, 48), torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        assert torch.allclose(plain(vis, ir)[0], multi(vis, ir)[0], atol=1e-6)
    assert multi.model_cfg["multitask"] is True and "multitask" not in plain.model_cfg


def test_the_task_loss_is_ce_plus_dice_over_labelled_pixels_and_zero_without_labels() -> None:
    framework = MultiTaskVIF({"loss": {}, "ssvif": {"num_classes": 4, "seg_head_hidden": 8}}, 16)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 5, generator=gen)
    labels = torch.randint(0, 4, (2, 6, 5), generator=gen)
    loss, info = framework.task_loss({"label": labels}, {"logits_a": logits}, None, None)
    expected = F.cross_entropy(logits, labels) + soft_dice_loss(logits, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert info["agreement"].item() == pytest.approx(accuracy)
    unlabelled = torch.full_like(labels, 255)
    assert framework.task_loss({"label": unlabelled}, {"logits_a": logits}, None, None)[0].item() == 0.0


def test_labels_where_present_give_an_all_ignore_label_to_unlabelled_roots(mixed_data) -> None:
    labelled, raw = mixed_data
    ds = PairedFolderDataset([labelled, raw], load_labels=LABELS_WHERE_PRESENT)
    with_labels = [ds.read_arrays(i)["label"] for i in range(len(ds))]
    unlabelled = [label for name, label in zip(ds.names, with_labels, strict=True) if name.startswith("raw/")]
    assert len(unlabelled) == 6 and all((label == 255).all() for label in unlabelled)
    assert sum(int((label != 255).any()) for label in with_labels) == 12


def test_a_tiny_run_gives_a_named_multitask_checkpoint(mtl_run: Path) -> None:
    side = json.loads((mtl_run / "best.json").read_text())
    assert side["model"]["cfg"]["multitask"] is True
    names = json.loads((Path(side["config"]["data"]["roots"][0]) / "classes.json").read_text())["names"]
    assert side["class_names"] == names and len(names) == 9
    assert side["config"]["ssvif"]["two_stage"] is False and side["stage"] == 2
    ckpt = load_checkpoint(mtl_run / "best.safetensors")
    assert ckpt.model.trunk is not None and ckpt.seg_head is not None
    with (mtl_run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(row["stage"] == "2" for row in rows)  # one stage: joint from epoch 0


def test_without_the_shared_trunk_the_head_reads_the_backbone_features(mixed_data, tmp_path: Path) -> None:
    """multitask.shared_trunk=false (the ablation of the trunk): no trunk in the checkpoint, the named
    head still trained and served; a value that is not a boolean is refused, naming the key."""
    labelled, _ = mixed_data
    argv = ["--config", str(TINY), "--framework", "multitask", f"data.roots=[{labelled}]"]
    argv.append("training.max_epochs=1")
    assert train_cli.main([*argv, f"run.dir={tmp_path / 'run'}", "multitask.shared_trunk=false"]) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert ckpt.model.trunk is None and ckpt.seg_head is not None
    assert "multitask" not in json.loads((tmp_path / "run" / "best.json").read_text())["model"]["cfg"]
    assert FusionEngine(weights=tmp_path / "run" / "best.safetensors").class_names[0] == "road"
    assert train_cli.main([*argv, f"run.dir={tmp_path / 'bad'}", "multitask.shared_trunk=2"]) != 0


def test_the_engine_and_onnx_export_serve_the_named_segmentation(mtl_run: Path) -> None:
    engine = FusionEngine(weights=mtl_run / "best.safetensors")
    assert engine.has_segmentation and engine.num_classes == 9 and engine.class_names[0] == "road"
    rng = np.random.default_rng(0)
    vis, ir = (
        rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
        rng.integers(0, 256, (48, 64), dtype=np.uint8),
    )
    eager = engine.fuse(vis, ir, want_labels=True)
    pytest.importorskip("onnxruntime")
    ort = FusionEngine(weights=mtl_run / "best.safetensors", backend="onnxruntime").fuse(
        vis, ir, want_labels=True
    )
    assert np.abs(ort.image.astype(int) - eager.image).max() <= 1
    assert (ort.labels != eager.labels).mean() < 1e-3


def test_a_multitask_checkpoint_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_model("lightunet", multitask=True).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    loaded = load_checkpoint(path).model.eval()
    vis, ir = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(vis, ir)[0], loaded(vis, ir)[0])


def test_the_shipped_multitask_checkpoint_names_its_classes() -> None:
    path = REPO / "ssvif_ros" / "weights" / "lightunet_multitask.safetensors"
    if not path.is_file():
        pytest.skip("no shipped MultiTaskVIF checkpoint in ssvif_ros/weights")
    engine = FusionEngine(weights=path)
    assert engine.class_names == [
        "road", "lane_marking", "building", "vegetation", "sky", "pole", "car", "person", "bicycle"
    ]  # fmt: skip
    assert engine.checkpoint.model.trunk is not None
