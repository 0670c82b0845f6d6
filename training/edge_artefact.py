#!/usr/bin/env python
"""How much of a checkpoint's segmentation at the left edge is a border artefact (docs/edge_artefact.md).

For each pair of a folder, the frame is fused with ``P`` pixels of its own first rows and columns replicated
above and to the left (cropped off again), for each ``P`` of ``--pads``; printed per ``P``: the share of the
left ``--band`` columns whose class id differs from the id at column ``--reference`` in the same row. A
head that follows the scene gives about the same share at every ``P``; a border artefact gives a high share
at ``P = 0`` that falls as ``P`` grows.

The mirror check needs no padding: each frame is also fused mirrored left-right, and the labels mirrored
back are compared with the frame's own. Printed per pair: the share of disagreeing pixels in the left and
right ``--band`` columns and in the columns between. A head that follows the scene disagrees about as much
at the edges as inside; a border artefact disagrees at both edges (what it put on the left is on the
right after mirroring). JSON on stdout.

    python training/edge_artefact.py --data ../shared/data/msrs_subset --split test --count 4 \
        --weights ssvif_ros/weights/lightunet_ssvif.safetensors --pads 0,8,16,32,64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from ssvif_ros.data import PairedFolderDataset
from ssvif_ros.data.pairs import manifest_column
from ssvif_ros.fusion.engine import FusionEngine


def differing_share(
    engine: FusionEngine, vis: np.ndarray, ir: np.ndarray, pad: int, band: int, ref: int
) -> float:
    padded = [cv2.copyMakeBorder(a, pad, 0, pad, 0, cv2.BORDER_REPLICATE) for a in (vis, ir)]
    labels = engine.fuse(*padded, want_labels=True).labels[pad:, pad:]
    return float((labels[:, :band] != labels[:, ref : ref + 1]).mean())


def mirror_disagreement(engine: FusionEngine, vis: np.ndarray, ir: np.ndarray, band: int) -> dict[str, float]:
    """Share of pixels whose label changes when the frame is mirrored (and the labels mirrored back), in
    the left and right ``band`` columns and in the interior (0 < ``band`` < width / 2)."""
    if not 0 < band < vis.shape[1] // 2:
        raise ValueError(f"band must be between 1 and half the width ({vis.shape[1] // 2 - 1}), got {band}")
    labels = engine.fuse(vis, ir, want_labels=True).labels
    mirrored = engine.fuse(vis[:, ::-1].copy(), ir[:, ::-1].copy(), want_labels=True).labels[:, ::-1]
    differ = labels != mirrored
    return {
        "left": float(differ[:, :band].mean()),
        "right": float(differ[:, -band:].mean()),
        "interior": float(differ[:, band:-band].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default=None, help="manifest split to use (default: all pairs)")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--pads", default="0,8,16,32,64")
    p.add_argument("--band", type=int, default=32)
    p.add_argument("--reference", type=int, default=48)
    args = p.parse_args(argv)
    dataset = PairedFolderDataset(args.data)
    splits = manifest_column(dataset, "split")
    indices = [i for i, s in enumerate(splits) if args.split is None or s == args.split][: args.count]
    engine = FusionEngine(weights=args.weights, backend="torch")
    pairs = [dataset.read_arrays(i) for i in indices]
    shares = {
        pad: [differing_share(engine, a["vis"], a["ir"], pad, args.band, args.reference) for a in pairs]
        for pad in (int(v) for v in args.pads.split(","))
    }
    mirror = [mirror_disagreement(engine, a["vis"], a["ir"], args.band) for a in pairs]
    report = {"weights": str(args.weights), "pairs": len(pairs), "differing_share": shares, "mirror": mirror}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
