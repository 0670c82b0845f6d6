"""``ssvif-fuse``: fuse image files or a paired folder to PNG, with a trained model or a classic baseline.

    ssvif-fuse VIS.png IR.png -o fused.png [--weights W.safetensors | --baseline laplacian]
    ssvif-fuse --folder DATASET -o OUT_DIR [--weights ...]    # vi/ + ir/ (any layout the dataset reads)

Without ``--weights`` or ``--baseline`` the shipped default model is used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ssvif_ros.data.image_files import read_infrared, read_visible
from ssvif_ros.fusion.baselines import BASELINES, fuse_baseline

FuseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def make_fuser(weights: str | Path | None, baseline: str | None, device: str = "cpu") -> tuple[FuseFn, str]:
    """A function (vis H×W×3 uint8, ir H×W uint8) -> fused H×W×3 uint8, and a description of it."""
    if baseline is not None:
        if baseline not in BASELINES:
            raise SystemExit(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
        return (lambda vis, ir: fuse_baseline(baseline, vis, ir)), f"classic baseline '{baseline}'"
    from ssvif_ros.fusion.engine import FusionEngine, default_weights

    weights = weights or default_weights()
    if weights is None:
        raise SystemExit("no shipped model yet and no --weights given: pass --weights or --baseline")
    engine = FusionEngine(weights=weights, device=device)
    return (lambda vis, ir: engine.fuse(vis, ir).image), f"model {engine.name} ({weights})"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ssvif-fuse", description=__doc__.splitlines()[0])
    p.add_argument("vis", nargs="?", type=Path, help="visible image file")
    p.add_argument("ir", nargs="?", type=Path, help="infrared image file (8- or 16-bit)")
    p.add_argument("--folder", type=Path, help="a paired dataset folder instead of two files")
    p.add_argument("-o", "--out", type=Path, required=True, help="output PNG (files) or folder (--folder)")
    p.add_argument("--weights", type=Path, help="checkpoint .safetensors (with its .json sidecar)")
    p.add_argument("--baseline", help=f"classic method instead of a model: {', '.join(BASELINES)}")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N]")
    args = p.parse_args(argv)
    if (args.folder is None) == (args.vis is None or args.ir is None):
        p.error("give either VIS and IR files or --folder")
    fuse, what = make_fuser(args.weights, args.baseline, args.device)

    if args.folder is None:
        fused = fuse(read_visible(args.vis), read_infrared(args.ir))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(fused).save(args.out)
        print(f"fused {args.vis.name} + {args.ir.name} with {what} -> {args.out}")
        return 0

    from ssvif_ros.data import PairedFolderDataset

    dataset = PairedFolderDataset(args.folder)
    for i, name in enumerate(dataset.names):
        sample = dataset.read_arrays(i)
        out = args.out / f"{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(fuse(sample["vis"], sample["ir"])).save(out)
    print(f"fused {len(dataset)} pairs from {args.folder} with {what} -> {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
