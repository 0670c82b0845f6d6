"""Evaluate fusion methods on paired folders: the seven fusion metrics per image and as means.

    python training/evaluate_fusion.py --data ../shared/data/msrs_subset --split test \
        --methods runs/x/best.safetensors laplacian max average path/to/fused_folder --out results/msrs

A method is a checkpoint (``.safetensors`` with its sidecar), a classic baseline name (average, max,
laplacian), or a folder of already-fused images named like the pairs; ``NAME=SPEC`` names its row, and
rows whose names would collide (two ``seed0/best`` checkpoints) get ``#2``, ``#3`` suffixes. Writes
``per_image.csv``, ``means.json``, ``table.md`` (methods × metrics, like the paper's Table II) and
``grid.png`` (visible | thermal | each method, for a few pairs) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package

from ssvif_ros.data import PairedFolderDataset, manifest_splits  # noqa: E402
from ssvif_ros.data.image_files import read_visible  # noqa: E402
from ssvif_ros.eval.metrics import METRIC_NAMES, evaluate_fusion  # noqa: E402
from ssvif_ros.fusion.baselines import BASELINES, fuse_baseline  # noqa: E402
from ssvif_ros.tools.demo import contact_sheet, labelled  # noqa: E402

Fuser = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
HIGHER_IS_BETTER = {
    "EN": True,
    "MI": True,
    "VIF": True,
    "Qabf": True,
    "SSIM": True,
    "MS_SSIM": True,
    "DeltaE": False,
}


def make_method(spec: str, device: str = "cpu") -> tuple[str, Fuser]:
    """(display name, fuse(name, vis, ir) -> fused) for a checkpoint path, a baseline name or a folder."""
    if spec in BASELINES:
        return spec, lambda name, vis, ir: fuse_baseline(spec, vis, ir)
    path = Path(spec)
    if path.suffix == ".safetensors":
        from ssvif_ros.fusion.engine import FusionEngine

        engine = FusionEngine(weights=path, device=device)
        label = path.stem if path.parent == Path(".") else f"{path.parent.name}/{path.stem}"
        return label, lambda name, vis, ir: engine.fuse(vis, ir).image
    if path.is_dir():

        def from_folder(name: str, vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
            matches = [p for p in path.glob(f"{name}.*") if p.suffix.lower() in (".png", ".jpg", ".bmp")]
            if not matches:
                raise FileNotFoundError(f"{path}: no fused image for pair {name!r}")
            fused = read_visible(matches[0])
            if fused.shape[:2] != vis.shape[:2]:
                raise ValueError(
                    f"{matches[0]}: size {fused.shape[:2]} differs from the pair's {vis.shape[:2]}"
                )
            return fused

        return path.name, from_folder
    raise SystemExit(f"method {spec!r} is neither a baseline ({', '.join(BASELINES)}), a .safetensors "
                     f"checkpoint nor a folder of fused images")  # fmt: skip


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
            raise SystemExit(f"no pair with split {split!r} in the manifest.csv of {dataset.roots}")
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
    made = [make_method(spec, device) for _, spec in named]
    names = unique_names([given or label for (given, _), (label, _) in zip(named, made, strict=True)])
    fusers = [(name, fuse) for name, (_, fuse) in zip(names, made, strict=True)]
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
            fused = fuse(name, vis, ir)
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="paired dataset folder(s)")
    p.add_argument(
        "--methods", nargs="+", required=True, help="checkpoints, baseline names or fused folders; NAME=SPEC"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", help="only pairs of this split in the folders' manifest.csv (e.g. test)")
    p.add_argument("--limit", type=int, help="evaluate the first N pairs only")
    p.add_argument("--grid-pairs", type=int, default=4, help="pairs shown in grid.png")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    evaluate(args.data, args.methods, args.out, args.split, args.limit, args.grid_pairs, args.device)
    print((args.out / "table.md").read_text())
    print(f"per-image scores, means and grid in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
