"""training/color_weight_ablation.py on tiny synthetic pairs: the run, its outputs, its reproducibility."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

import training.color_weight_ablation as ablation_cli
from ssvif_ros.data import PairedFolderDataset
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.train import color_weight_ablation as ablation

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "color_weight_ablation.py"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic 64×48 pairs (vi/, ir/, no manifest)."""
    root = tmp_path_factory.mktemp("pairs")
    write_dataset(root, 4, width=64, height=48)
    return root


def test_smoke_run_reports_every_weight(pairs: Path, tmp_path: Path) -> None:
    out = tmp_path / "ablation.json"
    argv = ["--weights-list", "0,10", "--steps", "3", "--crop", "32", "--batch-size", "2"]
    argv += ["--train-roots", str(pairs), "--eval-root", str(pairs), "--out", str(out)]
    records = ablation.run(ablation_cli.parse_args(argv))

    assert [r["color_weight"] for r in records] == [0.0, 10.0]
    assert json.loads(out.read_text()) == records
    for record in records:
        assert record["train_pairs"] == 4 and record["eval_pairs"] == 4  # no manifest: every pair
        assert record["train_seconds"] > 0
        assert set(record["per_image"]) == set(PairedFolderDataset(pairs).names)
        metrics = record["metrics"]
        assert metrics["MS_SSIM"] is None  # 48 px is under MS-SSIM's 161 px minimum
        for key in ("DeltaE", "SSIM", "Qabf", "VIF", "MI", "EN"):
            assert math.isfinite(metrics[key]), key
        assert set(record["final_loss_terms"]) == {"int", "grad", "ssim", "color"}

    table = ablation.markdown_table(records).splitlines()
    assert len(table) == 4 and table[2].startswith("| 0 |") and table[3].startswith("| 10 |")
    assert "n/a" in table[2]  # the missing MS_SSIM


def test_same_seed_gives_same_model_and_weight_changes_it(pairs: Path) -> None:
    train_set = ablation.training_set([pairs], "train", crop=32)

    def trained(color_weight: float) -> dict[str, torch.Tensor]:
        model, _, _ = ablation.train_fusion_model(train_set, color_weight, steps=2, seed=3, batch_size=2)
        return model.state_dict()

    first, again, other = trained(0.0), trained(0.0), trained(100.0)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_manifest_split_selects_pairs(tmp_path: Path) -> None:
    write_dataset(tmp_path, 3, width=64, height=48)
    dataset = PairedFolderDataset(tmp_path)
    (tmp_path / "manifest.csv").write_text("name,split\n00000.png,test\n00001.png,train\n00002.png,test\n")
    assert ablation.manifest_indices(dataset, "test") == [0, 2]
    assert ablation.manifest_indices(dataset, "train") == [1]
    with pytest.raises(ValueError, match=r"no pair with split == 'val' in its manifest\.csv"):
        ablation.manifest_indices(dataset, "val")


@pytest.mark.parametrize("text", ["", "1,-2", "a,b", "nan"])
def test_bad_weight_list_is_rejected(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--weights-list"):
        ablation_cli.parse_weights(text)
