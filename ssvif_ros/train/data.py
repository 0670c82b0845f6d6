"""The training data: the train/validation split, items keyed by (epoch, position), and their loaders.

Data order and augmentation depend only on ``(seed, epoch, item)`` (see :class:`PairItems`), so neither the
number of loader workers nor a resume changes them. Pairs a manifest marks for evaluation
(``data.exclude_splits``, ``data.exclude_flags``) never reach training.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssvif_ros.config import ConfigError
from ssvif_ros.data import (
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
from ssvif_ros.data.pairs import LABELS_WHERE_PRESENT
from ssvif_ros.train.config import TRUE_WORDS
from ssvif_ros.train.interrupt import ignore_sigint_in_worker

SHARED_DATA = "../shared/data"
"""The shared real-data folder beside the project checkout that the CPU configs read (relative roots)."""

SYNTHETIC_ROOTS: dict[str, dict[str, Any]] = {
    "out/synthetic_tiny": {"n": 12, "width": 64, "height": 48, "seed": 0},  # config/train/tiny.yaml
    "runs/synth_train": {"n": 300, "width": 320, "height": 240, "num_classes": 9, "seed": 7},  # default.yaml
}
"""Roots the configs expect from the synthetic generator: made on first use when missing (a seeded
generator remakes exactly what the config headers' commands make)."""


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
        self.load_labels = label_mode(cfg)

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
        if path is None:  # an unlabelled pair of MultiTaskVIF's mixed data: all-ignore
            continue
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


def synthetic_spec(root: str) -> dict[str, Any] | None:
    """The generator arguments of ``root`` when it is one of :data:`SYNTHETIC_ROOTS`, else None."""
    here = Path(root).resolve()
    return next((spec for key, spec in SYNTHETIC_ROOTS.items() if Path(key).resolve() == here), None)


def synthetic_command(root: str, spec: dict[str, Any]) -> str:
    """The generator command line that makes ``root`` (for the log and the docs)."""
    classes = f" --num-classes {spec['num_classes']}" if spec.get("num_classes") else ""
    return (
        f"python -m ssvif_ros.data.synthetic --out {root} -n {spec['n']} "
        f"--size {spec['width']}x{spec['height']}{classes} --seed {spec['seed']}"
    )


def check_roots(roots: list[str]) -> None:
    """Raise :class:`DatasetError` (one line: the key, the missing paths, the override) when a root is
    missing and is not a synthetic root made on demand; called before anything is written."""
    missing = [r for r in map(str, roots) if not Path(r).exists() and synthetic_spec(r) is None]
    if not missing:
        return
    where = (
        "" if all(Path(r).is_absolute() for r in missing) else f" (from the working directory {os.getcwd()})"
    )
    what = f"{', '.join(missing)} {'does' if len(missing) == 1 else 'do'} not exist{where}"
    shared = [r for r in missing if (Path(r).as_posix() + "/").startswith(SHARED_DATA + "/")]
    if shared:
        how = (
            f"this config reads the shared data folder {SHARED_DATA}, which must sit beside the project "
            "checkout: run from the project root with it in place, or override with "
        )
    else:
        how = "give the folder(s) of your visible/infrared pairs with "
    raise DatasetError(f"data.roots: {what}; {how}'data.roots=[/path/to/pairs]'")


def make_synthetic_roots(roots: list[str], log: Callable[[str], None]) -> None:
    """Generate each missing :data:`SYNTHETIC_ROOTS` root in ``roots`` (into a temporary folder renamed at
    the end, so an interrupted generation never leaves a half-filled root behind)."""
    from ssvif_ros.data.synthetic import write_dataset

    for root in map(str, roots):
        spec = synthetic_spec(root)
        if spec is None or Path(root).exists():
            continue
        log(f"data: {root} is missing: making it with {synthetic_command(root, spec)}")
        target = Path(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            write_dataset(tmp, **spec)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def label_mode(cfg: dict[str, Any]) -> bool | str:
    """How items carry labels: False (fusion-only frameworks), True (every pair labelled: the supervised
    reference) or ``"where_present"`` (MultiTaskVIF: labelled roots with labels, the others all-ignore)."""
    if cfg["framework"] == "multitask":
        return LABELS_WHERE_PRESENT
    return cfg["ssvif"]["supervision"] == "labels"


def build_data(cfg: dict[str, Any]) -> tuple[PairItems, PairItems, list[str]]:
    """Train and validation items (the 9:1 split by name hash, ``split_train_val``) and excluded names.

    Labels are listed (and their ids checked) only with ``ssvif.supervision: labels``."""
    data = cfg["data"]
    mode = label_mode(cfg)
    supervised = bool(mode)
    try:
        base = PairedFolderDataset(data["roots"], layout=data["layout"], load_labels=mode)
    except PairingError as e:
        if mode is not True:
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
        worker_init_fn=ignore_sigint_in_worker,
    )
