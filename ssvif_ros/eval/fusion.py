"""Fusion metrics of methods on paired folders (the library of ``training/evaluate_fusion.py``).

Methods are :func:`ssvif_ros.fusion.fusers.open_fuser` specs; ``NAME=SPEC`` names a row, and rows whose names
would collide (two ``seed0/best`` checkpoints) get ``#2``, ``#3`` suffixes. :func:`evaluate` writes
``per_image.csv``, ``means.json``, ``table.md`` (methods × metrics, like the paper's Table II) and
``grid.png`` (visible | thermal | each method, for a few pairs).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssvif_ros.data import PairedFolderDataset, manifest_splits
from ssvif_ros.eval.metrics import METRIC_NAMES, evaluate_fusion
from ssvif_ros.eval.report import contact_sheet, labelled
from ssvif_ros.fusion.fusers import open_fuser

HIGHER_IS_BETTER = {
    "EN": True,
    "MI": True,
    "VIF": True,
    "Qabf": True,
    "SSIM": True,
    "MS_SSIM": True,
    "DeltaE": False,
}


def split_method_name(text: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` → (NAME, SPEC) (a row name of your choosing); a plain SPEC → (None, SPEC)."""
    name, sep, spec = text.partition("=")
    if sep and name and "/" not in name and not Path(text).exists():
        return name, spec
    return None, text


def unique_names(labels: Sequence[str]) -> list[str]:
    """Display names made unique (``best``, ``best#2``): two checkpoints never share (or overwrite) a row."""
    out: list[str] = []
    for label in labels:
        name, k = label, 2
        while name in out:
            name, k = f"{label}#{k}", k + 1
        out.append(name)
    return out


def select_indices(dataset: PairedFolderDataset, split: str | None, limit: int | None) -> list[int]:
    """Indices of the pairs to evaluate: those of ``split`` per the manifest (all when None)."""
    indices = list(range(len(dataset)))
    if split is not None:
        splits = manifest_splits(dataset)
        indices = [i for i in indices if splits[i] == split]
        if not indices:
            raise ValueError(f"no pair with split {split!r} in the manifest.csv of {dataset.roots}")
    return indices[:limit] if limit else indices


def markdown_table(means: dict[str, dict[str, float]], count: int) -> str:
    """Methods × metrics, best value per column in bold."""
    best = {}
    for m in METRIC_NAMES:
        values = [r[m] for r in means.values() if not math.isnan(r[m])]
        if values:
            best[m] = max(values) if HIGHER_IS_BETTER[m] else min(values)
    arrows = {m: "↑" if HIGHER_IS_BETTER[m] else "↓" for m in METRIC_NAMES}
    lines = [
        "| method | " + " | ".join(f"{m} {arrows[m]}" for m in METRIC_NAMES) + " | ms/image |",
        "|---|" + "---|" * (len(METRIC_NAMES) + 1),
    ]
    for method, r in means.items():
        cells = []
        for m in METRIC_NAMES:
            text = "n/a" if math.isnan(r[m]) else f"{r[m]:.4f}"
            cells.append(f"**{text}**" if m in best and r[m] == best[m] else text)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {r['ms_per_image']:.1f} |")
    lines.append(f"\nMeans over {count} pairs; SSIM, MS_SSIM, VIF and MI are sums over the two sources.")
    return "\n".join(lines) + "\n"


def evaluate(
    roots: Sequence[Path], methods: Sequence[str], out: Path, split: str | None = None,
    limit: int | None = None, grid_pairs: int = 4, device: str = "cpu",
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Run every method on every selected pair; write the outputs; return the means per method."""
    dataset = PairedFolderDataset(list(roots))
    indices = select_indices(dataset, split, limit)
    named = [split_method_name(text) for text in methods]
    opened = [open_fuser(spec, device=device) for _, spec in named]
    names = unique_names([given or f.name for (given, _), f in zip(named, opened, strict=True)])
    fusers = list(zip(names, opened, strict=True))
    out.mkdir(parents=True, exist_ok=True)
    rows, grid = [], []
    sums: dict[str, dict[str, list[float]]] = {name: {m: [] for m in METRIC_NAMES} for name, _ in fusers}
    seconds = {name: 0.0 for name, _ in fusers}
    for k, i in enumerate(indices):
        sample = dataset.read_arrays(i)
        vis, ir, name = sample["vis"], sample["ir"], dataset.names[i]
        tiles = [labelled(vis, f"visible {name}"), labelled(ir, "thermal")]
        for method, fuse in fusers:
            t0 = time.perf_counter()
            fused = fuse.fuse(vis, ir, name=name).image
            seconds[method] += time.perf_counter() - t0
            scores = evaluate_fusion(vis, ir, fused)
            rows.append({"method": method, "name": name, **scores})
            for m in METRIC_NAMES:
                sums[method][m].append(scores[m])
            if k < grid_pairs:
                tiles.append(labelled(fused, method))
        if k < grid_pairs:
            grid.append([t.resize(grid[0][0].size) if grid else t for t in tiles])
    means = {
        method: {
            **{m: float(np.nanmean(v)) if not all(map(math.isnan, v)) else math.nan for m, v in per.items()},
            "ms_per_image": 1e3 * seconds[method] / len(indices),
        }
        for method, per in sums.items()
    }
    with (out / "per_image.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["method", "name", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(rows)
    summary = {"roots": [str(r) for r in roots], "split": split, "count": len(indices), "means": means}
    (out / "means.json").write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
    (out / "table.md").write_text(markdown_table(means, len(indices)))
    if grid:
        contact_sheet(grid, scale=0.5).save(out / "grid.png")
    return means
