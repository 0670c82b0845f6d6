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

import numpy as np
from scipy.optimize import linear_sum_assignment

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package

from ssvif_ros.checkpoint import atomic_write_bytes  # noqa: E402
from ssvif_ros.cli import load_script  # noqa: E402
from ssvif_ros.data import PairedFolderDataset  # noqa: E402

IGNORE = 255


def pooled_confusion(
    preds: Sequence[np.ndarray], labels: Sequence[np.ndarray], classes: int, ids: int
) -> np.ndarray:
    """``int64 (classes, ids)``: pixel counts of (true class, head id) over all maps; 255 labels skipped."""
    cm = np.zeros((classes, ids), dtype=np.int64)
    for pred, label in zip(preds, labels, strict=True):
        if pred.shape != label.shape:
            raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in size")
        keep = label != IGNORE
        true, got = label[keep].astype(np.int64), pred[keep].astype(np.int64)
        if true.size and (true.max() >= classes or got.max() >= ids):
            raise ValueError(f"label id {true.max()} or head id {got.max()} outside ({classes}, {ids})")
        cm += np.bincount(true * ids + got, minlength=classes * ids).reshape(classes, ids)
    return cm


def matched_scores(cm: np.ndarray) -> dict[str, float | list[int]]:
    """Scores of the confusion matrix ``(classes, ids)`` after the best one-to-one id → class matching,
    without matching (id k = class k) and for the best constant map. mIoU is over the classes present."""
    classes, ids = cm.shape
    total = cm.sum()
    rows, cols = linear_sum_assignment(cm, maximize=True)
    true_count, pred_count = cm.sum(axis=1), cm.sum(axis=0)
    present = true_count > 0

    def miou(pairs: dict[int, int]) -> float:
        ious = []
        for c in np.flatnonzero(present):
            k = pairs.get(int(c))
            inter = cm[c, k] if k is not None else 0
            union = true_count[c] + (pred_count[k] if k is not None else 0) - inter
            ious.append(inter / union if union else 0.0)
        return float(np.mean(ious)) if ious else float("nan")

    matching = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    identity = {c: c for c in range(min(classes, ids))}
    return {
        "matched_miou": miou(matching),
        "matched_pixel_accuracy": float(cm[rows, cols].sum() / total) if total else float("nan"),
        "identity_miou": miou(identity),
        "constant_pixel_accuracy": float(true_count.max() / total) if total else float("nan"),
        "ids_used": int((pred_count >= 0.001 * total).sum()),
        "matching": [matching.get(c, -1) for c in range(classes)],
    }


def image_dependence(preds: Sequence[np.ndarray], ids: int) -> float | None:
    """Fraction of pixels whose id differs from that pixel's most frequent id over ``preds`` (None when the
    maps differ in size)."""
    if len({p.shape for p in preds}) != 1:
        return None
    counts = np.zeros((ids, *preds[0].shape), dtype=np.int32)  # (ids, H, W): how often each id per pixel
    for pred in preds:
        for k in np.unique(pred):
            counts[k] += pred == k
    mode = counts.argmax(axis=0)
    return float(np.mean([np.mean(pred != mode) for pred in preds]))


def probe(
    roots: Sequence[Path], checkpoints: Sequence[Path], num_classes: int, split: str | None = None,
    limit: int | None = None,
) -> dict[str, dict]:  # fmt: skip
    """Run each checkpoint's head over the labelled pairs of ``roots`` and score it (see module doc)."""
    from ssvif_ros.fusion.engine import FusionEngine

    dataset = PairedFolderDataset(list(roots), load_labels=True)
    select_indices = load_script(Path(__file__).with_name("evaluate_fusion.py")).select_indices
    indices = select_indices(dataset, split, limit)  # `split` per the manifest, at most `limit`
    samples = [dataset.read_arrays(i, load_labels=True) for i in indices]
    labels = [np.asarray(s["label"]) for s in samples]
    results = {}
    for path in checkpoints:
        engine = FusionEngine(weights=path, device="cpu")
        if not engine.has_segmentation:
            raise SystemExit(f"{path}: the checkpoint has no segmentation head")
        ids = int(engine.num_classes)
        preds = [engine.fuse(s["vis"], s["ir"], want_labels=True).labels for s in samples]
        scores = matched_scores(pooled_confusion(preds, labels, num_classes, ids))
        scores["image_dependence"] = image_dependence(preds, ids)
        scores["head_classes"] = ids
        results[str(path)] = scores
    return {"pairs": len(samples), "num_classes": num_classes, "results": results}


def markdown(report: dict) -> str:
    lines = [
        "| checkpoint | matched mIoU | matched pixel acc. | identity mIoU | image dependence | ids used |",
        "|---|---|---|---|---|---|",
    ]
    constant = None
    for name, r in report["results"].items():
        dep = "n/a" if r["image_dependence"] is None else f"{r['image_dependence']:.3f}"
        cells = [f"{r[k]:.3f}" for k in ("matched_miou", "matched_pixel_accuracy", "identity_miou")]
        cells += [dep, f"{r['ids_used']}/{r['head_classes']}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        constant = r["constant_pixel_accuracy"]
    lines.append(
        f"\n{report['pairs']} labelled pairs, {report['num_classes']} true classes; the best constant map "
        f"reaches pixel accuracy {constant:.3f}."
    )
    return "\n".join(lines) + "\n"


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
    report = probe(args.data, args.checkpoints, num_classes, args.split, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "probe.json", json.dumps(report, indent=2).encode())
    table = markdown(report)
    atomic_write_bytes(args.out / "probe.md", table.encode())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
