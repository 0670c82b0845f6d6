"""Parameters, FLOPs and forward peak memory of the registered fusion models (the library of
``training/efficiency.py``, whose docstring says how each is measured)."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ssvif_ros.models import create_model

WARMUP_SIZE = (32, 32)  # a 32x32 forward before the measured one: cheap for every model

MEMORY_NOTE = (
    "forward peak MB: extra resident memory (VmHWM - VmRSS, MiB) of one CPU forward, batch 1, float32, "
    "torch.inference_mode, in a fresh subprocess per model after a 32x32 warm-up forward, on top of the "
    "resident weights and inputs"
)


FLOPS_NOTE = (
    "FLOPs from torch.utils.flop_counter.FlopCounterMode (1 MAC = 2 FLOPs; convolutions, matmuls and "
    "attention only)"
)


def count_flops(model: nn.Module, height: int, width: int) -> int:
    """Total FLOPs of one forward pass on a (1,3,H,W) visible and (1,1,H,W) infrared input."""
    try:
        meta_model = copy.deepcopy(model).to("meta")
        vis = torch.empty(1, 3, height, width, device="meta")
        ir = torch.empty(1, 1, height, width, device="meta")
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            meta_model(vis, ir)
    except (NotImplementedError, RuntimeError):  # data-dependent code: count on a real pass instead
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.rand(1, 3, height, width), torch.rand(1, 1, height, width))
    return counter.get_total_flops()


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
    model = create_model(name, color=color).eval()
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


_MEASURE_ONE = (
    "import json, sys, torch\n"
    "from ssvif_ros.eval.efficiency import measure_forward_memory_in_process as measure\n"
    "torch.set_num_threads(int(sys.argv[5]))\n"
    "print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))"
)
"""The subprocess side of :func:`measure_forward_memory`: a fresh interpreter, one model, one forward."""


def measure_forward_memory(
    name: str, color: str, height: int, width: int, timeout_s: float, threads: int
) -> dict:
    """:func:`measure_forward_memory_in_process` in a fresh subprocess with ``threads`` torch threads;
    on timeout or failure returns ``{"forward_peak_mb": None, "memory_note": why}``."""
    command = [sys.executable, "-c", _MEASURE_ONE, name, color, str(height), str(width), str(threads)]
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
    model = create_model(name, color=color).eval()
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
