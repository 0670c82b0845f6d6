"""Benchmark the inference backends against plain eager PyTorch: latency, frames/s and output agreement.

For every model, size and thread count (batch 1, fp32, CPU; the fused image, and with ``--labels`` the
segmentation head's class ids too, as the node computes them when its segmentation or overlay output is on)
it times:

- ``eager``: the baseline, ``model(vis, ir)`` under ``torch.inference_mode`` with no rewrite;
- ``torch``: :class:`~ssvif_ros.fusion.backends.torch_backend.TorchBackend` as the engine builds it
(Conv+BatchNorm
  folded, weights in channels_last memory format);
- ``torch_nchw``: the same with ``channels_last=False`` (folding alone);
- ``onnxruntime``: :class:`~ssvif_ros.fusion.backends.onnxruntime_backend.OnnxRuntimeBackend` (its export is
  cached in ``--cache-dir``, by default ``$SSVIF_ROS_CACHE`` or /tmp/ssvif_ros_bench_cache).

Timed runs of the backends of one case are interleaved (eager, torch, ..., eager, torch, ...), so load
from other processes on a shared machine hits all of them alike and the ratios stay comparable. Each case
stops after ``--budget-s`` seconds of timed rounds (at least one round). ORT's intra-op threads follow
``torch.get_num_threads()``, so both runtimes get the same thread budget.

Every case reports per backend: p50 / p95 latency (ms), frames/s at the p50, ``speedup`` = eager p50 /
backend p50 (same model, size and threads, same run) and ``max_abs_diff`` = the largest absolute
difference of the fused (1,3,H,W) output in [0, 1] from eager's on the same random input.

Weights: lightunet uses the shipped checkpoint when there is one (real BatchNorm statistics), or the one
given with ``--weights``; other models are untrained, with their BatchNorm statistics and affine terms set
to seeded random values so folding is exercised as with trained weights. swinfusion is slow (seconds per
256×256 frame): it runs only when named in ``--models`` and only at sizes up to 256×256.

Prints one JSON document on stdout (progress on stderr):

    python bench/inference.py
    python bench/inference.py --models lightunet --sizes 480x640 --threads 1 --repeats 50
    python bench/inference.py --models swinfusion --sizes 256x256 --threads 2 --repeats 2
    python bench/inference.py --models lightunet --sizes 480x640 --threads 1 --labels   # + the head
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Run from a checkout without installing the package: put the repository root on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssvif_ros.checkpoint import load_checkpoint
from ssvif_ros.cli import comma_list as parse_list
from ssvif_ros.cli import size_pair as parse_size
from ssvif_ros.config import ConfigError, parse_override
from ssvif_ros.fusion.backends import BackendUnavailable
from ssvif_ros.fusion.backends.torch_backend import TorchBackend
from ssvif_ros.fusion.engine import default_weights, empty_inputs
from ssvif_ros.models import create_model

DEFAULT_MODELS = ("lightunet", "seafusion")
SLOW_MODELS = {"swinfusion": 256 * 256}  # model -> largest H*W it is benchmarked at
BACKENDS = ("eager", "torch", "torch_nchw", "onnxruntime")
BASELINE = "eager"
CPU = torch.device("cpu")

# (vis, ir) -> (fused (1,3,H,W), class ids (1,H,W) uint8 or None)
Runner = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm2d plausible trained-looking statistics (seeded), in place: with the init values
    (mean 0, var 1, weight 1, bias 0) folding would barely change a weight."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None:
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
                if module.affine:
                    module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                    module.bias.copy_(0.4 * torch.rand(n, generator=gen) - 0.2)


def load_model(
    name: str, untrained: bool, cfg: dict | None = None, weights: Path | None = None
) -> tuple[nn.Module, nn.Module | None, str]:
    """(model, its segmentation head or None, a note on the weights), in eval mode; ``cfg``: factory
    arguments of an untrained model (no head); ``weights``: a lightunet checkpoint, not the shipped one."""
    shipped = default_weights()
    if name == "lightunet" and weights is None and shipped is not None and not untrained and not cfg:
        weights = shipped
    if name == "lightunet" and weights is not None:
        checkpoint = load_checkpoint(weights)
        head = None if checkpoint.seg_head is None else checkpoint.seg_head.eval()
        note = f"shipped checkpoint {weights.name}" if weights == shipped else f"checkpoint {weights}"
        return checkpoint.model.eval(), head, note
    torch.manual_seed(0)
    model = create_model(name, **(cfg or {}))
    randomize_batchnorm(model)
    return model.eval(), None, "untrained, BatchNorm statistics randomized (seed 0)"


def build_runners(
    model: nn.Module, head: nn.Module | None, backends: list[str], cache_dir: Path
) -> tuple[dict[str, Runner], dict[str, str]]:
    """A (vis, ir) -> (fused, class ids or None) runner per available backend, and why each unavailable
    one is missing; the class ids only with a ``head``.

    Call with the thread count of the case already set: ORT reads it when its session is built."""
    runners: dict[str, Runner] = {}
    missing: dict[str, str] = {}
    labels = head is not None
    for name in backends:
        try:
            if name == "eager":
                runners[name] = lambda vis, ir: eager_run(model, head, vis, ir)
            elif name in ("torch", "torch_nchw"):
                backend = TorchBackend(model, head, CPU, channels_last=name == "torch")
                runners[name] = _in_engine_layout(backend, labels)
            elif name == "onnxruntime":
                from ssvif_ros.fusion.backends.onnxruntime_backend import OnnxRuntimeBackend

                backend = OnnxRuntimeBackend(model, head, CPU, cache_dir=cache_dir)
                runners[name] = lambda vis, ir, b=backend: b.run(vis, ir, labels)
            else:
                missing[name] = f"unknown backend (known: {', '.join(BACKENDS)})"
        except BackendUnavailable as exc:
            missing[name] = str(exc)
    return runners, missing


def eager_run(
    model: nn.Module, head: nn.Module | None, vis: torch.Tensor, ir: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The baseline: ``model(vis, ir)`` as written, and the head's argmax at the input size when given."""
    fused, features = model(vis, ir)
    if head is None:
        return fused, None
    return fused, head(features, size=tuple(vis.shape[-2:])).argmax(dim=1).to(torch.uint8)


def _in_engine_layout(backend, want_labels: bool = False) -> Runner:
    """``backend.run`` on inputs in the memory layout the engine gives this backend (NHWC buffers for the
    channels-last torch backend, see :func:`ssvif_ros.fusion.engine.empty_inputs`); the layout copy is made
    once
    per input and not timed, as the engine fills its buffers in that layout directly from the uint8 image."""
    cached: list[torch.Tensor] = []  # [vis given, vis in layout, ir in layout]

    def run(vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not cached or cached[0] is not vis:
            height, width = vis.shape[-2:]
            vis_b, ir_b = empty_inputs(height, width, vis.device, vis.dtype, backend.channels_last_inputs)
            cached[:] = [vis, vis_b.copy_(vis), ir_b.copy_(ir)]
        return backend.run(cached[1], cached[2], want_labels)

    return run


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def time_case(
    runners: dict[str, Runner], height: int, width: int, repeats: int, warmup: int, budget_s: float
) -> dict[str, dict]:
    """Interleaved timing of every runner on one random (1,3,H,W) + (1,1,H,W) input; output diffs vs eager."""
    gen = torch.Generator().manual_seed(height * 10007 + width)
    vis = torch.rand(1, 3, height, width, generator=gen)
    ir = torch.rand(1, 1, height, width, generator=gen)
    times: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    with torch.inference_mode():
        for name, run in runners.items():
            for _ in range(max(1, warmup)):  # the first call builds ORT's session / export
                fused, labels = run(vis, ir)
                outputs[name] = (fused.float().clone(), None if labels is None else labels.clone())
        start = time.perf_counter()
        for _ in range(repeats):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run(vis, ir)
                times[name].append(time.perf_counter() - t0)
            if time.perf_counter() - start > budget_s:
                break
    baseline = outputs.get(BASELINE)
    results: dict[str, dict] = {}
    for name, values in times.items():
        ms = sorted(v * 1e3 for v in values)
        p50 = statistics.median(ms)
        results[name] = {
            "runs": len(ms),
            "p50_ms": round(p50, 2),
            "p95_ms": round(percentile(ms, 0.95), 2),
            "fps": round(1e3 / p50, 2),
        }
        if baseline is not None:
            results[name]["max_abs_diff"] = float((outputs[name][0] - baseline[0]).abs().max())
            if baseline[1] is not None:  # share of pixels given the eager class id (argmax ties can differ)
                results[name]["labels_agree"] = float((outputs[name][1] == baseline[1]).float().mean())
    if BASELINE in results:
        base_p50 = results[BASELINE]["p50_ms"]
        for entry in results.values():
            entry["speedup"] = round(base_p50 / entry["p50_ms"], 3)
    return results


def benchmark_model(name: str, args: argparse.Namespace) -> dict:
    """One record per model: a case per (size, threads) with a result per backend."""
    record: dict = {"model": name, "cases": []}
    try:
        model, head, weights_note = load_model(name, args.untrained, dict(args.model_cfg), args.weights)
        if args.labels and head is None:
            raise ValueError(
                "--labels needs a checkpoint with a segmentation head (the shipped or --weights)"
            )
    except Exception as exc:  # an unknown or broken model: say so and go on with the others
        record["error"] = f"could not build {name!r}: {type(exc).__name__}: {exc}"
        print(record["error"], file=sys.stderr)
        return record
    record["weights"] = weights_note
    record["model_cfg"] = dict(args.model_cfg)
    record["labels"] = bool(args.labels)
    head = head if args.labels else None
    for height, width in args.sizes:
        for threads in args.threads:
            case: dict = {"size": f"{height}x{width}", "threads": threads}
            record["cases"].append(case)
            limit = SLOW_MODELS.get(name)
            if limit is not None and height * width > limit:
                case["skipped"] = f"{name} runs only at sizes up to {limit} pixels (too slow on a CPU)"
                continue
            if (name, case["size"], threads) in args.skip:
                case["skipped"] = "--skip"
                continue
            torch.set_num_threads(threads)
            runners, missing = build_runners(model, head, args.backends, args.cache_dir)
            if missing:
                case["unavailable"] = missing
            print(
                f"{name} {case['size']} threads={threads}: {', '.join(runners)} ...",
                file=sys.stderr,
                flush=True,
            )
            case["backends"] = time_case(runners, height, width, args.repeats, args.warmup, args.budget_s)
    return record


def parse_skip(text: str) -> set[tuple[str, str, int]]:
    """'seafusion:480x640:2,...' -> {('seafusion', '480x640', 2), ...}."""
    skips = set()
    for item in parse_list(text):
        try:
            model, size, threads = item.split(":")
            skips.add((model, "{}x{}".format(*parse_size(size)), int(threads)))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"--skip items look like MODEL:HxW:THREADS, got {item!r}"
            ) from exc
    return skips


def parse_model_cfg(text: str) -> tuple[str, Any]:
    """'widths=[8,16,32]' -> ('widths', [8, 16, 32]): one factory argument, its value parsed as YAML."""
    try:
        key, value = parse_override(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if "." in key:
        raise argparse.ArgumentTypeError(f"{text!r}: a factory argument is one name (no dots), e.g. guide")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=parse_list, default=",".join(DEFAULT_MODELS), help="comma list")
    parser.add_argument(
        "--sizes", type=lambda s: [parse_size(v) for v in parse_list(s)], default="480x640,256x256"
    )
    parser.add_argument("--threads", type=lambda s: [int(v) for v in parse_list(s)], default="1,2")
    parser.add_argument("--backends", type=parse_list, default=",".join(BACKENDS), help="comma list")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per case (at most)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per backend and case")
    parser.add_argument("--budget-s", type=float, default=10.0, help="stop timing a case after this long")
    parser.add_argument("--skip", type=parse_skip, default="", help="cases to skip: MODEL:HxW:THREADS,...")
    parser.add_argument(
        "--untrained", action="store_true", help="lightunet untrained, not the shipped weights"
    )
    parser.add_argument("--weights", type=Path, help="lightunet: this checkpoint, not the shipped one")
    parser.add_argument(
        "--labels",
        action="store_true",
        help="time the head's class ids too (a lightunet checkpoint's)",
    )
    parser.add_argument(
        "--model-cfg",
        type=parse_model_cfg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="factory argument of the (untrained) models, value parsed as YAML, e.g. guide=saliency or "
        "widths=[8,16,32]; repeatable",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("SSVIF_ROS_CACHE", "/tmp/ssvif_ros_bench_cache")),
        help="ONNX export cache (default $SSVIF_ROS_CACHE or /tmp/ssvif_ros_bench_cache)",
    )
    args = parser.parse_args(argv)  # argparse applies `type` to the string defaults too
    if args.weights is not None and (args.untrained or args.model_cfg):
        parser.error("--weights times that checkpoint: leave out --untrained and --model-cfg")
    if BASELINE not in args.backends:
        args.backends = [BASELINE, *args.backends]

    started = time.time()
    records = [benchmark_model(name, args) for name in args.models]
    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "wall_s": round(time.time() - started, 1),
        "batch": 1,
        "dtype": "float32",
        "speedup": f"{BASELINE} p50 / backend p50, same model, size and threads",
        "max_abs_diff": f"max |fused - {BASELINE} fused| on one random input, values in [0, 1]",
        "labels_agree": f"with --labels: share of pixels given {BASELINE}'s class id",
    }
    json.dump({"meta": meta, "records": records}, sys.stdout, indent=2)
    print()
    return 0


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
