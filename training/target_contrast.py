#!/usr/bin/env python
"""Training-free real check on binary target masks: how well does each method's fused image keep the
thermal targets (people, vehicles) apart from their surroundings?

    python training/target_contrast.py --data ../shared/data/tno_stdfusionnet_masks --label-dir ir_mask \
        --methods visible infrared max SSVIF=ssvif_ros/weights/lightunet_ssvif.safetensors --out out/contrast

Why: a segmentation network trained from scratch on the 20 + 8 masked real pairs beside the project
learns nothing about the targets (RESULTS.md, experiment 3), so the masks are also used directly. For every
masked pair and method, on the fused image's luminance (gray = 0.299R + 0.587G + 0.114B), with the target
pixels T (mask > 0) and a ring R of background pixels within ``--ring`` px of a target:

- ``contrast``: (mean over T − mean over R) / 255, signed (thermal targets are warm, so bright in the
  infrared image);
- ``auc``: the probability that a random target pixel is brighter than a random ring pixel (the
  Mann–Whitney AUC, ties count half): 0.5 = the targets cannot be told from their surroundings by
  brightness, 1 = every target pixel is brighter. Threshold-free and insensitive to the gain.
- ``separability``: |auc − 0.5|·2, whichever is brighter (a dark line on a bright road counts too).

On multi-class labels (the synthetic scenes) ``--target-class lane_marking --against-class road`` scores
one class against another in its ring (``--split train`` for a development subset).

Means over pairs go to ``contrast.json`` and ``contrast.md`` in ``--out``. Methods are the specs of
``training/evaluate_segmentation.py`` (``visible``, ``infrared``, baselines, checkpoints, ``NAME=SPEC``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.stats import rankdata

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package

from ssvif_ros.checkpoint import atomic_write_bytes  # noqa: E402
from ssvif_ros.cli import load_script  # noqa: E402

SCORES = ("contrast", "auc", "separability")
IGNORE_INDEX = 255


def _segeval():
    """training/evaluate_segmentation.py (labelled-pair loading, method resolution) as a module."""
    return load_script(Path(__file__).resolve().with_name("evaluate_segmentation.py"))


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
    seg = _segeval()
    pairs = seg.find_labelled_pairs(list(roots), label_dir)
    files = [f for f, sp in zip(pairs.files, pairs.splits, strict=True) if split is None or sp == split]
    if not files:
        raise ValueError(f"no labelled pair of {', '.join(map(str, roots))} is in split {split!r}")
    binary = target is None
    names = [] if binary else list((pairs.classes or {}).get("names") or [])
    num_classes = 2 if binary else len(names)
    if not binary and not names:
        raise ValueError("--target-class needs the data's classes.json (class names)")
    samples = seg.load_samples(files, binary=binary, num_classes=num_classes)
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
        given, spec = seg.split_method_name(text)
        label, fuse = seg.resolve_method(spec)
        resolved.append((given or label, spec, fuse))
    # unique row names (best, best#2): two checkpoints with the same name must not overwrite each other
    names = seg.unique_labels([name for name, _, _ in resolved])
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="paired folder(s) with masks")
    p.add_argument("--label-dir", help="mask subfolder of each root (e.g. ir_mask, mask_binary)")
    p.add_argument("--methods", nargs="+", required=True, help="method specs (see evaluate_segmentation)")
    p.add_argument("--ring", type=float, default=15.0, help="ring width around the targets, px")
    p.add_argument("--target-class", help="multi-class labels: the target class name (default: binary masks)")
    p.add_argument("--against-class", help="with --target-class: ring pixels of this class only")
    p.add_argument("--split", help="only the pairs of this manifest split (e.g. train, test)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        report = measure(
            args.data,
            args.label_dir,
            args.methods,
            args.ring,
            args.target_class,
            args.against_class,
            args.split,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "contrast.json", json.dumps(report, indent=2).encode())
    table = markdown(report)
    atomic_write_bytes(args.out / "contrast.md", table.encode())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
