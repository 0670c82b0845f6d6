"""LightUNet: the real-time fusion model for robots (CPU, Jetson), registered as ``lightunet``.

Early fusion: concat(vis, ir) goes through a small strided encoder (1/2, 1/4, 1/8 resolution, plain 3×3
conv + BN + ReLU) and a one-step FPN-style decoder back to 1/4 resolution, where the fused features
(32 channels) live; the segmentation head attaches there. The image decoder renders the full-resolution
image from those features and the full-resolution sources.

Output: a residual on a guide. The guide is a closed-form rule of :mod:`ssvif_ros.models.guides`:
``guide="saliency"`` (Laplacian pyramid with thermal saliency) or ``guide="max"`` (the factory default,
kept for the checkpoints trained with it), the classic max-luminance fusion; with the luminance decoder also
``guide="learned"``: the rule's Laplacian pyramid blended towards the thermal image by a weight the network
predicts (in place of the saliency rule's hand-made saliency blend; no halo step). Each is applied to the
luminance and added to R, G and B alike, which keeps the visible chroma exactly (up to clipping), so an
untrained model already outputs a sensible fusion that satisfies the intensity and colour terms, and all
fine detail comes from the sources at full resolution. The network only learns a correction ``delta`` in
logit space (the sigmoid keeps the corrected values in (0,1) with a non-zero gradient everywhere, unlike a
clamp; the luminance decoder clamps R, G, B only where adding the luminance change leaves [0,1]).
Two image decoders (``correction``):

- ``joint`` (:class:`GuidedImageDecoder`, the checkpoints trained before 2026-12-02's fourth session): a
  3×3 conv over the upsampled features and the sources corrects every colour channel;
- ``luminance`` (:class:`LuminanceDecoder`, the default model since): one correction of the luminance,
  from the features at 1/4 resolution plus a per-pixel term of the sources; the chroma stays the
  visible camera's, and the decoder costs a third as much in ONNX Runtime.

Any input size works: strided convs round up and every upsampling interpolates to the exact size of
its target.

Measured at 480×640, batch 1, fp32 (FlopCounterMode; eager torch 2.13 ``inference_mode`` on the 2-core
development CPU, shared with other jobs, so medians vary with load), with the default widths (16, 32, 64),
the ``max`` guide and the ``joint`` decoder:

- color="rgb": 119,095 parameters, 2.09 GFLOPs (1.04 GMAC; SeAFusion: 102.3 GFLOPs, 49× more);
  median 35 ms at 1 thread (28 fps), 31 ms at 2 threads on an idle CPU (32 fps).
- color="y": 118,571 parameters, 1.91 GFLOPs; median 40 ms at 1 thread, 25 ms at 2 threads (40 fps).
- With 2 threads while another process keeps one core busy, the median rose to ~190 ms: on a shared
  2-core machine run with 1 thread.

Where the time goes (per layer, 1 thread): the full-resolution work dominates (stride-2 stem ~6 ms, the
3×3 correction conv ~7 ms, upsampling ~4 ms); a plain 3×3 conv at 1/8 costs 1.7 ms (depthwise-separable:
0.6 ms), so cheaper blocks there would save only ~2 ms and are not used. In ONNX Runtime the ``joint``
decoder's 12→3 conv and the 8-channel upsampling before it took 15 + 5 ms of a 74 ms frame
(``saliency`` guide): both run in a blocked layout that pads few channels to 16; ``luminance`` avoids them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssvif_ros.models.base import ConvBNReLU, FusionModel
from ssvif_ros.models.color import channel_sum, rgb_to_y
from ssvif_ros.models.guides import GUIDES, fused_luminance, guide_image, pyramid_fusion
from ssvif_ros.models.registry import register_model

GUIDE_EPS = 1e-3  # keeps logit(guide) finite for black or saturated pixels


CORRECTIONS = ("joint", "luminance")
LEARNED_GUIDE = "learned"  # the luminance decoder's guide: Laplacian pyramid + a learned thermal blend
LEARNED_BLEND_START = -3.0  # logit of the learned blend's starting weight of the thermal image (~0.05)


class LightUNetBackbone(nn.Module):
    """concat(vis, ir) -> fused features at 1/4 resolution.

    vis (B,in_chans,H,W), ir (B,1,H,W) -> (B, widths[1], ceil(H/4), ceil(W/4)).
    """

    def __init__(self, in_chans: int, widths: tuple[int, int, int], padding: str = "zeros"):
        super().__init__()
        c1, c2, c3 = widths

        def block(cin: int, cout: int, stride: int = 1) -> ConvBNReLU:
            return ConvBNReLU(cin, cout, stride=stride, padding=padding)

        self.stem = block(in_chans + 1, c1, stride=2)  # 1/2
        self.down2 = nn.Sequential(block(c1, c2, stride=2), block(c2, c2))  # 1/4
        self.down3 = nn.Sequential(block(c2, c3, stride=2), block(c3, c3), block(c3, c3))  # 1/8
        self.lateral = ConvBNReLU(c3, c2, kernel_size=1)
        self.merge = block(c2, c2)

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        x2 = self.stem(torch.cat([vis, ir], dim=1))
        x4 = self.down2(x2)
        x8 = self.down3(x4)
        up = F.interpolate(self.lateral(x8), size=x4.shape[-2:], mode="bilinear", align_corners=False)
        return self.merge(x4 + up)


class GuidedImageDecoder(nn.Module):
    """features (B,C,h,w) + vis (B,in_chans,H,W) + ir (B,1,H,W) -> fused (B,in_chans,H,W) in (0,1).

    ``correction: joint`` (the checkpoints trained before 2026-12-02, session 4). Squeezes the features to
    a few channels at low resolution, upsamples them to the image size, and a 3×3 conv over [features, vis,
    ir] gives the logit-space correction of every channel of the guide (``guide``: its rule).
    """

    def __init__(self, feature_channels: int, in_chans: int, squeeze_channels: int, guide: str = "max"):
        super().__init__()
        self.guide = _checked_guide(guide)
        self.squeeze = ConvBNReLU(feature_channels, squeeze_channels, kernel_size=1)
        self.correction = nn.Conv2d(squeeze_channels + in_chans + 1, in_chans, 3, padding=1)
        # Start near the guide (small correction) while keeping gradients flowing into the features.
        with torch.no_grad():
            self.correction.weight.mul_(0.1)
            self.correction.bias.zero_()

    def forward(self, features: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        context = F.interpolate(
            self.squeeze(features), size=vis.shape[-2:], mode="bilinear", align_corners=False
        )
        delta = self.correction(torch.cat([context, vis, ir], dim=1))
        return logit_residual(guide_image(self.guide, vis, ir), delta)


class LuminanceDecoder(nn.Module):
    """features (B,C,h,w) + vis (B,in_chans,H,W) + ir (B,1,H,W) -> fused (B,in_chans,H,W) in [0,1].

    ``correction: luminance``: one logit-space correction of the rule's *luminance*; the visible chroma is
    kept exactly (up to clipping), as the colour term of the fusion loss asks:
    ``Y = sigmoid(logit(rule(Y_vis, ir)) + up(context) + a·Y_vis + b·ir)``, ``fused = vis + (Y − Y_vis)``,
    with ``context`` (B,1,h,w) a weighted sum of the squeezed features at 1/4 resolution and ``up`` a
    bilinear resize. Every full-resolution step works on one channel, about a third of ``joint``'s cost
    in ONNX Runtime (BENCHMARKS.md, issue 14): the context is summed rather than convolved because ONNX
    Runtime runs a conv's output, and the resize after it, in a layout that pads one channel to 16.
    """

    def __init__(self, feature_channels: int, squeeze_channels: int, guide: str = "max"):
        super().__init__()
        self.guide = _checked_guide(guide, (*GUIDES, LEARNED_GUIDE))
        self.squeeze = ConvBNReLU(feature_channels, squeeze_channels, kernel_size=1)
        bound = 0.1 / squeeze_channels**0.5  # a 1×1 conv's default initialisation, scaled as joint's
        self.context_weight = nn.Parameter(torch.empty(1, squeeze_channels, 1, 1).uniform_(-bound, bound))
        self.context_bias = nn.Parameter(torch.zeros(1))
        self.source_weight = nn.Parameter(torch.zeros(2))  # a, b: starts on the rule
        if self.guide == LEARNED_GUIDE:
            self.blend_weight = nn.Parameter(torch.empty(squeeze_channels).uniform_(-bound, bound))
            self.blend_bias = nn.Parameter(torch.full((1,), LEARNED_BLEND_START))

    def forward(self, features: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        squeezed = self.squeeze(features)
        context = channel_sum(squeezed, self.context_weight.flatten()) + self.context_bias
        y_vis = rgb_to_y(vis)
        delta = _resized(context, vis) + self.source_weight[0] * y_vis + self.source_weight[1] * ir
        y_fused = logit_residual(self.guide_luminance(squeezed, y_vis, ir), delta)
        return (vis + (y_fused - y_vis)).clamp(0.0, 1.0)

    def guide_luminance(self, squeezed: torch.Tensor, y_vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The guide's luminance (B,1,H,W). ``learned``: the Laplacian pyramid of the two sources blended
        towards the raw thermal image by a weight the features predict at 1/4 resolution, in place of the
        saliency rule's hand-made blend (the features can tell a compact warm target from a warm road by
        more than a fixed blur); the rule's halo step has no counterpart."""
        if self.guide != LEARNED_GUIDE:
            return fused_luminance(self.guide, y_vis, ir)
        pyramid = pyramid_fusion(y_vis, ir)
        return pyramid + self.thermal_weight(squeezed, ir) * (ir - pyramid)

    def thermal_weight(self, squeezed: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The learned guide's weight of the thermal image (B,1,H,W) in [0,1], from the squeezed features
        (B,S,h,w) at 1/4 resolution, resized to ``ir`` (B,1,H,W); ``guide=learned`` only."""
        blend = channel_sum(squeezed, self.blend_weight) + self.blend_bias
        return torch.sigmoid(_resized(blend, ir))


def _resized(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` (B,C,h,w) bilinearly resized to ``like``'s height and width."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def logit_residual(guide: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``sigmoid(logit(guide) + delta)``, the guide kept GUIDE_EPS away from 0 and 1; same shape."""
    guide = guide.clamp(GUIDE_EPS, 1.0 - GUIDE_EPS)
    return torch.sigmoid(torch.log(guide / (1.0 - guide)) + delta)


def _checked_guide(guide: str, choices: tuple[str, ...] = GUIDES) -> str:
    if guide not in choices:
        hint = f" ('{LEARNED_GUIDE}' needs correction: luminance)" if guide == LEARNED_GUIDE else ""
        raise ValueError(f"lightunet guide must be one of {', '.join(choices)}, got {guide!r}{hint}")
    return guide


def max_luminance_guide(vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """vis (B,C,H,W) shifted to luminance max(Y_vis, ir) with its chroma kept; C = 1 gives max(vis, ir)."""
    return guide_image("max", vis, ir)


@register_model
def lightunet(
    in_chans: int = 3,
    widths: tuple[int, int, int] = (16, 32, 64),
    squeeze_channels: int = 8,
    guide: str = "max",
    padding: str = "zeros",
    correction: str = "joint",
) -> FusionModel:
    """Real-time early-fusion U-Net; ``widths`` are the channels at 1/2, 1/4 and 1/8 resolution;
    ``guide`` the closed-form rule the output is a residual on (:data:`ssvif_ros.models.guides.GUIDES`), or
    ``learned`` (luminance decoder only: the pyramid blended to the thermal image by a learned weight);
    ``padding`` the encoder's border handling (:class:`ConvBNReLU`); ``correction`` the image decoder:
    ``joint`` (:class:`GuidedImageDecoder`) or ``luminance`` (:class:`LuminanceDecoder`, the fast one)."""
    widths = tuple(int(w) for w in widths)
    if len(widths) != 3:
        raise ValueError(f"lightunet widths must have 3 entries (1/2, 1/4, 1/8 resolution), got {widths}")
    if correction not in CORRECTIONS:
        raise ValueError(f"lightunet correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    if correction == "joint":
        decoder = GuidedImageDecoder(widths[1], in_chans, squeeze_channels, guide)
    else:
        decoder = LuminanceDecoder(widths[1], squeeze_channels, guide)
    return FusionModel(
        LightUNetBackbone(in_chans, widths, padding),
        decoder,
        in_chans=in_chans,
        feature_channels=widths[1],
    )
