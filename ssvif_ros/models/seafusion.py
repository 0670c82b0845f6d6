"""SeAFusion (Tang, Yuan, Ma, Information Fusion 82, 2022): the fusion network, registered as ``seafusion``.

Two modality encoders (a 3×3 conv then two residual dense blocks with a learnable Sobel gradient branch,
16 → 32 → 48 channels, all at full resolution) feed a plain 4-layer conv decoder on the concatenated
96 channels. About 0.167 M parameters in the 1-channel (luminance) setting.

Details follow the authors' reference code (``FusionNet.py``): conv-LeakyReLU layers use slope 0.2 and the
sum at the end of each dense block slope 0.1; the Sobel convs start at the Sobel kernels and are trained.
One deliberate difference: the reference builds a BatchNorm in each decoder layer but never calls it;
here the decoder applies it (conv-BN-LeakyReLU, conv-BN-tanh), as the paper's architecture describes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssvif_ros.models.base import FusionModel
from ssvif_ros.models.registry import register_model

ENCODER_CHANNELS = (16, 32, 48)
CONV_SLOPE = 0.2  # conv-LeakyReLU layers (reference code)
BLOCK_SLOPE = 0.1  # after the dense + gradient sum of each RGBD block

SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
SOBEL_Y = SOBEL_X.t().contiguous()


class ConvLeakyReLU(nn.Sequential):
    """3×3 conv (bias) + LeakyReLU(0.2): (B,cin,H,W) -> (B,cout,H,W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(CONV_SLOPE))


class SobelGradient(nn.Module):
    """Learnable depthwise gradient magnitude |Gx * x| + |Gy * x|, initialised to the Sobel kernels.

    (B,C,H,W) -> (B,C,H,W). Zero padding, as in the reference.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv_x = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.conv_y = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        with torch.no_grad():
            self.conv_x.weight.copy_(SOBEL_X.expand(channels, 1, 3, 3))
            self.conv_y.weight.copy_(SOBEL_Y.expand(channels, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_x(x).abs() + self.conv_y(x).abs()


class DenseBlock(nn.Module):
    """Two densely connected conv-LeakyReLU layers: (B,c,H,W) -> (B,3c,H,W) = [x, f1(x), f2([x, f1(x)])]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLeakyReLU(channels, channels)
        self.conv2 = ConvLeakyReLU(2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, self.conv1(x)], dim=1)
        return torch.cat([x, self.conv2(x)], dim=1)


class GradientResidualDenseBlock(nn.Module):
    """SeAFusion's RGBD: dense path (1×1 squeeze 3c -> out) + Sobel path (1×1 c -> out), summed.

    (B,cin,H,W) -> (B,cout,H,W).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dense = DenseBlock(cin)
        self.dense_squeeze = nn.Conv2d(3 * cin, cout, 1)
        self.gradient = SobelGradient(cin)
        self.gradient_project = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = self.dense_squeeze(self.dense(x))
        grad = self.gradient_project(self.gradient(x))
        return F.leaky_relu(dense + grad, BLOCK_SLOPE)


class ModalityEncoder(nn.Sequential):
    """conv 3×3 in -> 16, RGBD 16 -> 32, RGBD 32 -> 48: (B,cin,H,W) -> (B,48,H,W)."""

    def __init__(self, cin: int):
        c0, c1, c2 = ENCODER_CHANNELS
        super().__init__(
            ConvLeakyReLU(cin, c0), GradientResidualDenseBlock(c0, c1), GradientResidualDenseBlock(c1, c2)
        )


class SeAFusionBackbone(nn.Module):
    """Visible and infrared encoders, concatenated: vis (B,in_chans,H,W), ir (B,1,H,W) -> (B,96,H,W)."""

    def __init__(self, in_chans: int):
        super().__init__()
        self.vis_encoder = ModalityEncoder(in_chans)
        self.ir_encoder = ModalityEncoder(1)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.vis_encoder(vis), self.ir_encoder(ir)], dim=1)


class ConvBNLeakyReLU(nn.Sequential):
    """3×3 conv + BN + LeakyReLU(0.2): (B,cin,H,W) -> (B,cout,H,W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(CONV_SLOPE))


class SeAFusionDecoder(nn.Module):
    """96 -> 64 -> 32 -> 16 conv-BN-LeakyReLU, then 16 -> out conv-BN with tanh/2 + 0.5 (output in [0,1]).

    Ignores the sources: the features are already at full resolution. (B,96,H,W) -> (B,out,H,W).
    """

    def __init__(self, feature_channels: int, out_chans: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNLeakyReLU(feature_channels, 64), ConvBNLeakyReLU(64, 32), ConvBNLeakyReLU(32, 16)
        )
        self.to_image = nn.Sequential(nn.Conv2d(16, out_chans, 3, padding=1), nn.BatchNorm2d(out_chans))

    def forward(self, features: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_image(self.body(features))) / 2 + 0.5


@register_model
def seafusion(in_chans: int = 3) -> FusionModel:
    """SeAFusion whose visible input and fused output have ``in_chans`` channels (3 RGB, 1 luminance)."""
    feature_channels = 2 * ENCODER_CHANNELS[-1]
    return FusionModel(
        SeAFusionBackbone(in_chans),
        SeAFusionDecoder(feature_channels, in_chans),
        in_chans=in_chans,
        feature_channels=feature_channels,
    )
