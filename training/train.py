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
  ``data.crop``, no flips): Stage I ``L_fusion``; Stage II ``L_fusion + w₀·L_CSC`` with the weighting's
  *starting* ``w₀`` (``weights()["csc"]`` before any update: GDWA's ``initial_w``, a fixed scheme's
  ``w``), the same every epoch. (Until 2026-12-02 it was this epoch's ``w``; GDWA moves w between 0.1 and
  1, so the best epoch was the one with the lowest w, often the first of Stage II.)
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

Ctrl-C: the first stops the run after the current step, saves its state and prints the exact ``--resume``
command (exit status 130); a second one exits at once (the last committed state is kept, writes are
atomic) and prints the same command. A start that fails before its first step removes the run folder it
made (never one that existed before).

``--resume RUN_DIR`` reloads ``RUN_DIR/config.yaml`` (the ``debug`` section reset to its defaults; further
``key=value`` overrides are applied and reported) and the newest committed state, then continues from
the exact batch where it was saved. Exactness needs the same number of processes and threads, and on
CUDA ``system.deterministic: true``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch.distributed as dist

from ssvif_ros.config import ConfigError
from ssvif_ros.data import DatasetError
from ssvif_ros.train.config import resolve_config
from ssvif_ros.train.interrupt import StopOnInterrupt, TrainingInterrupted, write_line
from ssvif_ros.train.trainer import NonFiniteLossError, Trainer

INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="YAML config (config/train/*.yaml)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument(
        "--framework",
        choices=("ssvif", "original", "multitask", "cs2fusion"),
        help="shortcut for framework=...",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    args = parser.parse_args(argv)
    if (args.config is None) == (args.resume is None):
        parser.error("give exactly one of --config FILE or --resume RUN_DIR")
    return args


def _shortest(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def resume_command(run_dir: str | Path) -> str:
    """The exact command that continues the run in ``run_dir`` from here (torchrun under torchrun)."""
    script = shlex.quote(_shortest(os.path.abspath(__file__)))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        procs = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
        head = f"torchrun --nproc_per_node {procs} {script}"
    else:
        head = f"{shlex.quote(_shortest(sys.executable))} {script}"
    return f"{head} --resume {shlex.quote(str(run_dir))}"


def stopped_line(trainer: Trainer | None, resume_dir: Path | None, what: str) -> str:
    """One line for an interrupted run: how to resume it, or that nothing was kept to resume."""
    if trainer is None and resume_dir is None:
        return f"{what} during set-up: no run folder was made"
    if trainer is not None and (trainer.discard_unstarted() or not trainer.run_dir.is_dir()):
        return f"{what} before the first training step: nothing to resume ({trainer.run_dir} removed)"
    return f"{what}; continue with: {resume_command(trainer.run_dir if trainer else resume_dir)}"


def main(argv: list[str] | None = None) -> int:
    """Train; config and data errors and the non-finite stop become one line and exit status 2, Ctrl-C a
    line with the resume command and exit status 130 (the second Ctrl-C: at once)."""
    args = parse_args(argv)
    rank0 = os.environ.get("RANK", "0") == "0"
    built: list[Trainer] = []

    def quit_now() -> None:
        line = stopped_line(built[0] if built else None, args.resume, "interrupted again: stopped at once")
        try:
            sys.stdout.flush()  # the progress lines so far
        except (OSError, RuntimeError):  # RuntimeError: the signal came in the middle of a write
            pass
        if rank0:
            write_line(line)
        os._exit(INTERRUPTED)

    notice = "interrupted: stopping after the current step and saving the state (Ctrl-C again: at once)"
    try:
        with StopOnInterrupt(quit_now, notice if rank0 else None) as stop:
            cfg = resolve_config(args.config, args.overrides, args.resume, args.framework)
            built.append(Trainer(cfg, resume=args.resume is not None, stop=stop))
            built[0].fit()
    except TrainingInterrupted as e:
        if rank0:
            print(stopped_line(built[0], args.resume, f"stopped: {e}"), file=sys.stderr)
        return _leave(INTERRUPTED)
    except (ConfigError, DatasetError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return _leave(2)
    return 0


def _leave(status: int) -> int:
    if dist.is_initialized():
        dist.destroy_process_group()
    return status


entry = main  # the name older scripts and tests call


if __name__ == "__main__":
    sys.exit(main())
