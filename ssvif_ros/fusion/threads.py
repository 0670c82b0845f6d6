"""How many intra-op threads inference gets by default: chosen from the cores this process may use.

torch's default (one thread per physical core) is the wrong choice on a small shared CPU: on 2 cores the
model's threads compete with the executor thread, the camera drivers and each other (``ssvif-replay
--max-frames 10``: p50 797 ms with torch's default vs 90 ms with 1 thread). The automatic choice is one
thread up to 2 usable cores, else half of them up to 4 (a 0.1 M-parameter model at 640×480 gains little
beyond that, and the rest of the robot needs CPU too); on CUDA the threads only do pre/post-processing,
so one. ONNX Runtime sessions follow ``torch.get_num_threads()``, so the same number holds for both.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["apply_threads", "auto_threads", "usable_cores"]

MAX_AUTO_THREADS = 4


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def auto_threads(device: str, cores: int | None = None) -> int:
    """The automatic thread count for ``device`` (``cpu``, ``cuda``, ``cuda:N``) on ``cores`` usable cores."""
    if str(device).startswith("cuda"):
        return 1
    cores = usable_cores() if cores is None else cores
    return 1 if cores <= 2 else min(MAX_AUTO_THREADS, cores // 2)


def apply_threads(requested: int, device: str) -> str:
    """Set torch's intra-op threads to ``requested`` (0: :func:`auto_threads`); returns a line saying how
    many and why, for the start-up log."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested > 0:
        threads, why = requested, "as requested"
    else:
        threads = auto_threads(device)
        why = f"automatic: {usable_cores()} usable core(s), device {device}"
    torch.set_num_threads(threads)
    return f"{threads} inference thread(s) ({why})"
