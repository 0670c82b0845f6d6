"""training/efficiency.py on lightunet at 64×64: params, FLOPs, the table and a measured forward memory."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import training.efficiency as efficiency_cli
from ssvif_ros.eval import efficiency
from ssvif_ros.models.registry import create_model

EFFICIENCY_PY = Path(__file__).resolve().parents[1] / "training" / "efficiency.py"


def test_params_and_flops_match_an_independent_count():
    record = efficiency.efficiency_record("lightunet", "rgb", 64, 64, forward=False)
    model = create_model("lightunet", color="rgb").eval()
    assert record["params"] == sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # real tensors, not meta
        model(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64))
    assert record["flops"] == counter.get_total_flops() > 0
    assert record["forward_peak_mb"] is None


def test_cli_writes_a_row_per_model_and_a_positive_memory(tmp_path, capsys):
    argv = ["--models", "lightunet", "--size", "64x64", "--out", str(tmp_path), "--forward-timeout-s", "120"]
    assert efficiency_cli.main(argv) == 0
    printed = capsys.readouterr().out
    table = (tmp_path / "table.md").read_text()
    assert table == printed
    rows = [line for line in table.splitlines() if line.startswith("| lightunet |")]
    assert len(rows) == 1
    (record,) = json.loads((tmp_path / "efficiency.json").read_text())["records"]
    assert record["forward_peak_mb"] is not None, record.get("memory_note")
    assert record["forward_peak_mb"] > 0
    assert f"{record['forward_peak_mb']:.1f}" in rows[0]
