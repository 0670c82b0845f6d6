"""The paper's ablations as runs (the library of ``training/ablate.py``, whose docstring says how runs are
planned, resumed, evaluated and tabulated): variants, run folders, train commands and the table."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssvif_ros.cli import comma_list
from ssvif_ros.eval.fusion import HIGHER_IS_BETTER, evaluate
from ssvif_ros.eval.metrics import METRIC_NAMES
from ssvif_ros.train.state import latest_train_state

TRAIN_PY = Path(__file__).resolve().parents[2] / "training" / "train.py"  # run as a process per run


NEW_RECIPE = ("model.cfg.guide=saliency", "loss.target=saliency", "ssvif.csc_balance=sinkhorn")
LUMINANCE_MODEL = ("model.cfg.correction=luminance", "model.cfg.padding=replicate")
LEARNED_GUIDE_MODEL = (*NEW_RECIPE, *LUMINANCE_MODEL, "model.cfg.guide=learned")  # the shipped default's
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
    # the default's image model (luminance decoder, replicate-padded encoder; the head's padding stays the
    # base config's: the protocol scores the fused images) on its rule, and with the rule's thermal blend
    # learned (guide: learned), the fusion target the rule with the ring or the sides surround; the widths
    # are the base config's (the factory (16, 32, 64) in cpu_budget.yaml, where RESULTS ran them)
    "new_luminance": (*NEW_RECIPE, *LUMINANCE_MODEL),
    "new_learned_guide": LEARNED_GUIDE_MODEL,
    "new_learned_guide_sides": (*LEARNED_GUIDE_MODEL, "loss.target=saliency_sides"),
    # the learned guide at widths (8, 16, 32), the eighth session's default: >= 20 fps at 480x640 on one
    # ONNX Runtime thread (25.7 measured, issue 14; the shipped default widens the stem to 16)
    "new_learned_guide_narrow": (*LEARNED_GUIDE_MODEL, "model.cfg.widths=[8,16,32]"),
    # issue 16: MultiTaskVIF (supervised, one stage) with the same fusion recipe; needs labelled data
    "multitask": ("framework=multitask", "model.cfg.guide=saliency", "loss.target=saliency"),
    # issue 16: CS2Fusion (self-supervised, contrastive) in luminance with the paper's two learning rates;
    # run it with --models cs2fusion (its framework needs that model's per-modality features)
    "cs2fusion": (
        "framework=cs2fusion",
        "model.color=y",
        "training.lr=2e-3",
        "training.seg_lr=2e-4",
    ),
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
        raise ValueError(f"{what}: empty list")
    return items


def select_variants(text: str) -> list[str]:
    """``"all"`` or ``"a,b"`` -> variant names, each checked against :data:`VARIANTS`."""
    if text == "all":
        return list(VARIANTS)
    names = parse_list(text, "--variants")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; choose from all or {', '.join(VARIANTS)}")
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
    means = evaluate(eval_roots, [str(best)], out, split=split)
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
    arrows = {m: "↑" if HIGHER_IS_BETTER[m] else "↓" for m in METRIC_NAMES}
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
