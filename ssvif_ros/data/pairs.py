"""Paired visible/infrared folders as a torch ``Dataset``.

A root folder holds a visible folder and an infrared folder whose files match by name (the stem: the path
inside the folder without its extension, so ``vi/a.png`` pairs with ``ir/a.jpg``), and optionally a label
folder of class-id images. Known layouts (folder names matched case-insensitively; ``layout="auto"``
tries ``paired``, ``fmb``, ``roadscene`` in turn):

- ``paired``: ``vi/`` + ``ir/``, labels in ``label/``, ``labels/``, ``Segmentation_labels/`` or ``Label/``
  (the first present). Our shared data, the synthetic scenes and MSRS all use it.
- ``msrs``: ``vi/`` + ``ir/``, labels in ``Segmentation_labels/`` (official MSRS) or ``Label/``.
- ``fmb``: ``Visible/`` + ``Infrared/``, labels in ``Label/`` (FMB, JinyuanLiu-CV/SegMiF; its ``color/``
  folder is a visualisation, not labels).
- ``roadscene``: ``crop_LR_visible/`` + ``cropinfrared/`` (hanna-xu/RoadScene as published), no labels.

MSRS and FMB ship ``train/`` and ``test/`` subfolders: pass one of them (or both, as a list of roots).

Constructing a dataset only lists file names (no decoding) and raises :class:`PairingError` listing every
missing partner, duplicate name and empty folder. Decoding happens when an item is read, and a bad file
raises :class:`~ssvif_ros.data.image_files.DataFileError` naming it. ``python -m ssvif_ros.data.check``
decodes everything up front and reports all problems at once.

Labels are listed and read only when ``load_labels=True`` (every pair needs one) or ``"where_present"``
(roots with a label folder give labels, the others an all-ignore label: MultiTaskVIF's mixed data); fusion
training never touches them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ssvif_ros.data.image_files import (
    IMAGE_EXTENSIONS,
    IR16_METHODS,
    DataFileError,
    DatasetError,
    Ir16Method,
    is_image_file,
    read_infrared,
    read_label,
    read_visible,
)
from ssvif_ros.data.transforms import PairArrays, to_tensors

LABELS_WHERE_PRESENT = "where_present"  # load_labels mode: labelled roots give labels, the others 255
IGNORE_LABEL = 255

PathLike = str | os.PathLike[str]
_MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class FolderLayout:
    """Folder names of one dataset layout; each tuple lists candidates, the first one present wins."""

    name: str
    vis_dirs: tuple[str, ...]
    ir_dirs: tuple[str, ...]
    label_dirs: tuple[str, ...] = ()

    def describe(self) -> str:
        labels = f", labels in {' or '.join(d + '/' for d in self.label_dirs)}" if self.label_dirs else ""
        return f"{self.name}: {'|'.join(self.vis_dirs)}/ + {'|'.join(self.ir_dirs)}/{labels}"


LAYOUTS: dict[str, FolderLayout] = {
    "paired": FolderLayout("paired", ("vi",), ("ir",), ("label", "labels", "Segmentation_labels", "Label")),
    "msrs": FolderLayout("msrs", ("vi",), ("ir",), ("Segmentation_labels", "Label")),
    "fmb": FolderLayout("fmb", ("Visible",), ("Infrared",), ("Label",)),
    "roadscene": FolderLayout("roadscene", ("crop_LR_visible",), ("cropinfrared",)),
}
AUTO_LAYOUTS: tuple[str, ...] = ("paired", "fmb", "roadscene")
"""Layouts tried, in order, by ``layout="auto"`` (``paired`` also covers MSRS)."""


class LayoutError(DatasetError):
    """A root folder does not contain a recognised visible/infrared layout."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file (or folder) at fault and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class PairingError(DatasetError):
    """File names do not form complete pairs (missing partners, duplicates, empty folders)."""

    def __init__(self, problems: Sequence[Problem], roots: Sequence[Path] = ()) -> None:
        self.problems = list(problems)
        self.roots = [Path(r) for r in roots]
        lines = [str(p) for p in self.problems[:_MAX_LISTED_PROBLEMS]]
        if len(self.problems) > _MAX_LISTED_PROBLEMS:
            lines.append(f"... and {len(self.problems) - _MAX_LISTED_PROBLEMS} more")
        folders = " ".join(str(r) for r in self.roots) or "FOLDER"
        super().__init__(
            f"{len(self.problems)} pairing problem(s); `python -m ssvif_ros.data.check {folders}` decodes "
            "every file and lists all problems:\n  " + "\n  ".join(lines)
        )

    def __reduce__(self) -> tuple[type[PairingError], tuple[list[Problem], list[Path]]]:
        return (type(self), (self.problems, self.roots))


@dataclass(frozen=True)
class PairFolders:
    """The resolved folders of one root: where visible, infrared and (maybe) label files live."""

    root: Path
    layout: str
    vis_dir: Path
    ir_dir: Path
    label_dir: Path | None


@dataclass(frozen=True)
class PairFiles:
    """The files of one pair; ``name`` is the dataset-wide item name."""

    name: str
    vis: Path
    ir: Path
    label: Path | None = None


def _subfolders(root: Path) -> dict[str, str]:
    """Map lower-cased subfolder name → actual name (case-insensitive lookup, no decode)."""
    return {entry.name.lower(): entry.name for entry in os.scandir(root) if entry.is_dir()}


def _find_dir(root: Path, present: dict[str, str], candidates: Iterable[str]) -> Path | None:
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
        if candidate.lower() in present:
            return root / present[candidate.lower()]
    return None


def resolve_layout(root: PathLike, layout: str | FolderLayout = "auto") -> PairFolders:
    """Find the visible, infrared and label folders of ``root`` (no file is opened).

    ``layout`` is ``"auto"``, a name in :data:`LAYOUTS`, or a custom :class:`FolderLayout`. Raises
    :class:`LayoutError` saying what was looked for and what was found.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(
            f"{root}: dataset folder does not exist" if not root.exists() else f"{root}: not a folder"
        )
    if isinstance(layout, FolderLayout):
        candidates = [layout]
    elif layout == "auto":
        candidates = [LAYOUTS[name] for name in AUTO_LAYOUTS]
    elif layout in LAYOUTS:
        candidates = [LAYOUTS[layout]]
    else:
        raise LayoutError(f"unknown layout {layout!r}; choose 'auto' or one of {sorted(LAYOUTS)}")
    present = _subfolders(root)
    for candidate in candidates:
        vis_dir = _find_dir(root, present, candidate.vis_dirs)
        ir_dir = _find_dir(root, present, candidate.ir_dirs)
        if vis_dir is not None and ir_dir is not None:
            label_dir = _find_dir(root, present, candidate.label_dirs)
            return PairFolders(root, candidate.name, vis_dir, ir_dir, label_dir)
    looked_for = "; ".join(c.describe() for c in candidates)
    found = ", ".join(sorted(present.values())) or "no subfolders"
    message = f"{root}: no visible/infrared folder pair found. Looked for {looked_for}. Found: {found}."
    nested = [name for name in sorted(present.values()) if _has_layout(root / name, candidates)]
    if nested:
        message += (
            f" The subfolder(s) {', '.join(nested)} hold such a layout: pass "
            f"{' or '.join(str(root / n) for n in nested)} (a list of roots combines them)."
        )
    raise LayoutError(message)


def _has_layout(folder: Path, candidates: Sequence[FolderLayout]) -> bool:
    present = _subfolders(folder)
    return any(
        _find_dir(folder, present, c.vis_dirs) is not None
        and _find_dir(folder, present, c.ir_dirs) is not None
        for c in candidates
    )


def list_images(folder: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Image files under ``folder`` (recursively) keyed by stem (posix path relative to ``folder``
    without extension). Hidden files and non-image extensions are skipped. Two files with one stem
    (``a.png`` and ``a.jpg``) are a problem, as is a folder without any image."""
    by_stem: dict[str, Path] = {}
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if not is_image_file(path):
                continue
            stem = path.relative_to(folder).with_suffix("").as_posix()
            if stem in by_stem:
                problems.append(Problem(path, f"same name as {by_stem[stem]}: which one pairs is ambiguous"))
                continue
            by_stem[stem] = path
    if not by_stem:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        problems.append(Problem(folder, f"empty folder: no image files ({extensions})"))
    return by_stem, problems


def match_pairs(
    folders: PairFolders, *, with_labels: bool, name_prefix: str = ""
) -> tuple[list[PairFiles], list[Problem]]:
    """Pair the files of ``folders`` by stem, sorted by name; every unpaired file is a problem.

    With ``with_labels`` every pair must also have a label file (and every label file a pair).
    """
    vis, problems = list_images(folders.vis_dir)
    ir, ir_problems = list_images(folders.ir_dir)
    problems += ir_problems
    labels: dict[str, Path] = {}
    if with_labels:
        if folders.label_dir is None:
            wanted = LAYOUTS.get(folders.layout)
            names = (
                " or ".join(d + "/" for d in wanted.label_dirs) if wanted and wanted.label_dirs else "none"
            )
            problems.append(
                Problem(folders.root, f"labels requested but no label folder found (looked for {names})")
            )
        else:
            labels, label_problems = list_images(folders.label_dir)
            problems += label_problems
    extensions = "{" + ",".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS)) + "}"
    for stem in sorted(vis.keys() - ir.keys()):
        problems.append(
            Problem(vis[stem], f"no infrared partner (looked for {folders.ir_dir / stem}.{extensions})")
        )
    for stem in sorted(ir.keys() - vis.keys()):
        problems.append(
            Problem(ir[stem], f"no visible partner (looked for {folders.vis_dir / stem}.{extensions})")
        )
    stems = sorted(vis.keys() & ir.keys())
    if with_labels and folders.label_dir is not None and labels:
        for stem in stems:
            if stem not in labels:
                problems.append(
                    Problem(vis[stem], f"no label (looked for {folders.label_dir / stem}.{extensions})")
                )
        for stem in sorted(labels.keys() - vis.keys() - ir.keys()):
            problems.append(Problem(labels[stem], "label without a visible/infrared pair"))
    pairs = [PairFiles(name_prefix + stem, vis[stem], ir[stem], labels.get(stem)) for stem in stems]
    return pairs, problems


def _root_tags(roots: Sequence[Path]) -> list[str]:
    """Shortest trailing path parts that tell the roots apart (``MSRS/train`` vs ``FMB/train``)."""
    resolved = [r.resolve() for r in roots]
    if len(set(resolved)) != len(resolved):
        duplicates = sorted({str(r) for r in resolved if resolved.count(r) > 1})
        raise LayoutError(f"the same dataset folder was given twice: {', '.join(duplicates)}")
    depth = 1
    while True:
        tags = ["/".join(r.parts[-depth:]) for r in resolved]
        if len(set(tags)) == len(tags) or depth >= max(len(r.parts) for r in resolved):
            return tags
        depth += 1


def size_mismatch_reason(shape: Sequence[int], vis_path: Path, vis_shape: Sequence[int]) -> str:
    """Why a file of array shape ``shape`` cannot pair with the visible file of shape ``vis_shape``."""
    return (
        f"size {shape[1]}x{shape[0]} (WxH) differs from its visible partner {vis_path} "
        f"({vis_shape[1]}x{vis_shape[0]})"
    )


def read_pair_arrays(
    files: PairFiles,
    *,
    load_label: bool = False,
    ir16: Ir16Method = "percentile",
    ir16_window: Sequence[float] = (1.0, 99.0),
) -> PairArrays:
    """Decode one pair → ``{"vis": uint8 (H,W,3), "ir": uint8 (H,W)[, "label": (H,W) class ids]}``.

    Raises :class:`DataFileError` naming the file that is unreadable, of an unsupported mode, or whose
    size differs from its visible partner.
    """
    vis = read_visible(files.vis)
    ir = read_infrared(files.ir, ir16, ir16_window)
    sample: PairArrays = {"vis": vis, "ir": ir}
    if ir.shape != vis.shape[:2]:
        raise DataFileError(files.ir, size_mismatch_reason(ir.shape, files.vis, vis.shape))
    if load_label:
        if files.label is None:
            raise DataFileError(
                files.vis, "labels requested but no label file was paired (construct with load_labels=True)"
            )
        label = read_label(files.label)
        if label.shape != vis.shape[:2]:
            raise DataFileError(files.label, size_mismatch_reason(label.shape, files.vis, vis.shape))
        sample["label"] = label
    return sample


Transform = Callable[[PairArrays], PairArrays]


class PairedFolderDataset(Dataset[dict[str, object]]):
    """Visible/infrared pairs from one or several root folders.

    Item ``i`` is ``{"vis": float32 (3,H,W) in [0,1], "ir": float32 (1,H,W) in [0,1], "name": str}`` plus
    ``"label": int64 (H,W)`` (255 = ignore) when ``load_labels``. ``name`` is the root-relative stem
    (``"00004N"``, or ``"seq1/0001"`` for nested folders); with several roots it is prefixed by the
    shortest distinguishing tail of the root path (``"roadscene/FLIR_00006"``) so names stay unique.

    ``transform`` (see :mod:`ssvif_ros.data.transforms`) gets the uint8 arrays of
    :func:`read_pair_arrays` and must return the same keys; it runs before the tensor conversion.
    ``ir16``/``ir16_window`` set the 16-bit → 8-bit infrared rule (:func:`thermal16_to_uint8`).

    Holds only paths and settings (no open files), so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        roots: PathLike | Sequence[PathLike],
        *,
        layout: str | FolderLayout = "auto",
        load_labels: bool | str = False,
        transform: Transform | None = None,
        ir16: Ir16Method = "percentile",
        ir16_window: Sequence[float] = (1.0, 99.0),
    ) -> None:
        root_list = [Path(roots)] if isinstance(roots, str | os.PathLike) else [Path(r) for r in roots]
        if not root_list:
            raise LayoutError("no dataset folder given")
        if ir16 not in IR16_METHODS:
            raise ValueError(f"unknown 16-bit infrared method ir16={ir16!r}; choose one of {IR16_METHODS}")
        tags = _root_tags(root_list) if len(root_list) > 1 else [""]
        self.folders = [resolve_layout(root, layout) for root in root_list]
        self.load_labels = load_labels
        self.transform = transform
        self.ir16: Ir16Method = ir16
        self.ir16_window = tuple(float(v) for v in ir16_window)
        pairs: list[PairFiles] = []
        problems: list[Problem] = []
        for folders, tag in zip(self.folders, tags, strict=True):
            with_labels = load_labels is True or (
                load_labels == LABELS_WHERE_PRESENT and folders.label_dir is not None
            )
            root_pairs, root_problems = match_pairs(
                folders, with_labels=with_labels, name_prefix=f"{tag}/" if tag else ""
            )
            pairs += root_pairs
            problems += root_problems
        if problems:
            raise PairingError(problems, self.roots)
        self.pairs = pairs

    @property
    def roots(self) -> list[Path]:
        return [f.root for f in self.folders]

    @property
    def names(self) -> list[str]:
        """Item names in index order (sorted within each root, roots in the order given)."""
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def read_arrays(self, index: int, *, load_labels: bool | str | None = None) -> PairArrays:
        """Pair ``index`` as uint8 numpy arrays (no transform): for evaluation and tools. With
        ``"where_present"`` a pair without a label file gets a label of 255 (ignore) everywhere."""
        load = self.load_labels if load_labels is None else load_labels
        files = self.pairs[index]
        missing = load == LABELS_WHERE_PRESENT and files.label is None
        sample = read_pair_arrays(
            files, load_label=bool(load) and not missing, ir16=self.ir16, ir16_window=self.ir16_window
        )
        if missing:
            sample["label"] = np.full(sample["vis"].shape[:2], IGNORE_LABEL, dtype=np.uint8)
        return sample

    def __getitem__(self, index: int) -> dict[str, object]:
        sample = self.read_arrays(index)
        if self.transform is not None:
            sample = self.transform(sample)
        item: dict[str, object] = dict(to_tensors(sample))
        item["name"] = self.pairs[index].name
        return item

    def __repr__(self) -> str:
        layouts = ", ".join(f"{f.root} ({f.layout})" for f in self.folders)
        return f"{type(self).__name__}({len(self)} pairs from {layouts}, load_labels={self.load_labels})"


def manifest_column(dataset: PairedFolderDataset, column: str) -> list[str | None]:
    """The value of ``column`` for each item from its root's ``manifest.csv``; None where unknown.

    The real datasets beside the project carry a manifest with a ``name`` column and e.g. ``split``
    (MSRS's official test list) or ``has_binary_mask``; a root without one, or an item it does not list
    or leaves empty, gives None.
    """
    by_vis_dir: list[tuple[Path, dict[str, str]]] = []
    for folders in dataset.folders:
        manifest = folders.root / "manifest.csv"
        values: dict[str, str] = {}
        if manifest.is_file():
            with manifest.open(newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("name") and row.get(column):
                        values[Path(row["name"]).with_suffix("").as_posix()] = row[column]
        by_vis_dir.append((folders.vis_dir, values))
    out: list[str | None] = []
    for pair in dataset.pairs:
        value = None
        for vis_dir, values in by_vis_dir:
            if pair.vis.is_relative_to(vis_dir):
                value = values.get(pair.vis.relative_to(vis_dir).with_suffix("").as_posix())
                break
        out.append(value)
    return out


def manifest_splits(dataset: PairedFolderDataset) -> list[str | None]:
    """The ``split`` of each item (e.g. "train"/"test"), see :func:`manifest_column`."""
    return manifest_column(dataset, "split")
