#!/usr/bin/env python
"""Training-free real check on binary target masks: how well does each method's fused image keep the
thermal targets (people, vehicles) apart from their surroundings?

    python training/target_contrast.py --data ../shared/data/tno_stdfusionnet_masks --label-dir ir_mask \
        --methods visible infrared max SSVIF=ssvif_ros/weights/lightunet_ssvif.safetensors --out out/contrast

Why: a segmentation network trained from scratch on the 20 + 8 masked real pairs beside the project
learns nothing about the targets (RESULTS.md, experiment 3), so the masks are also used directly. For every
masked pair and method, on the fused image's luminance (gray = 0.299R + 0.587G + 0.114B), with the target
pixels T (mask > 0) and a ring R of background pixels within ``--ring`` px of a target:

- ``contrast``: (mean over T − mean over R) / 255, signed (thermal targets are warm, so bright in the
  infrared image);
- ``auc``: the probability that a random target pixel is brighter than a random ring pixel (the
  Mann–Whitney AUC, ties count half): 0.5 = the targets cannot be told from their surroundings by
  brightness, 1 = every target pixel is brighter. Threshold-free and insensitive to the gain.
- ``separability``: |auc − 0.5|·2, whichever is brighter (a dark line on a bright road counts too).

On multi-class labels (the synthetic scenes) ``--target-class lane_marking --against-class road`` scores
one class against another in its ring (``--split train`` for a development subset).

Means over pairs go to ``contrast.json`` and ``contrast.md`` in ``--out``. Methods are the specs of
``training/evaluate_segmentation.py`` (``visible``, ``infrared``, baselines, checkpoints, ``NAME=SPEC``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ssvif_ros.checkpoint import atomic_write_bytes
from ssvif_ros.eval.contrast import markdown, measure


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="paired folder(s) with masks")
    p.add_argument("--label-dir", help="mask subfolder of each root (e.g. ir_mask, mask_binary)")
    p.add_argument("--methods", nargs="+", required=True, help="method specs (see evaluate_segmentation)")
    p.add_argument("--ring", type=float, default=15.0, help="ring width around the targets, px")
    p.add_argument("--target-class", help="multi-class labels: the target class name (default: binary masks)")
    p.add_argument("--against-class", help="with --target-class: ring pixels of this class only")
    p.add_argument("--split", help="only the pairs of this manifest split (e.g. train, test)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        report = measure(
            args.data,
            args.label_dir,
            args.methods,
            args.ring,
            args.target_class,
            args.against_class,
            args.split,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "contrast.json", json.dumps(report, indent=2).encode())
    table = markdown(report)
    atomic_write_bytes(args.out / "contrast.md", table.encode())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
