#!/usr/bin/env python
"""Segmentation on fused images: train a SegFormer on each method's fused images, report IoU and mIoU.

    python training/evaluate_segmentation.py --config config/segeval/cpu_tiny.yaml \
        --data /tmp/synth9 --test-fraction 0.1 --methods visible infrared laplacian runs/x/best.safetensors \
        --seeds 0,1,2 --out results/segeval_synth9 [training.epochs=20 ...]
    python training/evaluate_segmentation.py --config config/segeval/cpu_tiny.yaml --binary \
        --data ../shared/data/tno_stdfusionnet_masks --label-dir ir_mask --folds 5 --methods visible max \
        --out results/segeval_tno

The protocol (SSVIF paper): for every fusion method, fuse the training and the test images, fine-tune a
SegFormer on the fused training images with their labels, and report per-class IoU and mIoU on the fused
test images. ``config/segeval/paper_b3.yaml`` is the paper's recipe (SegFormer-B3, 80 epochs, batch 12,
encoder frozen for the first 30 epochs, AdamW, cosine schedule, early stopping with patience 10);
``config/segeval/cpu_tiny.yaml`` a CPU-sized preset (the ``tiny`` SegFormer, small crops).

Weights: our SegFormer is built from a config and nothing is downloaded. ``model.init_weights`` may name a
local ``.safetensors`` file (e.g. ImageNet-pretrained MiT weights converted to the Hugging Face layout;
keys with a matching name and shape are loaded, the class-specific classifier usually is not). With the
default ``null`` the model starts from scratch, and the "frozen encoder" phase then freezes a *random*
encoder (only the decoder learns): that is why the CPU preset sets ``training.freeze_encoder_epochs: 0``.

Methods (``--methods``): the specs of ``training/evaluate_fusion.py`` (a checkpoint ``.safetensors``, a
baseline name ``average``/``max``/``laplacian``, a folder of fused images) plus two single-modality
references, ``visible`` (the visible image) and ``infrared`` (the thermal image replicated to 3 channels).
Each image is fused once per method at its own size, and the fused uint8 images stay in memory.
``NAME=SPEC`` names a method's row (``SSVIF=runs/x/best.safetensors``), and ``{seed}`` in a spec is
replaced by each seed (``runs/x/seed{seed}/best.safetensors``), so segmentation seed k is paired with the
fusion model trained with seed k and the spread over seeds covers both trainings.

Data: every ``--data`` root is a paired folder (``ssvif_ros.data.pairs`` layouts). Labels come from the
layout's label folder or ``--label-dir NAME`` (a subfolder of each root); pairs without a label file are
skipped (the count is logged). Label files hold class ids (255 = ignore), or with ``--binary`` 0/255 masks
(label > 0 is class 1). Splits: ``--train-split/--test-split`` (the roots' ``manifest.csv`` ``split``
column), ``--test-fraction F`` (deterministic by a hash of the names, like the 9:1 split of training;
the default is 0.1), or ``--folds K`` (K-fold cross-validation: each fold trains on the other folds and
tests on itself; the reported IoU is pooled, i.e. intersections and unions summed over the test images of
all folds, and the per-fold mIoU spread is given beside it). IoU per class is TP / (TP + FP + FN) summed
over the test images; mIoU is their mean over the classes present in the labels or the predictions.

Config: ``--config`` YAML (keys: see ``DEFAULTS``) and dotted ``key=value`` overrides anywhere on the
command line (``training.epochs=5``; a ``dotted.key=value`` token after ``--data``/``--methods`` is taken
as an override, not as a folder, unless such a path exists).

Choices where the paper is silent (each one a config key):
- Early stopping follows the mIoU on a validation split carved from the training images
  (``training.val_fraction``, hash split); the best-validation weights are tested. Patience counts only
  epochs after the encoder is unfrozen (else a slow frozen phase could end the run before fine-tuning).
  With ``val_fraction: 0`` there is no early stopping and the last epoch's weights are tested.
- Cosine schedule per optimiser step from ``lr`` to ``lr * min_lr_ratio`` over all planned steps, after
  ``warmup_epochs`` of linear warm-up; AdamW over all parameters (frozen ones get no gradient, so no update
  and no weight decay).
- Loss: cross-entropy over the labelled pixels, plus ``training.dice_weight`` × soft Dice (0 in the
  presets; 1 for binary target masks, where a target covering a few % of the pixels otherwise loses to
  "background everywhere").
- Augmentation: a random crop of ``training.crop`` (images smaller than the crop are padded with black and
  the ignore label) and a horizontal flip. Testing is on full images, padded (replicated border) to a
  multiple of ``eval.pad_to``; the logits are cropped back to the label size.
- A seed fixes the model initialisation (the same for every method: paired comparisons), the validation
  split is fixed, and the data order, crops and flips are drawn from ``(seed, fold, epoch)``.

Outputs in ``--out``: ``segmentation.json`` (per method: per seed and mean ± sample std of mIoU and
per-class IoU, per-fold values, timings; the data, the resolved config and the command line),
``segmentation.csv`` (one row per method and seed, plus mean and std rows) and ``segmentation.md`` (a table
methods × per-class IoU and mIoU in %, mean ± std over seeds). Each is written atomically.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ssvif_ros.cli import comma_list
from ssvif_ros.config import ConfigError, dump_config, load_config
from ssvif_ros.eval.segmentation import (
    DEFAULTS,
    OPEN_KEYS,
    SegEvalError,
    evaluate_segmentation,
    log,
    markdown_table,
)

_OVERRIDE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+=")


def _split_overrides(values: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``dotted.key=value`` tokens that nargs="+" options swallowed from real values."""
    kept, overrides = [], []
    for v in values:
        (overrides if _OVERRIDE.match(v) and not Path(v).exists() else kept).append(v)
    return kept, overrides


def _seeds(text: str) -> list[int]:
    try:
        return [int(v) for v in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be a comma list of integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        type=str,
        nargs="+",
        action="extend",
        required=True,
        help="paired dataset folder(s); repeatable",
    )
    p.add_argument("--label-dir", help="label subfolder of each root (default: the layout's label folder)")
    p.add_argument("--binary", action="store_true", help="binary masks: label > 0 is class 1 (0/255 masks)")
    p.add_argument(
        "--num-classes", type=int, help="K (default: 2 with --binary, else the data's classes.json)"
    )
    split = p.add_argument_group("split (one of; default --test-fraction 0.1)")
    split.add_argument("--train-split", help="train on pairs of this manifest.csv split")
    split.add_argument("--test-split", help="test on pairs of this manifest.csv split")
    split.add_argument("--test-fraction", type=float, help="deterministic hash split of the labelled pairs")
    split.add_argument("--folds", type=int, help="K-fold cross-validation over the labelled pairs")
    p.add_argument(
        "--methods",
        nargs="+",
        required=True,
        help="checkpoints (.safetensors), baselines (average max laplacian saliency saliency_sides), "
        "fused-image folders, visible, infrared; NAME=SPEC names the row; {seed} in a spec is replaced by "
        "each seed",
    )
    p.add_argument("--config", type=Path, help="segeval YAML (config/segeval/*.yaml)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="comma list of seeds (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--limit", type=int, help="use the first N labelled pairs only (smoke runs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    args.data, extra_data = _split_overrides(args.data)
    args.methods, extra_methods = _split_overrides(args.methods)
    overrides = [*args.overrides, *extra_data, *extra_methods]
    chosen = [
        flag
        for flag, v in (
            ("--train-split/--test-split", args.train_split or args.test_split),
            ("--test-fraction", args.test_fraction),
            ("--folds", args.folds),
        )
        if v
    ]
    if len(chosen) > 1:
        parser.error(f"choose one way to split, not {' and '.join(chosen)}")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, overrides, defaults=DEFAULTS, open_keys=OPEN_KEYS)
        log.info("config:\n%s", dump_config(cfg).rstrip())
        payload = evaluate_segmentation(
            [Path(d) for d in args.data],
            args.methods,
            args.out,
            cfg,
            args.seeds,
            label_dir=args.label_dir,
            binary=args.binary,
            num_classes=args.num_classes,
            train_split=args.train_split,
            test_split=args.test_split,
            test_fraction=args.test_fraction,
            folds=args.folds,
            limit=args.limit,
            device=args.device,
            command=shlex.join(["training/evaluate_segmentation.py", *argv]),
        )
    except (SegEvalError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown_table(payload))
    print(f"segmentation.json, segmentation.csv and segmentation.md in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
