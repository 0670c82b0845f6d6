"""bench/gpu_check.py (issue 17): what can be checked without a GPU — every CUDA step says why it is
skipped, a bad step name is refused, and its training command is a valid one (run here on the CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the steps run for real (minutes)")
def test_without_a_gpu_every_step_is_skipped_with_its_reason(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "gpu.json")]) == 0
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert set(report["steps"]) == set(gpu_check.STEPS)
    assert all(
        s == {"status": "skipped", "reason": "no CUDA device", "seconds": s["seconds"]}
        for s in report["steps"].values()
    )
    with pytest.raises(SystemExit):
        gpu_check.main(["--steps", "train_amp,warp_drive"])
    assert "unknown steps ['warp_drive']" in capsys.readouterr().err


@pytest.mark.slow
def test_its_training_command_runs_one_epoch_on_the_cpu(tmp_path):
    result = gpu_check.run_training(tmp_path, [sys.executable], device="cpu")
    assert "system.amp=true" in result["command"] and result["summary"]["epochs"] >= 1
