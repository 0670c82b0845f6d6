"""bench/onnx_ab.py on two tiny exports: both are timed, their ratio and output difference reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]


class Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return vis * self.factor + ir


def test_two_exports_are_timed_and_compared(tmp_path: Path) -> None:
    paths = []
    for name, factor in (("a", 1.0), ("b", 0.5)):
        path = tmp_path / f"{name}.onnx"
        example = (torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))
        torch.onnx.export(
            Scale(factor),
            example,
            str(path),
            input_names=["vis", "ir"],
            dynamic_axes={"vis": {2: "h", 3: "w"}, "ir": {2: "h", 3: "w"}},
            opset_version=17,
            dynamo=False,
        )
        paths.append(str(path))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "onnx_ab.py"), *paths, "--rounds", "3", "--size", "16x12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["rounds"] == 3 and data["p50_ms"]["a"] > 0 and data["median_ratio_b_over_a"] > 0
    # vis * 1 + ir vs vis * 0.5 + ir on inputs in [0, 1): they differ by up to half the largest vis value
    assert 0.25 < data["max_abs_diff"] < 0.5
