"""Names for a label-free segmentation head's class ids, from a handful of labelled images.

A head trained with CSC learns K clusters whose ids mean nothing by themselves. :func:`match_class_names`
runs the head over labelled pairs, pools the (true class, head id) pixel counts and matches ids to classes
one-to-one (Hungarian, as :mod:`ssvif_ros.eval.probe` does); :func:`write_class_names` stores the result in
the checkpoint's sidecar (``class_names``: one name or null per id, and how they were found), which the
engine, the node's overlay legend and the replay report read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ssvif_ros.checkpoint import atomic_write_bytes, read_sidecar, sidecar_path
from ssvif_ros.eval.probe import head_predictions, load_labelled, pooled_confusion
from ssvif_ros.train.config import data_class_names


def label_names(roots: Sequence[Path], given: Sequence[str] | None = None) -> list[str]:
    """The names of the label ids: ``given``, else the ``names`` of the first ``classes.json`` in ``roots``;
    ValueError naming the folders when neither is there."""
    names = list(given or data_class_names([str(r) for r in roots]) or [])
    if not names:
        folders = ", ".join(str(r) for r in roots)
        raise ValueError(
            f"no class names: no classes.json with 'names' in {folders}; give --class-names a,b,c"
        )
    return names


def match_class_names(
    weights: Path,
    roots: Sequence[Path],
    class_names: Sequence[str],
    split: str | None,
    limit: int | None,
    min_iou: float = 0.1,
) -> dict[str, Any]:
    """``{"class_names": [name or None per head id], "iou": [IoU of each matched id or None], "pairs": n}``.

    An id whose matched class overlaps it with an IoU below ``min_iou`` stays unnamed (its IoU is still
    reported): a legend must not call a cluster "person" when it is hardly ever one.
    Raises ValueError for a checkpoint without a head or labels outside ``class_names``."""
    samples = load_labelled(roots, split, limit)
    preds, ids = head_predictions(weights, samples)
    cm = pooled_confusion(preds, [np.asarray(s["label"]) for s in samples], len(class_names), ids)
    rows, cols = linear_sum_assignment(cm, maximize=True)
    names: list[str | None] = [None] * ids
    iou: list[float | None] = [None] * ids
    for c, k in zip(rows, cols, strict=True):
        union = cm[c].sum() + cm[:, k].sum() - cm[c, k]
        if cm[c, k] > 0:  # an id that never overlaps the class stays unnamed
            iou[k] = float(cm[c, k] / union)
            names[k] = class_names[c] if iou[k] >= min_iou else None
    return {"class_names": names, "iou": iou, "pairs": len(samples)}


def write_class_names(weights: Path, result: dict[str, Any], source: str) -> Path:
    """Store ``result["class_names"]`` (and where they came from) in the sidecar of ``weights``, atomically;
    the weights file is not touched, so its recorded sha256 still holds."""
    meta = read_sidecar(weights)
    meta["class_names"] = result["class_names"]
    meta["class_names_from"] = {"source": source, "pairs": result["pairs"], "iou": result["iou"]}
    path = sidecar_path(weights)
    atomic_write_bytes(path, (json.dumps(meta, indent=2) + "\n").encode())
    return path
