"""TensorRT backend through torch-tensorrt, with compiled engines cached on disk.

On the first frame of a size the fusion model (+ segmentation head, when labels are wanted) is compiled
with ``torch_tensorrt.compile(ir="dynamo")`` for that fixed input size at the engine's precision, saved as
an ExportedProgram (``.ep``) in ``$SSVIF_ROS_CACHE/tensorrt`` (default ``~/.cache/ssvif_ros/tensorrt``),
and reused on later starts. A TensorRT engine is only valid for the exact weights, size, precision, GPU and
TensorRT build it was made with, so each ``x.ep`` has a JSON sidecar ``x.ep.json`` holding its cache key
(:func:`engine_cache_key`); an engine whose sidecar differs from the key wanted now (or is missing) is
rebuilt, never loaded.

Everything that touches CUDA, TensorRT or torch-tensorrt runs inside functions, so this module imports on
any machine; :func:`require_tensorrt` says what is missing where it cannot run.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ssvif_ros.checkpoint import atomic_write_bytes
from ssvif_ros.fusion.backends import PRECISION_DTYPES, BackendUnavailable
from ssvif_ros.fusion.backends.onnxruntime_backend import (
    FusionExportWrapper,
    default_cache_dir,
    params_sha256,
    sidecar_of,
)

ENGINE_FORMAT = "ssvif_ros.tensorrt/1"
INSTALL_HINT = (
    "pip install -r requirements/gpu-optional.txt (torch-tensorrt matching torch 2.13) or, on a Jetson, "
    "JetPack's torch and torch-tensorrt"
)


def require_tensorrt(device: torch.device) -> ModuleType:
    """The ``torch_tensorrt`` module, or :class:`BackendUnavailable` naming everything missing here."""
    missing = []
    if device.type != "cuda" or not torch.cuda.is_available():
        seen = "this torch sees no CUDA device" if not torch.cuda.is_available() else "set device cuda"
        missing.append(f"a CUDA device (device is {device}; {seen})")
    try:
        import torch_tensorrt
    except (ImportError, OSError) as err:  # OSError: installed, but a TensorRT/CUDA library fails to load
        torch_tensorrt = None
        broken = f" (importing it failed: {err})" if isinstance(err, OSError) else ""
        missing.append(f"torch-tensorrt{broken}: {INSTALL_HINT}")
    if missing:
        raise BackendUnavailable(
            f"backend 'tensorrt' cannot run here: it needs {'; and it needs '.join(missing)}. "
            "Use backend 'torch' or 'onnxruntime' instead"
        )
    return torch_tensorrt


def machine_fingerprint(device: torch.device, trt: ModuleType) -> dict[str, str]:
    """What an engine is bound to besides the model: GPU name, compute capability, library versions."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    try:
        import tensorrt

        tensorrt_version = str(tensorrt.__version__)
    except ImportError:
        tensorrt_version = "unknown"
    return {
        "gpu": torch.cuda.get_device_name(index),
        "compute_capability": f"{major}.{minor}",
        "tensorrt": tensorrt_version,
        "torch_tensorrt": str(getattr(trt, "__version__", "unknown")),
        "torch": torch.__version__,
    }


def engine_cache_key(
    model_name: str,
    params_digest: str,
    size: tuple[int, int],
    precision: str,
    with_labels: bool,
    machine: dict[str, str],
) -> dict[str, Any]:
    """Every field an engine depends on; the sidecar of a usable cached engine equals this exactly."""
    return {
        "format": ENGINE_FORMAT,
        "model": model_name,
        "params_sha256": params_digest,
        "size": [int(size[0]), int(size[1])],
        "precision": precision,
        "outputs": ["fused", "labels"] if with_labels else ["fused"],
        **machine,
    }


def engine_path(cache_dir: str | os.PathLike, key: dict[str, Any]) -> Path:
    """``MODEL_HxW_PRECISION_OUTPUTS_DIGEST.ep`` with DIGEST a hash of the whole key, so engines for
    different weights, GPUs or library versions never share a file."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    height, width = key["size"]
    return Path(cache_dir) / (
        f"{key['model']}_{height}x{width}_{key['precision']}_{key['outputs'][-1]}_{digest}.ep"
    )


def _accepts(fn: Callable, parameter: str) -> bool:
    try:
        return parameter in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def compile_engine(
    trt: ModuleType, wrapper: nn.Module, example: tuple[torch.Tensor, torch.Tensor], path: Path
) -> Callable:
    """Compile ``wrapper`` (already on the GPU in the inputs' dtype) for the fixed shapes of ``example``
    and save it to ``path`` (written to a temporary name, then renamed); returns the compiled module."""
    if _accepts(trt.dynamo.compile, "use_explicit_typing"):
        typing_kwargs: dict[str, Any] = {"use_explicit_typing": True}  # run in the dtype of model + inputs
    else:  # older torch-tensorrt: precisions are enabled explicitly
        typing_kwargs = {"enabled_precisions": {example[0].dtype}}
    module = trt.compile(wrapper, ir="dynamo", inputs=list(example), **typing_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".ep", dir=path.parent)
    os.close(fd)
    try:
        inputs_name = "arg_inputs" if _accepts(trt.save, "arg_inputs") else "inputs"
        trt.save(module, tmp, **{inputs_name: list(example)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return module


def load_engine(path: Path) -> Callable:
    """A saved engine as a callable module (torch_tensorrt must be imported: it registers the TRT ops)."""
    return torch.export.load(str(path)).module()


def load_or_compile(path: Path, key: dict[str, Any], compile_fn: Callable[[Path], Callable]) -> Callable:
    """Load ``path`` when its sidecar records exactly ``key``; otherwise (or when loading fails) drop the
    sidecar, ``compile_fn(path)`` a new engine there and record ``key`` next to it."""
    side = sidecar_of(path)
    try:
        recorded = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        recorded = None
    if recorded == key and path.is_file():
        try:
            return load_engine(path)
        except Exception as err:  # a truncated or otherwise unreadable file: rebuild it
            warnings.warn(
                f"{path}: cached TensorRT engine failed to load ({err}); rebuilding it", stacklevel=2
            )
    side.unlink(missing_ok=True)
    module = compile_fn(path)
    atomic_write_bytes(side, (json.dumps(key, indent=2) + "\n").encode())
    return module


class TensorRTBackend:
    """``run(vis_t, ir_t, want_labels) -> (fused_t (1,C,H,W), labels_t (1,H,W) uint8 | None)`` with
    TensorRT, fp32 or fp16, on a CUDA device.

    One engine per (outputs, input size), compiled or loaded on the first frame that needs it (the first
    start compiles: minutes on a Jetson). The eager modules stay where the caller keeps them; only a copy
    goes to the GPU, and only while compiling.
    """

    name = "tensorrt"
    channels_last_inputs = False

    def __init__(
        self,
        model: nn.Module,
        seg_head: nn.Module | None,
        device: torch.device,
        precision: str = "fp32",
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self._trt = require_tensorrt(device)
        self.device = device
        self.precision = precision
        self.input_dtype = PRECISION_DTYPES[precision]
        self.model = model.eval()
        self.seg_head = seg_head.eval() if seg_head is not None else None
        self.model_name = str(getattr(model, "model_name", type(model).__name__))
        self.params_digest = params_sha256(model, seg_head)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "tensorrt"
        self.machine = machine_fingerprint(device, self._trt)
        self._engines: dict[tuple[bool, tuple[int, int]], Callable] = {}

    @property
    def has_segmentation(self) -> bool:
        return self.seg_head is not None

    def cache_key(self, with_labels: bool, size: tuple[int, int]) -> dict[str, Any]:
        return engine_cache_key(
            self.model_name, self.params_digest, size, self.precision, with_labels, self.machine
        )

    def _compile(self, with_labels: bool, vis_t: torch.Tensor, ir_t: torch.Tensor, path: Path) -> Callable:
        head = self.seg_head if with_labels else None
        wrapper = copy.deepcopy(FusionExportWrapper(self.model, head))
        wrapper = wrapper.to(device=self.device, dtype=self.input_dtype).eval()
        # Outside inference mode (export cannot trace inference tensors), on fresh inputs, not the buffers.
        with torch.inference_mode(False), torch.no_grad():
            example = (
                torch.rand(vis_t.shape, device=self.device, dtype=self.input_dtype),
                torch.rand(ir_t.shape, device=self.device, dtype=self.input_dtype),
            )
            return compile_engine(self._trt, wrapper, example, path)

    def _engine(self, with_labels: bool, vis_t: torch.Tensor, ir_t: torch.Tensor) -> Callable:
        size = (int(vis_t.shape[-2]), int(vis_t.shape[-1]))
        engine = self._engines.get((with_labels, size))
        if engine is None:
            key = self.cache_key(with_labels, size)
            path = engine_path(self.cache_dir, key)
            engine = load_or_compile(path, key, lambda p: self._compile(with_labels, vis_t, ir_t, p))
            self._engines[(with_labels, size)] = engine
        return engine

    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if want_labels and self.seg_head is None:
            raise RuntimeError("this model has no segmentation head in its checkpoint")
        outputs = self._engine(want_labels, vis_t, ir_t)(vis_t, ir_t)
        if want_labels:
            fused, labels = outputs
            return fused, labels
        return outputs, None
