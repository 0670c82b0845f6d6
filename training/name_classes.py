#!/usr/bin/env python
"""Name a checkpoint's label-free segmentation classes from a few labelled images; store them in its sidecar.

    python training/name_classes.py --weights runs/x/best.safetensors --data runs/synth_named --limit 20

The head's ids are matched one-to-one to the labelled classes (Hungarian on pooled pixel counts); each id
gets the name of its matched class when their IoU reaches ``--min-iou`` (0.1), else it stays unnamed. The
names go into the checkpoint's ``.json`` sidecar as ``class_names``; the node's overlay legend and the
replay report then show them. Without names the ids are anonymous and shown as ``id k``. Class names come
from ``classes.json`` beside the data (the synthetic scenes write one) or ``--class-names a,b,c``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ssvif_ros.checkpoint import CheckpointError
from ssvif_ros.cli import add_labelled_checkpoint_args
from ssvif_ros.data import DatasetError
from ssvif_ros.eval.naming import label_names, match_class_names, write_class_names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_labelled_checkpoint_args(p, "checkpoint .safetensors with a head", limit=20)
    p.add_argument(
        "--min-iou",
        type=float,
        default=0.1,
        help="an id matched with a lower IoU stays unnamed (default 0.1)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the names, do not write the sidecar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        names = label_names(args.data, args.class_names)
        result = match_class_names(args.weights, args.data, names, args.split, args.limit, args.min_iou)
        for k, (name, iou) in enumerate(zip(result["class_names"], result["iou"], strict=True)):
            print(f"id {k}: {name or '(unnamed)'}" + (f"  IoU {iou:.3f}" if iou is not None else ""))
        if not args.dry_run:
            source = ", ".join(str(d) for d in args.data) + (f" split {args.split}" if args.split else "")
            path = write_class_names(args.weights, result, source)
            print(f"class names written to {path}")
    except (ValueError, CheckpointError, DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
