"""training/train.py end to end on tiny synthetic data: stages, resume after a kill, DDP, NaN guard, switches.

One uninterrupted tiny run (module fixture) is the reference for several tests. The data's label files
are garbage (and one has no pair): every run here passing proves training never reads labels.
Runs happen in this process (``train_cli.main``) except the killed run and the 2-process DDP run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import training.train as train_cli
from ssvif_ros.checkpoint import load_checkpoint
from ssvif_ros.config import load_config
from ssvif_ros.data import DatasetError, PairedFolderDataset, read_label, split_train_val
from ssvif_ros.train import config as train_config
from ssvif_ros.train import data as train_data
from ssvif_ros.train.state import latest_train_state, load_train_state

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "training" / "train.py"
TINY = REPO / "config" / "train" / "tiny.yaml"


def _args(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY), f"data.roots=[{data}]", f"run.dir={run_dir}", *extra]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic 64×48 scenes whose label files are corrupt, plus a label without a pair."""
    from ssvif_ros.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    write_dataset(root, 12, seed=0, width=64, height=48, progress=False)
    for label in (root / "label").iterdir():
        label.write_bytes(b"not an image: training must never read labels")
    (root / "label" / "orphan.png").write_bytes(b"\x00garbage")
    return root


@pytest.fixture(scope="module")
def reference_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    assert train_cli.main(_args(tiny_data, run_dir)) == 0
    return run_dir


def test_tiny_run_goes_from_stage_one_to_stage_two(reference_run: Path) -> None:
    rows = _rows(reference_run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert [int(r["stage"]) for r in rows] == [1, 1, 2, 2]
    stage1, stage2 = rows[:2], rows[2:]
    assert all(r["train_csc"] == "" and r["w"] == "" for r in stage1)
    assert all(float(r["train_csc"]) > 0 and float(r["val_csc"]) > 0 for r in stage2)
    # GDWA: w starts at its initial 0.1, then is set from the measured gradient norms of epoch 2.
    assert float(stage2[0]["w"]) == pytest.approx(0.1)
    gn_fus, gn_csc = float(stage2[0]["grad_norm_fusion"]), float(stage2[0]["grad_norm_csc"])
    assert gn_fus > 0 and gn_csc > 0
    assert float(stage2[1]["w"]) == pytest.approx(gn_csc / gn_fus, rel=1e-4)  # grad_power 1, r = 1
    assert float(stage2[1]["w"]) != pytest.approx(0.1, abs=1e-3)  # w moved: the next check means something
    # Epochs are compared with the starting w (0.1) every epoch, not with the w that epoch trained with.
    for r in stage2:
        assert float(r["val_loss"]) == pytest.approx(
            float(r["val_fusion"]) + 0.1 * float(r["val_csc"]), rel=1e-4
        )
    summary = json.loads((reference_run / "summary.json").read_text())
    assert summary["switch_epoch"] == 2 and summary["stage"] == 2 and summary["epochs"] == 4
    steps = _rows(reference_run / "steps.csv")
    assert len(steps) == 20 and all(float(r["images_per_s"]) > 0 for r in steps)
    for name in ("config.yaml", "curves.png", "best.safetensors", "best.json", "last.json"):
        assert (reference_run / name).is_file(), name
    assert any((reference_run / "tensorboard").glob("events.out.tfevents.*"))


def test_labels_are_never_read(tiny_data: Path, reference_run: Path) -> None:
    # The labels of this data set are unusable, so a run that read them could not have finished...
    with pytest.raises(DatasetError):
        PairedFolderDataset(tiny_data, load_labels=True)
    with pytest.raises(DatasetError):
        read_label(tiny_data / "label" / "00000.png")
    # ...and it did finish.
    assert json.loads((reference_run / "summary.json").read_text())["status"].startswith(
        "training.max_epochs"
    )


def test_checkpoint_rebuilds_from_its_sidecar(reference_run: Path) -> None:
    ckpt = load_checkpoint(reference_run / "last.safetensors")
    meta = ckpt.meta
    assert meta["model"]["name"] == "lightunet" and meta["stage"] == 2 and meta["epoch"] == 4
    assert meta["config"]["data"]["crop"] == 32 and meta["weighting"]["scheme"] == "gdwa"
    assert math.isfinite(meta["best_val_loss"])
    assert ckpt.seg_head is not None and ckpt.seg_head.num_classes == 9
    fused, features = ckpt.model(torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32))
    assert fused.shape == (1, 3, 32, 32) and ckpt.seg_head(features, (32, 32)).shape == (1, 9, 32, 32)
    tensors, _ = load_train_state(latest_train_state(reference_run / "state"))
    for key, value in ckpt.model.state_dict().items():
        assert torch.equal(value, tensors[f"model.{key}"]), key
    assert any(k.startswith("segformer.") for k in tensors)  # the SegFormer lives in the train state only
    assert not any(k.startswith("segformer.") for k in load_file(reference_run / "last.safetensors"))


@pytest.mark.parametrize("saved_by_old_code", [False, True])
def test_resume_keeps_the_best_loss_only_if_it_used_the_same_task_weight(
    reference_run: Path, tmp_path: Path, saved_by_old_code: bool
) -> None:
    """A Stage II state saved before the validation weight was fixed (no ``best_val_task_weight``) holds a
    best loss computed with that epoch's w: resuming it must not compare against it."""
    import shutil

    from ssvif_ros.train.trainer import Trainer

    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    for late in (run_dir / "state").glob("e0004-*"):
        late.unlink()  # resume from the middle of epoch 3, in Stage II
    side = run_dir / "state" / "e0003-s000005.json"
    meta = json.loads(side.read_text())
    assert meta["trainer"]["stage"] == 2 and meta["trainer"]["best_val_task_weight"] == pytest.approx(0.1)
    if saved_by_old_code:
        del meta["trainer"]["best_val_task_weight"]
        side.write_text(json.dumps(meta))
    cfg = train_config.resolve_config(None, [], resume=run_dir)
    state = Trainer(cfg, resume=True).state
    assert (state.best_val is None) == saved_by_old_code
    assert state.best_val_task_weight == (None if saved_by_old_code else pytest.approx(0.1))


def test_resume_after_kill_reproduces_the_uninterrupted_run(
    tiny_data: Path, reference_run: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    # Dies abruptly (os._exit) after global step 13, in Stage II; the last step checkpoint is step 12.
    killed = subprocess.run(
        [sys.executable, str(TRAIN_PY), *_args(tiny_data, run_dir, "debug.stop_after_steps=13")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 3, killed.stderr
    state = latest_train_state(run_dir / "state")
    assert state is not None and state.stem == "e0002-s000002"
    assert not (run_dir / "summary.json").exists()

    assert train_cli.main(["--resume", str(run_dir)]) == 0
    ref = load_file(reference_run / "last.safetensors")
    got = load_file(run_dir / "last.safetensors")
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    ref_state, _ = load_train_state(latest_train_state(reference_run / "state"))
    got_state, got_meta = load_train_state(latest_train_state(run_dir / "state"))
    for key in ref_state:  # SegFormer, optimizer moments; RNG states too
        assert torch.equal(ref_state[key], got_state[key]), key
    assert got_meta["config"]["debug"]["stop_after_steps"] is None  # debug options do not carry over
    timing = {"images_per_s", "epoch_time_s"}
    strip = [{k: v for k, v in r.items() if k not in timing} for r in _rows(run_dir / "metrics.csv")]
    assert strip == [
        {k: v for k, v in r.items() if k not in timing} for r in _rows(reference_run / "metrics.csv")
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """2 CPU processes (gloo) on loopback only."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), str(TRAIN_PY), *args]  # fmt: skip
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_ddp_two_cpu_processes_and_their_resume(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    extra = ["training.batch_size=1", "training.max_epochs=3", "ssvif.grad_analysis=true"]
    proc = _torchrun(*_args(tiny_data, run_dir, *extra, "debug.log_sample_names=true"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _rows(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # one log, written once
    assert [int(r["stage"]) for r in rows] == [1, 1, 2]  # both ranks switched together
    assert int(rows[0]["steps"]) == 10  # 5 steps on each of 2 ranks
    assert math.isfinite(float(rows[2]["proj_coef_mean"]))
    assert len(list(run_dir.glob("*.safetensors"))) == 2  # last + best, once
    seen = {}
    for rank in (0, 1):
        lines = (run_dir / "debug" / f"samples-rank{rank}.txt").read_text().split("\n")
        seen[rank] = [line.split() for line in lines if line]
    for epoch in ("0", "1", "2"):
        names = [{n for e, _, n in seen[rank] if e == epoch} for rank in (0, 1)]
        assert len(names[0]) == len(names[1]) == 5
        assert not names[0] & names[1], f"epoch {epoch}: both ranks trained on {names[0] & names[1]}"
    load_checkpoint(run_dir / "last.safetensors")

    # Killed in Stage II (after global step 13, last checkpoint at 12), resumed by 2 processes again:
    # each rank must get back its own RNG state and its own share of the epoch sums.
    killed_dir = tmp_path / "ddp_killed"
    killed = _torchrun(*_args(tiny_data, killed_dir, *extra, "debug.stop_after_steps=13"))
    assert killed.returncode != 0 and latest_train_state(killed_dir / "state").stem == "e0002-s000002"
    resumed = _torchrun("--resume", str(killed_dir))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    ref, got = load_file(run_dir / "last.safetensors"), load_file(killed_dir / "last.safetensors")
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    timing = {"images_per_s", "epoch_time_s"}
    strip = [{k: v for k, v in r.items() if k not in timing} for r in _rows(killed_dir / "metrics.csv")]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in rows]  # epoch sums over ranks
    ref_w = json.loads((run_dir / "last.json").read_text())["weighting"]
    assert json.loads((killed_dir / "last.json").read_text())["weighting"] == ref_w  # next epoch's w


def test_nan_images_are_skipped_and_named(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = sorted(p.stem for p in (tiny_data / "vi").iterdir())
    train_names = [names[i] for i in split_train_val(names, 0.1, seed=0)[0]]
    bad = train_names[:2]  # 10 of the 11 training items are drawn per epoch: at least one of these
    run_dir = tmp_path / "nan"
    extra = [f"debug.inject_nan_names={json.dumps(bad)}", "ssvif.two_stage=false", "training.max_epochs=1"]
    assert train_cli.main(_args(tiny_data, run_dir, *extra)) == 0
    err = capsys.readouterr().err
    assert "non-finite loss at epoch 0" in err and "optimizer step skipped" in err
    assert any(name in err for name in bad)
    row = _rows(run_dir / "metrics.csv")[0]
    assert int(row["skipped_steps"]) >= 1 and int(row["steps"]) >= 1
    assert math.isfinite(float(row["train_total"]))
    tensors, _ = load_train_state(latest_train_state(run_dir / "state"))
    for key, value in tensors.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key  # weights, BN statistics and Adam moments intact

    run_dir = tmp_path / "all_nan"
    extra = ['debug.inject_nan_names=["*"]', "training.max_nonfinite_steps=3"]
    assert train_cli.main(_args(tiny_data, run_dir, *extra)) == 2
    assert "3 consecutive non-finite steps" in capsys.readouterr().err


@pytest.mark.parametrize("switch", [["--framework", "original"], ["ssvif.csc=false"]])
def test_plain_fusion_training_has_no_branches(tiny_data: Path, tmp_path: Path, switch: list[str]) -> None:
    run_dir = tmp_path / "plain"
    common = ["training.max_epochs=2", "training.max_steps_per_epoch=2"]
    assert train_cli.main(_args(tiny_data, run_dir, *common) + switch) == 0
    rows = _rows(run_dir / "metrics.csv")
    assert [int(r["stage"]) for r in rows] == [1, 1] and all(r["train_csc"] == "" for r in rows)
    meta = json.loads((run_dir / "last.json").read_text())
    assert meta["seg_head"] is None and meta["config"]["ssvif"]["csc"] is False
    tensors, state_meta = load_train_state(latest_train_state(run_dir / "state"))
    assert state_meta["modules"] == ["model"] and state_meta["weighting"] is None
    assert not any(k.startswith(("seg_head.", "segformer.")) for k in tensors)
    w = meta["config"]["loss"]
    for r in rows:  # the total is the weighted sum of the terms, the colour term included or not
        expected = sum(w[f"w_{k}"] * float(r[f"train_{k}"]) for k in ("int", "grad", "ssim", "color"))
        assert float(r["train_total"]) == pytest.approx(expected, rel=1e-4)
    if switch[0] == "--framework":
        assert meta["config"]["framework"] == "original" and w["w_color"] == 0.0
        assert float(rows[0]["train_color"]) > 0  # measured, but not part of the loss
    else:
        assert meta["config"]["framework"] == "ssvif" and w["w_color"] > 0


def test_step_schedule_scales_every_group_at_its_milestones(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "steps"
    extra = ["ssvif.two_stage=false", "training.max_epochs=3", "training.max_steps_per_epoch=1"]
    extra += ["training.lr=1e-3", "training.seg_lr=4e-4"]
    extra += ["training.lr_milestones=[1,2]", "training.lr_gamma=0.5"]
    assert train_cli.main(_args(tiny_data, run_dir, *extra)) == 0
    lrs = [float(r["lr"]) for r in _rows(run_dir / "metrics.csv")]
    assert lrs == pytest.approx([1e-3, 5e-4, 2.5e-4])
    _, meta = load_train_state(latest_train_state(run_dir / "state"))
    groups = {g["name"]: g for g in meta["optimizer"]["param_groups"]}
    assert groups["seg"]["lr"] == pytest.approx(1e-4) and groups["seg"]["base_lr"] == pytest.approx(4e-4)


def test_resume_after_a_milestone_reproduces_the_scheduled_run(tiny_data: Path, tmp_path: Path) -> None:
    extra = ["ssvif.two_stage=false", "training.max_epochs=3", "training.max_steps_per_epoch=2"]
    extra += ["training.lr_milestones=[1,2]", "training.lr_gamma=0.5", "training.checkpoint_every_steps=1"]
    reference = tmp_path / "reference"
    assert train_cli.main(_args(tiny_data, reference, *extra)) == 0
    killed = tmp_path / "killed"  # dies in epoch 1 (after the first milestone), resumes from its step 3
    command = [sys.executable, str(TRAIN_PY), *_args(tiny_data, killed, *extra, "debug.stop_after_steps=4")]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 3
    assert train_cli.main(["--resume", str(killed)]) == 0
    ref, got = load_file(reference / "last.safetensors"), load_file(killed / "last.safetensors")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    lrs = [float(r["lr"]) for r in _rows(killed / "metrics.csv")]
    assert (
        lrs
        == [float(r["lr"]) for r in _rows(reference / "metrics.csv")]
        == pytest.approx([1e-3, 5e-4, 2.5e-4])
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["weighting.name=fixed", "model.color=y"],
        ["weighting.name=dwa", "ssvif.num_classes=15"],
        ["weighting.name=uncertainty"],
    ],
)
def test_weighting_schemes_from_epoch_zero(tiny_data: Path, tmp_path: Path, extra: list[str]) -> None:
    run_dir = tmp_path / "scheme"
    common = ["ssvif.two_stage=false", "training.max_epochs=2", "training.max_steps_per_epoch=2"]
    assert train_cli.main(_args(tiny_data, run_dir, *common, *extra)) == 0
    rows = _rows(run_dir / "metrics.csv")
    assert [int(r["stage"]) for r in rows] == [2, 2]
    ws = [float(r["w"]) for r in rows]
    meta = json.loads((run_dir / "last.json").read_text())
    scheme = meta["weighting"]["scheme"]
    if scheme == "fixed":
        assert ws == [0.1, 0.1] and meta["model"]["cfg"]["color"] == "y"
    elif scheme == "dwa":
        assert meta["seg_head"]["num_classes"] == 15
    else:  # uncertainty: its log-variances are trained by the optimizer
        assert meta["weighting"]["log_vars"] != [0.0, 0.0]


def test_config_errors_name_the_key(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "training.lrr=1": "unknown key 'training.lrr' (did you mean lr",
        "training.lr=fast": "training.lr must be a number",
        "training.batch_size=2.5": "training.batch_size must be an integer",
        "ssvif.csc=maybe": "ssvif.csc must be true or false",
        "training=3": "training is a section",
        "nonsense": "not of the form dotted.key=value",
        "model.color=gray": "model.color must be rgb or y",
        "training.lr_milestones=[0]": "training.lr_milestones must be a list of epochs >= 1",
        "training.lr_gamma=fast": "training.lr_gamma must be a number",
    }
    for override, message in cases.items():
        assert train_cli.main(_args(tiny_data, tmp_path / "never", override)) == 2, override
        assert message in capsys.readouterr().err, override
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("training:\n  batchsize: 4\n")
    assert train_cli.main(["--config", str(bad_file)]) == 2
    err = capsys.readouterr().err
    assert str(bad_file) in err and "training.batchsize" in err


def test_crops_depend_on_seed_epoch_and_item_only(tiny_data: Path) -> None:
    overrides = [f"data.roots=[{tiny_data}]", "data.num_workers=2"]
    cfg = load_config(TINY, overrides, defaults=train_config.DEFAULTS, open_keys=train_config.OPEN_KEYS)
    items, _, _ = train_data.build_data(cfg)
    keys = [(1, p) for p in range(len(items))]
    rng_before = torch.get_rng_state()
    with_workers = list(train_data.loader_for(items, keys, cfg, drop_last=False))
    cfg["data"]["num_workers"] = 0
    in_process = list(train_data.loader_for(items, keys, cfg, drop_last=False))
    assert torch.equal(torch.get_rng_state(), rng_before)  # data loading leaves the global RNG alone
    for a, b in zip(with_workers, in_process, strict=True):
        assert a["name"] == b["name"] and torch.equal(a["vis"], b["vis"]) and torch.equal(a["ir"], b["ir"])
    other_epoch = torch.stack([items[(2, p)]["vis"] for p in range(len(items))])
    assert not torch.equal(other_epoch, torch.cat([b["vis"] for b in in_process]))


def test_shared_cpu_config_keeps_msrs_test_pairs_out(shared_data: Path) -> None:
    roots = f"data.roots=[{shared_data / 'roadscene'}, {shared_data / 'msrs_subset'}]"
    cfg = load_config(
        REPO / "config/train/shared_cpu.yaml",
        [roots],
        defaults=train_config.DEFAULTS,
        open_keys=train_config.OPEN_KEYS,
    )
    train_items, val_items, excluded = train_data.build_data(cfg)
    with (shared_data / "msrs_subset" / "manifest.csv").open(newline="") as f:
        split = {f"msrs_subset/{Path(r['name']).stem}": r["split"] for r in csv.DictReader(f)}
    assert sorted(excluded) == sorted(n for n, s in split.items() if s == "test")
    used = {train_items.base.names[i] for i in train_items.indices + val_items.indices}
    assert not used & set(excluded)
    assert sum(n.startswith("msrs_subset/") for n in used) == sum(s == "train" for s in split.values())
    assert len(train_items) + len(val_items) == len(used) == len(train_items.base) - len(excluded)


def test_exclude_flags_keep_the_masked_msrs_pairs_out(shared_data: Path) -> None:
    overrides = [
        f"data.roots=[{shared_data / 'roadscene'}, {shared_data / 'msrs_subset'}]",
        "data.exclude_flags=[has_binary_mask]",
    ]
    cfg = load_config(
        REPO / "config/train/shared_cpu.yaml",
        overrides,
        defaults=train_config.DEFAULTS,
        open_keys=train_config.OPEN_KEYS,
    )
    train_items, val_items, excluded = train_data.build_data(cfg)
    with (shared_data / "msrs_subset" / "manifest.csv").open(newline="") as f:
        rows = {f"msrs_subset/{Path(r['name']).stem}": r for r in csv.DictReader(f)}
    masked = {n for n, r in rows.items() if r["has_binary_mask"] == "True"}
    assert len(masked) == 8
    assert set(excluded) == masked | {n for n, r in rows.items() if r["split"] == "test"}
    used = {train_items.base.names[i] for i in train_items.indices + val_items.indices}
    assert sum(n.startswith("msrs_subset/") for n in used) == 4
