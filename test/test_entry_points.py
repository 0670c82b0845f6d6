"""Every documented command starts: each ``training/*.py`` program (run as a script, as the README does) and
each console script of setup.py answer ``--help`` with exit status 0."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINING_SCRIPTS = sorted((REPO / "training").glob("*.py"))


def console_scripts() -> dict[str, str]:
    """name -> "module:function" from setup.py's entry_points (read, not executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [e.value for e in value.elts]
                    return {e.split("=")[0].strip(): e.split("=")[1].strip() for e in entries}
    raise AssertionError("setup.py declares no console_scripts")


@pytest.mark.parametrize("script", TRAINING_SCRIPTS, ids=[p.name for p in TRAINING_SCRIPTS])
def test_training_program_answers_help(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_console_script_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module, function = console_scripts()[name].split(":")
    main = getattr(importlib.import_module(module), function)
    try:
        code = main(["--help"])  # the node prints its parameters and returns (no rclpy.init)
    except SystemExit as e:  # argparse front ends exit
        code = e.code
    assert code == 0
    assert "usage:" in capsys.readouterr().out


def test_no_training_program_edits_sys_path_or_loads_scripts() -> None:
    for path in [*TRAINING_SCRIPTS, *(REPO / "ssvif_ros").rglob("*.py")]:
        text = path.read_text()
        assert "sys.path.insert" not in text and "load_script" not in text, path
