"""Inference backends: where the fusion model actually runs, behind one small interface.

:class:`FusionEngine <ssvif_ros.fusion.engine.FusionEngine>` does the numpy ↔ tensor work (the same for every
backend) and hands float tensors to a :class:`Backend`:

``backend.run(vis_t, ir_t, want_labels) -> (fused_t, labels_t | None)`` with ``vis_t`` (1,3,H,W) and
``ir_t`` (1,1,H,W) on ``backend.device`` in ``backend.input_dtype``, values in [0, 1]; ``fused_t``
(1,3,H,W) float in [0, 1] (clamped by the engine) and ``labels_t`` (1,H,W) uint8 class ids (only when
``want_labels`` and ``backend.has_segmentation``). ``backend.channels_last_inputs`` says whether it wants
``vis_t``/``ir_t`` in channels-last memory (:func:`ssvif_ros.fusion.engine.empty_inputs`) or contiguous NCHW.

Backends, by name (:func:`create_backend`):

- ``torch``: eager PyTorch, fp32 on CPU/CUDA or fp16 on CUDA (:mod:`.torch_backend`).
- ``passthrough``: **for benchmarking only** — no model; returns the visible image unchanged, so a
  node benchmark measures everything around inference (decode, sync, thermal gain, registration, encode,
  publish) with inference reduced to the tensor round trip.
- ``onnxruntime``: ONNX Runtime, fp32; the model is exported to ONNX on first use and cached
  (:mod:`.onnxruntime_backend`; needs ``pip install onnxruntime onnx``).
- ``tensorrt``: TensorRT through torch-tensorrt, fp32 or fp16, CUDA only; the model is compiled for the
  first frame's size on first use and the engine cached on disk (:mod:`.tensorrt_backend`; needs
  torch-tensorrt, see requirements/gpu-optional.txt, or JetPack's on a Jetson).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

__all__ = [
    "AUTO",
    "BACKENDS",
    "PRECISIONS",
    "PRECISION_DTYPES",
    "Backend",
    "BackendUnavailable",
    "PassthroughBackend",
    "create_backend",
    "resolve_backend",
]

PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}  # precision -> the inputs' dtype
PRECISIONS = tuple(PRECISION_DTYPES)
BACKENDS = ("torch", "onnxruntime", "passthrough", "tensorrt")
AUTO = "auto"  # the fastest backend this machine can run: see resolve_backend


class BackendUnavailable(RuntimeError):
    """The backend asked for is unknown, not installed, or cannot run with the given device/precision."""


@runtime_checkable
class Backend(Protocol):
    """What the engine relies on; see the module docstring for shapes and dtypes."""

    name: str
    device: torch.device
    precision: str
    input_dtype: torch.dtype
    has_segmentation: bool
    channels_last_inputs: bool

    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class PassthroughBackend:
    """Benchmark-only backend: ``fused = vis`` and no labels; no model is evaluated."""

    name = "passthrough"
    has_segmentation = False
    channels_last_inputs = False

    def __init__(self, device: torch.device, precision: str = "fp32") -> None:
        self.device = device
        self.precision = precision
        self.input_dtype = PRECISION_DTYPES[precision]

    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return vis_t, None


def _check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise BackendUnavailable(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise BackendUnavailable(
            f"precision fp16 needs a CUDA device (device is {device}); use precision fp32 on the CPU"
        )


def _importable(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def resolve_backend(name: str, device: torch.device, precision: str = "fp32") -> str:
    """``auto`` -> the fastest backend here: ONNX Runtime on the CPU (1.5–4.2× eager torch,
    BENCHMARKS.md) when onnx and onnxruntime are installed and the precision is fp32, TensorRT on CUDA when
    torch-tensorrt is installed, else torch. Any other name is returned as is."""
    if name != AUTO:
        return name
    if device.type == "cuda":
        return "tensorrt" if _importable("torch_tensorrt") else "torch"
    return "onnxruntime" if precision == "fp32" and _importable("onnx", "onnxruntime") else "torch"


def create_backend(
    name: str,
    model: nn.Module | None,
    seg_head: nn.Module | None,
    device: torch.device,
    precision: str = "fp32",
) -> Backend:
    """Build backend ``name`` for ``model`` (+ optional ``seg_head``) on ``device`` at ``precision``.

    ``name`` may be ``auto`` (:func:`resolve_backend`). Raises :class:`BackendUnavailable` with what to
    install or change when it cannot be built.
    """
    _check_precision(precision, device)
    name = resolve_backend(name, device, precision) if model is not None else name
    if name == "torch":
        from ssvif_ros.fusion.backends.torch_backend import TorchBackend

        if model is None:
            raise BackendUnavailable("backend 'torch' needs a model")
        return TorchBackend(model, seg_head, device, precision)
    if name == "onnxruntime":
        from ssvif_ros.fusion.backends.onnxruntime_backend import OnnxRuntimeBackend

        if model is None:
            raise BackendUnavailable("backend 'onnxruntime' needs a model")
        return OnnxRuntimeBackend(model, seg_head, device, precision)
    if name == "passthrough":
        return PassthroughBackend(device, precision)
    if name == "tensorrt":
        from ssvif_ros.fusion.backends.tensorrt_backend import TensorRTBackend

        if model is None:
            raise BackendUnavailable("backend 'tensorrt' needs a model")
        return TensorRTBackend(model, seg_head, device, precision)
    raise BackendUnavailable(f"unknown backend {name!r}: available: auto, {', '.join(BACKENDS)}")
