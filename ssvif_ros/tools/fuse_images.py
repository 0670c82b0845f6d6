"""``ssvif-fuse``: fuse image files or a paired folder to PNG, with a trained model or a classic baseline.

    ssvif-fuse VIS.png IR.png -o fused.png [--weights W.safetensors | --baseline laplacian]
    ssvif-fuse --folder DATASET -o OUT_DIR [--weights ...]    # vi/ + ir/ (any layout the dataset reads)
    ssvif-fuse --folder DATASET -o OUT_DIR --labels-out LABELS --overlay-out OVERLAYS

Without ``--weights`` or ``--baseline`` the shipped default model is used. ``--labels-out`` writes the
segmentation head's class ids (uint8 PNG, same stems) and ``--overlay-out`` the fused image with the
classes blended in; both need a checkpoint with a segmentation head. In folder mode a pair that cannot be
read or fused is reported and skipped (exit status 1 at the end), the others are still written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ssvif_ros.checkpoint import CheckpointError
from ssvif_ros.data.image_files import DatasetError, read_infrared, read_visible
from ssvif_ros.fusion.baselines import BASELINES
from ssvif_ros.fusion.fusers import FuserSpecError, OpenedFuser, open_fuser
from ssvif_ros.fusion.overlay import MaskOverlay, class_overlay


def open_method(weights: Path | None, baseline: str | None, device: str) -> OpenedFuser:
    """The baseline, the checkpoint, or the shipped model ("" spec)."""
    if baseline is not None and baseline not in BASELINES:
        raise FuserSpecError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    return open_fuser(baseline or (str(weights) if weights else ""), device=device)


def write_outputs(
    fuser: OpenedFuser,
    vis: np.ndarray,
    ir: np.ndarray,
    stem: str,
    out: Path,
    args: argparse.Namespace,
    overlay: MaskOverlay | None,
) -> None:
    """Fuse one pair; write the fused PNG to ``out`` and, when asked, the labels and (with ``overlay``,
    built once per run by :func:`overlay_for`) the overlay."""
    want_labels = args.labels_out is not None or overlay is not None
    result = fuser.fuse(vis, ir, want_labels=want_labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result.image).save(out)
    if args.labels_out is not None:
        args.labels_out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(result.labels).save(args.labels_out / f"{stem}.png")
    if overlay is not None:
        args.overlay_out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay.blend(result.image, result.labels)).save(args.overlay_out / f"{stem}.png")


def overlay_for(fuser: OpenedFuser, args: argparse.Namespace) -> MaskOverlay | None:
    """The run's overlay (its legend is rendered once), or None without ``--overlay-out``."""
    if args.overlay_out is None:
        return None
    return class_overlay(fuser.class_names, fuser.num_classes, 0.5)


def fuse_folder(fuser: OpenedFuser, args: argparse.Namespace) -> int:
    """Every pair of ``--folder``; a pair that fails is reported on stderr and skipped. Exit status 0, 1
    (some pairs skipped) or 2 (no usable folder: one line on stderr)."""
    from ssvif_ros.data import PairedFolderDataset

    try:
        dataset = PairedFolderDataset(args.folder)
    except (DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(dataset) == 0:
        print(f"error: {args.folder} holds no visible/infrared pair", file=sys.stderr)
        return 2
    overlay = overlay_for(fuser, args)
    failed = []
    for i, name in enumerate(dataset.names):
        try:
            sample = dataset.read_arrays(i)
            out = args.out / f"{name}.png"
            write_outputs(fuser, sample["vis"], sample["ir"], name, out, args, overlay)
        except (DatasetError, OSError, ValueError) as e:
            failed.append(name)
            print(f"skipped {name}: {e}", file=sys.stderr)
    done = len(dataset) - len(failed)
    print(f"fused {done} of {len(dataset)} pairs from {args.folder} with {fuser.name} -> {args.out}/")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssvif-fuse", description=__doc__.splitlines()[0])
    p.add_argument("vis", nargs="?", type=Path, help="visible image file")
    p.add_argument("ir", nargs="?", type=Path, help="infrared image file (8- or 16-bit)")
    p.add_argument("--folder", type=Path, help="a paired dataset folder instead of two files")
    p.add_argument("-o", "--out", type=Path, required=True, help="output PNG (files) or folder (--folder)")
    p.add_argument("--weights", type=Path, help="checkpoint .safetensors (with its .json sidecar)")
    p.add_argument("--baseline", help=f"classic method instead of a model: {', '.join(BASELINES)}")
    p.add_argument("--labels-out", type=Path, help="folder for the class-id PNGs (model with a head)")
    p.add_argument("--overlay-out", type=Path, help="folder for the class overlays (model with a head)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda[:N]")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if (args.folder is None) == (args.vis is None or args.ir is None):
        p.error("give either VIS and IR files or --folder")
    try:
        fuser = open_method(args.weights, args.baseline, args.device)
    except (FuserSpecError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if (args.labels_out or args.overlay_out) and not fuser.has_segmentation:
        print(
            f"error: --labels-out/--overlay-out need a checkpoint with a segmentation head; {fuser.name} "
            "has none (a baseline, or a model trained without ssvif.csc)",
            file=sys.stderr,
        )
        return 2
    if args.folder is not None:
        return fuse_folder(fuser, args)
    try:
        vis, ir = read_visible(args.vis), read_infrared(args.ir)
        write_outputs(fuser, vis, ir, args.out.stem, args.out, args, overlay_for(fuser, args))
    except (DatasetError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"fused {args.vis.name} + {args.ir.name} with {fuser.name} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
