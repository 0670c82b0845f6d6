"""The segmentation protocol on fused images (the library of ``training/evaluate_segmentation.py``, whose
docstring describes the protocol): labelled pairs, splits and folds, a SegFormer trained from scratch on each
method's fused images, IoU tables."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssvif_ros.checkpoint import atomic_write_bytes
from ssvif_ros.data import PairedFolderDataset, manifest_splits, read_pair_arrays, split_train_val
from ssvif_ros.data.image_files import DatasetError
from ssvif_ros.data.pairs import PairFiles, list_images
from ssvif_ros.eval.fusion import split_method_name, unique_names
from ssvif_ros.eval.metrics import confusion_matrix, iou_per_class, mean_iou
from ssvif_ros.fusion.fusers import FuserSpecError, open_fuser
from ssvif_ros.models.segformer import SegFormer, build_segformer
from ssvif_ros.train.losses import labelled_ce, labelled_ce_dice

log = logging.getLogger("evaluate_segmentation")

IGNORE_INDEX = 255

DEFAULTS: dict[str, Any] = {
    "model": {
        "preset": "tiny",  # SegFormer preset: b0, b3, tiny (ssvif_ros.models.segformer)
        "init_weights": None,  # local .safetensors to start from; null = random initialisation
        "config": {},  # extra SegformerConfig fields (free-form), e.g. {drop_path_rate: 0.0}
    },
    "training": {
        "epochs": 60,
        "batch_size": 4,
        "crop": [160, 224],  # [height, width] of the random training crops
        "hflip": True,
        "lr": 6.0e-3,
        "weight_decay": 0.01,
        "betas": [0.9, 0.999],
        "warmup_epochs": 1,
        "min_lr_ratio": 0.01,  # cosine schedule ends at lr * min_lr_ratio
        "freeze_encoder_epochs": 0,
        "patience": 10,  # epochs without a better validation mIoU (after unfreezing) before stopping
        "val_fraction": 0.1,  # of the training images, for early stopping; 0 = none (last epoch tested)
        "max_steps_per_epoch": None,  # null = one pass over the training images
        "dice_weight": 0.0,  # loss = CE + dice_weight * soft Dice (> 0 for small classes, e.g. binary masks)
    },
    "eval": {"pad_to": 32},
}
OPEN_KEYS = ("model.config",)
"""Defaults = config/segeval/cpu_tiny.yaml; ``model.config`` takes any SegformerConfig field."""

Fuser = Callable[[str, np.ndarray, np.ndarray], np.ndarray]


class SegEvalError(ValueError):
    """Bad data, labels, methods or options; the message names the file, folder or option at fault."""


# ------------------------------------------------------------------------------------------------ data


@dataclass
class LabelledPairs:
    """The pairs of the roots that have a label file, in dataset order.

    ``files[i].label`` is set for every i; ``splits[i]`` is the manifest split (None where unknown);
    ``skipped`` counts pairs without a label file; ``label_dirs`` the label folder used in each root;
    ``classes`` the ``classes.json`` found beside the data (the synthetic scenes write one), if any.
    """

    files: list[PairFiles]
    splits: list[str | None]
    skipped: int
    label_dirs: list[Path]
    classes: dict[str, Any] | None = None


@dataclass
class Sample:
    """One labelled pair in memory: vis (H, W, 3) uint8, ir (H, W) uint8, label (H, W) uint8 (255 ignore)."""

    name: str
    vis: np.ndarray
    ir: np.ndarray
    label: np.ndarray


def _find_subfolder(root: Path, name: str) -> Path | None:
    """``root/name``, matched case-insensitively like the dataset layouts."""
    if (root / name).is_dir():
        return root / name
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.lower() == name.lower():
            return entry
    return None


def find_labelled_pairs(roots: Sequence[Path], label_dir: str | None = None) -> LabelledPairs:
    """List the pairs of ``roots`` that have a label file in ``label_dir`` (default: the layout's).

    Matching is by the stem relative to the visible folder (``vi/a.png`` ↔ ``LABELS/a.bmp``). Raises
    :class:`SegEvalError` naming the root when its label folder is missing or no pair has a label.
    """
    try:
        dataset = PairedFolderDataset(list(roots), load_labels=False)
    except DatasetError as e:
        raise SegEvalError(str(e)) from None
    splits = manifest_splits(dataset)
    folder_of_pair = []
    for pair in dataset.pairs:
        folder_of_pair.append(next(f for f in dataset.folders if pair.vis.is_relative_to(f.vis_dir)))
    labels_by_root: dict[Path, dict[str, Path]] = {}
    label_dirs = []
    for folders in dataset.folders:
        if label_dir is not None:
            found = _find_subfolder(folders.root, label_dir)
            if found is None:
                present = sorted(p.name for p in folders.root.iterdir() if p.is_dir())
                raise SegEvalError(
                    f"{folders.root / label_dir}: label folder not found (subfolders of {folders.root}: "
                    f"{', '.join(present) or 'none'}); pick one with --label-dir"
                )
        elif folders.label_dir is None:
            raise SegEvalError(
                f"{folders.root}: no label folder of the {folders.layout!r} layout found; name the folder "
                "holding the label images with --label-dir NAME (e.g. ir_mask, mask_binary)"
            )
        else:
            found = folders.label_dir
        labels, _ = list_images(found)
        if not labels:
            raise SegEvalError(f"{found}: no label images in the label folder")
        labels_by_root[folders.root] = labels
        label_dirs.append(found)
    files, kept_splits, skipped = [], [], 0
    for pair, folders, split in zip(dataset.pairs, folder_of_pair, splits, strict=True):
        stem = pair.vis.relative_to(folders.vis_dir).with_suffix("").as_posix()
        label = labels_by_root[folders.root].get(stem)
        if label is None:
            skipped += 1
            continue
        files.append(PairFiles(pair.name, pair.vis, pair.ir, label))
        kept_splits.append(split)
    if not files:
        raise SegEvalError(
            f"no pair of {', '.join(map(str, roots))} has a label file in "
            f"{', '.join(map(str, label_dirs))} (matched by the visible file's name)"
        )
    classes = None
    for root in roots:
        path = Path(root) / "classes.json"
        if path.is_file():
            classes = json.loads(path.read_text())
            break
    return LabelledPairs(files, kept_splits, skipped, label_dirs, classes)


def load_samples(
    files: Sequence[PairFiles], *, binary: bool, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> list[Sample]:
    """Decode every pair and its label; ``binary`` maps label > 0 to 1 (0/255 masks).

    Raises :class:`SegEvalError` naming the label file that holds an id >= ``num_classes`` other than
    ``ignore_index``. Logs a hint when labels hold only 0 and 255 without ``binary`` (masks read as
    "background or ignored").
    """
    samples = []
    values_seen: set[int] = set()
    for f in files:
        try:
            arrays = read_pair_arrays(f, load_label=True)
        except DatasetError as e:
            raise SegEvalError(str(e)) from None
        label = arrays["label"]
        if binary:
            label = (label > 0).astype(np.uint8)
        else:
            values = np.unique(label)
            bad = values[(values >= num_classes) & (values != ignore_index)]
            if bad.size:
                raise SegEvalError(
                    f"{f.label}: label id(s) {bad[:8].tolist()} >= num_classes {num_classes} (and not the "
                    f"ignore id {ignore_index}); pass the right --num-classes, or --binary for 0/255 masks"
                )
            values_seen.update(int(v) for v in values)
            label = label.astype(np.uint8)
        samples.append(Sample(f.name, arrays["vis"], arrays["ir"], label))
    if not binary and values_seen and values_seen <= {0, ignore_index}:
        log.warning(
            "labels hold only 0 and %d: read as 'class 0 or ignored'. For 0/255 binary masks pass --binary",
            ignore_index,
        )
    return samples


def infer_num_classes(num_classes: int | None, binary: bool, classes: dict[str, Any] | None) -> int:
    """``--num-classes``, else 2 with ``--binary``, else ``num_classes`` of the data's classes.json."""
    if num_classes is not None:
        if num_classes < 2:
            raise SegEvalError(f"--num-classes must be >= 2, got {num_classes}")
        return num_classes
    if binary:
        return 2
    if classes and isinstance(classes.get("num_classes"), int):
        return int(classes["num_classes"])
    raise SegEvalError(
        "the number of classes is unknown (no classes.json beside the data): pass --num-classes"
    )


def class_names_for(num_classes: int, binary: bool, classes: dict[str, Any] | None) -> list[str]:
    """Names for the table columns: classes.json's when they fit, background/target for binary masks."""
    if binary and num_classes == 2:
        return ["background", "target"]
    names = (classes or {}).get("names")
    if isinstance(names, list) and len(names) == num_classes and not binary:
        return [str(n) for n in names]
    return [f"class{i}" for i in range(num_classes)]


def check_config(cfg: dict[str, Any]) -> None:
    """Range checks the type checks of :func:`load_config` cannot do; errors name the key."""
    t = cfg["training"]
    positive = {"training.epochs": t["epochs"], "training.batch_size": t["batch_size"],
                "eval.pad_to": cfg["eval"]["pad_to"]}  # fmt: skip
    for key, value in positive.items():
        if value < 1:
            raise SegEvalError(f"config {key} must be >= 1, got {value}")
    crop = t["crop"]
    if len(crop) != 2 or not all(isinstance(v, int) and v >= 1 for v in crop):
        raise SegEvalError(f"config training.crop must be [height, width] of positive integers, got {crop}")
    if not 0.0 <= t["val_fraction"] < 1.0:
        raise SegEvalError(f"config training.val_fraction must be in [0, 1), got {t['val_fraction']}")
    for key in ("freeze_encoder_epochs", "warmup_epochs", "patience", "dice_weight"):
        if t[key] < 0:
            raise SegEvalError(f"config training.{key} must be >= 0, got {t[key]}")


# ---------------------------------------------------------------------------------------------- splits


@dataclass
class Split:
    """Indices (into the labelled pairs) of one train/test partition; ``fold`` is None without folds."""

    train: list[int]
    test: list[int]
    fold: int | None = None


def _name_rank(name: str) -> bytes:
    return hashlib.sha256(f"0:{name}".encode()).digest()


def kfold_assignment(names: Sequence[str], folds: int) -> list[int]:
    """Test fold of each name: names ranked by a hash (SHA-256 of ``"0:{name}"``) are dealt round-robin.

    Deterministic and independent of the listing order; fold sizes differ by at most one.
    """
    if folds < 2:
        raise SegEvalError(f"--folds must be >= 2, got {folds}")
    if folds > len(names):
        raise SegEvalError(f"--folds {folds} exceeds the {len(names)} labelled pairs")
    order = sorted(range(len(names)), key=lambda i: (_name_rank(names[i]), names[i]))
    fold_of = [0] * len(names)
    for position, index in enumerate(order):
        fold_of[index] = position % folds
    return fold_of


def make_splits(
    names: Sequence[str],
    manifest: Sequence[str | None],
    *,
    train_split: str | None = None,
    test_split: str | None = None,
    test_fraction: float | None = None,
    folds: int | None = None,
) -> list[Split]:
    """The train/test partitions: one for a manifest or fraction split, ``folds`` for cross-validation."""
    if folds is not None:
        fold_of = kfold_assignment(names, folds)
        return [
            Split(
                [i for i, f in enumerate(fold_of) if f != k], [i for i, f in enumerate(fold_of) if f == k], k
            )
            for k in range(folds)
        ]
    if train_split is not None or test_split is not None:
        if train_split is None or test_split is None:
            raise SegEvalError("give both --train-split and --test-split")
        train = [i for i, s in enumerate(manifest) if s == train_split]
        test = [i for i, s in enumerate(manifest) if s == test_split]
        found = sorted({str(s) for s in manifest})
        for flag, split, indices in (
            ("--train-split", train_split, train),
            ("--test-split", test_split, test),
        ):
            if not indices:
                raise SegEvalError(
                    f"{flag} {split!r}: no labelled pair has this split in manifest.csv (splits of the "
                    f"labelled pairs: {', '.join(found)})"
                )
        return [Split(train, test)]
    fraction = 0.1 if test_fraction is None else test_fraction
    if not 0.0 < fraction < 1.0:
        raise SegEvalError(f"--test-fraction must be in (0, 1), got {fraction}")
    if len(names) < 2:
        raise SegEvalError(f"a train/test split needs at least 2 labelled pairs, found {len(names)}")
    train, test = split_train_val(list(names), fraction, seed=0)
    return [Split(train, test)]


# --------------------------------------------------------------------------------------------- methods


def resolve_method(spec: str, device: str = "cpu") -> tuple[str, Fuser]:
    """(display name, fuse(name, vis, ir) -> uint8 (H, W, 3)) for a method spec (see the module doc)."""
    path = Path(spec)
    if path.suffix == ".safetensors" and not path.is_file():
        raise SegEvalError(f"method {spec!r}: checkpoint {path} does not exist")
    try:
        opened = open_fuser(spec, device=device, references=True)
    except FuserSpecError as e:
        raise SegEvalError(str(e)) from None
    except Exception as e:
        raise SegEvalError(f"method {spec!r}: cannot be loaded ({type(e).__name__}: {e})") from None
    label = opened.name

    def fuse(name: str, vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
        return opened.fuse(vis, ir, name=name).image

    def fuse_rgb(name: str, vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
        fused = np.asarray(fuse(name, vis, ir))
        if fused.ndim == 2 or (fused.ndim == 3 and fused.shape[2] == 1):
            fused = np.repeat(fused.reshape(*fused.shape[:2], 1), 3, axis=2)
        if fused.shape != vis.shape or fused.dtype != np.uint8:
            raise SegEvalError(
                f"method {spec!r} on pair {name!r}: fused image {fused.shape} {fused.dtype}, expected "
                f"{vis.shape} uint8"
            )
        return fused

    return label, fuse_rgb


SEED_FIELD = "{seed}"


def _row_name(given: str | None, spec: str, resolved_label: str) -> str:
    """The table row of a method: its given name, else the resolved label (of the template for a
    per-seed spec, e.g. ``seed{seed}/best``)."""
    if given:
        return given
    if SEED_FIELD in spec:
        path = Path(spec)
        return f"{path.parent.name}/{path.stem}" if path.parent != Path(".") else path.stem
    return resolved_label


def seed_spec(spec: str, seed: int) -> str:
    """The method spec for ``seed``: ``{seed}`` in a spec (e.g. ``runs/x/seed{seed}/best.safetensors``)
    pairs the segmentation seed with the fusion model trained with the same seed."""
    return spec.replace(SEED_FIELD, str(seed))


# -------------------------------------------------------------------------------------------- training


def random_crop_batch(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    crop: tuple[int, int],
    hflip: bool,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops (+ flips) of (H, W, 3) uint8 images and (H, W) labels -> (B,3,h,w) float, (B,h,w) int64.

    Images smaller than the crop are padded (black image, ``IGNORE_INDEX`` label) before cropping.
    """
    ch, cw = crop
    xs = np.zeros((len(images), ch, cw, 3), dtype=np.uint8)
    ys = np.full((len(images), ch, cw), IGNORE_INDEX, dtype=np.int64)
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        h, w = label.shape
        top = int(rng.integers(0, h - ch + 1)) if h > ch else 0
        left = int(rng.integers(0, w - cw + 1)) if w > cw else 0
        img = image[top : top + ch, left : left + cw]
        lab = label[top : top + ch, left : left + cw]
        if hflip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        xs[k, : img.shape[0], : img.shape[1]] = img
        ys[k, : lab.shape[0], : lab.shape[1]] = lab
    x = torch.from_numpy(xs).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(), torch.from_numpy(ys)


@torch.inference_mode()
def predict(model: SegFormer, image: np.ndarray, pad_to: int = 32, device: str = "cpu") -> np.ndarray:
    """Class ids (H, W) int64 of one (H, W, 3) uint8 image, full size.

    The image is padded (replicated border) to a multiple of ``pad_to``; SegFormer's logits are upsampled
    to the padded size inside the model and cropped back to (H, W) before the argmax.
    """
    h, w = image.shape[:2]
    x = torch.tensor(image).permute(2, 0, 1)[None].float().div_(255.0).to(device)
    ph, pw = (-h) % pad_to, (-w) % pad_to
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    logits = model(x)[:, :, :h, :w]
    return logits.argmax(1)[0].cpu().numpy()


def confusion_on(
    model: SegFormer,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    num_classes: int,
    pad_to: int = 32,
    device: str = "cpu",
) -> np.ndarray:
    """(K, K) confusion matrix summed over full-image predictions (rows = target)."""
    model.eval()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for image, label in zip(images, labels, strict=True):
        cm += confusion_matrix(predict(model, image, pad_to, device), label, num_classes, IGNORE_INDEX)
    return cm


def load_init_weights(model: SegFormer, path: str | Path) -> tuple[int, int]:
    """Load the tensors of ``path`` whose name (``model.`` prefix dropped) and shape fit ``model.model``.

    Returns (loaded, total parameters and buffers of the model); raises SegEvalError when none fits.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise SegEvalError(f"model.init_weights: {path} does not exist")
    tensors = load_file(path)
    own = model.model.state_dict()
    fitting = {}
    for key, value in tensors.items():
        name = key.removeprefix("model.")
        if name in own and own[name].shape == value.shape:
            fitting[name] = value
    if not fitting:
        raise SegEvalError(
            f"model.init_weights: no tensor of {path} matches the SegFormer {model.config.hidden_sizes} "
            "by name and shape (expected Hugging Face SegformerForSemanticSegmentation names, "
            "e.g. segformer.encoder...)"
        )
    model.model.load_state_dict(fitting, strict=False)
    return len(fitting), len(own)


@dataclass
class TrainResult:
    """A trained model (best validation weights loaded) and how training went."""

    model: SegFormer
    epochs_run: int
    best_epoch: int
    best_val_miou: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_segformer(
    train: Sequence[tuple[np.ndarray, np.ndarray]],
    val: Sequence[tuple[np.ndarray, np.ndarray]],
    cfg: dict[str, Any],
    num_classes: int,
    seed: int,
    *,
    data_seed: Sequence[int] = (),
    tag: str = "",
    device: str = "cpu",
) -> TrainResult:
    """Train a SegFormer on ``train`` ((H, W, 3) uint8 image, (H, W) label) pairs per ``cfg``.

    ``seed`` fixes the initialisation (and dropout); ``(seed, *data_seed, epoch)`` the order, crops and flips.
    """
    t_start = time.perf_counter()
    tc = cfg["training"]
    torch.manual_seed(seed)
    model = build_segformer(cfg["model"]["preset"], num_classes, 3, **cfg["model"]["config"]).to(device)
    if cfg["model"]["init_weights"]:
        loaded, total = load_init_weights(model, cfg["model"]["init_weights"])
        log.info("%s loaded %d of %d tensors from %s", tag, loaded, total, cfg["model"]["init_weights"])
    encoder = model.model.segformer
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=float(tc["lr"]),
        betas=tuple(tc["betas"]),
        weight_decay=float(tc["weight_decay"]),
    )
    batch = int(tc["batch_size"])
    dice_weight = float(tc["dice_weight"])
    steps_per_epoch = math.ceil(len(train) / batch)
    if tc["max_steps_per_epoch"]:
        steps_per_epoch = min(steps_per_epoch, int(tc["max_steps_per_epoch"]))
    epochs = int(tc["epochs"])
    total_steps = epochs * steps_per_epoch
    warmup = int(tc["warmup_epochs"]) * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, total_steps, warmup, float(tc["min_lr_ratio"]))
    )
    crop = (int(tc["crop"][0]), int(tc["crop"][1]))
    freeze_epochs, patience = int(tc["freeze_encoder_epochs"]), int(tc["patience"])
    pad_to = int(cfg["eval"]["pad_to"])
    images, labels = [t[0] for t in train], [t[1] for t in train]
    best_miou, best_epoch, best_state, since_best = -math.inf, -1, None, 0
    history = []
    epoch = 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        frozen = epoch < freeze_epochs
        encoder.requires_grad_(not frozen)
        model.train()
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, data_seed), epoch]))
        order = rng.permutation(len(train))
        losses = []
        for step in range(steps_per_epoch):
            chosen = order[step * batch : (step + 1) * batch]
            x, y = random_crop_batch(
                [images[i] for i in chosen], [labels[i] for i in chosen], crop, bool(tc["hflip"]), rng
            )
            if (y != IGNORE_INDEX).any():
                logits, target = model(x.to(device)), y.to(device)
                if dice_weight:  # the Dice only when it counts: it costs a softmax and one-hot per step
                    ce, dice = labelled_ce_dice(logits, target, IGNORE_INDEX)
                    loss = ce + dice_weight * dice
                else:
                    loss = labelled_ce(logits, target, IGNORE_INDEX)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            scheduler.step()
        row = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else math.nan,
            "lr": optimizer.param_groups[0]["lr"],
            "frozen": frozen,
        }
        if val:
            cm = confusion_on(model, [v[0] for v in val], [v[1] for v in val], num_classes, pad_to, device)
            row["val_miou"] = mean_iou(cm)
            score = row["val_miou"] if not math.isnan(row["val_miou"]) else -math.inf
            if score > best_miou:
                best_miou, best_epoch, since_best = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            elif not frozen:
                since_best += 1
        history.append(row)
        val_text = f" val mIoU {row['val_miou']:.4f} (best {best_miou:.4f} @ {best_epoch + 1})" if val else ""
        log.info(
            "%s epoch %d/%d loss %.4f%s lr %.2e%s %.1f s",
            tag,
            epoch + 1,
            epochs,
            row["loss"],
            val_text,
            row["lr"],
            " encoder frozen" if frozen else "",
            time.perf_counter() - t0,
        )
        if val and patience > 0 and since_best >= patience:
            log.info("%s early stop: no better validation mIoU for %d epochs", tag, patience)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
    model.eval()
    return TrainResult(
        model,
        epoch + 1,
        best_epoch + 1,
        best_miou if val and best_state is not None else None,
        history,
        time.perf_counter() - t_start,
    )


# ------------------------------------------------------------------------------------------ evaluation


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) over the non-NaN values; NaN where undefined."""
    finite = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std(ddof=1)) if finite.size >= 2 else math.nan
    return mean, std


def evaluate_method(
    names: Sequence[str],
    fused: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    splits: Sequence[Split],
    cfg: dict[str, Any],
    num_classes: int,
    seed: int,
    *,
    tag: str = "",
    device: str = "cpu",
) -> dict[str, Any]:
    """Train and test one seed of one method over all splits; IoUs from the pooled confusion matrix.

    The validation images (early stopping) are a hash split of each training set's names (seed 1), the
    same for every method and seed.
    """
    pooled = np.zeros((num_classes, num_classes), dtype=np.int64)
    folds, seconds = [], 0.0
    val_fraction = float(cfg["training"]["val_fraction"])
    for split in splits:
        train_idx = list(split.train)
        val_idx: list[int] = []
        if val_fraction > 0 and len(train_idx) >= 2:
            keep, held = split_train_val([names[i] for i in train_idx], val_fraction, seed=1)
            train_idx, val_idx = [split.train[k] for k in keep], [split.train[k] for k in held]
        fold_tag = tag if split.fold is None else f"{tag} fold {split.fold + 1}/{len(splits)}"
        result = train_segformer(
            [(fused[i], labels[i]) for i in train_idx],
            [(fused[i], labels[i]) for i in val_idx],
            cfg,
            num_classes,
            seed,
            data_seed=[split.fold or 0],
            tag=fold_tag,
            device=device,
        )
        cm = confusion_on(
            result.model,
            [fused[i] for i in split.test],
            [labels[i] for i in split.test],
            num_classes,
            int(cfg["eval"]["pad_to"]),
            device,
        )
        pooled += cm
        seconds += result.seconds
        folds.append(
            {
                "fold": split.fold,
                "train": len(train_idx),
                "val": len(val_idx),
                "test": len(split.test),
                "miou": _nan_to_none(mean_iou(cm)),
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "best_val_miou": result.best_val_miou,
                "seconds": round(result.seconds, 2),
                "history": [
                    {k: _nan_to_none(v) if isinstance(v, float) else v for k, v in row.items()}
                    for row in result.history
                ],
            }
        )
        log.info("%s test mIoU %.4f on %d images", fold_tag, mean_iou(cm), len(split.test))
    return {
        "seed": seed,
        "miou": _nan_to_none(mean_iou(pooled)),
        "iou": [_nan_to_none(v) for v in iou_per_class(pooled)],
        "confusion": pooled.tolist(),
        "folds": folds,
        "seconds": round(seconds, 2),
    }


def summarise(per_seed: Sequence[dict[str, Any]], class_names: Sequence[str], with_folds: bool) -> dict:
    """Mean ± sample std over seeds of mIoU and each class IoU (and of the per-fold mIoUs with folds)."""

    def stats(values: Sequence[float | None]) -> dict[str, float | None]:
        mean, std = mean_std(values)  # None (an undefined IoU) is skipped like NaN
        return {"mean": _nan_to_none(mean), "std": _nan_to_none(std)}

    out: dict[str, Any] = {
        "miou": stats([r["miou"] for r in per_seed]),
        "iou": {c: stats([r["iou"][k] for r in per_seed]) for k, c in enumerate(class_names)},
    }
    if with_folds:
        fold_values = [f["miou"] for r in per_seed for f in r["folds"] if f["miou"] is not None]
        out["fold_miou"] = {
            **stats(fold_values),
            "min": min(fold_values, default=None),
            "max": max(fold_values, default=None),
            "count": len(fold_values),
        }
    return out


def _cell(stat: dict[str, float | None]) -> str:
    if stat["mean"] is None:
        return "n/a"
    text = f"{100 * stat['mean']:.1f}"
    return text + (f" ± {100 * stat['std']:.1f}" if stat["std"] is not None else "")


def markdown_table(payload: dict[str, Any]) -> str:
    """Methods × (per-class IoU, mIoU) in %, mean ± std over seeds, with a caption line."""
    names = payload["data"]["class_names"]
    with_folds = payload["data"]["folds"] is not None
    header = ["method", *names, "mIoU"] + (["fold mIoU (min–max)"] if with_folds else [])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method, result in payload["methods"].items():
        s = result["summary"]
        cells = [method, *(_cell(s["iou"][c]) for c in names), f"**{_cell(s['miou'])}**"]
        if with_folds:
            f = s["fold_miou"]
            cells.append(f"{_cell(f)} ({100 * f['min']:.1f}–{100 * f['max']:.1f})" if f["count"] else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    d, t = payload["data"], payload["config"]["training"]
    seeds = ",".join(map(str, payload["seeds"]))
    model = f"SegFormer-{payload['config']['model']['preset']}"
    if with_folds:
        where = (
            f"{d['folds']}-fold cross-validation over {d['labelled']} labelled pairs (pooled IoU: "
            f"intersections and unions summed over all test folds)"
        )
    else:
        where = f"{d['test_count']} test images, trained on {d['train_count']} fused training images"
    if t["val_fraction"] > 0:
        where += f" ({t['val_fraction']:.0%} of the training images held out for early stopping)"
    lines.append(
        f"\nIoU in %, mean ± sample std over {len(payload['seeds'])} seed(s) ({seeds}); {where}; {model} "
        f"for up to {t['epochs']} epoch(s) (crop {t['crop'][0]}x{t['crop'][1]}, batch {t['batch_size']})."
    )
    return "\n".join(lines) + "\n"


def csv_text(payload: dict[str, Any]) -> str:
    """One row per method and seed, then a ``mean`` and a ``std`` row per method."""
    names = payload["data"]["class_names"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "seed", "mIoU", *(f"IoU_{c}" for c in names), "seconds"])

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.6f}"

    for method, result in payload["methods"].items():
        for r in result["per_seed"]:
            writer.writerow([method, r["seed"], fmt(r["miou"]), *map(fmt, r["iou"]), r["seconds"]])
        s = result["summary"]
        for stat in ("mean", "std"):
            writer.writerow(
                [method, stat, fmt(s["miou"][stat]), *(fmt(s["iou"][c][stat]) for c in names), ""]
            )
    return buffer.getvalue()


def write_outputs(out: Path, payload: dict[str, Any]) -> None:
    """``segmentation.json``, ``.csv`` and ``.md`` in ``out``, each via a temporary file and a rename."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1, allow_nan=False)  # NaN is stored as null: strict JSON
    atomic_write_bytes(out / "segmentation.json", (text + "\n").encode())
    atomic_write_bytes(out / "segmentation.csv", csv_text(payload).encode())
    atomic_write_bytes(out / "segmentation.md", markdown_table(payload).encode())


def _run_method(
    name: str, spec: str, by_seed: dict, seeds: Sequence[int], samples: Sequence[Sample], used: list[int],
    labels: list[np.ndarray], splits: list[Split], cfg: dict[str, Any], k: int, device: str,
) -> tuple[list[dict[str, Any]], float]:  # fmt: skip
    """Every seed of one method: fuse the used images (again only when the seed's fuser differs, a per-seed
    checkpoint) and run the protocol; (per-seed results, seconds spent fusing)."""
    names = [s.name for s in samples]
    fuse_seconds, per_seed = 0.0, []
    fused: list[np.ndarray] = []
    fused_by = None
    for seed in seeds:
        fuse = by_seed[seed][1]
        if fuse is not fused_by:  # a per-seed checkpoint, or the first seed: fuse (again)
            t0 = time.perf_counter()
            fused = [np.empty(0, np.uint8)] * len(samples)
            for i in used:
                fused[i] = fuse(samples[i].name, samples[i].vis, samples[i].ir)
            fuse_seconds += time.perf_counter() - t0
            fused_by = fuse
            log.info("%s: fused %d images (%s)", name, len(used), seed_spec(spec, seed))
        tag = f"[{name} seed {seed}]"
        per_seed.append(evaluate_method(names, fused, labels, splits, cfg, k, seed, tag=tag, device=device))
    return per_seed, fuse_seconds


def evaluate_segmentation(
    roots: Sequence[Path],
    methods: Sequence[str],
    out: Path,
    cfg: dict[str, Any],
    seeds: Sequence[int] = (0,),
    *,
    label_dir: str | None = None,
    binary: bool = False,
    num_classes: int | None = None,
    train_split: str | None = None,
    test_split: str | None = None,
    test_fraction: float | None = None,
    folds: int | None = None,
    limit: int | None = None,
    device: str = "cpu",
    command: str = "",
) -> dict[str, Any]:
    """Run the protocol for every method and seed, write the outputs, return the JSON payload."""
    if not methods:
        raise SegEvalError("no method given (--methods)")
    if not seeds:
        raise SegEvalError("no seed given (--seeds)")
    check_config(cfg)
    labelled = find_labelled_pairs(roots, label_dir)
    files, manifest = labelled.files, labelled.splits
    if limit:
        files, manifest = files[:limit], manifest[:limit]
    k = infer_num_classes(num_classes, binary, labelled.classes)
    class_names = class_names_for(k, binary, labelled.classes)
    log.info(
        "%d labelled pairs in %s (%d pair(s) without a label file skipped%s)",
        len(files),
        ", ".join(map(str, labelled.label_dirs)),
        labelled.skipped,
        f", first {limit} kept" if limit else "",
    )
    splits = make_splits(
        [f.name for f in files],
        manifest,
        train_split=train_split,
        test_split=test_split,
        test_fraction=test_fraction,
        folds=folds,
    )
    # fail early, before any decoding: every (method, seed) is resolved now
    named = [split_method_name(spec) for spec in methods]
    resolved = [
        {seed: resolve_method(seed_spec(spec, seed), device) for seed in seeds}
        if SEED_FIELD in spec
        else dict.fromkeys(seeds, resolve_method(spec, device))
        for _, spec in named
    ]
    first_labels = [by_seed[seeds[0]][0] for by_seed in resolved]
    labels_shown = unique_names(
        [_row_name(given, spec, label) for (given, spec), label in zip(named, first_labels, strict=True)]
    )
    samples = load_samples(files, binary=binary, num_classes=k)
    used = sorted({i for s in splits for i in (*s.train, *s.test)})
    train_count = len(splits[0].train) if folds is None else None
    test_count = len(splits[0].test) if folds is None else None
    payload: dict[str, Any] = {
        "command": command,
        "data": {
            "roots": [str(r) for r in roots],
            "label_dirs": [str(p) for p in labelled.label_dirs],
            "binary": binary,
            "num_classes": k,
            "class_names": class_names,
            "ignore_index": IGNORE_INDEX,
            "labelled": len(files),
            "skipped_unlabelled": labelled.skipped,
            "split": (
                f"folds={folds}"
                if folds
                else f"manifest {train_split}/{test_split}"
                if train_split
                else f"test_fraction={0.1 if test_fraction is None else test_fraction}"
            ),
            "folds": folds,
            "train_count": train_count,
            "test_count": test_count,
            "test_names": [[files[i].name for i in s.test] for s in splits],
        },
        "config": cfg,
        "seeds": list(seeds),
        "methods": {},
    }
    labels = [s.label for s in samples]
    for by_seed, (_, spec), name in zip(resolved, named, labels_shown, strict=True):
        per_seed, fuse_seconds = _run_method(
            name, spec, by_seed, seeds, samples, used, labels, splits, cfg, k, device
        )
        summary = summarise(per_seed, class_names, folds is not None)
        payload["methods"][name] = {
            "spec": spec,
            "fuse_seconds": round(fuse_seconds, 2),
            "per_seed": per_seed,
            "summary": summary,
        }
        log.info("%s: mIoU %s over seeds %s", name, _cell(summary["miou"]), ",".join(map(str, seeds)))
        write_outputs(out, payload)  # after every method: a killed run keeps what it finished
    return payload
