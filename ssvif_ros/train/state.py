"""Resumable trainer state: ``NAME.safetensors`` (tensors) + ``NAME.json`` (the rest), committed atomically.

A training run keeps, next to the inference checkpoint (:mod:`ssvif_ros.checkpoint`), what an exact
resume needs: every module's weights (the SegFormer branch only lives here), the optimizer moments, the
GradScaler and weighting state, the trainer's counters and the random number generator states. Nothing
is pickled.

Commit protocol: the tensors file is written first (temporary file + rename), then the JSON, which
records the SHA-256 of the tensors file. The JSON is the commit record: a state whose JSON is missing or
whose hash does not match (a crash between the two renames) is ignored by :func:`latest_train_state`,
which then returns the previous committed state. Keep at least two states (:func:`prune_train_states`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from ssvif_ros.checkpoint import atomic_write_bytes, file_sha256

FORMAT = "ssvif_ros.train_state/1"  # on-disk format id (kept when the module moved)


class TrainStateError(RuntimeError):
    """A train state that cannot be used; the message names the file and the reason."""


def _stem(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def save_train_state(
    path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], meta: Mapping
) -> Path:
    """Write ``path.safetensors`` then ``path.json`` (the commit); returns the ``.safetensors`` path.

    ``tensors``: name -> tensor (any device; copied to CPU). ``meta``: JSON-serialisable.
    """
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".safetensors")
    cpu = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    atomic_write_bytes(weights, save_safetensors_bytes(cpu, metadata={"format": FORMAT}))
    record = {"format": FORMAT, "tensors_sha256": file_sha256(weights), **dict(meta)}
    atomic_write_bytes(stem.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    return weights


def load_train_state(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors on CPU, meta)`` of a committed state; TrainStateError if it is missing or torn."""
    stem = _stem(path)
    weights, side = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise TrainStateError(f"{side}: missing (the state {weights} was never committed)") from None
    except json.JSONDecodeError as e:
        raise TrainStateError(f"{side}: not valid JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise TrainStateError(f"{side}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if not weights.is_file():
        raise TrainStateError(f"{weights}: missing (its record {side} exists)")
    data = weights.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("tensors_sha256"):
        raise TrainStateError(
            f"{weights}: sha256 {digest[:12]} does not match {side} "
            f"({str(meta.get('tensors_sha256'))[:12]}): a save was interrupted between the two files"
        )
    return load_safetensors_bytes(data), meta


def committed_train_states(folder: str | os.PathLike[str]) -> list[Path]:
    """Committed-looking states (a JSON record exists) in ``folder``, oldest first by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.with_suffix(".safetensors") for p in folder.glob("*.json") if not p.name.startswith("."))


def latest_train_state(folder: str | os.PathLike[str]) -> Path | None:
    """The newest state in ``folder`` (names sort by training position) that loads cleanly, or None."""
    for path in reversed(committed_train_states(folder)):
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (
            path.is_file()
            and meta.get("format") == FORMAT
            and file_sha256(path) == meta.get("tensors_sha256")
        ):
            return path
    return None


def prune_train_states(folder: str | os.PathLike[str], keep: int = 2) -> None:
    """Delete all but the newest ``keep`` committed states (and stray temporary files)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    states = committed_train_states(folder)
    for path in states[: max(len(states) - keep, 0)]:
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------
# Flattening state dicts into (tensors, JSON)


def flatten_state(state: Mapping[str, Any], prefix: str) -> tuple[dict[str, torch.Tensor], Any]:
    """A nested state (dicts, lists, tensors, JSON scalars) -> tensors keyed ``prefix+path`` and a JSON tree.

    Each tensor is replaced in the JSON tree by ``{"__tensor__": key}``; dict keys become strings, so
    integer keys (optimizer state) are recorded as ``{"__int_keys__": {...}}``.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[prefix + path] = value
            return {"__tensor__": prefix + path}
        if isinstance(value, Mapping):
            items = {str(k): walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
            if value and all(isinstance(k, int) for k in value):
                return {"__int_keys__": items}
            return items
        if isinstance(value, list | tuple):
            return [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"flatten_state: {prefix}{path} has unsupported type {type(value).__name__}")

    return tensors, walk(dict(state), "")


def unflatten_state(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            key = tree["__tensor__"]
            if key not in tensors:
                raise TrainStateError(f"train state: tensor {key!r} is missing from the tensors file")
            return tensors[key]
        if set(tree) == {"__int_keys__"}:
            return {int(k): unflatten_state(v, tensors) for k, v in tree["__int_keys__"].items()}
        return {k: unflatten_state(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


# ---------------------------------------------------------------------------------------------------
# Random number generators


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch (CPU and CUDA), numpy and python RNG states as (tensors, JSON)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (libraries may use it)
    tensors["numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "cuda_devices": sum(1 for k in tensors if k.startswith("cuda.")),
    }
    return tensors, meta


def restore_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Set the RNG states captured by :func:`capture_rng_state` (CUDA only if the device count matches)."""
    torch.set_rng_state(tensors["torch"].to(torch.uint8))
    cuda = [tensors[f"cuda.{i}"] for i in range(int(meta.get("cuda_devices", 0)))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in cuda])
    n = meta["numpy"]
    keys = tensors["numpy.keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))  # noqa: NPY002
    p = meta["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
