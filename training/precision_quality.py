"""What lower numeric precision costs in fusion quality: one checkpoint, several precisions, the same pairs.

    python training/precision_quality.py --data ../shared/data/msrs_subset --split test --threads 1 \
        --out results/precision [--weights W.safetensors] [--precisions fp32,fp16,bf16,int8] [--limit N]

Every pair of ``--split`` is fused at each precision through :class:`~ssvif_ros.fusion.engine.FusionEngine`
(the
same uint8 ↔ float conversion for all, only the backend differs) and scored with
:func:`ssvif_ros.eval.metrics.evaluate_fusion`, the code path of ``training/evaluate_fusion.py``. Per
precision:
the seven metric means, their change from fp32, how far the uint8 fused image moved from fp32's (max abs
grey-level difference, mean abs difference, % of pixels with any channel changed) and the median latency
per image at ``--threads`` (indicative only: the CPU is shared). Writes ``precision.json`` and
``precision.md`` into ``--out`` (atomically).

Precisions (:data:`PRECISIONS`; fp32 always runs, it is the reference):

- ``fp32``: the engine's torch backend (conv+BN folded, channels_last), float32.
- ``fp16`` / ``bf16``: the same folded model with weights and inputs cast to IEEE half / bfloat16, run on
  the CPU. On a GPU, fp16 runs on tensor cores and is the deployment precision; here the CPU run measures
  only its *quality* cost (values are rounded to the same IEEE half format; the kernels' accumulation
  order and width may differ from cuDNN's, so the cost is indicative to the last grey level, not exact).
- ``onnx_fp32``: the fp32 ONNX export in ONNX Runtime; separates runtime differences from quantization.
- ``int8``: ONNX Runtime static quantization (QDQ, int8 per-channel weights, int8 activations from MinMax
  calibration) of the Conv layers of the fp32 export, calibrated on the ``--calib-split`` pairs (never the
  evaluated ones: overlapping pairs are refused).
- ``int8_allops``: the same, but every op type ONNX Runtime can quantize (also the Add/Mul/Concat/Resize/
  Sigmoid of the guide and the output), for comparison with ``int8``.

A precision other than fp32 that cannot be built or run (e.g. a quantization failure) is reported with
its error text in place of numbers; the others still run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ssvif_ros.eval.precision import PRECISIONS, measure, parse_precisions
from ssvif_ros.fusion.engine import default_weights

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the repo


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=default_weights(), help="checkpoint (default: shipped)")
    p.add_argument("--data", type=Path, nargs="+", default=[SHARED_DATA / "msrs_subset"])
    p.add_argument("--split", default="test", help="evaluated pairs: this split of manifest.csv (test)")
    p.add_argument("--calib-split", default="train", help="int8 calibration pairs: this split (train)")
    p.add_argument(
        "--precisions", default="fp32,fp16,bf16,int8", help=f"comma list of {', '.join(PRECISIONS)}"
    )
    p.add_argument("--limit", type=int, help="evaluate the first N pairs of the split only")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch and ONNX Runtime (1)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    args = p.parse_args(argv)
    if args.weights is None:
        p.error("no shipped weights found: give --weights")
    try:
        names = parse_precisions(args.precisions)
    except ValueError as e:
        p.error(str(e))
    try:
        measure(args.weights, args.data, args.out, names, args.split or None, args.calib_split, args.limit,
                args.threads)  # fmt: skip
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((args.out / "precision.md").read_text())
    print(f"results in {args.out}/precision.json and precision.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
