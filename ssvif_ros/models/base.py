"""The interface every fusion model implements: a backbone that fuses, an image decoder that renders.

Keeping the two halves as named submodules lets the SSVIF recipe attach its segmentation head to the
fused features, and lets tools count or export each half. A multi-task model (MultiTaskVIF) adds a shared
trunk between them (:class:`SharedTrunk`): its output feeds both the image decoder and the segmentation
head, so one forward pass gives the fused image and the features the head turns into a named-class map.
"""

from __future__ import annotations

import torch
from torch import nn

from ssvif_ros.models.color import infrared_single_channel

# What a conv sees beyond the image border (lightunet's encoder, the SegHead): the zeros of the
# checkpoints trained before 2026-12-02's fourth session, or the edge pixel (docs/edge_artefact.md).
PADDINGS = ("zeros", "replicate")


class ConvBNReLU(nn.Sequential):
    """k×k conv (no bias: the BN shift makes it redundant) + BN + ReLU, foldable into one conv for export:
    (B,cin,H,W) -> (B,cout,H/s,W/s). The building block of lightunet and the SegHead.

    ``padding`` (:data:`PADDINGS`): ``replicate`` lets the border look like image content; with ``zeros``
    a stride-2 conv pads an even-sized input on the left and top only, and trained label-free heads gave
    those borders an id of their own (docs/edge_artefact.md)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel_size: int = 3, padding: str = "zeros"):
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        super().__init__(
            nn.Conv2d(
                cin,
                cout,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                padding_mode=padding,
                bias=False,
            ),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class SharedTrunk(nn.Module):
    """MultiTaskVIF's shared trunk, (B,C,h,w) -> (B,C,h,w): ``x + f(x)`` with ``f`` two 3×3 conv-BN-ReLU
    layers whose last BN starts at zero, so a trunk added to a trained model starts as the identity (the
    model fuses as before) and the segmentation loss shapes the shared features from there."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class FusionModel(nn.Module):
    """``backbone(vis, ir) -> features`` then ``decoder(features, vis, ir) -> fused``.

    Shapes: ``vis`` (B, in_chans, H, W) in [0,1] (in_chans 3 for RGB, 1 for luminance), ``ir`` (B,1,H,W)
    in [0,1] (a replicated 3-channel IR is reduced to one channel here), ``fused`` (B, in_chans, H, W) in
    [0,1], ``features`` (B, feature_channels, h, w) with h, w at most H, W (a model may keep its fused
    features at a reduced resolution; the segmentation head upsamples its logits to the image size).

    The decoder receives the sources too: models whose features are at a reduced resolution use them
    as full-resolution guidance; the others ignore them.
    """

    def __init__(self, backbone: nn.Module, decoder: nn.Module, in_chans: int, feature_channels: int):
        super().__init__()
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (luminance) or 3 (RGB), got {in_chans}")
        self.backbone = backbone
        self.decoder = decoder
        self.in_chans = in_chans
        self.feature_channels = feature_channels
        self.trunk: nn.Module | None = None  # MultiTaskVIF: set by create_model(..., multitask=True)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if vis.dim() != 4 or vis.shape[1] != self.in_chans:
            raise ValueError(f"vis must be (B,{self.in_chans},H,W), got {tuple(vis.shape)}")
        ir = infrared_single_channel(ir)
        if ir.shape[0] != vis.shape[0] or ir.shape[-2:] != vis.shape[-2:]:
            raise ValueError(f"ir {tuple(ir.shape)} does not match vis {tuple(vis.shape)} in batch or size")
        features = self.backbone(vis, ir)
        if self.trunk is not None:
            features = self.trunk(features)
        fused = self.decoder(features, vis, ir)
        return fused, features
