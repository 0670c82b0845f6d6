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


def test_bad_model_cfg_items_are_refused_with_the_reason() -> None:
    cases = (("=[8,16,32]", "not of the form"), ("widths=[8,", "not valid YAML"), ("a.b=1", "no dots"))
    for item, reason in cases:
        result = run_bench("--model-cfg", item)
        assert result.returncode == 2 and "argument --model-cfg" in result.stderr, item
        assert reason in result.stderr, result.stderr
