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
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssvif_ros.eval.metrics import METRIC_NAMES
from ssvif_ros.train.ablate import (
    VARIANTS,
    Run,
    aggregate,
    evaluate_run,
    markdown,
    parse_list,
    plan_runs,
    read_summary,
    select_variants,
    stage2_start,
    train_command,
)


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
    try:
        models, variants = parse_list(args.models, "--models"), select_variants(args.variants)
        runs = plan_runs(args.out.resolve(), models, variants, seeds)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
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
