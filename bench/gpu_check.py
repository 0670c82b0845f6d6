"""The CUDA paths end to end, in a few minutes, on a machine with a GPU; print JSON (issue 17).

Written and tested for what it does without a GPU (every CUDA step then reports ``skipped`` with the
reason); run it once when a GPU machine is lent and record the figures in BENCHMARKS.md. Steps, each
``ok`` / ``failed`` (with the error) / ``skipped`` (with why), so one failure does not hide the rest:

1. ``train_amp``: one epoch of ``training/train.py`` (tiny config, synthetic scenes) on ``cuda`` with AMP;
2. ``ddp_nccl``: the same under ``torchrun --nproc_per_node 2`` (NCCL; needs two GPUs);
3. ``tensorrt_cache``: the shipped model through the TensorRT backend (fp16): engine build, reload from the
   cache (must be much faster), rebuild after the sidecar no longer matches, refusal of a cache folder others
   can write;
4. ``backends``: frames/s at 480×640 and the largest difference of the fused image (grey levels) against
   the CPU fp32 reference, for torch fp32 / fp16 on CUDA and TensorRT fp16;
5. ``node``: ``bench/node_latency.py`` with the node on ``device: cuda``, ``backend: tensorrt``, fp16 (needs
   rclpy on the machine).

    python bench/gpu_check.py [--out runs/gpu_check.json] [--frames 50] [--steps train_amp,backends]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

SHIPPED = REPO_ROOT / "ssvif_ros" / "weights" / "lightunet_ssvif.safetensors"
STEPS = ("train_amp", "ddp_nccl", "tensorrt_cache", "backends", "node")


class Skipped(Exception):
    """A step that cannot run on this machine; the message says why."""


def need_cuda(devices: int = 1) -> None:
    if not torch.cuda.is_available():
        raise Skipped("no CUDA device")
    if torch.cuda.device_count() < devices:
        raise Skipped(f"needs {devices} GPUs, this machine has {torch.cuda.device_count()}")


def importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def need_module(name: str) -> None:
    if not importable(name):
        raise Skipped(f"{name} is not importable")


def train_command(work: Path, launcher: list[str], device: str = "cuda") -> list[str]:
    """``training/train.py`` for one epoch of the tiny config on synthetic scenes (made once in ``work``)."""
    from ssvif_ros.data.synthetic import write_dataset

    scenes = work / "scenes"
    if not scenes.exists():
        write_dataset(scenes, 24, seed=3, width=128, height=96, progress=False)
    run_dir = work / ("ddp" if "torchrun" in launcher[0] else "amp")
    overrides = [
        f"data.roots=[{scenes}]",
        f"system.device={device}",
        "system.amp=true",
        "training.max_epochs=1",
    ]
    script = str(REPO_ROOT / "training" / "train.py")
    return [
        *launcher,
        script,
        "--config",
        str(REPO_ROOT / "config/train/tiny.yaml"),
        *overrides,
        f"run.dir={run_dir}",
    ]


def run_training(work: Path, launcher: list[str], device: str = "cuda") -> dict[str, Any]:
    command = train_command(work, launcher, device)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr[-1500:]}")
    run_dir = Path(command[-1].split("=", 1)[1])
    return {"command": " ".join(command), "summary": json.loads((run_dir / "summary.json").read_text())}


def step_train_amp(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    need_cuda()
    return run_training(work, [sys.executable])


def step_ddp_nccl(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    need_cuda(devices=2)
    return run_training(work, [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"])


def timed_engine(**kwargs: Any) -> tuple[Any, float]:
    from ssvif_ros.fusion.engine import FusionEngine

    started = time.perf_counter()
    engine = FusionEngine(weights=SHIPPED, **kwargs)
    engine.warmup(480, 640, iterations=1)
    return engine, time.perf_counter() - started


def step_tensorrt_cache(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    need_cuda()
    need_module("torch_tensorrt")
    from ssvif_ros.fusion.backends.tensorrt_backend import UnsafeCacheError

    os.environ["SSVIF_ROS_CACHE"] = str(work / "cache")
    options = {"device": "cuda", "backend": "tensorrt", "precision": "fp16"}
    _, build_s = timed_engine(**options)
    _, reload_s = timed_engine(**options)
    sidecars = sorted((work / "cache" / "tensorrt").glob("*.ep.json"))
    record = json.loads(sidecars[0].read_text())
    sidecars[0].write_text(json.dumps({**record, "torch": "0.0.0"}))  # as after an upgrade
    _, rebuild_s = timed_engine(**options)
    os.chmod(work / "cache" / "tensorrt", 0o777)
    try:
        timed_engine(**options)
        refused = "not refused: a world-writable cache was loaded"
    except UnsafeCacheError as err:
        refused = f"refused: {err}"
    finally:
        os.chmod(work / "cache" / "tensorrt", 0o700)
    return {
        "build_s": build_s,
        "reload_s": reload_s,
        "rebuild_after_mismatch_s": rebuild_s,
        "open_cache": refused,
    }


def test_pair() -> tuple[np.ndarray, np.ndarray]:
    """The first MSRS test pair beside the project, else a seeded synthetic scene (480×640)."""
    from ssvif_ros.data.image_files import read_infrared, read_visible

    msrs = REPO_ROOT.parent / "shared" / "data" / "msrs_subset"
    files = sorted((msrs / "vi").glob("*.png"))
    if files:
        return read_visible(files[0]), read_infrared(msrs / "ir" / files[0].name)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), rng.integers(
        0, 256, (480, 640), dtype=np.uint8
    )


def step_backends(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    need_cuda()
    vis, ir = test_pair()
    reference, _ = timed_engine(device="cpu", backend="torch", precision="fp32")
    expected = reference.fuse(vis, ir).image.astype(int)
    cases = [("torch", "fp32"), ("torch", "fp16")]
    if importable("torch_tensorrt"):
        cases.append(("tensorrt", "fp16"))
    results: dict[str, Any] = {}
    for backend, precision in cases:
        engine, _ = timed_engine(device="cuda", backend=backend, precision=precision)
        started = time.perf_counter()
        for _ in range(args.frames):
            image = engine.fuse(vis, ir).image
        fps = args.frames / (time.perf_counter() - started)
        results[f"{backend}_{precision}"] = {
            "fps": fps,
            "max_diff_vs_cpu_fp32": int(np.abs(image.astype(int) - expected).max()),
        }
    return results


def step_node(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    need_cuda()
    need_module("rclpy")
    need_module("torch_tensorrt")
    out = work / "node.json"
    params = ["--node-param", "backend:=tensorrt", "--node-param", "precision:=fp16"]
    command = [
        sys.executable,
        str(REPO_ROOT / "bench" / "node_latency.py"),
        "--configs",
        "model",
        "--device",
        "cuda",
    ]
    env = {
        **os.environ,
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(os.getpid() % 200 + 20),
    }
    done = subprocess.run(
        [*command, *params, "--duration", "10"], capture_output=True, text=True, timeout=300, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr[-1500:]}")
    out.write_text(done.stdout)
    return json.loads(done.stdout)


def run_step(
    name: str, fn: Callable[[Path, argparse.Namespace], dict], work: Path, args: argparse.Namespace
) -> dict:
    started = time.perf_counter()
    try:
        result: dict[str, Any] = {"status": "ok", **fn(work, args)}
    except Skipped as why:
        result = {"status": "skipped", "reason": str(why)}
    except Exception as err:  # a failed step is reported, the others still run
        result = {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "trace": traceback.format_exc()[-2000:],
        }
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--frames", type=int, default=50, help="timed frames per backend")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma list of {', '.join(STEPS)}")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "steps": {},
    }
    with tempfile.TemporaryDirectory(prefix="ssvif_gpu_check_") as tmp:
        for name in steps:
            report["steps"][name] = run_step(name, globals()[f"step_{name}"], Path(tmp), args)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 1 if any(s["status"] == "failed" for s in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
