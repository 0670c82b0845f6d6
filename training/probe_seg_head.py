#!/usr/bin/env python
"""How much scene structure a checkpoint's segmentation head found, measured against ground-truth labels.

    python training/probe_seg_head.py --data runs/synth9 --split test \
        --checkpoints ssvif_ros/weights/lightunet_ssvif.safetensors runs/x/best.safetensors --out runs/probe

Why: the SSVIF head is trained without labels, so its class ids are its own; a plain mIoU against the
labels says nothing. Here every head's label maps over a labelled folder are pooled into one confusion
matrix (true class × head id) and the head ids are matched one-to-one to the true classes so that the
matched pixels are as many as possible (Hungarian matching, ``scipy.optimize.linear_sum_assignment``);
unmatched head ids count as errors. Reported per checkpoint (means over the folder's pairs):

- ``matched_miou`` / ``matched_pixel_accuracy``: after that matching (the usual unsupervised
  segmentation score); ``identity_miou``: without matching (meaningful for a label-supervised head);
- ``constant_pixel_accuracy``: the best single class painted everywhere (what a collapsed head can reach);
- ``image_dependence``: the fraction of pixels whose predicted id differs from that pixel's most frequent
  id over all images (0: one image-independent map — the collapse seen in the shipped model — and
  larger when the maps follow the scenes); only for folders whose images share one size;
- ``ids_used``: head ids that cover at least 0.1 % of the pixels.

Writes ``probe.json`` and ``probe.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ssvif_ros.checkpoint import atomic_write_bytes
from ssvif_ros.eval.probe import markdown, probe


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, action="append", required=True, help="labelled paired folder")
    p.add_argument("--split", help="only pairs of this split in the manifest.csv")
    p.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="checkpoints with a SegHead")
    p.add_argument("--num-classes", type=int, help="true classes (default: from classes.json or max id + 1)")
    p.add_argument("--limit", type=int, help="at most this many pairs")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    num_classes = args.num_classes
    if num_classes is None:
        meta = args.data[0] / "classes.json"
        if not meta.is_file():
            p.error(f"--num-classes is needed: {meta} does not exist")
        num_classes = int(json.loads(meta.read_text())["num_classes"])
    try:
        report = probe(args.data, args.checkpoints, num_classes, args.split, args.limit)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "probe.json", json.dumps(report, indent=2).encode())
    table = markdown(report)
    atomic_write_bytes(args.out / "probe.md", table.encode())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
