"""Parameters, FLOPs and peak forward memory of each fusion model at one input size (cf. SSVIF Table IV).

    python training/efficiency.py [--models lightunet,seafusion,swinfusion] [--size 480x640]
                                  [--color rgb|y] [--out DIR] [--skip-forward] [--forward-timeout-s 300]

Only the fusion model is counted: the SSVIF segmentation branches exist only during training.

- params: ``sum(p.numel() for p in model.parameters())`` of ``create_model(name, color=...)``.
- GFLOPs: :func:`ssvif_ros.eval.efficiency.count_flops` (``torch.utils.flop_counter.FlopCounterMode`` on
  meta tensors, batch 1). FLOPs = 2 × MACs; only convolutions, matmuls and attention are counted (not
  elementwise ops, norms or interpolation).
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
import json
import os
import platform
import sys
from pathlib import Path

import torch

from ssvif_ros.cli import comma_list, size_pair
from ssvif_ros.eval.efficiency import (
    FLOPS_NOTE,
    MEMORY_NOTE,
    efficiency_record,
    markdown_table,
)
from ssvif_ros.models.registry import list_models


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
    args = parser.parse_args(argv)
    height, width = args.size

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
