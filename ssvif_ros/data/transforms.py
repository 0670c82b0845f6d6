"""Training transforms applied identically to every array of a pair, the tensor conversion, and the split.

A sample is a dict of numpy arrays sharing height and width: ``"vis"`` uint8 (H,W,3), ``"ir"`` uint8 (H,W)
and optionally ``"label"`` (H,W) class ids. Spatial transforms apply one random draw to all of them, so
visible, infrared and label stay pixel-aligned. Random numbers come from torch's global generator,
which a ``DataLoader`` seeds differently in each worker (a numpy generator stored in the transform would
be copied into every worker and repeat the same crops); call ``torch.manual_seed`` for reproducibility.

Images smaller than the crop are padded by reflection (all arrays alike, labels included, so reflected
content keeps its reflected labels), or rejected with ``pad_mode="raise"``. RoadScene, for example, has
frames only 161 px high.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

PairArrays = dict[str, np.ndarray]
PadMode = Literal["reflect", "raise"]


def _spatial_size(sample: PairArrays) -> tuple[int, int]:
    """Common ``(H, W)`` of the sample's arrays; raises if they disagree."""
    sizes = {key: tuple(array.shape[:2]) for key, array in sample.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays of one pair differ in size: {sizes}")
    height, width = next(iter(sizes.values()))
    return int(height), int(width)


def _uniform_int(high_exclusive: int) -> int:
    return int(torch.randint(high_exclusive, (1,)).item()) if high_exclusive > 1 else 0


class RandomPairCrop:
    """Random ``size`` crop (``int`` or ``(height, width)``) at one position for all arrays.

    An image smaller than the crop in a dimension is first padded by reflection, centred
    (``pad_mode="reflect"``, the default), or raises ``ValueError`` (``pad_mode="raise"``).
    """

    def __init__(self, size: int | Sequence[int], pad_mode: PadMode = "reflect") -> None:
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if height < 1 or width < 1:
            raise ValueError(f"crop size must be positive, got {size}")
        if pad_mode not in ("reflect", "raise"):
            raise ValueError(f"pad_mode must be 'reflect' or 'raise', got {pad_mode!r}")
        self.size = (height, width)
        self.pad_mode: PadMode = pad_mode

    def __call__(self, sample: PairArrays) -> PairArrays:
        height, width = _spatial_size(sample)
        crop_h, crop_w = self.size
        if height < crop_h or width < crop_w:
            if self.pad_mode == "raise":
                raise ValueError(f"image {width}x{height} is smaller than the crop {crop_w}x{crop_h}")
            sample = self._pad(sample, max(crop_h - height, 0), max(crop_w - width, 0))
            height, width = max(height, crop_h), max(width, crop_w)
        top = _uniform_int(height - crop_h + 1)
        left = _uniform_int(width - crop_w + 1)
        return {key: array[top : top + crop_h, left : left + crop_w] for key, array in sample.items()}

    @staticmethod
    def _pad(sample: PairArrays, pad_h: int, pad_w: int) -> PairArrays:
        rows = (pad_h // 2, pad_h - pad_h // 2)
        cols = (pad_w // 2, pad_w - pad_w // 2)
        padded: PairArrays = {}
        for key, array in sample.items():
            widths = [rows, cols] + [(0, 0)] * (array.ndim - 2)
            # numpy reflects repeatedly when the pad exceeds the size; a 1-pixel axis can only be repeated.
            mode = "reflect" if min(array.shape[:2]) > 1 else "edge"
            padded[key] = np.pad(array, widths, mode=mode)
        return padded

    def __repr__(self) -> str:
        return f"RandomPairCrop(size={self.size}, pad_mode={self.pad_mode!r})"


class RandomPairFlip:
    """Horizontal flip with probability ``horizontal``, vertical flip with probability ``vertical``."""

    def __init__(self, horizontal: float = 0.5, vertical: float = 0.0) -> None:
        for name, value in (("horizontal", horizontal), ("vertical", vertical)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} flip probability must be in [0, 1], got {value}")
        self.horizontal = float(horizontal)
        self.vertical = float(vertical)

    def __call__(self, sample: PairArrays) -> PairArrays:
        _spatial_size(sample)
        draws = torch.rand(2)
        if float(draws[0]) < self.horizontal:
            sample = {key: array[:, ::-1] for key, array in sample.items()}
        if float(draws[1]) < self.vertical:
            sample = {key: array[::-1] for key, array in sample.items()}
        return sample

    def __repr__(self) -> str:
        return f"RandomPairFlip(horizontal={self.horizontal}, vertical={self.vertical})"


class ComposePair:
    """Apply transforms in order (picklable, unlike a lambda chain)."""

    def __init__(self, transforms: Sequence[Callable[[PairArrays], PairArrays]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: PairArrays) -> PairArrays:
        for transform in self.transforms:
            sample = transform(sample)
        return sample

    def __repr__(self) -> str:
        return f"ComposePair({self.transforms!r})"


def train_transform(
    crop_size: int | Sequence[int], *, vertical_flip: bool = False, pad_mode: PadMode = "reflect"
) -> ComposePair:
    """The training augmentation: random crop, then horizontal (and optionally vertical) flip at p = 0.5."""
    return ComposePair(
        [RandomPairCrop(crop_size, pad_mode), RandomPairFlip(0.5, 0.5 if vertical_flip else 0.0)]
    )


def _owned_c_array(array: np.ndarray) -> np.ndarray:
    """A writable C-contiguous array, copying only if needed (decoded arrays are read-only,
    flipped or transposed ones strided): torch.from_numpy needs both."""
    if array.flags.writeable and array.flags.c_contiguous:
        return array
    return np.array(array, order="C")


def to_tensors(sample: PairArrays) -> dict[str, torch.Tensor]:
    """uint8 arrays → tensors: ``vis`` float32 (3,H,W), ``ir`` float32 (1,H,W), both in [0,1];
    ``label`` int64 (H,W). Other keys are converted as they are (``torch.from_numpy``)."""
    tensors: dict[str, torch.Tensor] = {}
    for key, array in sample.items():
        if key == "vis":
            tensors[key] = torch.from_numpy(_owned_c_array(array.transpose(2, 0, 1))).float().div_(255.0)
        elif key == "ir":
            tensors[key] = torch.from_numpy(_owned_c_array(array)[None]).float().div_(255.0)
        elif key == "label":
            tensors[key] = torch.from_numpy(array.astype(np.int64))
        else:
            tensors[key] = torch.from_numpy(_owned_c_array(array))
    return tensors


def split_train_val(
    dataset_or_names: object, val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split → ``(train_indices, val_indices)``, each sorted.

    ``dataset_or_names`` is a sequence of unique item names or anything with a ``names`` attribute
    (:class:`~ssvif_ros.data.pairs.PairedFolderDataset`). Each name is ranked by SHA-256 of
    ``"{seed}:{name}"`` and the first ``round(n * val_fraction)`` form the validation set (at least one,
    and at least one training item, when ``n >= 2`` and ``0 < val_fraction < 1``). Hashing names rather
    than shuffling indices makes the split identical on every machine and numpy version, independent of
    the order files were listed in.
    """
    names = getattr(dataset_or_names, "names", dataset_or_names)
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError("split_train_val needs a sequence of names or a dataset with a `names` attribute")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("split_train_val needs unique names (combine roots in one PairedFolderDataset)")
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    count = len(names)
    n_val = math.floor(count * val_fraction + 0.5)
    if count >= 2 and 0.0 < val_fraction < 1.0:
        n_val = min(max(n_val, 1), count - 1)

    def rank(index: int) -> tuple[bytes, str]:
        return hashlib.sha256(f"{seed}:{names[index]}".encode()).digest(), names[index]

    order = sorted(range(count), key=rank)
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return train, val
