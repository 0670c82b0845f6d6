"""The trainer: set-up, one step, validation, the end of an epoch, save and exact resume.

``Trainer(cfg).fit()`` runs the recipe that ``training/train.py``'s docstring describes (stages, weighting,
non-finite steps, early stopping, checkpoints, DDP). What is trained on top of the fusion loss comes from a
:class:`~ssvif_ros.train.frameworks.TrainingFramework`; the loop's counters are a :class:`TrainerState`,
saved in every training state, so a killed run continues from the exact batch where it was saved.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.config import ConfigError, dump_config
from ssvif_ros.data import DatasetError
from ssvif_ros.models import create_model
from ssvif_ros.train.config import data_class_names
from ssvif_ros.train.data import build_data, check_roots, loader_for, make_synthetic_roots
from ssvif_ros.train.dist import Dist, log, wrap_ddp
from ssvif_ros.train.frameworks import StepLosses, TrainingFramework, framework_for
from ssvif_ros.train.interrupt import StopOnInterrupt, TrainingInterrupted
from ssvif_ros.train.runlog import EPOCH_COLUMNS, LOSS_KEYS, STEP_COLUMNS, CsvLog, plot_curves
from ssvif_ros.train.state import (
    capture_rng_state,
    flatten_state,
    latest_train_state,
    load_train_state,
    prune_train_states,
    restore_rng_state,
    save_train_state,
    unflatten_state,
)
from ssvif_ros.train.weighting import (
    create_weighting,
    projection_coefficient,
    task_grad_norms,
    task_gradients,
)

SUM_KEYS = (*LOSS_KEYS, "steps", "skipped", "gn_fusion", "gn_csc", "gn_count")
RANK_LOCAL_KEYS = ("sums", "proj_sum", "proj_count")
"""Trainer-state entries that differ between ranks (saved per rank); the rest is the same everywhere."""


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps with a non-finite loss."""


@dataclass
class TrainerState:
    """The loop's counters; saved as JSON in every training state (None stands for +inf or "not yet")."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    stage: int = 1  # 1 = fusion only, 2 = joint (fusion + the framework's task)
    switch_epoch: int | None = None
    stage1_losses: list[float] = field(default_factory=list)
    best_val: float | None = None
    best_val_task_weight: float | None = None  # the task weight best_val was computed with (Stage II)
    bad_epochs: int = 0
    last_val: float | None = None
    nonfinite_run: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SUM_KEYS, 0.0))  # this epoch
    proj_sum: float = 0.0
    proj_count: int = 0
    finished: str | None = None
    wall_s: float = 0.0

    @classmethod
    def start(cls, cfg: dict[str, Any]) -> TrainerState:
        """A new run's state: Stage II from epoch 0 with ``ssvif.two_stage: false``."""
        joint_from_start = cfg["ssvif"]["csc"] and not cfg["ssvif"]["two_stage"]
        return cls(stage=2 if joint_from_start else 1, switch_epoch=0 if joint_from_start else None)

    @property
    def proj_coef_mean(self) -> float | None:
        """Running mean of the projection coefficient over the run (``ssvif.grad_analysis``)."""
        return self.proj_sum / self.proj_count if self.proj_count else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def rank_local(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RANK_LOCAL_KEYS}


@dataclass
class StepRecord:
    """What one training step measured (losses as floats, one host sync) for the logs and epoch sums."""

    values: list[float]  # LOSS_KEYS order
    grad_norm: float
    gn: dict[str, float]
    proj: float | None
    images_per_s: float


class Trainer:
    """One training run of ``cfg`` (resolved by :func:`ssvif_ros.train.config.resolve_config`).

    ``resume``: continue the run in ``cfg["run"]["dir"]`` from its newest committed state (a fresh start
    when it holds none). Raises :class:`ConfigError` / :class:`DatasetError` for what cannot work, before
    the run folder is made. ``stop``: its first SIGINT ends :meth:`fit` at the next step boundary with the
    state saved (:class:`TrainingInterrupted`).
    """

    def __init__(
        self, cfg: dict[str, Any], resume: bool = False, stop: StopOnInterrupt | None = None
    ) -> None:
        self.cfg, self.tr, self.stop = cfg, cfg["training"], stop
        self.d = Dist(cfg)
        cfg["run"]["dir"] = self.d.broadcast(cfg["run"]["dir"])  # a time-stamped default must be shared
        self._set_threads()
        self.run_dir = Path(cfg["run"]["dir"])
        if not resume and latest_train_state(self.run_dir / "state") is not None:
            raise ConfigError(
                f"{self.run_dir} already holds a run; use --resume {self.run_dir} or another run.dir"
            )
        self.t_start = time.perf_counter()
        self._build_data()
        self._build_modules()
        self._build_optimiser()
        self.state = self._restore(resume)
        self.created_dir = self.d.main and not self.run_dir.exists()
        if self.d.main:  # only now: a start that fails during set-up leaves no run folder behind
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_config(cfg))

    # ------------------------------------------------------------------------------------------ set-up

    def _set_threads(self) -> None:
        cfg, d = self.cfg, self.d
        threads = cfg["system"]["num_threads"]
        if threads == 0 and d.device.type == "cpu" and d.world > 1:
            threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", d.world)))
        if threads > 0:
            torch.set_num_threads(threads)
        if cfg["system"]["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

    def _build_data(self) -> None:
        """Train/validation items and the per-epoch sampler (labels only for a framework that needs them)."""
        cfg, d = self.cfg, self.d
        check_roots(cfg["data"]["roots"])
        if d.main:
            make_synthetic_roots(cfg["data"]["roots"], lambda message: log(d, message))
        if d.world > 1:
            dist.barrier()
        names = data_class_names(list(cfg["data"]["roots"])) if cfg["framework"] == "multitask" else None
        self.data_class_names = names  # read once: every checkpoint's sidecar names the head's classes
        if names and len(names) != cfg["ssvif"]["num_classes"]:  # MultiTaskVIF: K from the data
            log(d, f"multitask: {len(names)} classes from the data's classes.json (was ssvif.num_classes)")
            cfg["ssvif"]["num_classes"] = len(names)
        self.train_items, self.val_items, excluded = build_data(cfg)
        bs = self.tr["batch_size"]
        self.sampler = DistributedSampler(
            self.train_items, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg["seed"]
        )
        steps = len(self.sampler) // bs
        if self.tr["max_steps_per_epoch"] is not None:
            steps = min(steps, self.tr["max_steps_per_epoch"])
        if steps == 0:
            raise DatasetError(
                f"the training split has {len(self.train_items)} pairs, fewer than training.batch_size "
                f"({bs}) x {d.world} process(es): no full batch"
            )
        self.steps_per_epoch = steps
        log(
            d,
            f"data: {len(self.train_items)} train / {len(self.val_items)} val pairs "
            f"from {cfg['data']['roots']}"
            + (f", {len(excluded)} excluded by data.exclude_splits/exclude_flags" if excluded else "")
            + f"; {steps} steps of {bs} x {d.world} per epoch",
        )

    def _build_modules(self) -> None:
        """The fusion model, the framework's modules and the weighting (the same seed on every rank)."""
        cfg, device = self.cfg, self.d.device
        torch.manual_seed(cfg["seed"])
        self.model = create_model(
            cfg["model"]["name"],
            color=cfg["model"]["color"],
            multitask=cfg["framework"] == "multitask" and cfg["multitask"]["shared_trunk"],
            **cfg["model"]["cfg"],
        )
        self.model.to(device)
        self.framework: TrainingFramework = framework_for(cfg, self.model.feature_channels)
        self.framework.bind_model(self.model)
        self.branches = {k: m.to(device) for k, m in self.framework.build_modules().items()}
        self.modules: dict[str, nn.Module] = {"model": self.model, **self.branches}
        self.weighting = None
        self.val_task_weight: float | None = None
        if self.framework.has_task:
            self.weighting = create_weighting(cfg["weighting"]["name"], **cfg["weighting"]["options"])
            if isinstance(self.weighting, nn.Module):  # uncertainty: learnable log-variances
                self.weighting.to(device)
            # Validation weighs the task with the weighting's starting weight, the same every epoch: GDWA
            # moves w each epoch (0.1-1), and with that w the best epoch was the one with the lowest w.
            self.val_task_weight = self.weighting.weights()["csc"]

    def _build_optimiser(self) -> None:
        """One Adam over every parameter (branch and weighting parameters get no update before Stage II)."""
        tr = self.tr
        groups = [{"params": list(self.model.parameters()), "name": "model"}]
        if self.branches:
            params = [p for m in self.branches.values() for p in m.parameters()]
            groups.append({"params": params, "lr": tr["seg_lr"] or tr["lr"], "name": "seg"})
        if isinstance(self.weighting, nn.Module):
            groups.append({"params": list(self.weighting.parameters()), "name": "weighting"})
        self.opt = torch.optim.Adam(
            groups, lr=tr["lr"], betas=tuple(tr["betas"]), weight_decay=tr["weight_decay"]
        )
        for group in self.opt.param_groups:
            group["base_lr"] = group["lr"]  # the step schedule scales this (saved with the optimiser)
        self.use_amp = self.d.device.type == "cuda" and self.cfg["system"]["amp"]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.all_params = [p for g in self.opt.param_groups for p in g["params"]]
        self.shared_params = [p for p in self.model.parameters() if p.requires_grad]
        self.buffers = [b for m in self.modules.values() for b in m.buffers()]

    def _restore(self, resume: bool) -> TrainerState:
        cfg, d = self.cfg, self.d
        state = self.load() if resume else None
        if resume and state is None:
            log(d, f"{self.run_dir}/state holds no committed state: starting from scratch")
        if state is None:
            state = TrainerState.start(cfg)
            # dropout / drop-path streams differ per rank; numpy and random are unused but seeded all the same
            torch.manual_seed(cfg["seed"] + 1 + d.rank)
            np.random.seed(cfg["seed"] + 1 + d.rank)  # noqa: NPY002
            random.seed(cfg["seed"] + 1 + d.rank)
        if str(state.finished).startswith("training.max_epochs") and state.epoch < self.tr["max_epochs"]:
            state.finished = None  # resumed with a larger training.max_epochs: carry on
        if (
            state.stage == 2
            and state.best_val is not None
            and state.best_val_task_weight != self.val_task_weight
        ):
            # a state saved before 2026-12-02 compared epochs with each epoch's own w: not comparable
            log(d, "the saved best validation loss used another task weight: the next epoch sets a new best")
            state.best_val, state.best_val_task_weight, state.bad_epochs = None, None, 0
        return state

    # ------------------------------------------------------------------------------------- the loop

    def fit(self) -> TrainerState:
        """Train until the run finishes (max epochs or early stopping); returns the final state.

        Raises :class:`TrainingInterrupted` after a stop request (state saved). On any exception before
        the first step, the run folder goes again if this start made it (:meth:`discard_unstarted`)."""
        d = self.d
        if self.state.finished:
            log(d, f"{self.run_dir}: the run already finished ({self.state.finished}); nothing to do")
            return self.state
        self.writer = None
        try:
            self._stop_point(just_saved=True)  # a Ctrl-C during set-up
            self.wrap_for_training()
            self._open_logs()
            for epoch in range(self.state.epoch, self.tr["max_epochs"]):
                if self.train_epoch(epoch):
                    break
                self._stop_point(just_saved=True)  # end_epoch saved
            self._finish()
        except BaseException:
            if self.writer is not None:
                self.writer.close()
            self.discard_unstarted()
            raise
        if d.world > 1:
            dist.barrier()
            dist.destroy_process_group()
        return self.state

    def wrap_for_training(self) -> None:
        """The modules the steps run: DDP-wrapped under torchrun, the modules themselves otherwise (after a
        resume has loaded the weights, so every rank starts from the same ones)."""
        self.model_t = wrap_ddp(self.d, self.model)
        self.branches_t = {k: wrap_ddp(self.d, m) for k, m in self.branches.items()}

    def _stop_point(self, just_saved: bool) -> None:
        """Honour a stop request (SIGINT on any rank) here, where a resume continues exactly: save the state
        unless it was just saved, then raise :class:`TrainingInterrupted`. A finished run just finishes."""
        requested = self.stop is not None and self.stop.requested
        if self.d.world > 1:  # every rank must stop at the same step (save is collective)
            requested = self.d.sum([float(requested)])[0] > 0
        if not requested or self.state.finished:
            return
        s = self.state
        if self.cfg["debug"]["stop_delay_s"]:
            time.sleep(self.cfg["debug"]["stop_delay_s"])  # tests: a slow save, for a second Ctrl-C to hit
        if not just_saved and s.global_step > 0:
            self.save()
        raise TrainingInterrupted(self.run_dir, s.epoch, s.step_in_epoch, saved=s.global_step > 0)

    def discard_unstarted(self) -> bool:
        """Remove the run folder when this start made it and no training step ran (it would hold only
        ``config.yaml`` and empty logs, and look like a run); True when removed. Never a folder that
        existed before (a resumed run, a folder given as ``run.dir``)."""
        if not (self.d.main and self.created_dir and self.state.global_step == 0):
            return False
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return True

    def _open_logs(self) -> None:
        cfg, s = self.cfg, self.state
        self.writer = None
        if self.d.main:
            epoch, step = s.epoch, s.global_step
            self.metrics = CsvLog(
                self.run_dir / "metrics.csv", EPOCH_COLUMNS, lambda r: int(r["epoch"]) < epoch
            )
            self.steps_log = CsvLog(
                self.run_dir / "steps.csv", STEP_COLUMNS, lambda r: int(r["global_step"]) <= step
            )
            if cfg["run"]["tensorboard"]:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(
                    str(self.run_dir / "tensorboard"), purge_step=s.global_step or None
                )
        if cfg["debug"]["log_sample_names"]:
            (self.run_dir / "debug").mkdir(parents=True, exist_ok=True)

    def train_epoch(self, epoch: int) -> bool:
        """The rest of epoch ``epoch`` (from the saved step on a resume), then its end; True to stop."""
        s, bs, d = self.state, self.tr["batch_size"], self.d
        joint = s.stage == 2
        w = self.weighting.weights()["csc"] if joint else 0.0
        lr = self._set_epoch_lr(epoch)
        self.sampler.set_epoch(epoch)
        positions = list(self.sampler)[: self.steps_per_epoch * bs]
        start = s.step_in_epoch
        keys = [(epoch, p) for p in positions[start * bs :]]
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=start,
            desc=f"epoch {epoch} stage {s.stage}",
            disable=not (d.main and self.cfg["run"]["progress"]),
            leave=False,
            dynamic_ncols=True,
        )
        t_epoch = time.perf_counter()
        with bar:
            for step, batch in enumerate(
                loader_for(self.train_items, keys, self.cfg, drop_last=True), start=start
            ):
                record = self.train_step(batch, epoch, step, joint)
                s.step_in_epoch = step + 1
                s.global_step += 1
                bar.update(1)
                self._log_step(record, epoch, step, joint, w, lr, bar)
                saved = s.global_step % self.tr["checkpoint_every_steps"] == 0
                if saved:
                    self.save()
                stop_after = self.cfg["debug"]["stop_after_steps"]
                if stop_after is not None and s.global_step >= stop_after:
                    bar.close()
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(3)  # debug: die like a killed process (no cleanup, no final checkpoint)
                self._stop_point(just_saved=saved)
        images = (self.steps_per_epoch - start) * bs * d.world
        return self.end_epoch(epoch, joint, w, lr, t_epoch, images)

    # ------------------------------------------------------------------------------------ one step

    def _set_epoch_lr(self, epoch: int) -> float:
        """Every group's learning rate for ``epoch``: its base times lr_gamma per milestone reached (a
        function of the epoch alone, so a resumed run matches); returns the first group's."""
        passed = sum(epoch >= m for m in self.tr["lr_milestones"])
        for group in self.opt.param_groups:
            group["lr"] = group["base_lr"] * float(self.tr["lr_gamma"]) ** passed
        return self.opt.param_groups[0]["lr"]

    def forward(self, batch: dict[str, Any], joint: bool, train: bool = True) -> StepLosses:
        """The fusion model (and, joint, the framework's modules) on ``batch``; named losses in float32."""
        vis = batch["vis"].to(self.d.device, non_blocking=True)
        ir = batch["ir"].to(self.d.device, non_blocking=True)
        model = self.model_t if train else self.model
        branches = self.branches_t if train else self.branches
        with torch.autocast(self.d.device.type, dtype=torch.float16, enabled=self.use_amp):
            fused, features = model(vis, ir)
            outputs = self.framework.branch_outputs(branches, fused, features) if joint else {}
        return self.framework.losses(batch, vis, ir, fused, outputs, joint)

    def train_step(self, batch: dict[str, Any], epoch: int, step: int, joint: bool) -> StepRecord:
        """Forward, losses, (measured) gradients and the optimiser step for one batch.

        A non-finite loss (or, without AMP, gradient norm) on any rank skips the step on every rank and
        rolls back the BatchNorm statistics of the forward pass; too many in a row raise
        :class:`NonFiniteLossError`."""
        t_step = time.perf_counter()
        if self.cfg["debug"]["log_sample_names"]:
            with (self.run_dir / "debug" / f"samples-rank{self.d.rank}.txt").open("a") as f:
                f.write("".join(f"{epoch} {step} {n}\n" for n in batch["name"]))
        saved_buffers = [b.detach().clone() for b in self.buffers]  # to undo BN updates of a bad batch
        losses = self.forward(batch, joint)
        total = self.weighting.combine(losses.named) if joint else losses.named["fusion"]
        values = self._loss_values(total, losses, joint)
        local_bad = not all(math.isfinite(v) for v in values)
        bad = self.d.sum([float(local_bad)])[0] > 0
        gn, proj = self._measure_gradients(losses, step, joint) if joint and not bad else ({}, None)
        grad_norm, bad_loss = math.nan, bad
        if not bad:
            grad_norm, bad = self._update(total, joint)
        self.opt.zero_grad(set_to_none=True)
        if bad:
            self._skip(saved_buffers, batch, epoch, step, bad_loss, local_bad, grad_norm)
        else:
            self.state.nonfinite_run = 0
            for k, v in zip(LOSS_KEYS, values, strict=True):
                self.state.sums[k] += v
            self.state.sums["steps"] += 1
        images_per_s = self.tr["batch_size"] * self.d.world / max(time.perf_counter() - t_step, 1e-9)
        return StepRecord(values, grad_norm, gn, proj, images_per_s)

    def _loss_values(self, total: torch.Tensor, losses: StepLosses, joint: bool) -> list[float]:
        """LOSS_KEYS as floats with one host sync (zeros for the task columns outside the joint stage)."""
        zero = torch.zeros((), device=self.d.device)
        extra = [zero] * 3
        if joint:
            info = losses.info
            extra = [losses.named["csc"].detach(), info["agreement"], info.get("teacher_a", zero)]
        parts = [total, losses.named["fusion"], *(losses.terms[k] for k in ("int", "grad", "ssim", "color"))]
        return torch.stack([v.detach().float() for v in [*parts, *extra]]).double().cpu().tolist()

    def _measure_gradients(self, losses: StepLosses, step: int, joint: bool) -> tuple[dict, float | None]:
        """Every ``weighting.gdwa_measure_every``-th joint step: the task gradient norms on the fusion
        model's parameters (GDWA) and, with ``ssvif.grad_analysis``, the projection coefficient."""
        analysis = self.cfg["ssvif"]["grad_analysis"]
        if step % self.cfg["weighting"]["gdwa_measure_every"] or not (
            self.weighting.needs_grad_norms or analysis
        ):
            return {}, None
        s, proj = self.state, None
        scale = self.scaler.get_scale() if self.use_amp else 1.0  # fp16 gradients need the loss scale
        task_losses = {k: v * scale for k, v in losses.named.items()}
        if analysis:
            g = task_gradients(task_losses, self.shared_params)
            gn = {k: float(torch.linalg.vector_norm(v, dtype=torch.float64)) / scale for k, v in g.items()}
            if gn["fusion"] > 0 and all(math.isfinite(v) for v in gn.values()):
                proj = projection_coefficient(g["csc"], g["fusion"])
                s.proj_sum += proj
                s.proj_count += 1
        else:
            gn = {k: v / scale for k, v in task_grad_norms(task_losses, self.shared_params).items()}
        if all(math.isfinite(v) for v in gn.values()):
            s.sums["gn_fusion"] += gn["fusion"]
            s.sums["gn_csc"] += gn["csc"]
            s.sums["gn_count"] += 1
        return gn, proj

    def _update(self, total: torch.Tensor, joint: bool) -> tuple[float, bool]:
        """Backward, clip, step; returns (gradient norm, True when the norm is not finite without AMP)."""
        self.scaler.scale(total).backward()
        world = self.d.world
        if world > 1 and joint and isinstance(self.weighting, nn.Module):  # not under DDP: average by hand
            for p in self.weighting.parameters():
                dist.all_reduce(p.grad)
                p.grad /= world
        self.scaler.unscale_(self.opt)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.all_params, self.tr["grad_clip"] or math.inf))
        bad = not self.use_amp and not math.isfinite(grad_norm)
        if not bad:
            self.scaler.step(self.opt)
            self.scaler.update()
        return grad_norm, bad

    def _skip(
        self,
        saved_buffers: list[torch.Tensor],
        batch: dict[str, Any],
        epoch: int,
        step: int,
        bad_loss: bool,
        local_bad: bool,
        grad_norm: float,
    ) -> None:
        """Undo a bad step's BatchNorm updates, count it, say which images, stop after too many."""
        s, tr, d = self.state, self.tr, self.d
        with torch.no_grad():
            for b, saved in zip(self.buffers, saved_buffers, strict=True):
                b.copy_(saved)
        s.nonfinite_run += 1
        s.sums["skipped"] += 1
        what = "loss" if bad_loss else f"gradient norm ({grad_norm})"
        if local_bad or (d.main and not bad_loss):
            tqdm.write(
                f"warning: non-finite {what} at epoch {epoch}, step {step} "
                f"(global {s.global_step}){f', rank {d.rank}' if d.world > 1 else ''}; "
                f"images {list(batch['name'])}: optimizer step skipped "
                f"({s.nonfinite_run} in a row, limit {tr['max_nonfinite_steps']})",
                file=sys.stderr,
            )
        if s.nonfinite_run >= tr["max_nonfinite_steps"]:
            raise NonFiniteLossError(
                f"{s.nonfinite_run} consecutive non-finite steps (training.max_nonfinite_steps="
                f"{tr['max_nonfinite_steps']}); last at epoch {epoch}, step {step}, images "
                f"{list(batch['name'])}. Check the data (python -m ssvif_ros.data.check) "
                "and lower training.lr"
            )

    def _log_step(
        self, record: StepRecord, epoch: int, step: int, joint: bool, w: float, lr: float, bar: Any
    ) -> None:
        s = self.state
        if not self.d.main or (s.global_step % self.tr["log_every_steps"] and record.proj is None):
            return
        row = {
            "global_step": s.global_step,
            "epoch": epoch,
            "step": step,
            "stage": s.stage,
            "w": w,
            "lr": lr,
            **dict(zip(LOSS_KEYS, record.values, strict=True)),
            "grad_norm": record.grad_norm,
            "gn_fusion": record.gn.get("fusion"),
            "gn_csc": record.gn.get("csc"),
            "proj_coef": record.proj,
            "proj_coef_mean": s.proj_coef_mean,
            "images_per_s": record.images_per_s,
        }
        self._blank_task_columns(row, joint, ("csc", "agreement", "teacher_a"))
        self.steps_log.write(row)
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("global_step", "epoch", "step") and v is not None and math.isfinite(v):
                    self.writer.add_scalar(f"step/{k}", v, s.global_step)
        bar.set_postfix(loss=f"{record.values[0]:.4g}", w=f"{w:.3g}")

    def _blank_task_columns(self, row: dict[str, Any], joint: bool, columns: tuple[str, str, str]) -> None:
        """No task outside the joint stage; no teacher in a framework without pseudo labels."""
        if not joint:
            for k in columns:
                row[k] = None
        elif self.framework.needs_labels:
            row[columns[2]] = None

    # ------------------------------------------------------------------------- validation, epoch end

    @torch.no_grad()
    def validate(self, joint: bool) -> dict[str, float]:
        """Mean fusion and task losses over the validation split (each rank takes every world-th item)."""
        d = self.d
        keys = [(0, p) for p in range(d.rank, len(self.val_items), d.world)]
        sums = [0.0, 0.0, 0.0]
        for m in self.modules.values():
            m.eval()
        for batch in loader_for(self.val_items, keys, self.cfg, drop_last=False):
            losses = self.forward(batch, joint, train=False)
            n = batch["vis"].shape[0]
            sums[0] += float(losses.named["fusion"]) * n
            if joint:
                sums[1] += float(losses.named["csc"]) * n
            sums[2] += n
        for m in self.modules.values():
            m.train()
        fus, task, n = d.sum(sums)
        return {"fusion": fus / n, "csc": task / n if joint else math.nan} if n else {}

    def end_epoch(self, epoch: int, joint: bool, w: float, lr: float, t_epoch: float, images: int) -> bool:
        """Reduce the epoch over ranks, validate, update the weighting or switch stages, log, keep the
        best model, save; True when the run is finished."""
        s, tr = self.state, self.tr
        reduced = dict(zip(SUM_KEYS, self.d.sum([s.sums[k] for k in SUM_KEYS]), strict=True))
        n_ok = reduced["steps"]
        mean = {k: reduced[k] / n_ok if n_ok else math.nan for k in LOSS_KEYS}
        gn_mean = (
            {k: reduced[f"gn_{k}"] / reduced["gn_count"] for k in ("fusion", "csc")}
            if reduced["gn_count"]
            else None
        )
        train_time = time.perf_counter() - t_epoch
        val = self.validate(joint)
        task = self.val_task_weight * val["csc"] if joint and val else 0.0
        val_loss = val["fusion"] + task if val else mean["total"]
        best = math.inf if s.best_val is None else s.best_val
        improved = math.isfinite(val_loss) and val_loss < best
        s.last_val = val_loss if math.isfinite(val_loss) else None
        if improved:
            s.best_val, s.bad_epochs = val_loss, 0
            s.best_val_task_weight = self.val_task_weight if joint else None
        else:
            s.bad_epochs += 1
        row = {
            "epoch": epoch,
            "stage": s.stage,
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
            "proj_coef_mean": s.proj_coef_mean,
            "best_val_loss": s.best_val,
            "bad_epochs": s.bad_epochs,
            "images_per_s": images / max(train_time, 1e-9),
            "epoch_time_s": time.perf_counter() - t_epoch,
        }
        self._blank_task_columns(row, joint, ("train_csc", "train_agreement", "train_teacher_a"))
        switch_reason = self._weighting_or_switch(epoch, joint, w, mean, n_ok, gn_mean)
        stop_reason = None
        if s.bad_epochs >= tr["patience"]:
            stop_reason = f"early stopping: no validation improvement for {tr['patience']} epochs"
        self._log_epoch(row, mean, joint, w, val_loss, improved)
        if switch_reason:
            log(self.d, f"Stage I -> Stage II from epoch {epoch + 1}: {switch_reason}")
        if improved and self.d.main:
            save_checkpoint(
                self.run_dir / "best.safetensors",
                self.model,
                self.branches.get("seg_head") if joint else None,
                self._sidecar(epoch=epoch + 1, state_name=None),
            )
        s.epoch, s.step_in_epoch, s.sums = epoch + 1, 0, dict.fromkeys(s.sums, 0.0)
        s.wall_s += time.perf_counter() - t_epoch
        if stop_reason or epoch + 1 == tr["max_epochs"]:
            s.finished = stop_reason or f"training.max_epochs={tr['max_epochs']} reached"
        self.save()
        if stop_reason:
            log(self.d, stop_reason)
        return stop_reason is not None

    def _weighting_or_switch(
        self, epoch: int, joint: bool, w: float, mean: dict, n_ok: float, gn_mean: dict | None
    ) -> str | None:
        """Joint: the weighting's end of epoch. Stage I: the switch to Stage II when the mean fusion loss
        rises, after ``ssvif.stage1_max_epochs``, or when validation stalls; returns the switch reason."""
        s, needs_gn = self.state, self.framework.has_task and self.weighting.needs_grad_norms
        if joint:
            if n_ok == 0 or (needs_gn and gn_mean is None):
                log(self.d, f"warning: epoch {epoch}: no usable loss/gradient measurements; w stays {w:.4g}")
            else:
                self.weighting.end_epoch(
                    {"fusion": mean["fusion"], "csc": mean["csc"]}, gn_mean if needs_gn else None
                )
            return None
        if not self.framework.has_task or not math.isfinite(mean["fusion"]):
            return None
        s.stage1_losses.append(mean["fusion"])
        history, cap, reason = s.stage1_losses, self.cfg["ssvif"]["stage1_max_epochs"], None
        if len(history) >= 2 and history[-1] > history[-2]:
            reason = f"the mean fusion loss rose ({history[-2]:.5g} -> {history[-1]:.5g})"
        elif cap is not None and len(history) >= cap:
            reason = f"ssvif.stage1_max_epochs={cap} reached"
        elif s.bad_epochs >= self.tr["patience"]:
            reason = f"the validation loss did not improve for {self.tr['patience']} epochs"
        if reason:
            s.stage, s.switch_epoch, s.best_val, s.bad_epochs = 2, epoch + 1, None, 0
        return reason

    def _log_epoch(
        self, row: dict, mean: dict, joint: bool, w: float, val_loss: float, improved: bool
    ) -> None:
        if not self.d.main:
            return
        self.metrics.write(row)
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and v is not None and math.isfinite(v):
                    self.writer.add_scalar(f"epoch/{k}", v, row["epoch"])
            self.writer.flush()
        task = "seg (labels)" if self.framework.needs_labels else "csc"
        task_text = f", {task} {mean['csc']:.4g}, w {w:.4g}" if joint else ""
        log(
            self.d,
            f"epoch {row['epoch']} stage {row['stage']}: train {mean['total']:.5g} "
            f"(fusion {mean['fusion']:.5g}"
            f"{task_text}), val {val_loss:.5g}{' *' if improved else ''}, {row['images_per_s']:.1f} img/s",
        )

    def _finish(self) -> None:
        """Rank 0: close the logs, draw the curves, write ``summary.json``."""
        s = self.state
        if not self.d.main:
            return
        if self.writer is not None:
            self.writer.close()
        plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png", self.framework.task_title)
        summary = {
            "status": s.finished,
            "epochs": s.epoch,
            "global_step": s.global_step,
            "stage": s.stage,
            "switch_epoch": s.switch_epoch,
            "best_val_loss": s.best_val,
            "proj_coef_mean": s.proj_coef_mean,
            "train_wall_s": s.wall_s,
            "process_wall_s": time.perf_counter() - self.t_start,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log(self.d, f"done: {s.finished}; best validation loss {s.best_val}; run folder {self.run_dir}")

    # ---------------------------------------------------------------------------------- save, resume

    def save(self) -> None:
        """Write the resumable state and ``last.safetensors``.

        Collective: every rank sends its RNG states and its rank-local counters (its share of the epoch
        sums)."""
        d, s = self.d, self.state
        gathered = d.gather((capture_rng_state(), s.rank_local()))
        if not d.main:
            return
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in self.modules.items():
            tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        opt_tensors, opt_tree = flatten_state(self.opt.state_dict(), "optimizer.")
        tensors.update(opt_tensors)
        rng_meta = []
        for rank, ((rng_tensors, meta), _) in enumerate(gathered):
            tensors.update({f"rng.{rank}.{k}": v for k, v in rng_tensors.items()})
            rng_meta.append(meta)
        name = f"e{s.epoch:04d}-s{s.step_in_epoch:06d}"
        meta = {
            "config": self.cfg,
            "trainer": s.to_json(),
            "optimizer": opt_tree,
            "scaler": self.scaler.state_dict(),
            "weighting": self.weighting.state_dict() if self.weighting is not None else None,
            "rng": rng_meta,
            "rank_local": [local for _, local in gathered],
            "world_size": d.world,
            "modules": sorted(self.modules),
        }
        save_train_state(self.run_dir / "state" / name, tensors, meta)
        save_checkpoint(
            self.run_dir / "last.safetensors",
            self.model,
            self.branches.get("seg_head") if s.stage == 2 else None,
            self._sidecar(epoch=s.epoch, state_name=name),
        )
        prune_train_states(self.run_dir / "state", keep=self.tr["keep_states"])

    def _sidecar(self, epoch: int, state_name: str | None) -> dict[str, Any]:
        s = self.state
        return {
            "config": self.cfg,
            "epoch": epoch,
            "step": s.global_step,
            "stage": s.stage,
            "weighting": self.weighting.state_dict() if self.weighting is not None else None,
            "best_val_loss": s.best_val,
            "val_loss": s.last_val,
            "train_state": f"state/{state_name}" if state_name else None,
            "device": str(self.d.device),
            "trained_by": "training/train.py",
            **self._class_names(),
        }

    def _class_names(self) -> dict[str, Any]:
        """MultiTaskVIF's head is trained on the data's classes: their names (classes.json) go to the
        sidecar, where the node, the replay and ssvif-fuse find them."""
        names = self.data_class_names
        if names is None or len(names) != self.cfg["ssvif"]["num_classes"]:
            return {}
        return {"class_names": names, "class_names_source": "the training labels (classes.json)"}

    def load(self) -> TrainerState | None:
        """Restore the newest committed state of the run folder into the modules, optimiser, scaler,
        weighting and RNGs; its trainer state, or None when there is none."""
        d = self.d
        path = latest_train_state(self.run_dir / "state")
        if path is None:
            return None
        tensors, meta = load_train_state(path)
        if meta["world_size"] != d.world:
            raise ConfigError(
                f"{path}: saved by {meta['world_size']} process(es), resumed with {d.world}; "
                "resume with the same --nproc_per_node"
            )
        if sorted(self.modules) != meta["modules"]:
            raise ConfigError(
                f"{path}: holds modules {meta['modules']}, this config builds {sorted(self.modules)}"
            )
        for prefix, module in self.modules.items():
            state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict(state, strict=True)
        self.opt.load_state_dict(unflatten_state(meta["optimizer"], tensors))
        for group in self.opt.param_groups:  # states saved before the step schedule existed
            group.setdefault("base_lr", group["lr"])
        self.scaler.load_state_dict(meta["scaler"])
        if self.weighting is not None:
            self.weighting.load_state_dict(meta["weighting"])
        rank_prefix = f"rng.{d.rank}."
        restore_rng_state(
            {k[len(rank_prefix) :]: v for k, v in tensors.items() if k.startswith(rank_prefix)},
            meta["rng"][d.rank],
        )
        trainer = meta["trainer"]
        log(d, f"resumed from {path} (epoch {trainer['epoch']}, step {trainer['step_in_epoch']})")
        return TrainerState(**{**trainer, **meta["rank_local"][d.rank]})
