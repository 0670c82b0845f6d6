"""Checkpoints: ``NAME.safetensors`` (weights) + ``NAME.json`` (everything needed to rebuild the model).

The sidecar names the fusion model and its config, the optional feature-level segmentation head and its
config, and free-form metadata (training config, metrics). It also records the SHA-256 of the weights
file, so a torn pair (weights from one save, sidecar from another) is detected instead of loaded, and
so deployment caches (ONNX, TensorRT engines) can key on the exact weights. Both files are written to a
temporary name and renamed, so a crash never leaves a half-written checkpoint. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from ssvif_ros.models import create_model

FORMAT = "ssvif_ros.checkpoint/1"
MODEL_PREFIX = "model."
SEG_HEAD_PREFIX = "seg_head."


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded; the message names the file and the reason."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the fusion model, its segmentation head (or None) and the sidecar."""

    model: nn.Module
    seg_head: nn.Module | None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def sidecar_path(weights: str | os.PathLike) -> Path:
    """``x.safetensors`` -> ``x.json``."""
    return Path(weights).with_suffix(".json")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seg_head_config(seg_head: nn.Module) -> dict[str, int]:
    """The constructor arguments of a :class:`~ssvif_ros.models.heads.SegHead`, read off the module."""
    return {k: int(getattr(seg_head, k)) for k in ("in_channels", "num_classes", "hidden_channels")}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    seg_head: nn.Module | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` (built by ``create_model``) and an optional seg head to ``path`` (.safetensors)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors: {path}")
    if not hasattr(model, "model_name"):
        raise ValueError("model was not built by create_model (no model_name/model_cfg to record)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if seg_head is not None:
        tensors.update(
            {SEG_HEAD_PREFIX + k: v.detach().cpu().contiguous() for k, v in seg_head.state_dict().items()}
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": FORMAT, "model": model.model_name})
        digest = file_sha256(tmp)
        sidecar = {
            "format": FORMAT,
            "model": {"name": model.model_name, "cfg": model.model_cfg},
            "seg_head": seg_head_config(seg_head) if seg_head is not None else None,
            "weights_sha256": digest,
            **(meta or {}),
        }
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_bytes(sidecar_path(path), (json.dumps(sidecar, indent=2, sort_keys=False) + "\n").encode())
    return path


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of checkpoint ``path``, validated for the fields needed to rebuild the model."""
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: sidecar {side} is missing (it names the model to build)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{side}: not valid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{side}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    model = meta.get("model")
    if not isinstance(model, dict) or "name" not in model or not isinstance(model.get("cfg"), dict):
        raise CheckpointError(f"{side}: field 'model' must be {{'name': ..., 'cfg': {{...}}}}")
    return meta


def load_checkpoint(path: str | os.PathLike, with_seg_head: bool = True) -> Checkpoint:
    """Rebuild the model (and seg head) from the sidecar alone and load the weights, strictly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    meta = read_sidecar(path)
    digest = file_sha256(path)
    if meta.get("weights_sha256") not in (None, digest):
        raise CheckpointError(
            f"{path}: weights do not match the sidecar {sidecar_path(path)} (sha256 {digest[:12]} vs "
            f"{str(meta['weights_sha256'])[:12]}): the pair comes from different saves"
        )
    try:
        tensors = load_file(path)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None

    cfg = dict(meta["model"]["cfg"])
    model = create_model(meta["model"]["name"], **cfg)
    _load_prefixed(model, tensors, MODEL_PREFIX, path)
    seg_head = None
    if with_seg_head and meta.get("seg_head"):
        from ssvif_ros.models.heads import SegHead

        seg_head = SegHead(**meta["seg_head"])
        _load_prefixed(seg_head, tensors, SEG_HEAD_PREFIX, path)
    model.eval()
    if seg_head is not None:
        seg_head.eval()
    return Checkpoint(model=model, seg_head=seg_head, meta=meta, path=path)


def _load_prefixed(module: nn.Module, tensors: dict, prefix: str, path: Path) -> None:
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights under '{prefix}' do not fit the model: {e}") from None
