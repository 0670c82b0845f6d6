"""bench/inference.py: --model-cfg values are YAML, so list-valued factory arguments (widths) reach the
model as lists, not as strings; --labels times the segmentation head too, in every backend."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.models import SegHead, create_model

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_inference", REPO / "bench" / "inference.py")
bench_inference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_inference)


def run_bench(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "bench" / "inference.py"), "--models", "lightunet", "--untrained"]
    command += ["--sizes", "32x48", "--threads", "1", "--backends", "eager", "--repeats", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_model_cfg_values_are_parsed_as_yaml() -> None:
    cfg = ("widths=[8,16,32]", "guide=learned", "correction=luminance")
    result = run_bench(*(arg for item in cfg for arg in ("--model-cfg", item)))
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)["records"]
    assert "error" not in record, record.get("error")
    assert record["model_cfg"] == {"widths": [8, 16, 32], "guide": "learned", "correction": "luminance"}
    (case,) = record["cases"]
    assert case["backends"]["eager"]["p50_ms"] > 0


def test_bad_model_cfg_items_are_refused_with_the_reason() -> None:
    cases = (("=[8,16,32]", "not of the form"), ("widths=[8,", "not valid YAML"), ("a.b=1", "no dots"))
    for item, reason in cases:
        result = run_bench("--model-cfg", item)
        assert result.returncode == 2 and "argument --model-cfg" in result.stderr, item
        assert reason in result.stderr, result.stderr


def test_labels_time_the_head_in_every_backend(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model("lightunet", widths=[8, 8, 16], guide="learned", correction="luminance").eval()
    head = SegHead(model.feature_channels, num_classes=5, hidden_channels=8).eval()
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, head)
    command = [sys.executable, str(REPO / "bench" / "inference.py"), "--models", "lightunet", "--weights"]
    command += [str(ckpt), "--sizes", "32x48", "--threads", "1", "--backends", "eager,torch,onnxruntime"]
    command += ["--repeats", "1", "--labels", "--cache-dir", str(tmp_path / "cache")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)["records"]
    assert record["labels"] is True and "error" not in record
    (case,) = record["cases"]
    for name in ("eager", "torch", "onnxruntime"):
        assert case["backends"][name]["labels_agree"] > 0.99, (name, case["backends"][name])
    no_head = run_bench("--labels")  # an untrained model has no head: the record says so
    assert no_head.returncode == 0, no_head.stderr
    (record,) = json.loads(no_head.stdout)["records"]
    assert "--labels needs a checkpoint with a segmentation head" in record["error"]


def test_the_eager_baseline_returns_the_heads_argmax() -> None:
    torch.manual_seed(0)
    model = create_model("lightunet", widths=[8, 8, 16]).eval()
    head = SegHead(model.feature_channels, num_classes=5, hidden_channels=8).eval()
    vis, ir = torch.rand(1, 3, 32, 48), torch.rand(1, 1, 32, 48)
    with torch.inference_mode():
        fused, labels = bench_inference.eager_run(model, head, vis, ir)
        expected_fused, features = model(vis, ir)
        expected = head(features, size=(32, 48)).argmax(dim=1)
    assert torch.equal(fused, expected_fused) and labels.dtype == torch.uint8
    assert torch.equal(labels.long(), expected)
    assert bench_inference.eager_run(model, None, vis, ir)[1] is None
