"""One way to turn a spec into something that fuses: :func:`open_fuser`.

A spec is one of (checked in this order):

- a classic baseline name (``average``, ``max``, ``laplacian``, ``saliency``, ``saliency_sides``; see
  :mod:`ssvif_ros.fusion.baselines`);
- ``passthrough``, or any spec but a checkpoint with ``backend="passthrough"`` (no model runs; the visible
  image comes back: for cost measurements only);
- ``visible`` / ``infrared`` with ``references=True`` (single-camera references of the evaluations);
- a ``.safetensors`` checkpoint with its sidecar (:class:`~ssvif_ros.fusion.engine.FusionEngine`);
  the empty spec ``""`` is the shipped model;
- a folder of already-fused images named like the pairs (``name`` must be given to ``fuse``);
- a registered model name (``lightunet``...) with ``allow_untrained=True``: random weights, seeded, so every
  process builds the same model (tests and benchmarks only).

Every fuser has the engine's API: ``fuse(vis, ir, want_labels=False, name=None) -> FusedResult``,
``has_segmentation``, ``num_classes``. The node, the replay, the demo and every evaluation program open their
methods here, so a spec means the same everywhere and an unknown one fails with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssvif_ros.fusion.baselines import BASELINES, fuse_baseline
from ssvif_ros.fusion.engine import FusedResult

REFERENCES = ("visible", "infrared")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class FuserSpecError(ValueError):
    """A spec that names nothing that fuses, or names it wrongly; the message says what a spec can be."""


class BaselineFuser:
    """A classic baseline behind the engine's API."""

    has_segmentation = False
    num_classes = None

    def __init__(self, name: str) -> None:
        self.name = name

    def fuse(self, vis: np.ndarray, ir: np.ndarray, want_labels: bool = False, name: str | None = None):
        return FusedResult(image=fuse_baseline(self.name, vis, ir))


class ReferenceFuser:
    """One camera alone, as an RGB uint8 image: ``visible`` or ``infrared`` (gray repeated)."""

    has_segmentation = False
    num_classes = None

    def __init__(self, which: str) -> None:
        self.which = which

    def fuse(self, vis: np.ndarray, ir: np.ndarray, want_labels: bool = False, name: str | None = None):
        if self.which == "visible":
            return FusedResult(image=vis)
        return FusedResult(image=np.repeat(ir.reshape(*ir.shape[:2], 1), 3, axis=2))


class FolderFuser:
    """Already-fused images from a folder, found by pair name (``NAME.png|jpg|bmp``)."""

    has_segmentation = False
    num_classes = None

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def fuse(self, vis: np.ndarray, ir: np.ndarray, want_labels: bool = False, name: str | None = None):
        from ssvif_ros.data.image_files import read_visible

        if name is None:
            raise FuserSpecError(f"{self.folder}: a folder of fused images needs the pair's name")
        matches = [p for p in self.folder.glob(f"{name}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if not matches:
            raise FileNotFoundError(f"{self.folder}: no fused image for pair {name!r}")
        fused = read_visible(matches[0])
        if fused.shape[:2] != vis.shape[:2]:
            raise ValueError(f"{matches[0]}: size {fused.shape[:2]} differs from the pair's {vis.shape[:2]}")
        return FusedResult(image=fused)


@dataclass
class OpenedFuser:
    """A fuser and what it is: ``name`` (a display name), ``kind`` (baseline, passthrough, reference,
    checkpoint, folder, untrained) and ``source`` (the spec, or the checkpoint path it resolved to)."""

    name: str
    kind: str
    source: str
    fuser: Any

    def fuse(self, vis: np.ndarray, ir: np.ndarray, want_labels: bool = False, name: str | None = None):
        if isinstance(self.fuser, BaselineFuser | ReferenceFuser | FolderFuser):
            return self.fuser.fuse(vis, ir, want_labels, name)
        return self.fuser.fuse(vis, ir, want_labels)

    @property
    def has_segmentation(self) -> bool:
        return bool(self.fuser.has_segmentation)

    @property
    def num_classes(self) -> int | None:
        return getattr(self.fuser, "num_classes", None)

    @property
    def class_names(self) -> list[str | None] | None:
        """The head's class names from the checkpoint sidecar (None: anonymous ids, or no head)."""
        return getattr(self.fuser, "class_names", None)


def checkpoint_label(path: Path) -> str:
    """``stem``, or ``parent/stem`` when the file is not in the current folder (``seed0/best``)."""
    return path.stem if path.parent == Path(".") else f"{path.parent.name}/{path.stem}"


def open_fuser(
    spec: str,
    *,
    device: str = "cpu",
    backend: str = "torch",
    precision: str = "fp32",
    allow_untrained: bool = False,
    references: bool = False,
    passthrough_model: str = "lightunet",
) -> OpenedFuser:
    """The fuser ``spec`` names (see the module doc). Raises :class:`FuserSpecError` for a spec that names
    nothing (or a model name without ``allow_untrained``), and lets the engine's errors through
    (:class:`~ssvif_ros.checkpoint.CheckpointError`, :class:`~ssvif_ros.fusion.backends.BackendUnavailable`,
    ``ValueError`` for a device) so a caller can say which of its options was at fault."""
    from ssvif_ros.fusion.engine import FusionEngine, default_weights
    from ssvif_ros.models import list_models

    if spec in BASELINES:
        return OpenedFuser(spec, "baseline", spec, BaselineFuser(spec))
    if spec == "passthrough" or (backend == "passthrough" and not spec.endswith(".safetensors")):
        engine = FusionEngine(model_name=passthrough_model, device=device, backend="passthrough")
        return OpenedFuser("passthrough", "passthrough", spec, engine)
    if references and spec in REFERENCES:
        return OpenedFuser(spec, "reference", spec, ReferenceFuser(spec))
    path = Path(spec) if spec else default_weights()
    if path is not None and path.suffix == ".safetensors":
        if path.is_dir():
            raise FuserSpecError(f"checkpoint {path} is a directory, not a .safetensors file")
        if not path.is_file():
            raise FuserSpecError(f"checkpoint {path} does not exist")
        engine = FusionEngine(weights=path, device=device, backend=backend, precision=precision)
        return OpenedFuser(checkpoint_label(path), "checkpoint", str(path), engine)
    if spec and path.is_dir():
        return OpenedFuser(path.name, "folder", spec, FolderFuser(path))
    if spec in list_models():
        if not allow_untrained:
            raise FuserSpecError(
                f"{spec!r} is a model name without weights: give a checkpoint (.safetensors), or allow an "
                "untrained model (random weights, for tests and benchmarks only)"
            )
        import torch

        torch.manual_seed(0)  # the same random model in every process
        engine = FusionEngine(model_name=spec, device=device, backend=backend, precision=precision)
        return OpenedFuser(f"{spec} (untrained)", "untrained", spec, engine)
    if not spec:
        raise FuserSpecError("no trained model ships with this version of ssvif_ros: give a checkpoint")
    kinds = [f"a baseline ({', '.join(BASELINES)})", "'passthrough'"]
    if references:
        kinds.append(f"a single-camera reference ({', '.join(REFERENCES)})")
    kinds += ["a .safetensors checkpoint", "a folder of fused images"]
    kinds.append(f"a registered model ({', '.join(list_models())})" if allow_untrained else "")
    raise FuserSpecError(f"{spec!r} is neither {', '.join(k for k in kinds if k)}")
