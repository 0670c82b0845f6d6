"""Benchmark every registered fusion model on the CPU: parameters, FLOPs and eager forward time.

Prints one JSON document to stdout (progress goes to stderr):
``{"meta": {...}, "records": [{"model", "color", "params", "gflops": {size: ...}, "cases": [...]}, ...]}``
with one record per (model, colour mode) and one case per (size, torch threads): the median and p95 of
the timed forward passes (batch 1, float32, ``torch.inference_mode``) after warm-up.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (1 MAC = 2 FLOPs; it counts convolutions,
matmuls and attention, not elementwise ops, norms or interpolation), on meta tensors where the model
allows it, so counting costs no compute.

Slow models stay affordable: each case stops timing after ``--budget-s`` seconds (at least one timed
run), and a case whose forward pass is predicted (from the same model's measured time per FLOP) to take
longer than ``--max-forward-s`` is skipped and says so.

    python bench/models.py            # all models, rgb, 256x256 and 480x640, 1 and 2 threads
    python bench/models.py --models lightunet --sizes 480x640 --threads 2 --repeats 50
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

# Run from a checkout without installing the package: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssvif_ros.cli import comma_list as parse_list
from ssvif_ros.cli import size_pair as parse_size
from ssvif_ros.eval.efficiency import FLOPS_NOTE, count_flops
from ssvif_ros.models import registry
from ssvif_ros.models.color import YChannelFusion

BUILTIN_MODELS = ("lightunet", "seafusion", "swinfusion")


def available_models() -> list[str]:
    """Registered model names; while a built-in model module is missing, the importable ones plus it
    (its record then carries the import error)."""
    try:
        return registry.list_models()
    except ImportError as exc:
        print(
            f"the registry cannot import every model module ({exc}); benchmarking the others", file=sys.stderr
        )
        return list(BUILTIN_MODELS)


def build_model(name: str, color: str) -> nn.Module:
    """``create_model(name, color=color)``; if another built-in module is missing, the factory of the
    same name in ``ssvif_ros.models.<name>`` (wrapped for the Y-channel mode as create_model does)."""
    try:
        return registry.create_model(name, color=color)
    except ImportError:
        if name not in BUILTIN_MODELS or color not in registry.COLOR_MODES:
            raise
    factory = getattr(importlib.import_module(f"ssvif_ros.models.{name}"), name)  # raises if missing
    model = factory(in_chans=3 if color == "rgb" else 1)
    return YChannelFusion(model) if color == "y" else model


def time_forward(
    model: nn.Module, height: int, width: int, repeats: int, warmup: int, budget_s: float
) -> dict[str, float | int]:
    """Median and p95 forward time in ms: ``warmup`` untimed runs (stopping after 1 s), then up to
    ``repeats`` timed runs, stopping once ``budget_s`` seconds of timed runs have passed (at least one)."""
    vis, ir = torch.rand(1, 3, height, width), torch.rand(1, 1, height, width)
    times: list[float] = []
    with torch.inference_mode():
        warm_start = time.perf_counter()
        for _ in range(warmup):
            model(vis, ir)
            if time.perf_counter() - warm_start > 1.0:
                break
        timed_start = time.perf_counter()
        while len(times) < repeats:
            start = time.perf_counter()
            model(vis, ir)
            times.append(time.perf_counter() - start)
            if time.perf_counter() - timed_start > budget_s:
                break
    times_ms = sorted(t * 1e3 for t in times)
    p95_index = min(len(times_ms) - 1, round(0.95 * (len(times_ms) - 1)))
    median = statistics.median(times_ms)
    return {
        "runs": len(times_ms),
        "median_ms": round(median, 2),
        "p95_ms": round(times_ms[p95_index], 2),
        "fps_at_median": round(1e3 / median, 2),
    }


def benchmark_model(name: str, color: str, args: argparse.Namespace) -> dict:
    """One record: params, GFLOPs per size, and a timing case per (size, threads)."""
    record: dict = {"model": name, "color": color}
    try:
        model = build_model(name, color).eval()
    except Exception as exc:  # a model module that is missing or broken, an unknown name
        record["error"] = f"could not build {name!r} (color={color}): {type(exc).__name__}: {exc}"
        print(record["error"], file=sys.stderr)
        return record
    record["params"] = sum(p.numel() for p in model.parameters())
    record["gflops"] = {}
    record["cases"] = []
    seconds_per_flop: dict[int, float] = {}  # threads -> slowest measured rate of this model
    for height, width in args.sizes:
        size = f"{height}x{width}"
        flops = count_flops(model, height, width)
        record["gflops"][size] = round(flops / 1e9, 4)
        for threads in sorted(args.threads, reverse=True):
            case: dict = {"size": size, "threads": threads}
            predicted = _predict_seconds(seconds_per_flop, threads, flops)
            if predicted is not None and predicted > args.max_forward_s:
                case["skipped"] = (
                    f"predicted {predicted:.0f} s per forward > --max-forward-s {args.max_forward_s:g}"
                )
            else:
                torch.set_num_threads(threads)
                print(f"{name} ({color}) {size} threads={threads} ...", file=sys.stderr, flush=True)
                case.update(time_forward(model, height, width, args.repeats, args.warmup, args.budget_s))
                if flops:
                    rate = case["median_ms"] / 1e3 / flops
                    seconds_per_flop[threads] = max(rate, seconds_per_flop.get(threads, 0.0))
            record["cases"].append(case)
    return record


def _predict_seconds(seconds_per_flop: dict[int, float], threads: int, flops: int) -> float | None:
    """Forward time predicted from this model's measured rate (another thread count scales linearly)."""
    if threads in seconds_per_flop:
        return seconds_per_flop[threads] * flops
    if seconds_per_flop:
        other = min(seconds_per_flop, key=lambda t: abs(t - threads))
        return seconds_per_flop[other] * flops * other / threads
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", type=parse_list, default=None, help="comma list (default: all registered)"
    )
    parser.add_argument(
        "--colors", type=parse_list, default=["rgb"], help="comma list of rgb,y (default rgb)"
    )
    parser.add_argument(
        "--sizes", type=lambda s: [parse_size(v) for v in parse_list(s)], default="256x256,480x640"
    )
    parser.add_argument("--threads", type=lambda s: [int(v) for v in parse_list(s)], default="1,2")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (at most)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per case (stops after 1 s)")
    parser.add_argument("--budget-s", type=float, default=8.0, help="stop timing a case after this long")
    parser.add_argument("--max-forward-s", type=float, default=30.0, help="skip cases predicted slower")
    args = parser.parse_args(argv)  # argparse applies `type` to the string defaults too

    records = []
    for name in args.models or available_models():
        for color in args.colors:
            records.append(benchmark_model(name, color, args))
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "batch": 1,
        "dtype": "float32",
        "mode": "eager torch.inference_mode",
        "flops_note": FLOPS_NOTE,
    }
    json.dump({"meta": meta, "records": records}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
