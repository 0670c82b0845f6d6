#!/usr/bin/env python
"""The SSVIF paper's ablations in one command: train every (model, variant, seed), evaluate, tabulate.

    python training/ablate.py --config config/train/shared_cpu.yaml --models lightunet --variants all \
        --out runs/ablate --eval-data ../shared/data/msrs_subset --eval-split test --seeds 0,1 \
        [key=value ...]                       # common overrides, given to every run
    python training/ablate.py ... --dry-run   # print the training commands only

A variant is a named set of ``training/train.py`` arguments on top of the base config (:data:`VARIANTS`).
Each run is a separate ``train.py`` process with ``run.dir=OUT/<model>/<variant>/seed<k>``, so runs are
isolated and the whole ablation is resumable: a run folder with a ``summary.json`` (written by train.py
only when a run ends) is skipped, one holding a saved training state but no summary is continued with
``train.py --resume``. Every finished run's ``best.safetensors`` is then scored by
``evaluate_fusion.evaluate`` on ``--eval-data`` (outputs in ``<run>/eval``; reused when they were made
for the same data and split). ``OUT/ablation.md`` holds one table (rows model/variant; columns the fusion
metric means ± sample std over seeds, training seconds, the epoch Stage II started) and
``OUT/ablation.json`` the same numbers plus every run's summary.

``supervised`` (``ssvif.supervision=labels``) is not an ablation of the paper but the label-supervised
reference (segmentation loss on ground-truth labels instead of CSC, SeAFusion-like): it needs training
folders with a label file for every pair (e.g. synthetic scenes), so leave it out of ``all`` runs on
unlabelled data (``--variants`` lists the others).

Choices: overrides are applied in the order common, variant, then model/seed/run.dir (a variant wins over
a common override of the same key); a failed run is reported in the table and makes the exit status 1,
but the other runs still go ahead; without ``--eval-data`` nothing is evaluated (metric cells read n/a).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package
TRAIN_PY = REPO_ROOT / "training" / "train.py"

from ssvif_ros.cli import comma_list, load_script  # noqa: E402
from ssvif_ros.eval.metrics import METRIC_NAMES  # noqa: E402
from ssvif_ros.train.state import latest_train_state  # noqa: E402

evaluate_fusion = load_script(REPO_ROOT / "training" / "evaluate_fusion.py")

NEW_RECIPE = ("model.cfg.guide=saliency", "loss.target=saliency", "ssvif.csc_balance=sinkhorn")
VARIANTS: dict[str, tuple[str, ...]] = {
    "original": ("framework=original",),  # = train.py --framework original: own loss, no branches/stages
    "ssvif_gdwa": (),  # the full recipe as configured (GDWA by default)
    "fixed": ("weighting.name=fixed",),
    "dwa": ("weighting.name=dwa",),
    "uncertainty": ("weighting.name=uncertainty",),
    "no_csc": ("ssvif.csc=false",),
    "no_two_stage": ("ssvif.two_stage=false",),
    "k15": ("ssvif.num_classes=15",),
    "y_channel": ("model.color=y",),
    "supervised": ("ssvif.supervision=labels",),  # label-supervised reference: needs labelled data
    # issue 14's levers: the saliency guide, the saliency intensity target and the Sinkhorn-balanced CSC
    "new": NEW_RECIPE,
    "new_no_csc": (*NEW_RECIPE, "ssvif.csc=false"),  # the same model and fusion loss, no CSC
    "new_paper_csc": (*NEW_RECIPE, "ssvif.csc_balance=none"),  # CSC balance lever off
    "new_max_guide": (*NEW_RECIPE, "model.cfg.guide=max"),  # guide lever off
    "new_max_target": (*NEW_RECIPE, "loss.target=max"),  # loss lever off
}


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the ablation and where it lives."""

    model: str
    variant: str
    seed: int
    dir: Path

    @property
    def finished(self) -> bool:
        """True when train.py wrote its end-of-run ``summary.json``."""
        return read_summary(self.dir) is not None

    @property
    def resumable(self) -> bool:
        """True when the folder holds a saved training state but the run never finished."""
        return not self.finished and latest_train_state(self.dir / "state") is not None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/summary.json`` with a ``status`` (train.py writes it last), else None."""
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("status") else None


def parse_list(text: str, what: str) -> list[str]:
    items = comma_list(text)
    if not items:
        raise SystemExit(f"error: {what}: empty list")
    return items


def select_variants(text: str) -> list[str]:
    """``"all"`` or ``"a,b"`` -> variant names, each checked against :data:`VARIANTS`."""
    if text == "all":
        return list(VARIANTS)
    names = parse_list(text, "--variants")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: --variants: unknown {unknown}; choose from all or {', '.join(VARIANTS)}")
    return names


def plan_runs(out: Path, models: Sequence[str], variants: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    """Every (model, variant, seed), in that nesting order."""
    return [Run(m, v, s, out / m / v / f"seed{s}") for m in models for v in variants for s in seeds]


def train_command(run: Run, config: Path, common: Sequence[str]) -> list[str]:
    """The train.py command line for ``run``: a fresh run, or ``--resume`` when a state was saved."""
    if run.resumable:
        return [sys.executable, str(TRAIN_PY), "--resume", str(run.dir)]
    return [
        sys.executable, str(TRAIN_PY), "--config", str(config), *common, *VARIANTS[run.variant],
        f"model.name={run.model}", f"seed={run.seed}", f"run.dir={run.dir}",
    ]  # fmt: skip


def stage2_start(run_dir: Path) -> int | None:
    """The first epoch logged as stage 2 in ``metrics.csv`` (None when Stage II never ran)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("stage") == "2":
                return int(row["epoch"])
    return None


def evaluate_run(run: Run, eval_roots: Sequence[Path], split: str | None) -> dict[str, float] | None:
    """Metric means of ``run``'s best checkpoint on the eval data; cached in ``<run>/eval/means.json``."""
    best = run.dir / "best.safetensors"
    if not best.is_file():
        return None
    out = run.dir / "eval"
    roots = [str(r) for r in eval_roots]
    try:
        cached = json.loads((out / "means.json").read_text())
        if cached["roots"] == roots and cached["split"] == split and len(cached["means"]) == 1:
            if (out / "means.json").stat().st_mtime >= best.stat().st_mtime:
                return next(iter(cached["means"].values()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    means = evaluate_fusion.evaluate(eval_roots, [str(best)], out, split=split)
    return next(iter(means.values()))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value) of the finite ``values``."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return math.nan, math.nan
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else math.nan
    return mean, std


def aggregate(runs: Sequence[Run], results: dict[Run, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, variant): metric means/stds over seeds, training time, Stage II start epochs."""
    rows: list[dict[str, Any]] = []
    for key in dict.fromkeys((r.model, r.variant) for r in runs):
        group = [r for r in runs if (r.model, r.variant) == key]
        per_run = [results[r] for r in group]
        metrics = {}
        for m in (*METRIC_NAMES, "ms_per_image"):
            mean, std = _mean_std([p["metrics"][m] for p in per_run if p["metrics"]])
            metrics[m] = {"mean": mean, "std": std}
        wall = _mean_std([p["summary"]["train_wall_s"] for p in per_run if p["summary"]])
        rows.append({
            "model": key[0], "variant": key[1], "overrides": list(VARIANTS[key[1]]),
            "seeds": [r.seed for r in group], "evaluated": sum(1 for p in per_run if p["metrics"]),
            "failed": [r.seed for r, p in zip(group, per_run, strict=True) if p["status"] == "failed"],
            "metrics": metrics, "train_wall_s": {"mean": wall[0], "std": wall[1]},
            "stage2_start_epochs": [p["stage2_start"] for p in per_run],
            "runs": [{"seed": r.seed, "dir": str(r.dir), **results[r]} for r in group],
        })  # fmt: skip
    return rows


def _cell(stat: dict[str, float], digits: int = 4) -> str:
    mean, std = stat["mean"], stat["std"]
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def markdown(rows: Sequence[dict[str, Any]], eval_note: str) -> str:
    """The ablation table: model/variant × metric mean ± std, training seconds, Stage II start epoch."""
    arrows = {m: "↑" if evaluate_fusion.HIGHER_IS_BETTER[m] else "↓" for m in METRIC_NAMES}
    head = [
        "model",
        "variant",
        "seeds",
        *(f"{m} {arrows[m]}" for m in METRIC_NAMES),
        "train s",
        "Stage II from",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        starts = ", ".join("–" if s is None else str(s) for s in row["stage2_start_epochs"])
        seeds = ",".join(map(str, row["seeds"])) + (f" (failed: {row['failed']})" if row["failed"] else "")
        cells = [row["model"], row["variant"], seeds, *(_cell(row["metrics"][m]) for m in METRIC_NAMES)]
        cells += [_cell(row["train_wall_s"], 1), starts]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\n{eval_note} Mean ± sample std over seeds. 'Stage II from': first stage-2 epoch per seed "
        "(– : none). Variants:"
    )
    for row in rows:
        lines.append(f"- `{row['variant']}`: {' '.join(row['overrides']) or '(base config)'}")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, required=True, help="base training config (config/train/*.yaml)")
    p.add_argument("--models", default="lightunet", help="comma-separated model names (model.name)")
    p.add_argument(
        "--variants", default="all", help=f"all, or a comma-separated subset of {', '.join(VARIANTS)}"
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--out", type=Path, required=True, help="ablation folder (runs, ablation.md/.json)")
    p.add_argument(
        "--eval-data", type=Path, action="append", help="paired folder to evaluate on (repeatable)"
    )
    p.add_argument("--eval-split", help="only pairs of this split in the eval folders' manifest.csv")
    p.add_argument("--dry-run", action="store_true", help="print the training commands and stop")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides common to every run")
    args = p.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        p.error(f"overrides must be dotted.key=value, got {bad}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.config.is_file():
        raise SystemExit(f"error: --config {args.config}: no such file")
    try:
        seeds = [int(s) for s in parse_list(args.seeds, "--seeds")]
    except ValueError:
        raise SystemExit(f"error: --seeds: not a comma-separated list of integers: {args.seeds!r}") from None
    runs = plan_runs(args.out.resolve(), parse_list(args.models, "--models"), select_variants(args.variants),
                     seeds)  # fmt: skip
    config = args.config.resolve()

    for run in runs:
        if run.finished:
            print(f"skip {run.dir} (finished)")
            continue
        cmd = train_command(run, config, args.overrides)
        print(("" if args.dry_run else "run: ") + shlex.join(cmd), flush=True)
        if args.dry_run:
            continue
        if subprocess.run(cmd, check=False).returncode != 0 or not run.finished:
            print(f"warning: {run.model}/{run.variant}/seed{run.seed} failed ({run.dir})", file=sys.stderr)
    if args.dry_run:
        return 0

    results: dict[Run, dict[str, Any]] = {}
    eval_roots = [r.resolve() for r in args.eval_data] if args.eval_data else None
    for run in runs:
        summary = read_summary(run.dir)
        metrics = evaluate_run(run, eval_roots, args.eval_split) if summary and eval_roots else None
        results[run] = {
            "status": "finished" if summary else "failed",
            "summary": summary,
            "stage2_start": stage2_start(run.dir),
            "metrics": metrics,
        }
    rows = aggregate(runs, results)
    eval_note = (
        f"Fusion metrics of each run's best.safetensors on {', '.join(map(str, args.eval_data))}"
        f"{f' (split {args.eval_split})' if args.eval_split else ''}."
        if eval_roots
        else "Not evaluated (no --eval-data)."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, eval_note)
    (args.out / "ablation.md").write_text(table)
    record = {
        "config": str(config), "common_overrides": list(args.overrides),
        "eval": {"roots": [str(r) for r in eval_roots or []], "split": args.eval_split},
        "metric_names": list(METRIC_NAMES), "rows": rows,
    }  # fmt: skip
    (args.out / "ablation.json").write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    print(table)
    print(f"table and numbers in {args.out}/ablation.md and ablation.json")
    return 1 if any(row["failed"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
