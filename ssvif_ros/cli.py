"""Argument types shared by the command-line tools, training scripts and benchmarks, and the loader the
``training/`` programs use to reuse each other (that folder is scripts, not a package)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def size_pair(text: str, minimum: int = 1) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)``: two integers >= ``minimum`` in the order written.

    Which one is the width is each option's convention, stated in its help (images: WIDTHxHEIGHT; tensor
    sizes: HEIGHTxWIDTH). Raises ``argparse.ArgumentTypeError`` so argparse reports it against the option.
    """
    try:
        first, second = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    if first < minimum or second < minimum:
        raise argparse.ArgumentTypeError(f"size must be at least {minimum}x{minimum}, got {text!r}")
    return first, second


def size_arg(minimum: int = 1) -> Callable[[str], tuple[int, int]]:
    """An argparse ``type`` for :func:`size_pair` with a minimum side."""

    def parse(text: str) -> tuple[int, int]:
        return size_pair(text, minimum)

    parse.__name__ = "size"  # argparse names the type in its messages
    return parse


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in text.split(",") if v.strip()]


def add_labelled_checkpoint_args(parser: argparse.ArgumentParser, weights_help: str, limit: int) -> None:
    """The options of the tools that run one checkpoint over a few labelled pairs (name_classes.py,
    guide_weight.py): ``--weights``, ``--data``, ``--class-names``, ``--split``, ``--limit``."""
    parser.add_argument("--weights", type=Path, required=True, help=weights_help)
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="labelled paired folder(s)")
    parser.add_argument(
        "--class-names", type=comma_list, help="names of the label ids (default: classes.json)"
    )
    parser.add_argument("--split", help="only pairs of this manifest split")
    parser.add_argument(
        "--limit", type=int, default=limit, help=f"at most this many labelled pairs (default {limit})"
    )
