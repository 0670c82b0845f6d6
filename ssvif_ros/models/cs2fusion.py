"""CS2Fusion's fusion network (Wang et al., Information Fusion 102:102039, 2024): two dense encoders and a
convolutional decoder with demand-driven modules, on luminance.

Architecture, from the paper and the authors' public code (read for understanding; written here anew):

- one dense encoder per modality (unshared), single channel in, 3×3 conv + ReLU, no BN, no down-sampling:
  ``c1 = conv(x)`` (1→16), ``c2 = conv(c1)`` (16→16), ``c3 = conv([c1, c2])`` (32→16),
  ``c4 = conv([c1, c2, c3])`` (48→16); the modality's features are ``[c1, c2, c3, c4]`` (64 channels), the
  fused features both modalities' (128 channels, the model's ``features``);
- the decoder: 3×3 convs 128→64→32→16→1 (ReLU between, a sigmoid at the end: luminance in [0, 1]);
- a demand-driven module (DDM) after each of the 64-, 32- and 16-channel decoder stages: a per-image gate
  ``sigmoid(conv1x1([GMP(d), GAP(d)]))`` of the decoder feature ``d`` scales a 3×3 conv + ReLU projection of
  the *detached* encoder features (128 → the stage's width), added to ``d``: the decoder asks the encoders
  for what it lacks without sending gradients back through that path.

Grey-scale: build it with ``create_model("cs2fusion", color="y")`` (the visible image's Y is fused, its CbCr
reused, as the paper does at inference). Full resolution throughout: accurate, and slow on a CPU
(BENCHMARKS.md). The training-only parts (compensation perception network, SSO, contrastive losses) are in
:mod:`ssvif_ros.train.frameworks.cs2fusion`.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from ssvif_ros.models.base import FusionModel
from ssvif_ros.models.registry import register_model

ENCODER_WIDTH = 16  # channels of each dense layer; a modality's features are 4 × this


def _conv_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


class DenseEncoder(nn.Module):
    """(B,1,H,W) -> (B,4·w,H,W): the four dense layers' outputs, concatenated."""

    def __init__(self, width: int = ENCODER_WIDTH) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [_conv_relu(1, width)] + [_conv_relu(k * width, width) for k in (1, 2, 3)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.layers[0](x)]
        outs.append(self.layers[1](outs[0]))
        outs.append(self.layers[2](torch.cat(outs, dim=1)))
        outs.append(self.layers[3](torch.cat(outs, dim=1)))
        return torch.cat(outs, dim=1)


class DualDenseEncoder(nn.Module):
    """vis (B,1,H,W), ir (B,1,H,W) -> features (B, 8·w, H, W): [visible's 4·w, infrared's 4·w]."""

    def __init__(self, in_chans: int, width: int = ENCODER_WIDTH) -> None:
        super().__init__()
        if in_chans != 1:
            raise ValueError("cs2fusion fuses luminance: build it with create_model('cs2fusion', color='y')")
        self.visible = DenseEncoder(width)
        self.infrared = DenseEncoder(width)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.visible(vis), self.infrared(ir)], dim=1)


class DemandDrivenModule(nn.Module):
    """d (B,C,H,W) + encoder features e (B,E,H,W) -> d + gate(d) · relu(conv3x3(e.detach()))."""

    def __init__(self, channels: int, encoder_channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(2 * channels, channels, 1)
        self.project = _conv_relu(encoder_channels, channels)

    def forward(self, d: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([d.amax(dim=(2, 3), keepdim=True), d.mean(dim=(2, 3), keepdim=True)], dim=1)
        return d + torch.sigmoid(self.gate(pooled)) * self.project(encoded.detach())


class DDMDecoder(nn.Module):
    """features (B,8·w,H,W) -> luminance (B,1,H,W) in (0,1): 3×3 convs 128→64→32→16→1, a DDM after each of
    the first three."""

    def __init__(self, feature_channels: int) -> None:
        super().__init__()
        widths = [feature_channels, 64, 32, 16]
        self.stages = nn.ModuleList([_conv_relu(a, b) for a, b in itertools.pairwise(widths)])
        self.ddms = nn.ModuleList([DemandDrivenModule(c, feature_channels) for c in widths[1:]])
        self.out = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, features: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        d = features
        for stage, ddm in zip(self.stages, self.ddms, strict=True):
            d = ddm(stage(d), features)
        return torch.sigmoid(self.out(d))


@register_model
def cs2fusion(in_chans: int = 1, width: int = ENCODER_WIDTH) -> FusionModel:
    """CS2Fusion's dense encoders + DDM decoder (luminance; ``color="y"``); ``width``: each dense layer's
    channels (16 in the paper: 64 per modality, 128 fused)."""
    features = 8 * int(width)
    return FusionModel(DualDenseEncoder(in_chans, int(width)), DDMDecoder(features), 1, features)
