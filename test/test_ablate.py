"""training/ablate.py: variant overrides (dry run), two tiny variants end to end, skipping finished runs."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest

import training.ablate as ablate_cli
from ssvif_ros.train import ablate

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "train" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssvif_ros.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("ablate_data")
    write_dataset(root, 6, width=64, height=48, progress=False)
    return root


def _commands(text: str) -> dict[tuple[str, str], list[str]]:
    """(variant, seed folder) -> train.py arguments, from the dry run's printed lines."""
    commands = {}
    for line in text.splitlines():
        args = shlex.split(line)
        run_dir = Path(next(a for a in args if a.startswith("run.dir=")).split("=", 1)[1])
        commands[(run_dir.parent.name, run_dir.name)] = args
    return commands


def test_dry_run_lists_each_variants_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ablate"
    code = ablate_cli.main(
        ["--config", str(TINY), "--out", str(out), "--seeds", "0,3", "--dry-run", "training.lr=0.01"]
    )
    assert code == 0
    commands = _commands(capsys.readouterr().out)
    assert len(commands) == 2 * len(ablate.VARIANTS) == 42
    assert not out.exists()  # nothing trained
    expected = {
        "original": "framework=original",
        "fixed": "weighting.name=fixed",
        "dwa": "weighting.name=dwa",
        "uncertainty": "weighting.name=uncertainty",
        "no_csc": "ssvif.csc=false",
        "no_two_stage": "ssvif.two_stage=false",
        "k15": "ssvif.num_classes=15",
        "y_channel": "model.color=y",
        "supervised": "ssvif.supervision=labels",
        "new_no_csc": "ssvif.csc=false",
        "new_paper_csc": "ssvif.csc_balance=none",
        "new_max_guide": "model.cfg.guide=max",
        "new_max_target": "loss.target=max",
        "new_luminance": "model.cfg.correction=luminance",
        "new_learned_guide": "model.cfg.guide=learned",
        "new_learned_guide_sides": "loss.target=saliency_sides",
        "new_learned_guide_narrow": "model.cfg.widths=[8,16,32]",
        "multitask": "framework=multitask",
        "cs2fusion": "framework=cs2fusion",
    }
    for variant, override in expected.items():
        for seed in (0, 3):
            args = commands[(variant, f"seed{seed}")]
            assert override in args and f"seed={seed}" in args and "training.lr=0.01" in args
            assert args.index("training.lr=0.01") < args.index(override)  # the variant wins
    base = commands[("ssvif_gdwa", "seed0")]
    assert not any(a in base for a in expected.values())
    assert "model.name=lightunet" in base and str(TINY) in base
    with pytest.raises(SystemExit, match="unknown"):
        ablate_cli.main(["--config", str(TINY), "--out", str(out), "--variants", "no_csc,bogus", "--dry-run"])


def test_two_variants_end_to_end_then_skipped(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ablate"
    argv = [
        "--config", str(TINY), "--variants", "original,no_csc", "--out", str(out),
        "--eval-data", str(tiny_data), f"data.roots=[{tiny_data}]",
    ]  # fmt: skip
    assert ablate_cli.main(argv) == 0
    table = (out / "ablation.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| lightunet |")]
    assert [r.split("|")[2].strip() for r in rows] == ["original", "no_csc"]
    record = json.loads((out / "ablation.json").read_text())
    assert [(r["variant"], r["seeds"], r["failed"]) for r in record["rows"]] == [
        ("original", [0], []),
        ("no_csc", [0], []),
    ]
    for row in record["rows"]:
        for metric in ("EN", "SSIM", "Qabf", "DeltaE"):
            assert math.isfinite(row["metrics"][metric]["mean"]), (row["variant"], metric)
        assert row["train_wall_s"]["mean"] > 0
        assert row["stage2_start_epochs"] == [None]  # neither variant has a Stage II
        assert f"{row['metrics']['EN']['mean']:.4f}" in table
        run_means = json.loads(
            (out / "lightunet" / row["variant"] / "seed0" / "eval" / "means.json").read_text()
        )
        assert next(iter(run_means["means"].values()))["EN"] == row["metrics"]["EN"]["mean"]
    # the original framework drops the colour term; no_csc keeps it (the two runs really differ)
    configs = {
        v: (out / "lightunet" / v / "seed0" / "config.yaml").read_text() for v in ("original", "no_csc")
    }
    assert "framework: original" in configs["original"] and "framework: ssvif" in configs["no_csc"]

    summary = out / "lightunet" / "no_csc" / "seed0" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    capsys.readouterr()
    assert ablate_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("skip ") == 2 and "run: " not in printed
    assert summary.stat().st_mtime_ns == stamp
    assert json.loads((out / "ablation.json").read_text())["rows"] == record["rows"]


def test_killed_run_is_reported_then_resumed(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ablate"
    argv = ["--config", str(TINY), "--variants", "no_csc", "--out", str(out), f"data.roots=[{tiny_data}]"]
    assert ablate_cli.main([*argv, "debug.stop_after_steps=3"]) == 1  # train.py dies after step 3
    record = json.loads((out / "ablation.json").read_text())
    assert record["rows"][0]["failed"] == [0]
    assert "failed: [0]" in (out / "ablation.md").read_text()
    capsys.readouterr()
    assert ablate_cli.main(argv) == 0
    run_dir = out / "lightunet" / "no_csc" / "seed0"
    assert f"--resume {run_dir}" in capsys.readouterr().out
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 4
    row = json.loads((out / "ablation.json").read_text())["rows"][0]
    assert row["failed"] == [] and math.isnan(row["metrics"]["EN"]["mean"])  # no --eval-data: not evaluated


@pytest.mark.parametrize("variant", sorted(ablate.VARIANTS))
def test_every_variant_resolves_to_a_checked_config(variant: str) -> None:
    """Each variant's overrides give a config the trainer can use: numbers stay numbers (``2e-4`` from
    YAML is a string, which once reached Adam as a learning rate and failed every cs2fusion run)."""
    from ssvif_ros.train import config as train_config

    model = ["model.name=cs2fusion"] if variant == "cs2fusion" else []
    cfg = train_config.resolve_config(TINY, [*ablate.VARIANTS[variant], *model])
    for key in ("lr", "seg_lr"):
        value = cfg["training"][key]
        assert value is None or isinstance(value, float), f"training.{key} = {value!r}"


def test_a_learning_rate_that_is_not_a_number_is_refused() -> None:
    from ssvif_ros.config import ConfigError
    from ssvif_ros.train import config as train_config

    with pytest.raises(ConfigError, match=r"training\.seg_lr must be null or a number, got 'fast'"):
        train_config.resolve_config(TINY, ["training.seg_lr=fast"])
