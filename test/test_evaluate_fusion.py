"""training/evaluate_fusion.py: methods from baselines, checkpoints and fused folders, on tiny data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training.evaluate_fusion as evaluate_fusion_script_cli
from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.eval import fusion as evaluate_fusion_script
from ssvif_ros.eval.metrics import evaluate_fusion
from ssvif_ros.fusion.baselines import fuse_baseline
from ssvif_ros.fusion.fusers import FuserSpecError
from ssvif_ros.models import create_model

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "evaluate_fusion.py"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 3, width=72, height=56)
    with (root / "manifest.csv").open("w", newline="") as f:  # like the real sets' manifest
        writer = csv.DictWriter(f, ["name", "split"])
        writer.writeheader()
        writer.writerows([{"name": "00000.png", "split": "test"}, {"name": "00001.png", "split": "train"},
                          {"name": "00002.png", "split": "test"}])  # fmt: skip
    return root


def test_methods_agree_with_direct_metrics(tmp_path, dataset):
    fused_dir = tmp_path / "fused_average"
    fused_dir.mkdir()
    for name in ("00000", "00002"):
        vis = np.asarray(Image.open(dataset / "vi" / f"{name}.png"))
        ir = np.asarray(Image.open(dataset / "ir" / f"{name}.png"))
        Image.fromarray(fuse_baseline("average", vis, ir)).save(fused_dir / f"{name}.png")
    weights = save_checkpoint(tmp_path / "ckpt" / "model.safetensors", create_model("lightunet"))

    out = tmp_path / "out"
    methods = ["average", "laplacian", str(fused_dir), str(weights)]
    means = evaluate_fusion_script.evaluate([dataset], methods, out, split="test")

    assert set(means) == {"average", "laplacian", "fused_average", "ckpt/model"}
    with (out / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 2 and {r["name"] for r in rows} == {"00000", "00002"}  # split=test only
    vis = np.asarray(Image.open(dataset / "vi" / "00000.png"))
    ir = np.asarray(Image.open(dataset / "ir" / "00000.png"))
    direct = evaluate_fusion(vis, ir, fuse_baseline("laplacian", vis, ir))
    row = next(r for r in rows if r["method"] == "laplacian" and r["name"] == "00000")
    assert float(row["Qabf"]) == pytest.approx(direct["Qabf"])
    for metric in ("EN", "MI", "SSIM", "DeltaE"):  # the saved folder reproduces the baseline exactly
        assert means["fused_average"][metric] == pytest.approx(means["average"][metric])
    assert math.isnan(means["average"]["MS_SSIM"])  # 72×56 is below MS-SSIM's 161 px minimum
    table = (out / "table.md").read_text()
    assert "| laplacian |" in table and "n/a" in table and "**" in table
    assert json.loads((out / "means.json").read_text())["count"] == 2
    assert (out / "grid.png").is_file()


def test_errors_name_what_is_wrong(tmp_path, dataset):
    with pytest.raises(FuserSpecError, match="neither a baseline"):
        evaluate_fusion_script.evaluate([dataset], ["nope"], tmp_path / "o")
    with pytest.raises(ValueError, match="no pair with split 'val'"):
        evaluate_fusion_script.evaluate([dataset], ["average"], tmp_path / "o", split="val")
    empty = tmp_path / "empty_fused"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no fused image for pair"):
        evaluate_fusion_script.evaluate([dataset], [str(empty)], tmp_path / "o")


def test_the_command_line_turns_errors_into_one_line_and_status_2(tmp_path, dataset, capsys):
    code = evaluate_fusion_script_cli.main(
        ["--data", str(dataset), "--methods", "nope", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 'nope' is neither a baseline")


def test_named_methods_and_colliding_names_keep_every_row(tmp_path, dataset):
    """Two checkpoints called ``seedX/best`` must not overwrite each other's row; NAME=SPEC names a row."""
    paths = []
    for run in ("a", "b"):
        torch.manual_seed(len(paths))
        path = tmp_path / run / "seed0" / "best.safetensors"
        paths.append(save_checkpoint(path, create_model("lightunet")))
    methods = [str(paths[0]), str(paths[1]), "mean=average"]
    means = evaluate_fusion_script.evaluate([dataset], methods, tmp_path / "out", split="test")
    assert list(means) == ["seed0/best", "seed0/best#2", "mean"]
    with (tmp_path / "out" / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 and {r["method"] for r in rows} == {"seed0/best", "seed0/best#2", "mean"}
