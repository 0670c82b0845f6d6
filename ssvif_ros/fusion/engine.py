"""FusionEngine: numpy in, numpy out. The node, the replay tool, the demo and evaluation all fuse through
it, so they cannot disagree on pre- or post-processing.

``FusionEngine(weights).fuse(vis_u8, ir_u8) -> FusedResult`` where ``vis_u8`` is H×W×3 RGB uint8 and
``ir_u8`` is H×W uint8 already registered to the visible frame; ``FusedResult.image`` is H×W×3 RGB uint8
and ``FusedResult.labels`` is H×W uint8 class ids (only when the checkpoint carries a segmentation head
and labels were asked for).

The model runs on a backend (:mod:`ssvif_ros.fusion.backends`: ``torch``, ``onnxruntime``, ``tensorrt``, and
``passthrough`` for benchmarks); the engine owns the numpy ↔ tensor conversion, so every backend sees the
same inputs. Per input size it keeps reusable input tensors (pinned host staging on CUDA), so a video
stream does not allocate its input tensors per frame; :meth:`FusionEngine.warmup` builds them and runs
the model once at the expected size before the first real frame.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssvif_ros.checkpoint import Checkpoint, load_checkpoint
from ssvif_ros.fusion.backends import Backend, create_backend
from ssvif_ros.models import create_model

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # ssvif_ros/weights
DEFAULT_WEIGHTS_NAME = "lightunet_ssvif.safetensors"
_BUFFER_CACHE_SIZE = 2  # input sizes kept (e.g. the warm-up size and one other)


def default_weights() -> Path | None:
    """The shipped model's weights, or None while no model ships."""
    path = WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME
    return path if path.is_file() else None


@dataclass
class FusedResult:
    image: np.ndarray  # H×W×3 uint8 RGB
    labels: np.ndarray | None = None  # H×W uint8 class ids


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cpu``; ``cuda`` / ``cuda:N`` (checked to exist)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but this torch has no usable CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return dev


def empty_inputs(
    height: int, width: int, device: torch.device, dtype: torch.dtype, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uninitialised model inputs vis (1,3,H,W) and ir (1,1,H,W), NCHW or channels-last (NHWC) memory.

    Why channels-last: a backend whose convolutions run NHWC (the torch backend) otherwise transposes
    every NCHW tensor that meets an NHWC one (the concatenations of the sources with the features): at
    256×256 that was 1.8 of lightunet's 6.3 ms (torch profiler).
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    vis = torch.empty((1, 3, height, width), dtype=dtype, device=device, memory_format=memory_format)
    ir = torch.empty((1, 1, height, width), dtype=dtype, device=device, memory_format=memory_format)
    return vis, ir


class _InputBuffers:
    """Reusable tensors for one input size (H, W): float model inputs on the device (in the memory format
    the backend wants, see :func:`empty_inputs`), and on CUDA pinned uint8 host staging plus device uint8
    copies (so host → device is one async DMA of the raw bytes)."""

    def __init__(
        self, height: int, width: int, device: torch.device, dtype: torch.dtype, channels_last: bool = False
    ) -> None:
        self.vis, self.ir = empty_inputs(height, width, device, dtype, channels_last)
        self.on_cuda = device.type == "cuda"
        if self.on_cuda:
            self.vis_host = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=True)
            self.ir_host = torch.empty((height, width), dtype=torch.uint8, pin_memory=True)
            self.vis_u8 = torch.empty((height, width, 3), dtype=torch.uint8, device=device)
            self.ir_u8 = torch.empty((height, width), dtype=torch.uint8, device=device)

    def load(self, vis: np.ndarray, ir: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy vis (H,W,3) and ir (H,W) uint8 into the model inputs, scaled to [0, 1]."""
        if self.on_cuda:
            np.copyto(self.vis_host.numpy(), vis)
            np.copyto(self.ir_host.numpy(), ir)
            self.vis_u8.copy_(self.vis_host, non_blocking=True)
            self.ir_u8.copy_(self.ir_host, non_blocking=True)
            vis_src, ir_src = self.vis_u8, self.ir_u8
        else:
            # np.require copies only read-only or strided inputs (torch refuses to wrap read-only memory).
            vis_src = torch.from_numpy(np.require(vis, requirements="CW"))
            ir_src = torch.from_numpy(np.require(ir, requirements="CW"))
        self.vis.copy_(vis_src.permute(2, 0, 1).unsqueeze(0)).div_(255.0)
        self.ir.copy_(ir_src.unsqueeze(0).unsqueeze(0)).div_(255.0)
        return self.vis, self.ir


class FusionEngine:
    """Load a fusion model once and fuse registered uint8 pairs with it.

    Either ``weights`` (a checkpoint .safetensors with its .json sidecar) or ``model_name`` (an untrained
    model, for tests and benchmarks of cost only) is given. ``backend`` names where the model runs (see
    :mod:`ssvif_ros.fusion.backends`; an unknown or unavailable one raises
    :class:`~ssvif_ros.fusion.backends.BackendUnavailable` saying what to install); ``precision`` is
    ``fp32`` or
    ``fp16`` (CUDA only). ``weights`` may also be an already loaded
    :class:`~ssvif_ros.checkpoint.Checkpoint`, and ``backend`` an already built backend (used as given, with
    its own device and precision): tools that compare backends of one model build it once.
    """

    def __init__(
        self,
        weights: str | Path | Checkpoint | None = None,
        model_name: str | None = None,
        device: str = "cpu",
        model_cfg: dict | None = None,
        backend: str | Backend = "torch",
        precision: str = "fp32",
    ):
        if (weights is None) == (model_name is None):
            raise ValueError("give exactly one of weights (a checkpoint) or model_name (untrained)")
        if isinstance(weights, Checkpoint):
            ckpt = weights
        elif weights is not None:
            ckpt = load_checkpoint(weights)
        else:
            ckpt = Checkpoint(model=create_model(model_name, **(model_cfg or {})).eval(), seg_head=None)
        self.checkpoint = ckpt
        self.name = getattr(ckpt.model, "model_name", model_name)
        if isinstance(backend, str):
            self.device = resolve_device(device)
            self.backend: Backend = create_backend(backend, ckpt.model, ckpt.seg_head, self.device, precision)
        else:
            self.device, self.backend = backend.device, backend
        self.precision = self.backend.precision
        self._buffers: OrderedDict[tuple[int, int], _InputBuffers] = OrderedDict()

    @property
    def has_segmentation(self) -> bool:
        return self.backend.has_segmentation

    @property
    def num_classes(self) -> int | None:
        """Classes of the checkpoint's segmentation head (None without one)."""
        head = self.checkpoint.seg_head
        return int(head.num_classes) if head is not None else None

    @property
    def class_names(self) -> list[str | None] | None:
        """Names of the head's class ids from the sidecar (``training/name_classes.py``; None per unmatched
        id), or None when the ids were never named (a label-free head's ids mean nothing by themselves)."""
        names = (self.checkpoint.meta or {}).get("class_names")
        return list(names) if isinstance(names, list) else None

    def _buffers_for(self, height: int, width: int) -> _InputBuffers:
        key = (height, width)
        buffers = self._buffers.get(key)
        if buffers is None:
            buffers = _InputBuffers(
                height,
                width,
                self.device,
                self.backend.input_dtype,
                channels_last=self.backend.channels_last_inputs,
            )
            self._buffers[key] = buffers
            while len(self._buffers) > _BUFFER_CACHE_SIZE:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(key)
        return buffers

    @torch.inference_mode()
    def fuse(self, vis: np.ndarray, ir: np.ndarray, want_labels: bool = False) -> FusedResult:
        """Fuse one registered pair: vis H×W×3 uint8 RGB, ir H×W uint8 -> FusedResult."""
        if vis.dtype != np.uint8 or vis.ndim != 3 or vis.shape[2] != 3:
            raise ValueError(f"vis must be H×W×3 uint8 RGB, got {vis.shape} {vis.dtype}")
        if ir.dtype != np.uint8 or ir.ndim != 2:
            raise ValueError(f"ir must be H×W uint8 (8-bit thermal), got {ir.shape} {ir.dtype}")
        if ir.shape != vis.shape[:2]:
            raise ValueError(f"ir {ir.shape} is not registered to vis {vis.shape[:2]} (resize/warp it first)")
        if want_labels and not self.has_segmentation:
            raise RuntimeError(
                f"model {self.name} has no segmentation head in its checkpoint "
                f"(or backend {self.backend.name!r} computes none)"
            )
        vis_t, ir_t = self._buffers_for(vis.shape[0], vis.shape[1]).load(vis, ir)
        fused, labels_t = self.backend.run(vis_t, ir_t, want_labels)
        image_t = fused[0].float().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0)
        image = image_t.contiguous().cpu().numpy()  # a fresh array per frame: the caller may keep it
        labels = None
        if want_labels and labels_t is not None:
            labels = labels_t[0].cpu().numpy()
        return FusedResult(image=image, labels=labels)

    def warmup(self, height: int, width: int, with_labels: bool = True, iterations: int = 2) -> None:
        """Run the model ``iterations`` times on a dummy (height, width) pair: builds the input buffers,
        lets the allocator and (CUDA) kernels settle, so the first real frame is not the slow one."""
        if height <= 0 or width <= 0:
            raise ValueError(f"warm-up size must be positive, got {height}×{width}")
        vis = np.full((height, width, 3), 128, dtype=np.uint8)
        ir = np.full((height, width), 64, dtype=np.uint8)
        for _ in range(max(1, iterations)):
            self.fuse(vis, ir, want_labels=with_labels and self.has_segmentation)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
