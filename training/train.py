#!/usr/bin/env python
"""Train a fusion model with the SSVIF recipe (or plainly) on CPU or CUDA, in one process or under torchrun.

    python training/train.py --config config/train/tiny.yaml [dotted.key=value ...]
    python training/train.py --resume runs/tiny-20250101-120000        # continue a killed run exactly
    python training/train.py --config config/train/msrs.yaml --framework original
    torchrun --nproc_per_node 2 training/train.py --config config/train/msrs.yaml

The recipe (SSVIF, arXiv 2509.22450)
------------------------------------
- Stage I: the fusion model alone, on the fusion loss (:class:`ssvif_ros.train.losses.FusionLoss`). At the end
  of every Stage I epoch the mean training fusion loss is compared with the previous epoch's: when it
  rises, Stage II starts with the next epoch. ``ssvif.stage1_max_epochs`` forces the switch after that
  many Stage I epochs (tests; an upper bound on long runs); it is ``null`` (off) in the paper configs.
  Chosen here: Stage I also ends when the validation loss has not improved for ``training.patience``
  epochs (early stopping would otherwise end a run that never saw Stage II).
- Stage II: fusion model + feature-level SegHead (on the fused features) + SegFormer (on the fused
  image), the two branches from scratch, on ``L_fusion + w·L_CSC`` with
  ``L_CSC = csc_loss(seg_head(features), segformer(fused))``. Segmentation labels are never read
  (``ssvif.supervision: csc``, the default): the dataset is built with ``load_labels=False`` and items
  are read with ``load_labels=False``.
- ``ssvif.supervision: labels`` (default ``csc``): the label-supervised reference (SeAFusion-like, for
  segmentation on fused images of labelled scenes). The Stage II task loss is then
  ``supervised_seg_loss(seg_head(features), segformer(fused), labels)``: the same CE + soft Dice per
  branch as CSC, against the ground-truth labels (255 = ignore) instead of the pseudo label. The
  dataset (training and validation split) is built with ``load_labels=True``, labels are cropped and
  flipped with the images, and every used label file is checked once before training (missing label
  folder or file, class id >= ``ssvif.num_classes`` other than 255: a data error naming the file).
  Everything else (stages, weighting, checkpoints) is unchanged; the supervised loss is logged in the
  ``csc`` columns (``train_csc``, ``val_csc``, ``csc``, ``grad_norm_csc``, ``gn_csc``) and
  ``teacher_a`` stays empty. Needs the segmentation branches: not with ``ssvif.csc: false`` or
  ``framework: original`` (config errors).
- ``w`` is set once per epoch by the weighting scheme (:mod:`ssvif_ros.train.weighting`; default GDWA). GDWA
  needs the norms of the gradients of the unweighted fusion and CSC losses on the fusion model's
  parameters: measured with ``task_grad_norms`` on steps ``step % weighting.gdwa_measure_every == 0``
  (two extra backward passes each time, so every 10th step costs about 3 backward passes instead of 1;
  ``bench/train_step.py`` reports the amortised cost), epoch means passed to ``end_epoch``.
- ``ssvif.grad_analysis``: on the same measuring steps, log the projection coefficient
  ``(g_csc·g_fus)/|g_fus|²`` on the fusion model's parameters, and its running mean over the run.
- Switches: ``ssvif.csc: false`` (plain fusion training, no branches), ``ssvif.two_stage: false`` (Stage
  II from epoch 0), ``ssvif.supervision`` (csc or labels, above), ``ssvif.num_classes`` (9 MSRS, 15 FMB),
  ``model.color`` (rgb or y),
  ``weighting.name`` (fixed, dwa, uncertainty, gdwa), ``framework: original`` (the fusion model with its
  own loss alone: the fusion loss without the colour term, no branches, no stages).

Choices where the paper is silent (each one is a config key)
-------------------------------------------------------------
- Validation loss: the loss of the current stage on the validation split (centre crops of
  ``data.crop``, no flips): Stage I ``L_fusion``; Stage II ``L_fusion + w·L_CSC`` with this epoch's
  ``w`` (``weights()["csc"]``, the fusion weight normalised to 1, also for uncertainty weighting).
  Early stopping (``training.patience`` epochs without improvement) and ``best.safetensors`` follow it;
  at the switch to Stage II the best value and the patience counter are reset (the two stages optimise
  different objectives), so ``best.safetensors`` ends up a Stage II model whenever Stage II ran.
  With ``data.val_fraction: 0`` the training epoch mean is watched instead.
- Optimiser: one Adam over every parameter (seg branches and uncertainty ``log_vars`` included: they get
  no gradient, hence no update and no Adam state, before Stage II); constant learning rate.
- Data order and augmentation depend only on ``(seed, epoch, item)``: a DistributedSampler permutation
  per epoch, and the crop/flip of each item drawn from a generator seeded by (seed, epoch, index), so
  neither the number of loader workers nor a resume changes them.
- A non-finite loss (or, without AMP, gradient norm) skips the optimiser step (BatchNorm statistics of
  that forward pass are rolled back too) with a message naming the batch; ``training.max_nonfinite_steps``
  consecutive ones stop the run (exit status 2). Under DDP the decision is all-reduced, so every rank
  skips together. With AMP, inf gradients are the GradScaler's business (it skips and lowers the scale).
- DDP (torchrun): ``training.batch_size`` is per process; epoch means (losses, gradient norms for
  GDWA) are all-reduced, so every rank takes the same stage, weighting and stopping decisions; the
  ``steps``/``skipped_steps`` columns count steps summed over ranks; per-step rows and the projection
  coefficient are rank 0's. The uncertainty ``log_vars`` are not under DDP: their gradients are averaged
  by hand. Logs and stage numbers: 1 = fusion only (also every epoch with ``csc: false``), 2 = joint.

Run folder (``run.dir``; default ``runs/<config name>-<time>``)
----------------------------------------------------------------
``config.yaml`` (resolved), ``last.safetensors``/``.json`` and ``best.safetensors``/``.json`` (fusion
model + SegHead via :func:`ssvif_ros.checkpoint.save_checkpoint`; the sidecar holds the config, epoch,
step, stage, weighting state, best validation loss), ``state/e{epoch}-s{step}.safetensors``/``.json``
(everything for an exact resume: all weights incl. SegFormer, optimizer, scaler, weighting, trainer
counters, each rank's RNG states; :mod:`ssvif_ros.train.state`), ``metrics.csv`` (one row per epoch),
``steps.csv`` (every ``training.log_every_steps`` steps, rank 0's batches), ``tensorboard/``,
``curves.png`` and ``summary.json`` at the end. Only rank 0 writes (``debug/`` excepted).

``--resume RUN_DIR`` reloads ``RUN_DIR/config.yaml`` (the ``debug`` section reset to its defaults; further
``key=value`` overrides are applied and reported) and the newest committed state, then continues from
the exact batch where it was saved. Exactness needs the same number of processes and threads, and on
CUDA ``system.deterministic: true``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import datetime
import hashlib
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package

from ssvif_ros.checkpoint import save_checkpoint  # noqa: E402
from ssvif_ros.config import (  # noqa: E402
    ConfigError,
    diff_configs,
    dump_config,
    load_config,
    parse_override,
    set_dotted,
)
from ssvif_ros.data import (  # noqa: E402
    DatasetError,
    PairedFolderDataset,
    PairingError,
    manifest_column,
    manifest_splits,
    read_label,
    split_train_val,
    to_tensors,
    train_transform,
)
from ssvif_ros.models import SegHead, create_model  # noqa: E402
from ssvif_ros.models.guides import GUIDES  # noqa: E402
from ssvif_ros.train.losses import CSC_BALANCES, FusionLoss, csc_loss, supervised_seg_loss  # noqa: E402
from ssvif_ros.train.state import (  # noqa: E402
    capture_rng_state,
    flatten_state,
    latest_train_state,
    load_train_state,
    prune_train_states,
    restore_rng_state,
    save_train_state,
    unflatten_state,
)
from ssvif_ros.train.weighting import (  # noqa: E402
    create_weighting,
    projection_coefficient,
    task_grad_norms,
    task_gradients,
)

DEFAULTS: dict[str, Any] = {
    "framework": "ssvif",  # ssvif | original (fusion loss without colour term, no branches, no stages)
    "seed": 0,
    "model": {"name": "lightunet", "color": "rgb", "cfg": {}},  # cfg: factory arguments (free-form)
    "ssvif": {
        "csc": True,  # false: plain fusion training with the SSVIF fusion loss
        "supervision": "csc",  # csc (label-free) | labels (CE + Dice on ground-truth labels: the reference)
        "two_stage": True,  # false: Stage II from epoch 0
        "stage1_max_epochs": None,  # force the switch after this many Stage I epochs (null: off)
        "num_classes": 9,
        "seg_head_hidden": 64,
        "segformer": "b3",  # preset of ssvif_ros.models.segformer (b0, b3, tiny)
        "segformer_overrides": {},  # SegformerConfig fields (free-form)
        "grad_analysis": False,  # log the projection coefficient of g_csc on g_fusion
        "csc_balance": "none",  # none (the paper's pseudo label) | sinkhorn (classes balanced per batch)
        "csc_marginal_entropy": 0.0,  # weight of the marginal-entropy term on both branches (0: off)
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
    },
}
TRUE_WORDS = ("true", "1", "yes")
OPEN_KEYS = ("model.cfg", "weighting.options", "ssvif.segformer_overrides")
LOSS_KEYS = ("total", "fusion", "int", "grad", "ssim", "color", "csc", "agreement", "teacher_a")
EPOCH_COLUMNS = (
    "epoch", "stage", "w", "lr", "steps", "skipped_steps",
    *(f"train_{k}" for k in LOSS_KEYS), "val_loss", "val_fusion", "val_csc",
    "grad_norm_fusion", "grad_norm_csc", "proj_coef_mean", "best_val_loss", "bad_epochs",
    "images_per_s", "epoch_time_s",
)  # fmt: skip
STEP_COLUMNS = (
    "global_step", "epoch", "step", "stage", "w", "lr", *LOSS_KEYS, "grad_norm",
    "gn_fusion", "gn_csc", "proj_coef", "proj_coef_mean", "images_per_s",
)  # fmt: skip


RANK_LOCAL_KEYS = ("sums", "proj_sum", "proj_count")
"""Trainer-state entries that differ between ranks (saved per rank); the rest is the same everywhere."""


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a non-finite loss."""


# ----------------------------------------------------------------------------------------- config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="YAML config (config/train/*.yaml)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--framework", choices=("ssvif", "original"), help="shortcut for framework=...")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    args = parser.parse_args(argv)
    if (args.config is None) == (args.resume is None):
        parser.error("give exactly one of --config FILE or --resume RUN_DIR")
    return args


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults <- file <- overrides (<- --framework), then the framework's implications and checks."""
    overrides = list(args.overrides) + ([f"framework={args.framework}"] if args.framework else [])
    if args.resume is not None:
        saved_path = args.resume / "config.yaml"
        if not saved_path.is_file():
            raise ConfigError(f"--resume {args.resume}: {saved_path} is missing (not a run folder?)")
        saved = load_config(saved_path, defaults=DEFAULTS, open_keys=OPEN_KEYS)
        cfg = copy.deepcopy(saved)
        cfg["debug"] = copy.deepcopy(DEFAULTS["debug"])  # debug options never carry over
        for text in overrides:
            key, value = parse_override(text)
            set_dotted(cfg, key, value, open_keys=OPEN_KEYS)
        changed = [k for k in diff_configs(saved, cfg) if not k.startswith("debug.")]
        if changed:
            print(f"resume: overriding {', '.join(changed)} (the run will not match an uninterrupted one)")
        cfg["run"]["dir"] = str(args.resume)
    else:
        cfg = load_config(args.config, overrides, defaults=DEFAULTS, open_keys=OPEN_KEYS)
        if cfg["run"]["dir"] is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            cfg["run"]["dir"] = str(Path("runs") / f"{args.config.stem}-{stamp}")
    _check_config(cfg)
    if cfg["framework"] == "original":
        cfg["ssvif"]["csc"] = False
        cfg["loss"]["w_color"] = 0.0
    return cfg


def _check_config(cfg: dict[str, Any]) -> None:
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"config: {key} {what}")

    need(cfg["framework"] in ("ssvif", "original"), "framework", "must be ssvif or original")
    need(cfg["model"]["color"] in ("rgb", "y"), "model.color", "must be rgb or y")
    need(cfg["ssvif"]["num_classes"] >= 2, "ssvif.num_classes", "must be >= 2")
    supervision = cfg["ssvif"]["supervision"]
    need(supervision in ("csc", "labels"), "ssvif.supervision", "must be csc or labels")
    need(cfg["ssvif"]["csc_balance"] in CSC_BALANCES, "ssvif.csc_balance", f"must be one of {CSC_BALANCES}")
    need(cfg["ssvif"]["csc_marginal_entropy"] >= 0, "ssvif.csc_marginal_entropy", "must be >= 0")
    need(cfg["loss"]["target"] in GUIDES, "loss.target", f"must be one of {GUIDES}")
    if supervision == "labels":
        need(
            cfg["framework"] == "ssvif",
            "ssvif.supervision",
            "labels needs framework=ssvif (framework=original trains no segmentation branches)",
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
    need(cfg["weighting"]["gdwa_measure_every"] >= 1, "weighting.gdwa_measure_every", "must be >= 1")
    need(cfg["training"]["checkpoint_every_steps"] >= 1, "training.checkpoint_every_steps", "must be >= 1")
    need(cfg["training"]["max_nonfinite_steps"] >= 1, "training.max_nonfinite_steps", "must be >= 1")
    need(cfg["system"]["device"] in ("auto", "cpu", "cuda"), "system.device", "must be auto, cpu or cuda")


# ------------------------------------------------------------------------------------ distributed


class Dist:
    """Rank, world size and device of this process (``world == 1`` without torchrun)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        wanted = cfg["system"]["device"]
        use_cuda = torch.cuda.is_available() if wanted == "auto" else wanted == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise RuntimeError("system.device is cuda but torch sees no CUDA device")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1:
            backend = "nccl" if use_cuda else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
        self.main = self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def wrap_ddp(d: Dist, module: nn.Module) -> nn.Module:
    """DistributedDataParallel around ``module`` under torchrun; the module itself otherwise."""
    if d.world == 1:
        return module
    # SegFormer's depthwise convs produce channels-last-like grads: harmless, but warned on every step.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(module, device_ids=[d.local_rank] if d.device.type == "cuda" else None)


def log(d: Dist, message: str) -> None:
    if d.main:
        tqdm.write(message)


# ------------------------------------------------------------------------------------------- data


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one item's augmentation, a function of (seed, epoch, index) only."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def center_crop(sample: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Deterministic validation crop: reflect-pad to at least ``size``, then the centre ``size``×``size``."""
    out = {}
    for key, array in sample.items():
        h, w = array.shape[:2]
        ph, pw = max(size - h, 0), max(size - w, 0)
        if ph or pw:
            pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (array.ndim - 2)
            array = np.pad(array, pad, mode="reflect" if min(h, w) > 1 else "edge")
            h, w = array.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        out[key] = array[top : top + size, left : left + size]
    return out


class PairItems(Dataset):
    """Items of ``base`` at ``indices``, addressed by ``(epoch, position)`` keys from the sampler.

    Training items get ``train_transform`` (random crop + flip) seeded by (seed, epoch, index): the same
    crops whatever the worker count or a resume. Validation items get :func:`center_crop`. Item:
    ``{"vis": (3,c,c), "ir": (1,c,c), "name": str}``, plus ``"label": int64 (c,c)`` (cropped and flipped
    with the images) with ``ssvif.supervision: labels``; otherwise labels are never read.
    """

    def __init__(
        self, base: PairedFolderDataset, indices: list[int], cfg: dict[str, Any], train: bool
    ) -> None:
        self.base, self.indices, self.train = base, indices, train
        self.crop, self.seed = int(cfg["data"]["crop"]), int(cfg["seed"])
        self.transform = train_transform(self.crop, vertical_flip=cfg["data"]["vertical_flip"])
        self.nan_names = set(cfg["debug"]["inject_nan_names"])
        self.load_labels = cfg["ssvif"]["supervision"] == "labels"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, position = key
        index = self.indices[position]
        arrays = self.base.read_arrays(index, load_labels=self.load_labels)
        if self.train:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(item_seed(self.seed, epoch, index))
                arrays = self.transform(arrays)
        else:
            arrays = center_crop(arrays, self.crop)
        item: dict[str, Any] = dict(to_tensors(arrays))
        item["name"] = self.base.names[index]
        if "*" in self.nan_names or item["name"] in self.nan_names:
            item["vis"] = torch.full_like(item["vis"], float("nan"))
        return item


def csc_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`csc_loss` from the ``ssvif`` section."""
    return {"balance": cfg["ssvif"]["csc_balance"], "marginal_entropy": cfg["ssvif"]["csc_marginal_entropy"]}


def manifest_excluded(ds: PairedFolderDataset, splits: list[str], flags: list[str] = ()) -> set[int]:
    """Indices whose ``split`` in their root's ``manifest.csv`` is in ``splits``, or whose column named in
    ``flags`` reads true (e.g. ``has_binary_mask``: pairs kept for evaluation); unlisted items are kept."""
    excluded = {i for i, split in enumerate(manifest_splits(ds)) if split is not None and split in splits}
    for column in flags:
        values = manifest_column(ds, column)
        excluded |= {i for i, v in enumerate(values) if v is not None and v.strip().lower() in TRUE_WORDS}
    return excluded


def check_label_ids(base: PairedFolderDataset, indices: list[int], num_classes: int) -> None:
    """Read the label file of every item at ``indices`` once; raise :class:`DatasetError` listing the files
    with class ids >= ``num_classes`` other than 255 (ignore), before any training step."""
    problems = []
    for index in indices:
        path = base.pairs[index].label
        ids = np.unique(read_label(path))
        bad = ids[(ids >= num_classes) & (ids != 255)]
        if bad.size:
            problems.append(f"{path}: class id(s) {bad.tolist()} >= ssvif.num_classes={num_classes}")
    if problems:
        listed = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DatasetError(
            f"ssvif.supervision=labels: {len(problems)} label file(s) hold ids outside 0..{num_classes - 1} "
            "and 255 (ignore); set ssvif.num_classes to the data's class count or remap the labels:\n  "
            + "\n  ".join(listed)
        )


def build_data(cfg: dict[str, Any]) -> tuple[PairItems, PairItems, list[str]]:
    """Train and validation items (the 9:1 split by name hash, ``split_train_val``) and excluded names.

    Labels are listed (and their ids checked) only with ``ssvif.supervision: labels``."""
    data = cfg["data"]
    supervised = cfg["ssvif"]["supervision"] == "labels"
    try:
        base = PairedFolderDataset(data["roots"], layout=data["layout"], load_labels=supervised)
    except PairingError as e:
        if not supervised:
            raise
        raise DatasetError(f"ssvif.supervision=labels needs a label file for every pair: {e}") from e
    excluded = manifest_excluded(base, list(data["exclude_splits"]), list(data["exclude_flags"]))
    kept = [i for i in range(len(base)) if i not in excluded]
    names = [base.names[i] for i in kept]
    if data["val_fraction"] > 0:
        train_pos, val_pos = split_train_val(names, data["val_fraction"], seed=data["split_seed"])
    else:
        train_pos, val_pos = list(range(len(kept))), []
    unknown = sorted(set(cfg["debug"]["inject_nan_names"]) - set(base.names) - {"*"})
    if unknown:
        raise ConfigError(
            f"debug.inject_nan_names: no item named {unknown} (names look like {base.names[0]!r})"
        )
    train = PairItems(base, [kept[p] for p in train_pos], cfg, train=True)
    val = PairItems(base, [kept[p] for p in val_pos], cfg, train=False)
    if supervised:
        check_label_ids(base, train.indices + val.indices, cfg["ssvif"]["num_classes"])
    return train, val, sorted(base.names[i] for i in excluded)


def loader_for(
    items: PairItems, keys: list[tuple[int, int]], cfg: dict[str, Any], drop_last: bool
) -> DataLoader:
    """A DataLoader over explicit item keys; its own generator so it never draws from the global RNG."""
    return DataLoader(
        items,
        batch_size=cfg["training"]["batch_size"],
        sampler=keys,
        num_workers=cfg["data"]["num_workers"],
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),
    )


# -------------------------------------------------------------------------------------- logging


class CsvLog:
    """Append-only CSV with a fixed header; on resume, rows past the resume point are dropped."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_row: Any = None) -> None:
        self.path, self.columns = path, columns
        rows = []
        if path.is_file() and keep_row is not None:
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if keep_row(r)]
        if keep_row is not None or not path.is_file():
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _fmt(row.get(k)) for k in self.columns})


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def plot_curves(metrics_csv: Path, out_png: Path, task_title: str = "cross-segmentation consistency") -> None:
    """Loss, CSC (``task_title``: the Stage II task loss) and w curves per epoch with the stage switch
    marked (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with metrics_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return

    def col(name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else math.nan for r in rows]

    epochs = col("epoch")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in ("train_total", "train_fusion", "val_loss", "val_fusion"):
        axes[0].plot(epochs, col(name), marker=".", label=name)
    axes[0].set_title("loss")
    for name in ("train_csc", "val_csc", "train_agreement"):
        axes[1].plot(epochs, col(name), marker=".", label=name)
    axes[1].set_title(task_title)
    for name in ("w", "proj_coef_mean"):
        axes[2].plot(epochs, col(name), marker=".", label=name)
    axes[2].set_title("CSC weight w, projection coefficient")
    stages = col("stage")
    switch = next((e for e, s in zip(epochs, stages, strict=True) if s == 2), None)
    for ax in axes:
        if switch is not None and switch > epochs[0]:
            ax.axvline(switch - 0.5, color="gray", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------- checkpoints


def _unwrap(module: nn.Module | None) -> nn.Module | None:
    return module.module if isinstance(module, DistributedDataParallel) else module


def save_run(
    d: Dist,
    run_dir: Path,
    cfg: dict[str, Any],
    ts: dict[str, Any],
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    weighting: Any,
) -> None:
    """Write the resumable state and ``last.safetensors``.

    Collective: every rank sends its RNG states and its rank-local counters (its share of the epoch sums).
    """
    gathered = d.gather((capture_rng_state(), {k: ts[k] for k in RANK_LOCAL_KEYS}))
    if not d.main:
        return
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    opt_tensors, opt_tree = flatten_state(opt.state_dict(), "optimizer.")
    tensors.update(opt_tensors)
    rng_meta = []
    for rank, ((rng_tensors, meta), _) in enumerate(gathered):
        tensors.update({f"rng.{rank}.{k}": v for k, v in rng_tensors.items()})
        rng_meta.append(meta)
    name = f"e{ts['epoch']:04d}-s{ts['step_in_epoch']:06d}"
    meta = {
        "config": cfg,
        "trainer": ts,
        "optimizer": opt_tree,
        "scaler": scaler.state_dict(),
        "weighting": weighting.state_dict() if weighting is not None else None,
        "rng": rng_meta,
        "rank_local": [local for _, local in gathered],
        "world_size": d.world,
        "modules": sorted(modules),
    }
    save_train_state(run_dir / "state" / name, tensors, meta)
    save_checkpoint(
        run_dir / "last.safetensors",
        modules["model"],
        modules.get("seg_head") if ts["stage"] == 2 else None,
        _sidecar_meta(cfg, ts, weighting, name, d),
    )
    prune_train_states(run_dir / "state", keep=cfg["training"]["keep_states"])


def _sidecar_meta(
    cfg: dict[str, Any], ts: dict[str, Any], weighting: Any, state: str | None, d: Dist
) -> dict:
    return {
        "config": cfg,
        "epoch": ts["epoch"],
        "step": ts["global_step"],
        "stage": ts["stage"],
        "weighting": weighting.state_dict() if weighting is not None else None,
        "best_val_loss": ts["best_val"],
        "val_loss": ts.get("last_val"),
        "train_state": f"state/{state}" if state else None,
        "device": str(d.device),
        "trained_by": "training/train.py",
    }


def load_run(
    d: Dist,
    run_dir: Path,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    weighting: Any,
) -> dict[str, Any] | None:
    """Restore the newest committed state of ``run_dir`` into the given objects; returns the trainer state."""
    path = latest_train_state(run_dir / "state")
    if path is None:
        return None
    tensors, meta = load_train_state(path)
    if meta["world_size"] != d.world:
        raise RuntimeError(
            f"{path}: saved by {meta['world_size']} process(es), resumed with {d.world}; "
            "resume with the same --nproc_per_node"
        )
    if sorted(modules) != meta["modules"]:
        raise RuntimeError(f"{path}: holds modules {meta['modules']}, this config builds {sorted(modules)}")
    for prefix, module in modules.items():
        state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        module.load_state_dict(state, strict=True)
    opt.load_state_dict(unflatten_state(meta["optimizer"], tensors))
    scaler.load_state_dict(meta["scaler"])
    if weighting is not None:
        weighting.load_state_dict(meta["weighting"])
    rank_prefix = f"rng.{d.rank}."
    restore_rng_state(
        {k[len(rank_prefix) :]: v for k, v in tensors.items() if k.startswith(rank_prefix)},
        meta["rng"][d.rank],
    )
    log(d, f"resumed from {path} (epoch {meta['trainer']['epoch']}, step {meta['trainer']['step_in_epoch']})")
    return {**meta["trainer"], **meta["rank_local"][d.rank]}


# ------------------------------------------------------------------------------------------ main


def new_trainer_state(cfg: dict[str, Any]) -> dict[str, Any]:
    """Counters of the loop; JSON, saved in every state (None stands for +inf)."""
    joint_from_start = cfg["ssvif"]["csc"] and not cfg["ssvif"]["two_stage"]
    return {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "stage": 2 if joint_from_start else 1,
        "switch_epoch": 0 if joint_from_start else None,
        "stage1_losses": [],
        "best_val": None,
        "bad_epochs": 0,
        "last_val": None,
        "nonfinite_run": 0,
        "sums": dict.fromkeys((*LOSS_KEYS, "steps", "skipped", "gn_fusion", "gn_csc", "gn_count"), 0.0),
        "proj_sum": 0.0,
        "proj_count": 0,
        "finished": None,
        "wall_s": 0.0,
    }


@torch.no_grad()
def validate(
    d: Dist,
    items: PairItems,
    cfg: dict[str, Any],
    model: nn.Module,
    seg_head: nn.Module | None,
    segformer: nn.Module | None,
    fusion_loss: FusionLoss,
    joint: bool,
    use_amp: bool,
    supervised: bool = False,
) -> dict[str, float]:
    """Mean fusion and CSC losses over the validation split (each rank takes every world-th item).

    With ``supervised`` the "csc" entry is the label-supervised loss (:func:`supervised_seg_loss`)."""
    keys = [(0, p) for p in range(d.rank, len(items), d.world)]
    sums = [0.0, 0.0, 0.0]
    for m in (model, seg_head, segformer):
        if m is not None:
            m.eval()
    for batch in loader_for(items, keys, cfg, drop_last=False):
        vis, ir = batch["vis"].to(d.device), batch["ir"].to(d.device)
        with torch.autocast(d.device.type, dtype=torch.float16, enabled=use_amp):
            fused, features = model(vis, ir)
            if joint:
                logits_head = seg_head(features, tuple(fused.shape[-2:]))
                logits_segformer = segformer(fused)
        n = vis.shape[0]
        sums[0] += float(fusion_loss(fused.float(), vis, ir)[0]) * n
        if joint and supervised:
            labels = batch["label"].to(d.device)
            sums[1] += float(supervised_seg_loss(logits_head, logits_segformer, labels)[0]) * n
        elif joint:
            sums[1] += float(csc_loss(logits_head, logits_segformer, **csc_options(cfg))[0]) * n
        sums[2] += n
    for m in (model, seg_head, segformer):
        if m is not None:
            m.train()
    fus, csc, n = d.sum(sums)
    return {"fusion": fus / n, "csc": csc / n if joint else math.nan} if n else {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = resolve_config(args)
    d = Dist(cfg)
    cfg["run"]["dir"] = d.broadcast(cfg["run"]["dir"])  # a time-stamped default must be the same everywhere
    threads = cfg["system"]["num_threads"]
    if threads == 0 and d.device.type == "cpu" and d.world > 1:
        threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", d.world)))
    if threads > 0:
        torch.set_num_threads(threads)
    if cfg["system"]["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    run_dir = Path(cfg["run"]["dir"])
    resuming = args.resume is not None
    if not resuming and latest_train_state(run_dir / "state") is not None:
        raise SystemExit(f"error: {run_dir} already holds a run; use --resume {run_dir} or another run.dir")
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
    t_start = time.perf_counter()

    # -- data: labels are never read (load_labels=False everywhere) unless ssvif.supervision is labels
    supervised = cfg["ssvif"]["supervision"] == "labels"
    train_items, val_items, excluded = build_data(cfg)
    bs, world = cfg["training"]["batch_size"], d.world
    sampler = DistributedSampler(train_items, num_replicas=world, rank=d.rank, shuffle=True, seed=cfg["seed"])
    steps_per_epoch = len(sampler) // bs
    if cfg["training"]["max_steps_per_epoch"] is not None:
        steps_per_epoch = min(steps_per_epoch, cfg["training"]["max_steps_per_epoch"])
    if steps_per_epoch == 0:
        raise SystemExit(
            f"error: the training split has {len(train_items)} pairs, fewer than training.batch_size "
            f"({bs}) x {world} process(es): no full batch"
        )
    log(
        d,
        f"data: {len(train_items)} train / {len(val_items)} val pairs from {cfg['data']['roots']}"
        + (f", {len(excluded)} excluded by data.exclude_splits/exclude_flags" if excluded else "")
        + f"; {steps_per_epoch} steps of {bs} x {world} per epoch",
    )

    # -- models, losses, weighting, optimizer (the same seed on every rank: identical initial weights)
    torch.manual_seed(cfg["seed"])
    csc_on, K = cfg["ssvif"]["csc"], cfg["ssvif"]["num_classes"]
    model = create_model(cfg["model"]["name"], color=cfg["model"]["color"], **cfg["model"]["cfg"])
    model.to(d.device)
    modules: dict[str, nn.Module] = {"model": model}
    seg_head = segformer = weighting = None
    if csc_on:
        from ssvif_ros.models.segformer import build_segformer  # pulls in transformers: only when needed

        seg_head = SegHead(model.feature_channels, K, cfg["ssvif"]["seg_head_hidden"]).to(d.device)
        segformer = build_segformer(cfg["ssvif"]["segformer"], K, **cfg["ssvif"]["segformer_overrides"])
        segformer.to(d.device)
        weighting = create_weighting(cfg["weighting"]["name"], **cfg["weighting"]["options"])
        modules.update(seg_head=seg_head, segformer=segformer)
        if isinstance(weighting, nn.Module):  # uncertainty: learnable log-variances (saved in its JSON state)
            weighting.to(d.device)
    fusion_loss = FusionLoss(**cfg["loss"])
    tr = cfg["training"]
    groups = [{"params": list(model.parameters()), "name": "model"}]
    if csc_on:
        seg_params = list(seg_head.parameters()) + list(segformer.parameters())
        groups.append({"params": seg_params, "lr": tr["seg_lr"] or tr["lr"], "name": "seg"})
        if isinstance(weighting, nn.Module):
            groups.append({"params": list(weighting.parameters()), "name": "weighting"})
    opt = torch.optim.Adam(groups, lr=tr["lr"], betas=tuple(tr["betas"]), weight_decay=tr["weight_decay"])
    use_amp = d.device.type == "cuda" and cfg["system"]["amp"]
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    all_params = [p for g in opt.param_groups for p in g["params"]]
    shared_params = [p for p in model.parameters() if p.requires_grad]
    buffers = [b for m in modules.values() for b in m.buffers()]

    ts = load_run(d, run_dir, modules, opt, scaler, weighting) if resuming else None
    if resuming and ts is None:
        log(d, f"{run_dir}/state holds no committed state: starting from scratch")
    if ts is None:
        ts = new_trainer_state(cfg)
        # dropout / drop-path streams differ per rank; numpy and random are unused but seeded all the same
        torch.manual_seed(cfg["seed"] + 1 + d.rank)
        np.random.seed(cfg["seed"] + 1 + d.rank)  # noqa: NPY002
        random.seed(cfg["seed"] + 1 + d.rank)
    if str(ts["finished"]).startswith("training.max_epochs") and ts["epoch"] < tr["max_epochs"]:
        ts["finished"] = None  # resumed with a larger training.max_epochs: carry on
    if ts["finished"]:
        log(d, f"{run_dir}: the run already finished ({ts['finished']}); nothing to do")
        return 0
    model_t = wrap_ddp(d, model)
    seg_head_t, segformer_t = (wrap_ddp(d, seg_head), wrap_ddp(d, segformer)) if csc_on else (None, None)

    # -- logging (rank 0)
    writer = None
    if d.main:
        resume_epoch, resume_step = ts["epoch"], ts["global_step"]
        metrics = CsvLog(run_dir / "metrics.csv", EPOCH_COLUMNS, lambda r: int(r["epoch"]) < resume_epoch)
        steps_log = CsvLog(
            run_dir / "steps.csv", STEP_COLUMNS, lambda r: int(r["global_step"]) <= resume_step
        )
        if cfg["run"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=ts["global_step"] or None)
    if cfg["debug"]["log_sample_names"]:
        (run_dir / "debug").mkdir(parents=True, exist_ok=True)
    measure_every = cfg["weighting"]["gdwa_measure_every"]
    needs_gn = csc_on and weighting.needs_grad_norms
    analysis = csc_on and cfg["ssvif"]["grad_analysis"]
    stop_after = cfg["debug"]["stop_after_steps"]
    stop_reason = switch_reason = None

    # ================================================================================ the loop
    for epoch in range(ts["epoch"], tr["max_epochs"]):
        joint = ts["stage"] == 2
        w = weighting.weights()["csc"] if joint else 0.0
        lr = opt.param_groups[0]["lr"]
        sampler.set_epoch(epoch)
        positions = list(sampler)[: steps_per_epoch * bs]
        start = ts["step_in_epoch"]
        keys = [(epoch, p) for p in positions[start * bs :]]
        sums = ts["sums"]
        bar = tqdm(
            total=steps_per_epoch,
            initial=start,
            desc=f"epoch {epoch} stage {ts['stage']}",
            disable=not (d.main and cfg["run"]["progress"]),
            leave=False,
            dynamic_ncols=True,
        )
        t_epoch = time.perf_counter()
        for step, batch in enumerate(loader_for(train_items, keys, cfg, drop_last=True), start=start):
            t_step = time.perf_counter()
            vis = batch["vis"].to(d.device, non_blocking=True)
            ir = batch["ir"].to(d.device, non_blocking=True)
            if cfg["debug"]["log_sample_names"]:
                with (run_dir / "debug" / f"samples-rank{d.rank}.txt").open("a") as f:
                    f.write("".join(f"{epoch} {step} {n}\n" for n in batch["name"]))
            saved_buffers = [b.detach().clone() for b in buffers]  # to undo BN updates of a bad batch

            # forward: fusion, then (Stage II) both segmentation branches; losses in float32
            with torch.autocast(d.device.type, dtype=torch.float16, enabled=use_amp):
                fused, features = model_t(vis, ir)
                if joint:
                    logits_head = seg_head_t(features, tuple(fused.shape[-2:]))
                    logits_segformer = segformer_t(fused)
            l_fusion, terms = fusion_loss(fused.float(), vis, ir)
            if joint and supervised:  # the label-supervised reference: its loss takes the CSC's place
                labels = batch["label"].to(d.device, non_blocking=True)
                l_csc, info = supervised_seg_loss(logits_head, logits_segformer, labels)
                total = weighting.combine({"fusion": l_fusion, "csc": l_csc})
                extra = [l_csc.detach(), info["agreement"], torch.zeros((), device=d.device)]
            elif joint:
                l_csc, info = csc_loss(logits_head, logits_segformer, **csc_options(cfg))
                total = weighting.combine({"fusion": l_fusion, "csc": l_csc})
                extra = [l_csc.detach(), info["agreement"], info["teacher_a_fraction"]]
            else:
                total, extra = l_fusion, [torch.zeros((), device=d.device)] * 3
            parts = [total, l_fusion, *(terms[k] for k in ("int", "grad", "ssim", "color")), *extra]
            values = torch.stack([v.detach().float() for v in parts]).double().cpu().tolist()  # one sync
            local_bad = not all(math.isfinite(v) for v in values)
            bad = d.sum([float(local_bad)])[0] > 0

            # gradient norms (GDWA) and the projection coefficient, on the fusion model's parameters
            gn: dict[str, float] = {}
            proj = None
            if joint and not bad and step % measure_every == 0 and (needs_gn or analysis):
                scale = scaler.get_scale() if use_amp else 1.0  # fp16 gradients need the loss scale
                task_losses = {"fusion": l_fusion * scale, "csc": l_csc * scale}
                if analysis:
                    g = task_gradients(task_losses, shared_params)
                    gn = {
                        k: float(torch.linalg.vector_norm(v, dtype=torch.float64)) / scale
                        for k, v in g.items()
                    }
                    if gn["fusion"] > 0 and all(math.isfinite(v) for v in gn.values()):
                        proj = projection_coefficient(g["csc"], g["fusion"])
                        ts["proj_sum"] += proj
                        ts["proj_count"] += 1
                else:
                    gn = {k: v / scale for k, v in task_grad_norms(task_losses, shared_params).items()}
                if all(math.isfinite(v) for v in gn.values()):
                    sums["gn_fusion"] += gn["fusion"]
                    sums["gn_csc"] += gn["csc"]
                    sums["gn_count"] += 1

            # backward and step, unless the loss (or, without AMP, the gradient) is not finite
            grad_norm, bad_loss = math.nan, bad
            if not bad:
                scaler.scale(total).backward()
                if world > 1 and joint and isinstance(weighting, nn.Module):  # not under DDP: average by hand
                    for p in weighting.parameters():
                        dist.all_reduce(p.grad)
                        p.grad /= world
                scaler.unscale_(opt)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(all_params, tr["grad_clip"] or math.inf))
                bad = not use_amp and not math.isfinite(grad_norm)
                if not bad:
                    scaler.step(opt)
                    scaler.update()
            opt.zero_grad(set_to_none=True)
            if bad:
                with torch.no_grad():
                    for b, saved in zip(buffers, saved_buffers, strict=True):
                        b.copy_(saved)
                ts["nonfinite_run"] += 1
                sums["skipped"] += 1
                what = "loss" if bad_loss else f"gradient norm ({grad_norm})"
                if local_bad or (d.main and not bad_loss):
                    tqdm.write(
                        f"warning: non-finite {what} at epoch {epoch}, step {step} "
                        f"(global {ts['global_step']}){f', rank {d.rank}' if world > 1 else ''}; "
                        f"images {list(batch['name'])}: optimizer step skipped "
                        f"({ts['nonfinite_run']} in a row, limit {tr['max_nonfinite_steps']})",
                        file=sys.stderr,
                    )
                if ts["nonfinite_run"] >= tr["max_nonfinite_steps"]:
                    raise NonFiniteLossError(
                        f"{ts['nonfinite_run']} consecutive non-finite steps (training.max_nonfinite_steps="
                        f"{tr['max_nonfinite_steps']}); last at epoch {epoch}, step {step}, images "
                        f"{list(batch['name'])}. Check the data (python -m ssvif_ros.data.check) "
                        "and lower training.lr"
                    )
            else:
                ts["nonfinite_run"] = 0
                for k, v in zip(LOSS_KEYS, values, strict=True):
                    sums[k] += v
                sums["steps"] += 1

            ts["step_in_epoch"] = step + 1
            ts["global_step"] += 1
            bar.update(1)
            images_per_s = bs * world / max(time.perf_counter() - t_step, 1e-9)
            if d.main and (ts["global_step"] % tr["log_every_steps"] == 0 or proj is not None):
                row = {
                    "global_step": ts["global_step"],
                    "epoch": epoch,
                    "step": step,
                    "stage": ts["stage"],
                    "w": w,
                    "lr": lr,
                    **dict(zip(LOSS_KEYS, values, strict=True)),
                    "grad_norm": grad_norm,
                    "gn_fusion": gn.get("fusion"),
                    "gn_csc": gn.get("csc"),
                    "proj_coef": proj,
                    "proj_coef_mean": ts["proj_sum"] / ts["proj_count"] if ts["proj_count"] else None,
                    "images_per_s": images_per_s,
                }
                if not joint:
                    for k in ("csc", "agreement", "teacher_a"):
                        row[k] = None
                elif supervised:
                    row["teacher_a"] = None  # no pseudo label, no teacher
                steps_log.write(row)
                if writer is not None:
                    for k, v in row.items():
                        if k not in ("global_step", "epoch", "step") and v is not None and math.isfinite(v):
                            writer.add_scalar(f"step/{k}", v, ts["global_step"])
                bar.set_postfix(loss=f"{values[0]:.4g}", w=f"{w:.3g}")
            if ts["global_step"] % tr["checkpoint_every_steps"] == 0:
                save_run(d, run_dir, cfg, ts, modules, opt, scaler, weighting)
            if stop_after is not None and ts["global_step"] >= stop_after:
                bar.close()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(3)  # debug: die like a killed process (no cleanup, no final checkpoint)
        bar.close()

        # -- end of epoch: reduce over ranks, validate, weighting, stage switch, early stopping
        keys_sum = [*LOSS_KEYS, "steps", "skipped", "gn_fusion", "gn_csc", "gn_count"]
        reduced = dict(zip(keys_sum, d.sum([sums[k] for k in keys_sum]), strict=True))
        n_ok = reduced["steps"]
        mean = {k: reduced[k] / n_ok if n_ok else math.nan for k in LOSS_KEYS}
        gn_mean = (
            {k: reduced[f"gn_{k}"] / reduced["gn_count"] for k in ("fusion", "csc")}
            if reduced["gn_count"]
            else None
        )
        train_time = time.perf_counter() - t_epoch
        val = validate(d, val_items, cfg, model, seg_head, segformer, fusion_loss, joint, use_amp, supervised)
        w_val = weighting.weights()["csc"] if joint else 0.0  # = w, except for learned (uncertainty) weights
        if val:
            val_loss = val["fusion"] + (w_val * val["csc"] if joint else 0.0)
        else:
            val_loss = mean["total"]
        best = math.inf if ts["best_val"] is None else ts["best_val"]
        improved = math.isfinite(val_loss) and val_loss < best
        ts["last_val"] = val_loss if math.isfinite(val_loss) else None
        if improved:
            ts["best_val"], ts["bad_epochs"] = val_loss, 0
        else:
            ts["bad_epochs"] += 1
        epoch_time = time.perf_counter() - t_epoch
        row = {
            "epoch": epoch,
            "stage": ts["stage"],
            "w": w if joint else None,
            "lr": lr,
            "steps": int(n_ok),
            "skipped_steps": int(reduced["skipped"]),
            **{f"train_{k}": mean[k] for k in LOSS_KEYS},
            "val_loss": val_loss,
            "val_fusion": val.get("fusion"),
            "val_csc": val.get("csc") if joint else None,
            "grad_norm_fusion": gn_mean["fusion"] if gn_mean else None,
            "grad_norm_csc": gn_mean["csc"] if gn_mean else None,
            "proj_coef_mean": ts["proj_sum"] / ts["proj_count"] if ts["proj_count"] else None,
            "best_val_loss": ts["best_val"],
            "bad_epochs": ts["bad_epochs"],
            "images_per_s": (steps_per_epoch - start) * bs * world / max(train_time, 1e-9),
            "epoch_time_s": epoch_time,
        }
        if not joint:
            for k in ("train_csc", "train_agreement", "train_teacher_a"):
                row[k] = None
        elif supervised:
            row["train_teacher_a"] = None

        if joint:
            if n_ok == 0 or (needs_gn and gn_mean is None):
                log(d, f"warning: epoch {epoch}: no usable loss/gradient measurements; w stays {w:.4g}")
            else:
                weighting.end_epoch(
                    {"fusion": mean["fusion"], "csc": mean["csc"]}, gn_mean if needs_gn else None
                )
        elif csc_on and math.isfinite(mean["fusion"]):  # Stage I: switch when the fusion loss rises
            ts["stage1_losses"].append(mean["fusion"])
            history, cap = ts["stage1_losses"], cfg["ssvif"]["stage1_max_epochs"]
            if len(history) >= 2 and history[-1] > history[-2]:
                switch_reason = f"the mean fusion loss rose ({history[-2]:.5g} -> {history[-1]:.5g})"
            elif cap is not None and len(history) >= cap:
                switch_reason = f"ssvif.stage1_max_epochs={cap} reached"
            elif ts["bad_epochs"] >= tr["patience"]:
                switch_reason = f"the validation loss did not improve for {tr['patience']} epochs"
            if switch_reason:
                ts.update(stage=2, switch_epoch=epoch + 1, best_val=None, bad_epochs=0)
        if ts["bad_epochs"] >= tr["patience"]:
            stop_reason = f"early stopping: no validation improvement for {tr['patience']} epochs"

        if d.main:
            metrics.write(row)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and v is not None and math.isfinite(v):
                        writer.add_scalar(f"epoch/{k}", v, epoch)
                writer.flush()
            task = "seg (labels)" if supervised else "csc"
            csc_text = f", {task} {mean['csc']:.4g}, w {w:.4g}" if joint else ""
            log(
                d,
                f"epoch {epoch} stage {row['stage']}: train {mean['total']:.5g} (fusion {mean['fusion']:.5g}"
                f"{csc_text}), val {val_loss:.5g}{' *' if improved else ''}, {row['images_per_s']:.1f} img/s",
            )
        if switch_reason:
            log(d, f"Stage I -> Stage II from epoch {epoch + 1}: {switch_reason}")
            switch_reason = None
        if improved and d.main:
            save_checkpoint(
                run_dir / "best.safetensors",
                model,
                seg_head if joint else None,
                _sidecar_meta(cfg, {**ts, "epoch": epoch + 1}, weighting, None, d),
            )
        ts.update(epoch=epoch + 1, step_in_epoch=0, sums=dict.fromkeys(sums, 0.0))
        ts["wall_s"] += time.perf_counter() - t_epoch
        if stop_reason or epoch + 1 == tr["max_epochs"]:
            ts["finished"] = stop_reason or f"training.max_epochs={tr['max_epochs']} reached"
        save_run(d, run_dir, cfg, ts, modules, opt, scaler, weighting)
        if stop_reason:
            log(d, stop_reason)
            break

    # -- the end: curves and a summary
    if d.main:
        if writer is not None:
            writer.close()
        plot_curves(
            run_dir / "metrics.csv",
            run_dir / "curves.png",
            "supervised segmentation (labels)" if supervised else "cross-segmentation consistency",
        )
        summary = {
            "status": ts["finished"],
            "epochs": ts["epoch"],
            "global_step": ts["global_step"],
            "stage": ts["stage"],
            "switch_epoch": ts["switch_epoch"],
            "best_val_loss": ts["best_val"],
            "proj_coef_mean": ts["proj_sum"] / ts["proj_count"] if ts["proj_count"] else None,
            "train_wall_s": ts["wall_s"],
            "process_wall_s": time.perf_counter() - t_start,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log(d, f"done: {ts['finished']}; best validation loss {ts['best_val']}; run folder {run_dir}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def entry(argv: list[str] | None = None) -> int:
    """``main`` with config/data errors and the non-finite stop turned into exit status 2 and one line."""
    try:
        return main(argv)
    except (ConfigError, DatasetError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        if dist.is_initialized():
            dist.destroy_process_group()
        return 2


if __name__ == "__main__":
    sys.exit(entry())
