"""Parameters, FLOPs and peak forward memory of each fusion model at one input size (cf. SSVIF Table IV).

    python training/efficiency.py [--models lightunet,seafusion,swinfusion] [--size 480x640]
                                  [--color rgb|y] [--out DIR] [--skip-forward] [--forward-timeout-s 300]

Only the fusion model is counted: the SSVIF segmentation branches exist only during training.

- params: ``sum(p.numel() for p in model.parameters())`` of ``create_model(name, color=...)``.
- GFLOPs: :func:`bench.models.count_flops` (``torch.utils.flop_counter.FlopCounterMode`` on meta tensors,
  batch 1). FLOPs = 2 × MACs; only convolutions, matmuls and attention are counted (not elementwise ops,
  norms or interpolation).
- forward peak MB: one CPU forward (batch 1, float32, ``torch.inference_mode``) in a fresh subprocess per
  model. After building the model, running one 32×32 warm-up forward (so that library code paged in and
  lazy one-time initialisation are not counted) and making the random inputs, the subprocess returns
  freed heap to the OS (``malloc_trim``), resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← 5)
  and reads VmRSS; after the forward it reads VmHWM. The reported number is VmHWM − VmRSS: the extra
  resident memory of the forward pass (activations, workspaces, output) on top of the already resident
  weights and inputs, in MiB. Where the peak mark cannot be reset, ``ru_maxrss`` after the forward minus
  VmRSS before it is used instead (an upper bound if building the model peaked higher); the JSON's
  ``method`` says which.

Prints a Markdown table; with ``--out DIR`` also writes ``DIR/table.md`` and ``DIR/efficiency.json``.
``--skip-forward`` leaves the memory column blank (params + FLOPs only); a forward that runs past
``--forward-timeout-s`` is stopped and its memory left blank with a note.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package

from bench.models import FLOPS_NOTE, build_model, count_flops  # noqa: E402
from ssvif_ros.cli import comma_list, size_pair  # noqa: E402
from ssvif_ros.models.registry import list_models  # noqa: E402

WARMUP_SIZE = (32, 32)  # a 32x32 forward before the measured one: cheap for every model

MEMORY_NOTE = (
    "forward peak MB: extra resident memory (VmHWM - VmRSS, MiB) of one CPU forward, batch 1, float32, "
    "torch.inference_mode, in a fresh subprocess per model after a 32x32 warm-up forward, on top of the "
    "resident weights and inputs"
)


def _proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (e.g. "VmRSS", "VmHWM") in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} field")


def _release_free_heap() -> None:
    """Give glibc's freed heap back to the OS, so the forward cannot reuse memory the baseline counted."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc: the baseline may then include some free heap


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure_forward_memory_in_process(name: str, color: str, height: int, width: int) -> dict:
    """Build ``name`` and run one forward on (1,3,H,W) + (1,1,H,W) random inputs; returns ``forward_peak_mb``
    (see the module docstring), ``baseline_rss_mb``, ``peak_rss_mb``, ``forward_s`` and ``method``.

    Meant to run in a fresh process (see :func:`measure_forward_memory`): it reads this process's RSS.
    """
    model = build_model(name, color).eval()
    with torch.inference_mode():  # one-time costs (library code paged in, lazy init) stay out of the peak
        model(torch.rand(1, 3, *WARMUP_SIZE), torch.rand(1, 1, *WARMUP_SIZE))
    vis, ir = torch.rand(1, 3, height, width), torch.rand(1, 1, height, width)
    _release_free_heap()
    reset = _reset_peak_rss()
    baseline_kib = _proc_status_kib("VmRSS")
    start = time.perf_counter()
    with torch.inference_mode():
        model(vis, ir)
    forward_s = time.perf_counter() - start
    if reset:
        peak_kib, method = _proc_status_kib("VmHWM"), "VmHWM after reset via /proc/self/clear_refs"
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        method = "ru_maxrss (peak mark not resettable; upper bound)"
    return {
        "forward_peak_mb": round((peak_kib - baseline_kib) / 1024, 1),
        "baseline_rss_mb": round(baseline_kib / 1024, 1),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "forward_s": round(forward_s, 2),
        "method": method,
    }


def measure_forward_memory(
    name: str, color: str, height: int, width: int, timeout_s: float, threads: int
) -> dict:
    """:func:`measure_forward_memory_in_process` in a fresh subprocess with ``threads`` torch threads;
    on timeout or failure returns ``{"forward_peak_mb": None, "memory_note": why}``."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure-one",
        name,
        "--color",
        color,
        "--size",
        f"{height}x{width}",
        "--threads",
        str(threads),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"forward_peak_mb": None, "memory_note": f"forward not finished in {timeout_s:g} s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no stderr"]
        return {"forward_peak_mb": None, "memory_note": f"subprocess failed ({done.returncode}): {tail[0]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def efficiency_record(
    name: str,
    color: str,
    height: int,
    width: int,
    forward: bool = True,
    timeout_s: float = 300.0,
    threads: int = 1,
) -> dict:
    """One model's ``{"model", "color", "size", "params", "flops", "gflops", "forward_peak_mb", ...}``;
    ``forward_peak_mb`` is None when ``forward`` is False or the measurement failed (then ``memory_note``)."""
    model = build_model(name, color).eval()
    flops = count_flops(model, height, width)
    record: dict = {
        "model": name,
        "color": color,
        "size": f"{height}x{width}",
        "params": sum(p.numel() for p in model.parameters()),
        "flops": flops,
        "gflops": round(flops / 1e9, 3),
    }
    del model
    if forward:
        record.update(measure_forward_memory(name, color, height, width, timeout_s, threads))
    else:
        record.update({"forward_peak_mb": None, "memory_note": "--skip-forward"})
    return record


def markdown_table(records: list[dict]) -> str:
    """One row per record: model, colour, size, params (M), GFLOPs, forward peak MB (blank if unmeasured)."""
    lines = [
        "| model | color | size (HxW) | params (M) | GFLOPs | forward peak MB |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in records:
        memory = "" if r.get("forward_peak_mb") is None else f"{r['forward_peak_mb']:.1f}"
        lines.append(
            f"| {r['model']} | {r['color']} | {r['size']} | {r['params'] / 1e6:.3f} | {r['gflops']:.2f} "
            f"| {memory} |"
        )
    lines += ["", f"{FLOPS_NOTE}.", f"{MEMORY_NOTE}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", type=comma_list, default=None, help="comma list (default: all registered)"
    )
    parser.add_argument("--size", type=size_pair, default=(480, 640), help="HEIGHTxWIDTH (default 480x640)")
    parser.add_argument("--color", choices=("rgb", "y"), default="rgb")
    parser.add_argument("--out", type=Path, default=None, help="write table.md and efficiency.json here")
    parser.add_argument("--skip-forward", action="store_true", help="params + FLOPs only, memory blank")
    parser.add_argument(
        "--forward-timeout-s", type=float, default=300.0, help="per-model time budget of the memory forward"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the memory forward")
    parser.add_argument("--measure-one", default=None, help=argparse.SUPPRESS)  # the subprocess side
    args = parser.parse_args(argv)
    height, width = args.size

    if args.measure_one is not None:
        torch.set_num_threads(args.threads)
        print(json.dumps(measure_forward_memory_in_process(args.measure_one, args.color, height, width)))
        return 0

    records = []
    for name in args.models or list_models():
        print(f"{name} ({args.color}) {height}x{width} ...", file=sys.stderr, flush=True)
        records.append(
            efficiency_record(
                name, args.color, height, width, not args.skip_forward, args.forward_timeout_s, args.threads
            )
        )
    table = markdown_table(records)
    print(table, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "table.md").write_text(table)
        meta = {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "batch": 1,
            "dtype": "float32",
            "flops_note": FLOPS_NOTE,
            "memory_note": MEMORY_NOTE,
        }
        (args.out / "efficiency.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
