#!/usr/bin/env python
"""Where a learned-guide lightunet shows the thermal image: its blend weight per labelled class.

    python training/guide_weight.py --weights ssvif_ros/weights/lightunet_ssvif.safetensors \
        --data runs/synth9 --split test --limit 40 --out runs/guide_weight

For each class of the labelled scenes: the mean of the model's learned thermal weight on that class (each
scene's mean, averaged over the scenes that contain it) beside the saliency rule's weight, which the default
fusion target pulls towards (ssvif_ros/eval/guide_weight.py). Writes ``guide_weight.json`` and
``guide_weight.md`` into ``--out`` when given. Class names from ``classes.json`` beside the data or
``--class-names a,b,c``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ssvif_ros.checkpoint import CheckpointError, atomic_write_bytes
from ssvif_ros.cli import add_labelled_checkpoint_args
from ssvif_ros.data import DatasetError
from ssvif_ros.eval.guide_weight import markdown, weight_per_class
from ssvif_ros.eval.naming import label_names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_labelled_checkpoint_args(p, "lightunet checkpoint with guide=learned", limit=40)
    p.add_argument("--out", type=Path, help="folder for guide_weight.json and guide_weight.md")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        names = label_names(args.data, args.class_names)
        report = weight_per_class(args.weights, args.data, names, args.split, args.limit)
    except (ValueError, CheckpointError, DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = markdown(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out / "guide_weight.json", json.dumps(report, indent=2).encode())
        atomic_write_bytes(args.out / "guide_weight.md", (table + "\n").encode())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
