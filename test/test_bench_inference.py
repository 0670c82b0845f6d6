"""bench/inference.py's --model-cfg values are YAML, so list-valued factory arguments (widths) reach the
model as lists, not as strings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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


def test_model_cfg_without_a_key_is_refused() -> None:
    result = run_bench("--model-cfg", "=[8,16,32]")
    assert result.returncode == 2 and "--model-cfg" in result.stderr
