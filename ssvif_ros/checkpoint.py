"""Checkpoints: ``NAME.safetensors`` (weights) + ``NAME.json`` (everything needed to rebuild the model).

The sidecar names the fusion model and its config, the optional feature-level segmentation head and its
config, and free-form metadata (training config, metrics). It also records the SHA-256 of the weights
file, so a torn pair (weights from one save, sidecar from another) is detected instead of loaded, and
so deployment caches (ONNX, TensorRT engines) can key on the exact weights. Both files are written to a
temporary name and renamed, so a crash never leaves a half-written checkpoint. Nothing is unpickled.

The sidecar is untrusted input: before anything is built, its model name, config keys and value types
are checked against the factory's signature (and the seg head's), and the shapes of the model it
describes, sized on the ``meta`` device, against the shapes in the weights' header. A sidecar that fails
raises :class:`CheckpointError` ("bad sidecar PATH: ...") instead of a traceback or a huge allocation.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
import os
import tempfile
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ssvif_ros.models import SegHead, create_model, list_models
from ssvif_ros.models import registry as _registry

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


def seg_head_config(seg_head: nn.Module) -> dict[str, int | str]:
    """The constructor arguments of a :class:`~ssvif_ros.models.heads.SegHead`, read off the module
    (``padding`` only when it is not the default, so older readers still load zero-padded heads)."""
    cfg: dict[str, int | str] = {
        k: int(getattr(seg_head, k)) for k in ("in_channels", "num_classes", "hidden_channels")
    }
    if seg_head.padding != "zeros":
        cfg["padding"] = seg_head.padding
    return cfg


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


def _bad(side: Path, why: str) -> CheckpointError:
    return CheckpointError(f"bad sidecar {side}: {why}")


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut short: a hostile sidecar must not flood the one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _why(err: BaseException) -> str:
    """The first line of ``err``: torch's C++ errors append a stack trace that a one-line report drops."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of checkpoint ``path``, checked for the structure needed to rebuild the model (the
    values are checked by :func:`check_sidecar`)."""
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: sidecar {side} is missing (it names the model to build)") from None
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, an int past Python's digit limit
        raise _bad(side, f"not valid JSON ({_why(e)})") from None
    except OSError as e:
        raise _bad(side, f"cannot be read ({e.strerror or e})") from None
    if not isinstance(meta, dict):
        raise _bad(side, f"expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise _bad(side, f"format is {_short(meta.get('format'))}, expected {FORMAT!r}")
    model = meta.get("model")
    if not isinstance(model, dict) or "name" not in model or not isinstance(model.get("cfg"), dict):
        raise _bad(side, "field 'model' must be {'name': ..., 'cfg': {...}}")
    return meta


# ---------------------------------------------------------------------------------- sidecar values


_NOUNS = {bool: "boolean", int: "int", float: "number", str: "string", type(None): "null"}
_SEQUENCES = (tuple, list, Sequence)


def _fits(value: Any, hint: Any) -> bool:
    """Whether JSON ``value`` has the type ``hint`` asks for (JSON lists stand for tuples and sequences).
    A hint JSON cannot express is left to the constructor."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return isinstance(value, str | int | float | bool | None) and value in args
    if origin in _SEQUENCES or hint in _SEQUENCES:
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_fits, value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # JSON true/false are Python ints too
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # a JSON 2 is a valid 2.0
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint in (str, type(None)):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    """``hint`` in the sidecar's (JSON) terms, for the error message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in _SEQUENCES or hint in _SEQUENCES:
        if not args:
            return "list"
        count = f"{len(args)} " if origin is tuple and args[-1] is not Ellipsis else ""
        return f"list of {count}{_describe(args[0])}s"
    return _NOUNS.get(hint, getattr(hint, "__name__", str(hint)))


def _parameters(fn: Callable, skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, bool]]:
    """``name -> (type hint, required)`` for the keyword parameters of ``fn``: the annotation, or the type
    of the default where it has none (or it does not resolve)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve at run time: use the defaults' types
        hints = {}
    params = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        default = p.default
        if p.name in hints:
            hint = hints[p.name]
        elif isinstance(default, list | tuple):
            hint = Sequence[type(default[0])] if default else Sequence
        else:
            hint = Any if default in (p.empty, None) else type(default)
        params[p.name] = (hint, default is p.empty)
    return params


def _model_parameters(name: str) -> dict[str, tuple[Any, bool]]:
    """What ``model.cfg`` may hold: ``create_model``'s ``color`` and ``multitask``, and the factory's
    keyword arguments except ``in_chans`` (which ``color`` sets)."""
    factory = _registry.model_factory(name)
    return {
        "color": (Literal[_registry.COLOR_MODES], False),
        "multitask": (bool, False),
        **_parameters(factory, skip=("in_chans",)),
    }


def _check_kwargs(where: str, kwargs: Any, params: dict[str, tuple[Any, bool]], side: Path) -> dict:
    """``kwargs`` if a constructor with ``params`` takes it: known keys (the closest one is suggested for
    a typo), values of the annotated types, no required one missing."""
    if not isinstance(kwargs, dict):
        raise _bad(side, f"{where}: expected an object of keyword arguments, got {_short(kwargs)}")
    for key, value in kwargs.items():
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _bad(side, f"{where} has unknown key {key!r}{hint}; valid keys: {', '.join(params)}")
        if not _fits(value, params[key][0]):
            raise _bad(side, f"{where}.{key}: expected {_describe(params[key][0])}, got {_short(value)}")
    missing = [k for k, (_, required) in params.items() if required and k not in kwargs]
    if missing:
        raise _bad(side, f"{where} lacks {', '.join(missing)}")
    return dict(kwargs)


def check_sidecar(meta: dict[str, Any], side: Path) -> tuple[str, dict, dict | None]:
    """``(model name, model cfg, seg head cfg or None)`` of a sidecar read by :func:`read_sidecar`, checked
    against the registry and the constructors' signatures, so nothing is built from a bad one."""
    name = meta["model"]["name"]
    if not isinstance(name, str) or name not in list_models():
        close = difflib.get_close_matches(name, list_models(), n=1) if isinstance(name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _bad(
            side,
            f"model.name: expected a registered model ({', '.join(list_models())}), got {_short(name)}{hint}",
        )
    cfg = _check_kwargs("model.cfg", meta["model"]["cfg"], _model_parameters(name), side)
    head = meta.get("seg_head")
    if head is None or head == {}:
        return name, cfg, None
    return name, cfg, _check_kwargs("seg_head", head, _parameters(SegHead.__init__, skip=("self",)), side)


# ---------------------------------------------------------------------------------- sizes


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in ``path``, read from the safetensors header alone (no tensor data)."""
    try:
        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _meta_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of ``build()`` built on the meta device: sized, nothing allocated."""
    with torch.device("meta"):
        return _shapes(build())


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@functools.cache
def builds_on_meta(name: str) -> bool:
    """Whether model ``name`` (default config, in the first colour mode it accepts: ``cs2fusion`` is
    luminance only) can be built on the meta device; one that cannot (its constructor reads tensor
    values) is sized by :func:`_check_size_limit` instead."""
    for color in _registry.COLOR_MODES:
        try:
            _meta_shapes(lambda color=color: create_model(name, color=color))
        except Exception:
            continue
        return True
    return False


def _check_fits(side: Path, what: str, shapes: dict, file_shapes: dict, prefix: str) -> None:
    """Refuse when the module the sidecar describes (its ``shapes``) and the weights differ."""
    found = {k[len(prefix) :]: v for k, v in file_shapes.items() if k.startswith(prefix)}
    for key in [*shapes, *(k for k in found if k not in shapes)]:
        want, have = shapes.get(key), found.get(key)
        if want != have:
            raise _bad(
                side,
                f"{what} does not match the weights: {prefix}{key} (sidecar gives "
                f"{'none' if want is None else want}, file has {'none' if have is None else have})",
            )


def _check_size_limit(side: Path, name: str, cfg: dict, file_shapes: dict) -> None:
    """The fallback for a model that cannot be sized on meta: no number in its cfg may exceed the largest
    dimension or the tensor count of the weights (a width, window, head or block count of a matching
    model shows up in one of them), which bounds what the real build allocates."""
    shapes = [s for k, s in file_shapes.items() if k.startswith(MODEL_PREFIX)]
    limit = max([len(shapes), *(d for s in shapes for d in s)])
    for key, value in cfg.items():
        for v in value if isinstance(value, list | tuple) else [value]:
            if isinstance(v, int | float) and not isinstance(v, bool) and v > limit:
                raise _bad(
                    side,
                    f"model {name!r} does not match the weights: cfg.{key} = {_short(value)} exceeds every "
                    f"tensor dimension and the tensor count of the file (at most {limit})",
                )


def check_sizes(side: Path, sidecar: tuple[str, dict, dict | None], file_shapes: dict) -> None:
    """Size the model and head the sidecar describes without allocating them and compare them with the
    weights' header, so a sidecar asking for huge widths is refused before anything is built."""
    name, cfg, head = sidecar
    try:
        shapes = _meta_shapes(lambda: create_model(name, **cfg))
    except Exception as e:  # raised by values from the sidecar: the sidecar's fault
        if builds_on_meta(name):
            raise _bad(side, f"model {name!r} refuses cfg {_short(cfg)}: {_why(e)}") from None
        _check_size_limit(side, name, cfg, file_shapes)  # load_checkpoint compares after the real build
    else:
        _check_fits(side, f"model {name!r}", shapes, file_shapes, MODEL_PREFIX)
    if head is not None:
        try:
            shapes = _meta_shapes(lambda: SegHead(**head))
        except Exception as e:
            raise _bad(side, f"seg_head refuses {_short(head)}: {_why(e)}") from None
        _check_fits(side, "seg_head", shapes, file_shapes, SEG_HEAD_PREFIX)


# ---------------------------------------------------------------------------------- loading


def _check_weights_path(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a .safetensors file")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")


def load_checkpoint(path: str | os.PathLike, with_seg_head: bool = True) -> Checkpoint:
    """Rebuild the model (and seg head) from the sidecar alone and load the weights, strictly; the
    sidecar is checked against the constructors and the weights' shapes before anything is built."""
    path = Path(path)
    _check_weights_path(path)
    meta = read_sidecar(path)
    side = sidecar_path(path)
    digest = file_sha256(path)
    if meta.get("weights_sha256") not in (None, digest):
        raise CheckpointError(
            f"{path}: weights do not match the sidecar {side} (sha256 {digest[:12]} vs "
            f"{str(meta['weights_sha256'])[:12]}): the pair comes from different saves"
        )
    file_shapes = weight_shapes(path)
    name, cfg, head_cfg = check_sidecar(meta, side)
    head_cfg = head_cfg if with_seg_head else None
    check_sizes(side, (name, cfg, head_cfg), file_shapes)
    try:
        tensors = load_file(path)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None

    try:
        model = create_model(name, **cfg)
    except Exception as e:  # only reached unchecked by a model that cannot be sized on meta
        raise _bad(side, f"model {name!r} refuses cfg {_short(cfg)}: {_why(e)}") from None
    _check_fits(side, f"model {name!r}", _shapes(model), file_shapes, MODEL_PREFIX)
    _load_prefixed(model, tensors, MODEL_PREFIX, path)
    seg_head = None
    if head_cfg is not None:
        seg_head = SegHead(**head_cfg)
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
