"""Datasets of paired visible/infrared images: folders on disk, training transforms, a scanner.

``PairedFolderDataset`` reads ``vi/``+``ir/`` (and the MSRS, FMB and RoadScene layouts);
``train_transform`` / ``split_train_val`` prepare training; ``python -m ssvif_ros.data.check`` scans folders.
"""

from __future__ import annotations

from ssvif_ros.data.image_files import (
    IMAGE_EXTENSIONS,
    DataFileError,
    DatasetError,
    read_infrared,
    read_infrared_raw,
    read_label,
    read_visible,
    thermal16_to_uint8,
)
from ssvif_ros.data.pairs import (
    LAYOUTS,
    FolderLayout,
    LayoutError,
    PairedFolderDataset,
    PairFiles,
    PairFolders,
    PairingError,
    Problem,
    manifest_column,
    manifest_splits,
    read_pair_arrays,
    resolve_layout,
)
from ssvif_ros.data.transforms import (
    ComposePair,
    RandomPairCrop,
    RandomPairFlip,
    split_train_val,
    to_tensors,
    train_transform,
)


def __getattr__(name: str) -> object:
    # Lazy, so `python -m ssvif_ros.data.check` does not import its own module twice.
    if name == "scan_folder":
        from ssvif_ros.data.check import scan_folder

        return scan_folder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "ComposePair",
    "DataFileError",
    "DatasetError",
    "FolderLayout",
    "LayoutError",
    "PairFiles",
    "PairFolders",
    "PairedFolderDataset",
    "PairingError",
    "Problem",
    "RandomPairCrop",
    "RandomPairFlip",
    "manifest_column",
    "manifest_splits",
    "read_infrared",
    "read_infrared_raw",
    "read_label",
    "read_pair_arrays",
    "read_visible",
    "resolve_layout",
    "scan_folder",
    "split_train_val",
    "thermal16_to_uint8",
    "to_tensors",
    "train_transform",
]
