"""Colour handling for fusion, in one place: RGB <-> YCbCr (BT.601 full range) and the Y-channel wrapper.

All tensors are float in [0,1], NCHW. Chroma channels are centred at 0.5, as in JPEG.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

# BT.601 full-range (JPEG) coefficients: Y = 0.299 R + 0.587 G + 0.114 B.
_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> (B,3,H,W) YCbCr with Cb, Cr offset by 0.5."""
    m = _RGB_TO_YCBCR.to(rgb)
    ycc = torch.einsum("ij,bjhw->bihw", m, rgb)
    offset = torch.tensor([0.0, 0.5, 0.5], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return ycc + offset


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`; the result is clamped to [0,1]."""
    offset = torch.tensor([0.0, 0.5, 0.5], dtype=ycbcr.dtype, device=ycbcr.device).view(1, 3, 1, 1)
    m = _YCBCR_TO_RGB.to(ycbcr)
    return torch.einsum("ij,bjhw->bihw", m, ycbcr - offset).clamp(0.0, 1.0)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB -> (B,1,H,W) luminance; a 1-channel input is returned unchanged."""
    if rgb.shape[1] == 1:
        return rgb
    return channel_sum(rgb, _RGB_TO_YCBCR[0].to(rgb))


def channel_sum(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_c weights[c]·x[:, c]: (B,C,H,W), (C,) -> (B,1,H,W). Written as a (1,C) @ (B,C,H·W) product: ONNX
    Runtime runs the multiply-then-ReduceSum form over channels about 7× slower (480×640 RGB → Y: 3.5 vs
    0.5 ms on one thread), with the same values."""
    b, c, h, w = x.shape
    dtype = torch.promote_types(x.dtype, weights.dtype)  # as the elementwise form: no fp16 under autocast
    autocast_on = x.device.type != "meta" and torch.is_autocast_enabled(x.device.type)
    no_autocast = torch.autocast(x.device.type, enabled=False) if autocast_on else contextlib.nullcontext()
    with no_autocast:  # (meta tensors, as in FLOP counts, have no autocast state to switch off)
        return (weights.to(dtype).view(1, c) @ x.to(dtype).reshape(b, c, h * w)).view(b, 1, h, w)


def infrared_single_channel(ir: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) IR unchanged; (B,3,H,W) IR (replicated gray, or a pseudo-colour) reduced to luminance."""
    if ir.dim() != 4 or ir.shape[1] not in (1, 3):
        raise ValueError(f"ir must be (B,1,H,W) or (B,3,H,W), got {tuple(ir.shape)}")
    return ir if ir.shape[1] == 1 else rgb_to_y(ir)


class YChannelFusion(nn.Module):
    """Classic colour handling: fuse the visible luminance with IR, keep the visible chroma.

    Wraps a 1-channel :class:`FusionModel`; takes and returns RGB (B,3,H,W) like an RGB model, and
    passes the inner model's features through unchanged.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        if getattr(inner, "in_chans", None) != 1:
            raise ValueError("YChannelFusion wraps a model built with in_chans=1")
        self.inner = inner
        self.in_chans = 3
        self.feature_channels = inner.feature_channels

    @property
    def backbone(self) -> nn.Module:
        return self.inner.backbone

    @property
    def decoder(self) -> nn.Module:
        return self.inner.decoder

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if vis.dim() != 4 or vis.shape[1] != 3:
            raise ValueError(f"vis must be (B,3,H,W) RGB, got {tuple(vis.shape)}")
        ycc = rgb_to_ycbcr(vis)
        fused_y, features = self.inner(ycc[:, :1], ir)
        fused = ycbcr_to_rgb(torch.cat([fused_y, ycc[:, 1:]], dim=1))
        return fused, features
