"""Where a learned-guide lightunet shows the thermal image: the mean of its blend weight per labelled class.

lightunet's learned guide is ``pyramid + w · (thermal − pyramid)`` with ``w`` (B,1,H,W) in [0, 1] predicted
by its features (:class:`ssvif_ros.models.lightunet.LuminanceDecoder`). Averaged over each class's pixels of
labelled scenes, ``w`` says which classes the model takes from the thermal camera; beside it, the weight of
the saliency rule its fusion target pulls towards (:meth:`SaliencyRule.thermal_saliency`, before the halo
step; the checkpoint's ``loss.target`` picks the ring or the sides surround). A diagnostic for model cards
and RESULTS.md, not a quality measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ssvif_ros.checkpoint import load_checkpoint
from ssvif_ros.data import to_tensors
from ssvif_ros.eval.probe import IGNORE, load_labelled
from ssvif_ros.models.guides import SaliencyRule
from ssvif_ros.models.lightunet import LEARNED_GUIDE, LuminanceDecoder


def has_learned_guide(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a lightunet whose luminance decoder blends towards the thermal image."""
    decoder = getattr(model, "decoder", None)
    return isinstance(decoder, LuminanceDecoder) and decoder.guide == LEARNED_GUIDE


def learned_thermal_weight(model: torch.nn.Module, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """The learned guide's thermal weight (B,1,H,W) in [0, 1] for ``vis`` (B,3,H,W) and ``ir`` (B,1,H,W),
    from the features the model's own forward hands its decoder; ValueError without a learned guide."""
    if not has_learned_guide(model):
        raise ValueError("the model has no learned guide (lightunet, guide=learned, correction=luminance)")
    with torch.inference_mode():
        _, features = model(vis, ir)
        return model.decoder.thermal_weight(model.decoder.squeeze(features), ir)


def target_rule(meta: dict) -> tuple[str, SaliencyRule]:
    """(name, rule) of the saliency rule the checkpoint's fusion target used: the ring one unless its
    sidecar's config says ``loss.target: saliency_sides``."""
    target = (meta.get("config") or {}).get("loss", {}).get("target")
    if target == "saliency_sides":
        return "saliency_sides", SaliencyRule(surround="sides")
    return "saliency", SaliencyRule()


def weight_per_class(
    weights: Path, roots: Sequence[Path], class_names: Sequence[str], split: str | None = None,
    limit: int | None = None,
) -> dict:  # fmt: skip
    """``{"pairs", "rule", "classes": [{"id", "name", "learned", "rule", "scenes"}]}``: per class, the mean
    over the scenes that contain it of the scene's mean weight on that class (each scene counts once);
    pixels labelled 255 are ignored; ValueError for a label id with no name."""
    checkpoint = load_checkpoint(weights)
    model = checkpoint.model.eval()
    if not has_learned_guide(model):
        raise ValueError(f"{weights}: no learned guide (lightunet, guide=learned, correction=luminance)")
    rule_name, rule = target_rule(checkpoint.meta)
    learned: dict[int, list[float]] = {}
    ruled: dict[int, list[float]] = {}
    samples = load_labelled(roots, split, limit)
    for sample in samples:
        tensors = to_tensors(sample)
        vis, ir = tensors["vis"][None], tensors["ir"][None]
        w_learned = learned_thermal_weight(model, vis, ir)[0, 0].numpy()
        w_rule = rule.thermal_saliency(ir)[0][0, 0].numpy()
        label = np.asarray(sample["label"])
        for c in (int(c) for c in np.unique(label) if c != IGNORE):
            if c >= len(class_names):
                raise ValueError(f"label id {c} has no name ({len(class_names)} names given)")
            learned.setdefault(c, []).append(float(w_learned[label == c].mean()))
            ruled.setdefault(c, []).append(float(w_rule[label == c].mean()))
    rows = [
        {"id": c, "name": class_names[c], "learned": float(np.mean(learned[c])),
         "rule": float(np.mean(ruled[c])), "scenes": len(learned[c])}
        for c in sorted(learned)
    ]  # fmt: skip
    return {"pairs": len(samples), "rule": rule_name, "classes": rows}


def markdown(report: dict) -> str:
    """One row per class, highest learned weight first."""
    lines = [
        f"| class | learned thermal weight | {report['rule']} rule's weight | scenes |",
        "|---|---:|---:|---:|",
    ]
    for row in sorted(report["classes"], key=lambda r: -r["learned"]):
        lines.append(f"| {row['name']} | {row['learned']:.3f} | {row['rule']:.3f} | {row['scenes']} |")
    return "\n".join(lines)
