"""Scan paired visible/infrared folders and report every problem at once.

``python -m ssvif_ros.data.check FOLDER [FOLDER ...] [--layout NAME]`` decodes every image file (visible,
infrared, and labels when a label folder exists), prints one ``PATH: reason`` line per problem and a
summary, and exits with 1 if anything is wrong, 0 otherwise. Run it before a long training job: the
dataset itself only lists names up front and raises on the first bad file it reads.

The checks are the dataset's own (:mod:`ssvif_ros.data.pairs`, :mod:`ssvif_ros.data.image_files`):
layout, empty folders, duplicate names, missing partners, undecodable or truncated files, unsupported
image modes and size mismatches within a pair.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssvif_ros.data.image_files import DataFileError, read_infrared_raw, read_label, read_visible
from ssvif_ros.data.pairs import (
    LAYOUTS,
    FolderLayout,
    LayoutError,
    PathLike,
    Problem,
    list_images,
    match_pairs,
    resolve_layout,
    size_mismatch_reason,
)


@dataclass
class ScanReport:
    """What one folder scan found: its problems and how much it looked at."""

    root: Path
    problems: list[Problem] = field(default_factory=list)
    pairs: int = 0
    files: int = 0


def _decode_all(
    files: dict[str, Path], reader: Callable[[Path], np.ndarray], report: ScanReport
) -> dict[str, tuple[int, int]]:
    """Decode every file; return ``stem → (height, width)`` of those that decoded."""
    sizes: dict[str, tuple[int, int]] = {}
    for stem, path in files.items():
        report.files += 1
        try:
            sizes[stem] = tuple(reader(path).shape[:2])  # type: ignore[assignment]
        except DataFileError as exc:
            report.problems.append(Problem(exc.path, exc.reason))
    return sizes


def scan_folder_report(root: PathLike, layout: str | FolderLayout = "auto") -> ScanReport:
    """Scan ``root`` like :func:`scan_folder` and also count the pairs and files looked at."""
    report = ScanReport(Path(root))
    try:
        folders = resolve_layout(root, layout)
    except LayoutError as exc:
        report.problems.append(Problem(Path(root), str(exc).removeprefix(f"{root}: ")))
        return report
    with_labels = folders.label_dir is not None
    pairs, report.problems = match_pairs(folders, with_labels=with_labels)
    report.pairs = len(pairs)
    vis_sizes = _decode_all(list_images(folders.vis_dir)[0], read_visible, report)
    ir_sizes = _decode_all(list_images(folders.ir_dir)[0], read_infrared_raw, report)
    label_sizes: dict[str, tuple[int, int]] = {}
    if folders.label_dir is not None:
        label_sizes = _decode_all(list_images(folders.label_dir)[0], read_label, report)
    for pair in pairs:
        vis_size = vis_sizes.get(pair.name)
        if vis_size is None:
            continue  # the visible file itself is already reported
        for path, size in ((pair.ir, ir_sizes.get(pair.name)), (pair.label, label_sizes.get(pair.name))):
            if path is not None and size is not None and size != vis_size:
                report.problems.append(Problem(path, size_mismatch_reason(size, pair.vis, vis_size)))
    report.problems.sort(key=lambda p: (str(p.path), p.reason))
    return report


def scan_folder(root: PathLike, layout: str | FolderLayout = "auto") -> list[Problem]:
    """Every problem of the dataset folder ``root`` (empty list: all pairs decode and match)."""
    return scan_folder_report(root, layout).problems


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: print problems and a summary; return the exit code (1 if any problem)."""
    parser = argparse.ArgumentParser(
        prog="python -m ssvif_ros.data.check",
        description="Decode every file of paired visible/infrared dataset folders and list all problems.",
    )
    parser.add_argument(
        "folders", nargs="+", type=Path, help="dataset root folder(s), e.g. ../shared/data/tno"
    )
    parser.add_argument(
        "--layout", default="auto", choices=["auto", *sorted(LAYOUTS)], help="folder layout (default: auto)"
    )
    args = parser.parse_args(argv)
    total_problems = total_pairs = total_files = 0
    for folder in args.folders:
        report = scan_folder_report(folder, args.layout)
        for problem in report.problems:
            print(problem)
        total_problems += len(report.problems)
        total_pairs += report.pairs
        total_files += report.files
    scope = f"{total_pairs} pair(s), {total_files} file(s) decoded in {len(args.folders)} folder(s)"
    if total_problems:
        print(f"{total_problems} problem(s) found; {scope}")
        return 1
    print(f"OK: no problems; {scope}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
