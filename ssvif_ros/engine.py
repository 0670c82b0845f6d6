"""FusionEngine: numpy in, numpy out. The node, the replay tool, the demo and evaluation all fuse through
it, so they cannot disagree on pre- or post-processing.

``FusionEngine(weights).fuse(vis_u8, ir_u8) -> FusedResult`` where ``vis_u8`` is H×W×3 RGB uint8 and
``ir_u8`` is H×W uint8 already registered to the visible frame; ``FusedResult.image`` is H×W×3 RGB uint8
and ``FusedResult.labels`` is H×W uint8 class ids (only when the checkpoint carries a segmentation head
and labels were asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, load_checkpoint
from .models import create_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS_NAME = "lightunet_ssvif.safetensors"


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
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but this torch has no usable CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return dev


class FusionEngine:
    """Load a fusion model once and fuse registered uint8 pairs with it.

    Either ``weights`` (a checkpoint .safetensors with its .json sidecar) or ``model_name`` (an untrained
    model, for tests and benchmarks of cost only) is given.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        model_name: str | None = None,
        device: str = "cpu",
        model_cfg: dict | None = None,
    ):
        if (weights is None) == (model_name is None):
            raise ValueError("give exactly one of weights (a checkpoint) or model_name (untrained)")
        self.device = resolve_device(device)
        if weights is not None:
            ckpt = load_checkpoint(weights)
        else:
            ckpt = Checkpoint(model=create_model(model_name, **(model_cfg or {})).eval(), seg_head=None)
        self.checkpoint = ckpt
        self.model = ckpt.model.to(self.device)
        self.seg_head = ckpt.seg_head.to(self.device) if ckpt.seg_head is not None else None
        self.name = getattr(self.model, "model_name", model_name)

    @property
    def has_segmentation(self) -> bool:
        return self.seg_head is not None

    @torch.inference_mode()
    def fuse(self, vis: np.ndarray, ir: np.ndarray, want_labels: bool = False) -> FusedResult:
        """Fuse one registered pair: vis H×W×3 uint8 RGB, ir H×W uint8 -> FusedResult."""
        if vis.dtype != np.uint8 or vis.ndim != 3 or vis.shape[2] != 3:
            raise ValueError(f"vis must be H×W×3 uint8 RGB, got {vis.shape} {vis.dtype}")
        if ir.dtype != np.uint8 or ir.ndim != 2:
            raise ValueError(f"ir must be H×W uint8 (8-bit thermal), got {ir.shape} {ir.dtype}")
        if ir.shape != vis.shape[:2]:
            raise ValueError(f"ir {ir.shape} is not registered to vis {vis.shape[:2]} (resize/warp it first)")
        # np.require copies only read-only or strided inputs (torch refuses to wrap read-only memory).
        vis, ir = np.require(vis, requirements="CW"), np.require(ir, requirements="CW")
        vis_t = torch.from_numpy(vis).to(self.device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        ir_t = torch.from_numpy(ir).to(self.device).unsqueeze(0).unsqueeze(0).float().div_(255.0)
        fused, features = self.model(vis_t, ir_t)
        image = fused[0].clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        labels = None
        if want_labels:
            if self.seg_head is None:
                raise RuntimeError(f"model {self.name} has no segmentation head in its checkpoint")
            logits = self.seg_head(features, size=vis.shape[:2])
            labels = logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
        return FusedResult(image=image, labels=labels)
