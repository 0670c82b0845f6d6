"""Training-free target check on labelled pairs (the library of ``training/target_contrast.py``, whose
docstring defines the scores): target-vs-ring contrast, Mann–Whitney AUC and separability of the fused
luminance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.stats import rankdata

from ssvif_ros.eval.fusion import split_method_name, unique_names
from ssvif_ros.eval.segmentation import IGNORE_INDEX, find_labelled_pairs, load_samples, resolve_method

SCORES = ("contrast", "auc", "separability")


def luminance(image: np.ndarray) -> np.ndarray:
    """float64 (H, W) in [0, 255] from uint8 (H, W, 3) RGB or (H, W) gray."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def ring_mask(target: np.ndarray, width: float) -> np.ndarray:
    """bool (H, W): background pixels within ``width`` px (Euclidean) of a target pixel."""
    return (distance_transform_edt(~target) <= width) & ~target


def target_scores(gray: np.ndarray, target: np.ndarray, ring: np.ndarray) -> dict[str, float]:
    """``contrast`` and ``auc`` (see the module doc) of luminance ``gray`` for the two pixel sets."""
    inside, around = gray[target], gray[ring]
    if inside.size == 0 or around.size == 0:
        return {"contrast": float("nan"), "auc": float("nan"), "separability": float("nan")}
    ranks = rankdata(np.concatenate([inside, around]))  # average ranks: ties count half
    u = ranks[: inside.size].sum() - inside.size * (inside.size + 1) / 2.0
    auc = float(u / (inside.size * around.size))
    return {
        "contrast": float((inside.mean() - around.mean()) / 255.0),
        "auc": auc,
        "separability": abs(auc - 0.5) * 2.0,
    }


def class_masks(
    samples: Sequence[Any], ring: float, target: str | None, against: str | None, names: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(target, ring) bool masks per sample: the class ``target`` (None: binary mask 1) and the pixels
    within ``ring`` px of it that are labelled ``against`` (None: any labelled non-target class)."""

    def class_id(name: str) -> int:
        if name not in names:
            raise ValueError(f"class {name!r} is not in the data's classes ({', '.join(names)})")
        return names.index(name)

    target_id = 1 if target is None else class_id(target)
    out = []
    for s in samples:
        inside = s.label == target_id
        around = ring_mask(inside, ring) & (s.label != IGNORE_INDEX)
        if against is not None:
            around &= s.label == class_id(against)
        out.append((inside, around))
    return out


def measure(
    roots: Sequence[Path],
    label_dir: str | None,
    methods: Sequence[str],
    ring: float,
    target: str | None = None,
    against: str | None = None,
    split: str | None = None,
) -> dict:
    """Scores per method and pair for the labelled pairs of ``roots`` (``split`` only, if given): binary
    masks (mask > 0 = target) by default, or class ``target`` against class ``against`` (None: every
    other labelled class) on multi-class labels named by the data's classes.json."""
    pairs = find_labelled_pairs(list(roots), label_dir)
    files = [f for f, sp in zip(pairs.files, pairs.splits, strict=True) if split is None or sp == split]
    if not files:
        raise ValueError(f"no labelled pair of {', '.join(map(str, roots))} is in split {split!r}")
    binary = target is None
    names = [] if binary else list((pairs.classes or {}).get("names") or [])
    num_classes = 2 if binary else len(names)
    if not binary and not names:
        raise ValueError("--target-class needs the data's classes.json (class names)")
    samples = load_samples(files, binary=binary, num_classes=num_classes)
    masks = class_masks(samples, ring, target, against, names)
    report: dict = {
        "pairs": [s.name for s in samples],
        "ring_px": ring,
        "target": target or "mask",
        "against": against or "any other label",
        "methods": {},
    }
    resolved = []  # (row name as given or derived, spec, fuse)
    for text in methods:
        given, spec = split_method_name(text)
        label, fuse = resolve_method(spec)
        resolved.append((given or label, spec, fuse))
    # unique row names (best, best#2): two checkpoints with the same name must not overwrite each other
    names = unique_names([name for name, _, _ in resolved])
    for name, (_, spec, fuse) in zip(names, resolved, strict=True):
        per_pair = [
            target_scores(luminance(fuse(s.name, s.vis, s.ir)), target, around)
            for s, (target, around) in zip(samples, masks, strict=True)
        ]
        report["methods"][name] = {
            "spec": spec,
            "per_pair": per_pair,
            "mean": {k: float(np.nanmean([p[k] for p in per_pair])) for k in SCORES},
        }
    return report


def markdown(report: dict) -> str:
    lines = ["| method | target contrast ↑ | target AUC ↑ | separability ↑ |", "|---|---:|---:|---:|"]
    for name, result in report["methods"].items():
        m = result["mean"]
        lines.append(f"| {name} | {m['contrast']:.4f} | {m['auc']:.4f} | {m['separability']:.4f} |")
    lines.append(
        f"\nMeans over {len(report['pairs'])} masked pairs; ring = background within "
        f"{report['ring_px']:g} px of a target; contrast = (mean target − mean ring luminance) / 255; "
        "AUC = P(target pixel brighter than ring pixel); separability = |AUC − 0.5|·2 (either sign). "
        f"Target: {report['target']}; ring pixels: {report['against']}."
    )
    return "\n".join(lines) + "\n"
