"""The training configuration: defaults, dotted overrides, resume, and the checks that name the key at fault.

``resolve_config`` is the one way to get a run's config (defaults <- YAML file <- overrides, or the saved
``config.yaml`` of a run being resumed); ``check_config`` raises :class:`~ssvif_ros.config.ConfigError`
naming the key and what it must be. Every key is documented beside its default in :data:`DEFAULTS`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from ssvif_ros.config import ConfigError, diff_configs, load_config, parse_override, set_dotted
from ssvif_ros.models.base import PADDINGS
from ssvif_ros.models.guides import GUIDES
from ssvif_ros.train.losses import CSC_BALANCES, FusionLoss

DEFAULTS: dict[str, Any] = {
    "framework": "ssvif",  # ssvif | original (fusion loss, no colour term, no branches) | multitask
    "seed": 0,
    "model": {"name": "lightunet", "color": "rgb", "cfg": {}},  # cfg: factory arguments (free-form)
    "ssvif": {
        "csc": True,  # false: plain fusion training with the SSVIF fusion loss
        "supervision": "csc",  # csc (label-free) | labels (CE + Dice on ground-truth labels: the reference)
        "two_stage": True,  # false: Stage II from epoch 0
        "stage1_max_epochs": None,  # force the switch after this many Stage I epochs (null: off)
        "num_classes": 9,
        "seg_head_hidden": 64,
        "seg_head_padding": "zeros",  # zeros | replicate (the SegHead's 3×3 convs; docs/edge_artefact.md)
        "segformer": "b3",  # preset of ssvif_ros.models.segformer (b0, b3, tiny)
        "segformer_overrides": {},  # SegformerConfig fields (free-form)
        "grad_analysis": False,  # log the projection coefficient of g_csc on g_fusion
        "csc_balance": "none",  # none (the paper's pseudo label) | sinkhorn (classes balanced per batch)
        "csc_marginal_entropy": 0.0,  # weight of the marginal-entropy term on both branches (0: off)
    },
    "multitask": {  # framework=multitask (MultiTaskVIF): one stage, fusion + seg_weight · (CE + Dice)
        "seg_weight": 1.0,
        "shared_trunk": True,  # false: the head reads the backbone's features directly (an ablation)
    },
    "cs2fusion": {  # framework=cs2fusion: backbone loss + contrast_weight · CPN contrastive loss
        "contrast_weight": 1.0,
        "cpn_hidden": 32,
        "rank_alpha": 0.25,
        "impaired": "positive",  # the patch-cut visible pass: positive (the paper) | negative (the code)
        "impaired_weight": 2.0,
        "patches": 4,
        "patch_fraction": 8,  # patch side = crop width / this
    },
    "loss": dataclasses.asdict(FusionLoss()),  # the library's defaults (w_int, w_grad, w_ssim, w_color, …)
    "weighting": {"name": "gdwa", "options": {}, "gdwa_measure_every": 10},
    "data": {
        "roots": [],
        "layout": "auto",
        "exclude_splits": [],  # drop items whose split (a root's manifest.csv) is listed, e.g. [test]
        "exclude_flags": [],  # drop items whose manifest column is true, e.g. [has_binary_mask]
        "val_fraction": 0.1,
        "split_seed": 0,
        "crop": 256,
        "vertical_flip": False,
        "num_workers": 2,
    },
    "training": {
        "batch_size": 10,  # per process
        "max_epochs": 110,
        "max_steps_per_epoch": None,
        "patience": 10,
        "lr": 1e-4,
        "seg_lr": None,  # null: training.lr
        "lr_milestones": [],  # epochs at which every learning rate is multiplied by lr_gamma
        "lr_gamma": 0.1,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "grad_clip": None,  # max gradient norm (null: no clipping)
        "max_nonfinite_steps": 10,
        "checkpoint_every_steps": 500,
        "keep_states": 2,
        "log_every_steps": 10,
    },
    "system": {"device": "auto", "amp": True, "num_threads": 0, "deterministic": False},
    "run": {"dir": None, "tensorboard": True, "progress": True},
    "debug": {
        "stop_after_steps": None,  # os._exit(3) after this global step (resume tests)
        "inject_nan_names": [],  # item names whose visible image becomes NaN ("*": all)
        "log_sample_names": False,  # each rank writes the names it trained on to debug/
        "stop_delay_s": 0.0,  # wait this long at a Ctrl-C's stop point before saving (tests: a slow save)
    },
}


TRUE_WORDS = ("true", "1", "yes")
FRAMEWORKS = ("ssvif", "original", "multitask", "cs2fusion")


OPEN_KEYS = ("model.cfg", "weighting.options", "ssvif.segformer_overrides")


def resolve_config(
    config: Path | None, overrides: list[str], resume: Path | None = None, framework: str | None = None
) -> dict[str, Any]:
    """Defaults <- ``config`` <- ``overrides`` (<- ``framework``), or the saved config of the run folder
    ``resume`` with ``overrides`` on top (reported); then the framework's implications and checks."""
    overrides = list(overrides) + ([f"framework={framework}"] if framework else [])
    if resume is not None:
        saved_path = resume / "config.yaml"
        if not saved_path.is_file():
            raise ConfigError(f"--resume {resume}: {saved_path} is missing (not a run folder?)")
        saved = load_config(saved_path, defaults=DEFAULTS, open_keys=OPEN_KEYS)
        cfg = copy.deepcopy(saved)
        cfg["debug"] = copy.deepcopy(DEFAULTS["debug"])  # debug options never carry over
        for text in overrides:
            key, value = parse_override(text)
            set_dotted(cfg, key, value, open_keys=OPEN_KEYS)
        changed = [k for k in diff_configs(saved, cfg) if not k.startswith("debug.")]
        if changed:
            print(f"resume: overriding {', '.join(changed)} (the run will not match an uninterrupted one)")
        cfg["run"]["dir"] = str(resume)
    else:
        cfg = load_config(config, overrides, defaults=DEFAULTS, open_keys=OPEN_KEYS)
        if cfg["run"]["dir"] is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            cfg["run"]["dir"] = str(Path("runs") / f"{config.stem}-{stamp}")
    cfg["training"]["seg_lr"] = _optional_number(cfg["training"]["seg_lr"], "training.seg_lr")
    check_config(cfg)
    if cfg["framework"] == "original":
        cfg["ssvif"]["csc"] = False
        cfg["loss"]["w_color"] = 0.0
    if cfg["framework"] == "multitask":  # single stage, a fixed weight, labels where the data has them
        cfg["ssvif"].update(csc=True, supervision="labels", two_stage=False)
        cfg["weighting"] = {
            "name": "fixed",
            "options": {"w": cfg["multitask"]["seg_weight"]},
            "gdwa_measure_every": 1,
        }
    if cfg["framework"] == "cs2fusion":  # one stage; the CPN's loss at a fixed weight
        cfg["ssvif"].update(csc=True, supervision="csc", two_stage=False)
        cfg["weighting"] = {
            "name": "fixed",
            "options": {"w": cfg["cs2fusion"]["contrast_weight"]},
            "gdwa_measure_every": 1,
        }
    return cfg


def _optional_number(value: Any, key: str) -> float | None:
    """``None`` or ``value`` as a float (a null default takes anything; PyYAML reads ``2e-4`` as a string)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config: {key} must be null or a number, got {value!r}") from None


def data_class_names(roots: list[str]) -> list[str] | None:
    """The class names of the first root with a ``classes.json`` (the synthetic scenes write one)."""
    for root in roots:
        path = Path(root) / "classes.json"
        if path.is_file():
            names = json.loads(path.read_text()).get("names")
            return [str(n) for n in names] if isinstance(names, list) else None
    return None


def check_config(cfg: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first key whose value cannot work."""

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"config: {key} {what}")

    need(cfg["framework"] in FRAMEWORKS, "framework", f"must be one of {', '.join(FRAMEWORKS)}")
    need(cfg["multitask"]["seg_weight"] >= 0, "multitask.seg_weight", "must be >= 0")
    trunk = cfg["multitask"]["shared_trunk"]
    need(isinstance(trunk, bool), "multitask.shared_trunk", f"must be true or false, got {trunk!r}")
    if cfg["framework"] == "cs2fusion":
        need(
            cfg["model"]["name"] == "cs2fusion" and cfg["model"]["color"] == "y",
            "model",
            "framework=cs2fusion needs model.name=cs2fusion and model.color=y (per-modality features)",
        )
        need(
            cfg["cs2fusion"]["impaired"] in ("positive", "negative"),
            "cs2fusion.impaired",
            "positive|negative",
        )
    need(cfg["model"]["color"] in ("rgb", "y"), "model.color", "must be rgb or y")
    need(cfg["ssvif"]["num_classes"] >= 2, "ssvif.num_classes", "must be >= 2")
    supervision = cfg["ssvif"]["supervision"]
    need(supervision in ("csc", "labels"), "ssvif.supervision", "must be csc or labels")
    need(cfg["ssvif"]["csc_balance"] in CSC_BALANCES, "ssvif.csc_balance", f"must be one of {CSC_BALANCES}")
    need(cfg["ssvif"]["csc_marginal_entropy"] >= 0, "ssvif.csc_marginal_entropy", "must be >= 0")
    padding = cfg["ssvif"]["seg_head_padding"]
    need(padding in PADDINGS, "ssvif.seg_head_padding", f"must be one of {PADDINGS}")
    need(cfg["loss"]["target"] in GUIDES, "loss.target", f"must be one of {GUIDES}")
    if supervision == "labels":
        need(
            cfg["framework"] != "original",
            "ssvif.supervision",
            "labels needs framework=ssvif or multitask (framework=original trains no segmentation branches)",
        )
        need(
            cfg["ssvif"]["csc"],
            "ssvif.supervision",
            "labels needs ssvif.csc=true (the segmentation branches it trains)",
        )
    need(bool(cfg["data"]["roots"]), "data.roots", "must list at least one dataset folder")
    need(cfg["data"]["crop"] >= cfg["loss"]["ssim_win_size"], "data.crop", "must be >= loss.ssim_win_size")
    need(0.0 <= cfg["data"]["val_fraction"] < 1.0, "data.val_fraction", "must be in [0, 1)")
    need(cfg["training"]["batch_size"] >= 1, "training.batch_size", "must be >= 1")
    milestones = cfg["training"]["lr_milestones"]
    need(
        isinstance(milestones, list)
        and all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones),
        "training.lr_milestones",
        f"must be a list of epochs >= 1, got {milestones!r}",
    )
    gamma = cfg["training"]["lr_gamma"]
    need(
        isinstance(gamma, int | float) and not isinstance(gamma, bool) and 0.0 < gamma <= 1.0,
        "training.lr_gamma",
        f"must be a number in (0, 1], got {gamma!r}",
    )
    need(cfg["weighting"]["gdwa_measure_every"] >= 1, "weighting.gdwa_measure_every", "must be >= 1")
    need(cfg["training"]["checkpoint_every_steps"] >= 1, "training.checkpoint_every_steps", "must be >= 1")
    need(cfg["training"]["max_nonfinite_steps"] >= 1, "training.max_nonfinite_steps", "must be >= 1")
    need(cfg["system"]["device"] in ("auto", "cpu", "cuda"), "system.device", "must be auto, cpu or cuda")


def csc_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`~ssvif_ros.train.losses.csc_loss` from the ``ssvif`` section."""
    return {"balance": cfg["ssvif"]["csc_balance"], "marginal_entropy": cfg["ssvif"]["csc_marginal_entropy"]}
