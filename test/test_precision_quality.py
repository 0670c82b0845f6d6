"""training/precision_quality.py: fp32/fp16/bf16/int8 fusion quality on tiny synthetic pairs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training.precision_quality as precision_quality_cli
from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.eval import precision as precision_quality
from ssvif_ros.eval.metrics import evaluate_fusion
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.models import create_model

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "precision_quality.py"

SPLITS = {"00000": "train", "00001": "test", "00002": "train", "00003": "test"}


def _has_quantization() -> bool:
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, len(SPLITS), width=64, height=48)
    with (root / "manifest.csv").open("w", newline="") as f:  # like the real sets' manifest
        writer = csv.DictWriter(f, ["name", "split"])
        writer.writeheader()
        writer.writerows([{"name": f"{n}.png", "split": s} for n, s in SPLITS.items()])
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("lightunet").eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model)


def test_precisions_on_synthetic_pairs(tmp_path, dataset, weights):
    names = ["fp32", "fp16", "bf16"] + (["onnx_fp32", "int8"] if _has_quantization() else [])
    out = tmp_path / "out"
    report = precision_quality.measure(weights, [dataset], out, names, split="test", calib_split="train")

    assert json.loads((out / "precision.json").read_text())["count"] == 2
    assert report["pairs"] == ["00001", "00003"]  # split=test only
    results = report["precisions"]
    assert list(results) == names and all(r["error"] is None for r in results.values())

    # Same code path as evaluate_fusion: fp32 means equal a direct FusionEngine + evaluate_fusion run.
    engine = FusionEngine(weights=weights)
    direct = []
    for name in report["pairs"]:
        vis = np.asarray(Image.open(dataset / "vi" / f"{name}.png").convert("RGB"))
        ir = np.asarray(Image.open(dataset / "ir" / f"{name}.png").convert("L"))
        direct.append(evaluate_fusion(vis, ir, engine.fuse(vis, ir).image))
    for metric in ("EN", "MI", "Qabf", "SSIM", "DeltaE"):
        assert results["fp32"]["means"][metric] == pytest.approx(np.mean([d[metric] for d in direct]))
    assert math.isnan(results["fp32"]["means"]["MS_SSIM"])  # 64×48 is below MS-SSIM's 161 px

    ref = results["fp32"]["difference_vs_fp32"]
    assert ref["max_abs"] == 0 and ref["mean_abs"] == 0 and ref["changed_pixels_percent"] == 0
    fp16, bf16 = results["fp16"]["difference_vs_fp32"], results["bf16"]["difference_vs_fp32"]
    # bf16 keeps 8 significant bits, fp16 11: on the same images bf16 must move more pixels further. Both
    # stay within a few grey levels (a wrong cast, e.g. of uint8 inputs without scaling, moves far more),
    # and bf16 really differs from fp32 (so fp32 was not silently run for it).
    assert bf16["max_abs"] >= 1 and bf16["mean_abs"] > fp16["mean_abs"]
    assert bf16["changed_pixels_percent"] > fp16["changed_pixels_percent"]
    assert fp16["max_abs"] <= 2 and bf16["max_abs"] <= 8
    for name in names[1:]:
        delta = results[name]["metric_change_vs_fp32"]
        assert abs(delta["Qabf"]) < 0.05 and abs(delta["SSIM"]) < 0.05
        assert results[name]["ms_per_image_median"] > 0
    if "int8" in names:
        assert report["calib_pairs"] == ["00000", "00002"]  # the train split, never the scored pairs
        assert report["onnx"]["fp32_export_max_abs_error_vs_torch"] < 1e-4
        assert results["onnx_fp32"]["difference_vs_fp32"]["max_abs"] <= 1  # rounding ties at most
        assert results["int8"]["difference_vs_fp32"]["max_abs"] <= 8

    table = (out / "precision.md").read_text()
    for name in names:
        assert f"| {name} |" in table
    assert "n/a" in table and "tensor cores" in table and "Change of each metric mean" in table


@pytest.mark.skipif(not _has_quantization(), reason="onnxruntime.quantization is not installed")
def test_quantization_failure_is_reported_not_fatal(tmp_path, dataset, weights, monkeypatch):
    import onnxruntime.quantization

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported op XYZ")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", broken)
    report = precision_quality.measure(weights, [dataset], tmp_path / "o", ["fp32", "int8"], limit=1)
    assert "unsupported op XYZ" in report["precisions"]["int8"]["error"]
    assert "means" not in report["precisions"]["int8"] and "means" in report["precisions"]["fp32"]
    assert "unsupported op XYZ" in (tmp_path / "o" / "precision.md").read_text()


def test_errors_are_clear(tmp_path, dataset, weights, capsys):
    with pytest.raises(ValueError, match=r"unknown precision.*int4.*choose from"):
        precision_quality.measure(weights, [dataset], tmp_path / "o", ["fp32", "int4"])
    with pytest.raises(SystemExit) as exit_info:
        precision_quality_cli.main(["--weights", str(weights), "--data", str(dataset), "--out", str(tmp_path),
                                "--precisions", "fp16,half"])  # fmt: skip
    assert exit_info.value.code == 2 and "unknown precision(s) half" in capsys.readouterr().err
    with pytest.raises(ValueError, match="given twice: fp16"):
        precision_quality.parse_precisions("fp16,fp16")
    assert precision_quality.parse_precisions("bf16") == ["fp32", "bf16"]  # the reference always runs
    with pytest.raises(ValueError, match="shares 2 pair"):  # never calibrate on the scored pairs
        precision_quality.measure(weights, [dataset], tmp_path / "o", ["int8"], calib_split="test")
    with pytest.raises(ValueError, match="no pair with split 'val'"):
        precision_quality.measure(weights, [dataset], tmp_path / "o", ["int8"], calib_split="val")
    assert not (tmp_path / "o").exists()  # nothing written for a refused run
