"""The segmentation head that reads a fusion model's features (the SSVIF fused-feature branch).

In training its logits are one of the two branches compared by the cross-segmentation consistency loss
(:func:`ssvif_ros.train.losses.csc_loss`), or MultiTaskVIF's segmentation path; at deployment the node,
the replay and ``ssvif-fuse`` run it for the segmentation and overlay outputs, so it is kept small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssvif_ros.models.base import ConvBNReLU


class SegHead(nn.Module):
    """Two 3×3 conv-BN-ReLU layers and a 1×1 classifier on the fused features.

    ``forward(features (B, in_channels, h, w), size=(H, W)) -> logits (B, num_classes, H, W)``, upsampled
    bilinearly (align_corners=False) to ``size``; ``size=None`` keeps the feature resolution (h, w).
    ``padding``: what the 3×3 convs see beyond the border, ``zeros`` (the checkpoints trained before
    2026-12-02's fourth session) or ``replicate``: with zeros the two convs give the outer two feature
    cells (8 px at 1/4 resolution) a border of their own, which trained heads label as a class
    (docs/edge_artefact.md).
    """

    def __init__(
        self, in_channels: int, num_classes: int = 9, hidden_channels: int = 64, padding: str = "zeros"
    ):
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("hidden_channels", hidden_channels),
        ):
            if value < 1:
                raise ValueError(f"SegHead: {name} must be >= 1, got {value}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.hidden_channels = hidden_channels
        self.padding = padding
        self.body = nn.Sequential(
            ConvBNReLU(in_channels, hidden_channels, padding=padding),
            ConvBNReLU(hidden_channels, hidden_channels, padding=padding),
        )
        self.classifier = nn.Conv2d(hidden_channels, num_classes, kernel_size=1)

    def forward(self, features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"SegHead expects features (B,{self.in_channels},h,w), got {tuple(features.shape)}"
            )
        logits = self.classifier(self.body(features))
        if size is not None and tuple(size) != tuple(logits.shape[-2:]):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits
