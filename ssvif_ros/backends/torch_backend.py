"""Eager PyTorch backend: the model and its segmentation head on one device, fp32 or (CUDA) fp16."""

from __future__ import annotations

import copy

import torch
from torch import nn


class TorchBackend:
    """``run(vis_t, ir_t, want_labels) -> (fused_t (1,3,H,W), labels_t (1,H,W) uint8 | None)``.

    The modules are moved to ``device`` (and cast to half for fp16: a copy, so the caller's fp32
    modules stay untouched) and put in eval mode. ``run`` is called under ``torch.inference_mode``.
    """

    name = "torch"

    def __init__(
        self, model: nn.Module, seg_head: nn.Module | None, device: torch.device, precision: str = "fp32"
    ) -> None:
        self.device = device
        self.precision = precision
        self.input_dtype = torch.float16 if precision == "fp16" else torch.float32
        if precision == "fp16":
            model = copy.deepcopy(model)
            seg_head = copy.deepcopy(seg_head) if seg_head is not None else None
        self.model = model.to(device=device, dtype=self.input_dtype).eval()
        self.seg_head = (
            seg_head.to(device=device, dtype=self.input_dtype).eval() if seg_head is not None else None
        )

    @property
    def has_segmentation(self) -> bool:
        return self.seg_head is not None

    @torch.inference_mode()
    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        fused, features = self.model(vis_t, ir_t)
        labels = None
        if want_labels:
            if self.seg_head is None:
                raise RuntimeError("this model has no segmentation head in its checkpoint")
            logits = self.seg_head(features, size=tuple(vis_t.shape[-2:]))
            labels = logits.argmax(dim=1).to(torch.uint8)
        return fused, labels
