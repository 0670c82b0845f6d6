"""Training's quick start in a fresh clone (issue 15, item 9): missing data, generated data, failed starts,
Ctrl-C, and the documented duration.

Runs that must fail happen in this process (``train_cli.main``) from an empty working directory, where
the configs' relative roots (``../shared/data``, ``out/synthetic_tiny``) do not exist. The Ctrl-C runs are
subprocesses in their own process group, signalled like a terminal does (the whole group, so loader
workers get it too), after a line on stdout shows that training started.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import training.train as train_cli
from ssvif_ros.data.synthetic import main as synthetic_main
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.train.state import committed_train_states, latest_train_state

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "training" / "train.py"
CONFIGS = REPO / "config" / "train"
TINY = CONFIGS / "tiny.yaml"
OVERRIDE = "'data.roots=[/path/to/pairs]'"
# The child must get SIGINT's default handler even when this process ignores it (a background job).
CHILD = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quickstart_data")
    write_dataset(root, 12, seed=0, width=64, height=48, progress=False)
    return root


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------------- missing data


@pytest.mark.parametrize("name", ["shared_cpu", "cpu_budget", "default"])
def test_missing_shared_data_stops_before_writing_and_names_the_override(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # a fresh clone's neighbourhood: no ../shared/data
    assert train_cli.main(["--config", str(CONFIGS / f"{name}.yaml")]) == 2
    err = _error_line(capsys)
    assert err.startswith("error: data.roots: ")
    assert "../shared/data/roadscene" in err and "../shared/data/msrs_subset" in err
    assert "shared data folder ../shared/data" in err and OVERRIDE in err
    assert list(tmp_path.iterdir()) == []  # no runs/<name>/, no generated runs/synth_train


def test_missing_own_data_names_the_path_and_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert train_cli.main(["--config", str(CONFIGS / "msrs.yaml")]) == 2
    err = _error_line(capsys)
    assert "data.roots: data/MSRS/train does not exist" in err and OVERRIDE in err
    assert "shared" not in err
    missing = tmp_path / "nowhere"
    assert train_cli.main(["--config", str(TINY), f"data.roots=[{missing}]"]) == 2  # no generation here
    assert f"data.roots: {missing} does not exist" in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------- tiny: generated


def test_tiny_generates_its_data_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssvif_ros.train.data import SYNTHETIC_ROOTS, synthetic_command

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    args = ["--config", str(TINY), f"run.dir={run_dir}", "training.max_epochs=1"]
    assert train_cli.main(args) == 0
    out = capsys.readouterr().out
    spec = SYNTHETIC_ROOTS["out/synthetic_tiny"]
    assert synthetic_command("out/synthetic_tiny", spec) in out
    generated = tmp_path / "out" / "synthetic_tiny"
    assert len(list((generated / "vi").glob("*.png"))) == 12
    assert [p.name for p in generated.parent.iterdir()] == ["synthetic_tiny"]  # no temporary folder left
    # the same pairs as the documented command makes
    assert synthetic_main(["--out", str(tmp_path / "cli"), "-n", "12", "--size", "64x48", "--seed", "0"]) == 0
    for sub in ("vi", "ir"):
        assert (generated / sub / "00007.png").read_bytes() == (
            tmp_path / "cli" / sub / "00007.png"
        ).read_bytes()
    assert (run_dir / "summary.json").is_file()


def test_config_headers_give_the_generator_commands() -> None:
    from ssvif_ros.train.data import SYNTHETIC_ROOTS, synthetic_command

    assert synthetic_command("out/synthetic_tiny", SYNTHETIC_ROOTS["out/synthetic_tiny"]) in TINY.read_text()
    default = (CONFIGS / "default.yaml").read_text()
    assert synthetic_command("runs/synth_train", SYNTHETIC_ROOTS["runs/synth_train"]) in default


def test_the_shipped_weights_were_trained_with_the_default_config() -> None:
    """config/train/default.yaml is documented as the shipped model's recipe: the config stored in the
    shipped sidecar must be exactly what that file resolves to (only the run folder may differ)."""
    from ssvif_ros.config import diff_configs
    from ssvif_ros.train.config import resolve_config

    sidecar = REPO / "ssvif_ros" / "weights" / "lightunet_ssvif.json"
    shipped = json.loads(sidecar.read_text())["config"]
    resolved = resolve_config(CONFIGS / "default.yaml", [f"run.dir={shipped['run']['dir']}"])
    assert diff_configs(resolved, shipped) == []


# ------------------------------------------------------------------------------------ failed starts


def test_failed_starts_leave_no_run_folder(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = f"data.roots=[{tiny_data}]"
    set_up = tmp_path / "runs" / "set_up"  # fails while building the data: no full batch
    assert train_cli.main(["--config", str(TINY), data, f"run.dir={set_up}", "training.batch_size=64"]) == 2
    assert "no full batch" in _error_line(capsys)
    assert not set_up.exists()
    first_step = tmp_path / "runs" / "first_step"  # fails in the first training step
    nan = ['debug.inject_nan_names=["*"]', "training.max_nonfinite_steps=1"]
    assert train_cli.main(["--config", str(TINY), data, f"run.dir={first_step}", *nan]) == 2
    assert "1 consecutive non-finite steps" in capsys.readouterr().err
    assert not first_step.exists()
    assert (tmp_path / "runs").is_dir()  # only the run folder goes


def test_a_failed_start_never_removes_a_folder_that_existed(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me")
    nan = ['debug.inject_nan_names=["*"]', "training.max_nonfinite_steps=1"]
    assert (
        train_cli.main(["--config", str(TINY), f"data.roots=[{tiny_data}]", f"run.dir={run_dir}", *nan]) == 2
    )
    assert (run_dir / "notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------------------- Ctrl-C


def _start(tiny_data: Path, run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """A long tiny run (1000 epochs of 5 steps, a loader worker), started in its own process group."""
    args = [
        f"data.roots=[{tiny_data}]",
        f"run.dir={run_dir}",
        "training.max_epochs=1000",
        "data.num_workers=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(TRAIN_PY), "--config", str(TINY), *args, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def _wait_for(stream: object, text: str, process: subprocess.Popen[str]) -> None:
    for line in iter(stream.readline, ""):
        if text in line:
            return
    pytest.fail(f"no line with {text!r}; exit status {process.wait()}, stderr {process.stderr.read()}")


def _ctrl_c(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole group


def _finish(process: subprocess.Popen[str]) -> tuple[str, float]:
    t0 = time.monotonic()
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running 60 s after Ctrl-C: {process.communicate()[1]}")
    return err, time.monotonic() - t0


def test_first_ctrl_c_stops_at_a_step_with_the_state_saved_and_the_resume_command(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "interrupted"
    process = _start(tiny_data, run_dir)
    _wait_for(process.stdout, "epoch 0 stage 1:", process)  # training runs
    _ctrl_c(process)
    err, _ = _finish(process)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    assert any(line.startswith("interrupted: stopping after the current step") for line in lines), err
    last = lines[-1]
    assert last.endswith(f"training/train.py --resume {run_dir}"), err
    found = re.search(r"interrupted at epoch (\d+), step (\d+)", last)
    assert found, err
    epoch, step = int(found[1]), int(found[2])
    saved = latest_train_state(run_dir / "state")
    assert saved is not None and saved.stem == f"e{epoch:04d}-s{step:06d}"  # the stop's own state
    assert all(p.is_file() for p in committed_train_states(run_dir / "state"))

    # the resumed run continues from there to the end of that epoch, every epoch logged once
    assert train_cli.main(["--resume", str(run_dir), f"training.max_epochs={epoch + 1}"]) == 0
    capsys.readouterr()
    with (run_dir / "metrics.csv").open(newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(epoch + 1))


def test_second_ctrl_c_exits_at_once_with_the_resume_command(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "twice"
    process = _start(tiny_data, run_dir, "debug.stop_delay_s=120")  # a stop point that takes "long"
    _wait_for(process.stdout, "epoch 0 stage 1:", process)
    _ctrl_c(process)
    _wait_for(process.stderr, "interrupted: stopping after the current step", process)
    _ctrl_c(process)
    err, took = _finish(process)
    assert process.returncode == 130, err
    assert took < 20, took  # not the 120 s of the stop point
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted again: stopped at once; continue with: "), err
    assert last.endswith(f"training/train.py --resume {run_dir}"), err
    assert latest_train_state(run_dir / "state") is not None  # the epoch-end state, intact
    assert train_cli.main(["--resume", str(run_dir), "training.max_epochs=2"]) == 0


def test_resume_command_is_runnable_from_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert train_cli.resume_command("runs/a b").endswith("training/train.py --resume 'runs/a b'")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert (
        train_cli.resume_command("runs/x") == "torchrun --nproc_per_node 4 training/train.py --resume runs/x"
    )


# ---------------------------------------------------------------------------------------- duration


def test_shared_cpu_duration_agrees_in_config_header_and_readme() -> None:
    """The README's quick start and the config's first line state the same measured duration."""
    first_line = (CONFIGS / "shared_cpu.yaml").read_text().splitlines()[0]
    readme = (REPO / "README.md").read_text().splitlines()
    quick = next(line for line in readme if "train.py --config config/train/shared_cpu.yaml" in line)
    stated = re.search(r"~(\d+) min", quick)
    assert stated, quick
    assert f"about {stated[1]} min" in first_line, (first_line, quick)
