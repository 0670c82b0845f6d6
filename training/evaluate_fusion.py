"""Evaluate fusion methods on paired folders: the seven fusion metrics per image and as means.

    python training/evaluate_fusion.py --data ../shared/data/msrs_subset --split test \
        --methods runs/x/best.safetensors laplacian max average path/to/fused_folder --out results/msrs

A method is a checkpoint (``.safetensors`` with its sidecar), a classic baseline name (average, max,
laplacian), or a folder of already-fused images named like the pairs; ``NAME=SPEC`` names its row, and
rows whose names would collide (two ``seed0/best`` checkpoints) get ``#2``, ``#3`` suffixes. Writes
``per_image.csv``, ``means.json``, ``table.md`` (methods × metrics, like the paper's Table II) and
``grid.png`` (visible | thermal | each method, for a few pairs) into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ssvif_ros.checkpoint import CheckpointError
from ssvif_ros.eval.fusion import evaluate
from ssvif_ros.fusion.backends import BackendUnavailable
from ssvif_ros.fusion.fusers import FuserSpecError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="paired dataset folder(s)")
    p.add_argument(
        "--methods", nargs="+", required=True, help="checkpoints, baseline names or fused folders; NAME=SPEC"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", help="only pairs of this split in the folders' manifest.csv (e.g. test)")
    p.add_argument("--limit", type=int, help="evaluate the first N pairs only")
    p.add_argument("--grid-pairs", type=int, default=4, help="pairs shown in grid.png")
    p.add_argument("--device", default="cpu")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        evaluate(args.data, args.methods, args.out, args.split, args.limit, args.grid_pairs, args.device)
    except (FuserSpecError, CheckpointError, BackendUnavailable, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((args.out / "table.md").read_text())
    print(f"per-image scores, means and grid in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
