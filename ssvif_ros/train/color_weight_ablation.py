"""The colour-weight ablation of the fusion loss (the library of ``training/color_weight_ablation.py``):
short lightunet trainings for each colour weight, evaluated on the MSRS test pairs."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.data import PairedFolderDataset, manifest_splits, train_transform
from ssvif_ros.eval.metrics import evaluate_fusion
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.models import create_model
from ssvif_ros.train.losses import FUSION_TERMS, FusionLoss

METRIC_COLUMNS = ("DeltaE", "SSIM", "MS_SSIM", "Qabf", "VIF", "MI", "EN")
MODEL_NAME = "lightunet"


def manifest_indices(dataset: PairedFolderDataset, split: str) -> list[int]:
    """Indices of ``dataset`` in ``split`` per its roots' ``manifest.csv``; all indices when no item has a
    known split (e.g. RoadScene, which has no official split)."""
    splits = manifest_splits(dataset)
    if all(s is None for s in splits):
        return list(range(len(dataset)))
    indices = [i for i, s in enumerate(splits) if s == split]
    if not indices:
        raise ValueError(f"{dataset.roots[0]}: no pair with split == {split!r} in its manifest.csv")
    return indices


def training_set(roots: Sequence[Path], split: str, crop: int) -> Dataset:
    """The ``split`` pairs of every root (see :func:`manifest_indices`) with random crop + flip.

    Items: ``{"vis": (3,crop,crop), "ir": (1,crop,crop), "name": str}``, float32 in [0,1].
    """
    parts = []
    for root in roots:
        dataset = PairedFolderDataset(root, transform=train_transform(crop))
        parts.append(Subset(dataset, manifest_indices(dataset, split)))
    return ConcatDataset(parts)


def train_fusion_model(
    train_set: Dataset, color_weight: float, steps: int, seed: int, batch_size: int = 8, lr: float = 1e-3
) -> tuple[nn.Module, float, dict[str, float]]:
    """Train a fresh model for ``steps`` Adam steps -> ``(model, seconds, mean unweighted loss terms)``.

    ``torch.manual_seed(seed)`` before building the model fixes both the initial weights and the crops
    (the transforms draw from torch's global generator; ``num_workers=0``), so two calls that differ
    only in ``color_weight`` see exactly the same batches. ``seconds`` is the wall time of the loop,
    data loading included. The terms are averaged over the last quarter of the steps.
    """
    if len(train_set) < batch_size:
        raise ValueError(f"{len(train_set)} training pairs cannot fill one batch of {batch_size}")
    torch.manual_seed(seed)
    model = create_model(MODEL_NAME).train()
    loss_fn = FusionLoss(w_color=color_weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(
        train_set,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )
    tail_start = steps - max(1, steps // 4)
    term_sums = dict.fromkeys(FUSION_TERMS, 0.0)
    step = 0
    start = time.perf_counter()
    while step < steps:
        for batch in loader:
            fused, _ = model(batch["vis"], batch["ir"])
            loss, terms = loss_fn(fused, batch["vis"], batch["ir"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"λ_color={color_weight}: loss {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= tail_start:
                for name in FUSION_TERMS:
                    term_sums[name] += float(terms[name].detach())
            step += 1
            if step == steps:
                break
    seconds = time.perf_counter() - start
    tail = steps - tail_start
    return model.eval(), seconds, {name: total / tail for name, total in term_sums.items()}


def evaluate_weights(
    weights: Path,
    eval_set: PairedFolderDataset,
    indices: Sequence[int],
    save_dir: Path | None = None,
    save_names: Sequence[str] = (),
) -> dict[str, dict[str, float]]:
    """Fuse each evaluation pair at full size with :class:`FusionEngine` -> ``{name: metrics}``.

    Fused images of ``save_names`` are written to ``save_dir/NAME.png``.
    """
    engine = FusionEngine(weights=weights, device="cpu")
    scores: dict[str, dict[str, float]] = {}
    for index in indices:
        name = eval_set.names[index]
        arrays = eval_set.read_arrays(index, load_labels=False)
        fused = engine.fuse(arrays["vis"], arrays["ir"]).image
        scores[name] = evaluate_fusion(arrays["vis"], arrays["ir"], fused)
        if save_dir is not None and name in save_names:
            save_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(fused).save(save_dir / f"{name.replace('/', '_')}.png")
    return scores


def mean_scores(per_image: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the images (NaN stays NaN: MS_SSIM of images under 161 px)."""
    return {key: float(np.mean([s[key] for s in per_image.values()])) for key in METRIC_COLUMNS}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """One row per λ: the metric means and the training seconds."""
    header = ["λ_color", "ΔE ↓", "SSIM ↑", "MS_SSIM ↑", "Qabf ↑", "VIF ↑", "MI ↑", "EN ↑", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        cells = [f"{record['color_weight']:g}"]
        cells += [
            f"{record['metrics'][key]:.4f}" if record["metrics"][key] is not None else "n/a"
            for key in METRIC_COLUMNS
        ]
        cells.append(f"{record['train_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train and evaluate every λ; returns the records (metric means as floats, NaN as None)."""
    torch.set_num_threads(args.threads)
    train_set = training_set(args.train_roots, args.train_split, args.crop)
    eval_set = PairedFolderDataset(args.eval_root)
    eval_indices = manifest_indices(eval_set, args.eval_split)
    records = []
    with tempfile.TemporaryDirectory(prefix="color_ablation_") as tmp:
        checkpoint_dir = args.checkpoint_dir or Path(tmp)
        for color_weight in args.weights_list:
            model, train_seconds, terms = train_fusion_model(
                train_set, color_weight, args.steps, args.seed, args.batch_size, args.lr
            )
            weights = save_checkpoint(
                checkpoint_dir / f"{MODEL_NAME}_color{color_weight:g}.safetensors",
                model,
                meta={"ablation": {"color_weight": color_weight, "steps": args.steps, "seed": args.seed}},
            )
            start = time.perf_counter()
            save_dir = args.save_fused / f"color{color_weight:g}" if args.save_fused else None
            per_image = evaluate_weights(weights, eval_set, eval_indices, save_dir, args.save_names)
            record = {
                "color_weight": color_weight,
                "metrics": mean_scores(per_image),
                "train_seconds": round(train_seconds, 2),
                "eval_seconds": round(time.perf_counter() - start, 2),
                "final_loss_terms": {k: round(v, 5) for k, v in terms.items()},
                "train_pairs": len(train_set),
                "eval_pairs": len(eval_indices),
                "steps": args.steps,
                "seed": args.seed,
                "per_image": per_image,
            }
            record = _json_safe(record)
            print(json.dumps({k: v for k, v in record.items() if k != "per_image"}), flush=True)
            records.append(record)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".json":
            args.out.write_text(json.dumps(records, indent=1) + "\n")
        else:
            args.out.write_text(markdown_table(records))
    return records
