"""Score a checkpoint's segmentation head against labels (the library of ``training/probe_seg_head.py``):
its class ids matched one-to-one to the true classes (Hungarian), and how much its maps depend on the
image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from ssvif_ros.data import PairedFolderDataset
from ssvif_ros.eval.fusion import select_indices

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


def load_labelled(roots: Sequence[Path], split: str | None, limit: int | None) -> list[dict]:
    """The labelled pairs of ``roots`` in memory (``split`` per the manifest, at most ``limit``)."""
    dataset = PairedFolderDataset(list(roots), load_labels=True)
    return [dataset.read_arrays(i, load_labels=True) for i in select_indices(dataset, split, limit)]


def head_predictions(path: Path, samples: Sequence[dict]) -> tuple[list[np.ndarray], int]:
    """(the class-id map of each sample, the number of ids) from the segmentation head of checkpoint
    ``path``; ValueError when it has none."""
    from ssvif_ros.fusion.engine import FusionEngine

    engine = FusionEngine(weights=path, device="cpu")
    if not engine.has_segmentation:
        raise ValueError(f"{path}: the checkpoint has no segmentation head")
    preds = [engine.fuse(s["vis"], s["ir"], want_labels=True).labels for s in samples]
    return preds, int(engine.num_classes)


def probe(
    roots: Sequence[Path], checkpoints: Sequence[Path], num_classes: int, split: str | None = None,
    limit: int | None = None,
) -> dict[str, dict]:  # fmt: skip
    """Run each checkpoint's head over the labelled pairs of ``roots`` and score it (see module doc)."""
    samples = load_labelled(roots, split, limit)
    labels = [np.asarray(s["label"]) for s in samples]
    results = {}
    for path in checkpoints:
        preds, ids = head_predictions(path, samples)
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
