"""Closed-form luminance fusion rules in torch: the guides of lightunet and the targets of the fusion loss.

Three rules, all on luminance (B,1,H,W) in [0,1]:

- ``max``: ``max(Y_vis, ir)``, SwinFusion's intensity target. It keeps every warm target, but where the
  thermal road is brighter than the painted lines of a dark visible image it keeps the road and erases the
  lines, and where lit surroundings are brighter than a pedestrian's thermal signal it hides the pedestrian.
- ``saliency``: Laplacian-pyramid fusion plus thermal saliency. Per pyramid level the detail of the source
  with more local energy is kept (lane markings, texture, edges from either camera) and the coarsest level
  is averaged, as the classic Laplacian fusion does. Where the thermal image is *salient* (warmer than its
  own surroundings by ``saliency_tau`` or more: a person on cool ground, not a uniformly warm road) the
  fused luminance blends to the raw thermal image, and in the target's surroundings (a smooth halo of
  about ``context_sigma``) the low frequencies are the thermal image's, detail kept: a warm target stays
  brighter than what is around it even where lit visible surroundings (street lights, headlights) are
  brighter than its thermal signal.
- ``saliency_sides``: the same rule with a pixel's saliency measured against the thermal image to its left
  and right (``SaliencyRule(surround="sides")``): a road, about as warm along its length, is not salient near
  its edges, so the lane markings on it keep the pyramid's visible detail; a person, warmer than both
  sides, still is.

Parameters are in pixels of the image the rule sees and were chosen on the synthetic training scenes only
(see docs/fusion_target.md). The wide blurs run at 1/2 and 1/4 resolution and the narrow windows are box
filters, so the rule costs a few cheap passes and suits a per-frame guide.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssvif_ros.models.color import rgb_to_y

GUIDES = ("max", "saliency", "saliency_sides")
_fold_rows = True  # see shape_independent_filters


@contextmanager
def shape_independent_filters() -> Iterator[None]:
    """Within it the filters do not fold rows into channels: a trace for a dynamic-size export must not
    depend on the height it was traced at (the fold's group count does). Same values, slower in ONNX
    Runtime."""
    global _fold_rows
    previous, _fold_rows = _fold_rows, False
    try:
        yield
    finally:
        _fold_rows = previous


def _filter_rows(x: torch.Tensor, taps: list[float], stride: int) -> torch.Tensor:
    """``taps`` along W of every row, replicate borders, every ``stride``-th column:
    (B,C,H,W) -> (B,C,H,⌈W/s⌉). The rows are folded into up to 16 channels of a depthwise conv: ONNX Runtime
    pads a one-channel conv to its channel block (16 on AVX-512), so the plain form does up to 16× the work
    and reorders its layout twice (docs/fusion_target.md, "Cost")."""
    b, c, h, w = x.shape
    r = len(taps) // 2
    groups = next(g for g in (16, 8, 4, 2, 1) if h % g == 0) if _fold_rows else 1
    kernel = torch.tensor(taps, dtype=x.dtype, device=x.device).view(1, 1, 1, -1).repeat(groups, 1, 1, 1)
    y = F.pad(x.reshape(b * c, groups, h // groups, w), (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, kernel, stride=(1, stride), groups=groups)
    return y.reshape(b, c, h, y.shape[-1])


def separable_filter(x: torch.Tensor, taps: list[float], stride: int = 1) -> torch.Tensor:
    """``taps`` (odd length, normalised by the caller) along W then H of each channel, replicate borders,
    kept at every ``stride``-th pixel: (B,C,H,W) -> (B,C,⌈H/s⌉,⌈W/s⌉). Filtering only the kept pixels is the
    same as filtering all and subsampling, at 1/s (W pass) and 1/s² (H pass) of the work; the H pass is the
    W pass of the transposed image."""
    y = _filter_rows(x, taps, stride)
    return _filter_rows(y.transpose(-1, -2), taps, stride).transpose(-1, -2)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel, replicate borders: (B,C,H,W) -> (B,C,H,W)."""
    radius = max(1, int(3.0 * sigma + 0.5))
    taps = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(-radius, radius + 1)]
    return separable_filter(x, [v / sum(taps) for v in taps])


def box_blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size`` × ``size`` window (odd), borders averaged over the pixels inside: same shape."""
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


def blur_small(x: torch.Tensor, factor: int, sigma: float) -> torch.Tensor:
    """``x`` averaged down by ``factor``, then blurred by ``sigma`` full-resolution pixels:
    (B,C,H,W) -> (B,C,⌈H/factor⌉,⌈W/factor⌉)."""
    return gaussian_blur(F.avg_pool2d(x, factor, ceil_mode=True), sigma / factor)


def smooth_at(x: torch.Tensor, factor: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` full-resolution pixels computed at 1/``factor`` resolution (cheap for
    the wide blurs of low-frequency layers): (B,C,H,W) -> (B,C,H,W)."""
    return F.interpolate(
        blur_small(x, factor, sigma), size=x.shape[-2:], mode="bilinear", align_corners=False
    )


_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
SURROUNDS = ("ring", "sides")  # what a pixel's thermal saliency is measured against (SaliencyRule)
HALO_GAIN = 3.0  # a salient blob's smoothed map reaches 1 around it, fading over ~context_sigma


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """Binomial [1,4,6,4,1]/16 blur (replicate borders), then every second pixel:
    (B,C,H,W) -> (B,C,⌈H/2⌉,⌈W/2⌉)."""
    return separable_filter(x, [v / 16.0 for v in _BINOMIAL], stride=2)


def pyramid_fusion(y_vis: torch.Tensor, ir: torch.Tensor, levels: int = 4, window: int = 3) -> torch.Tensor:
    """Laplacian-pyramid fusion in torch: per level, the detail of the source with more local energy
    (``window`` box), the coarsest level averaged; (B,1,H,W) ×2 -> (B,1,H,W). Upsampling is bilinear, so
    collapsing a single source's pyramid returns it exactly."""
    x = torch.cat([y_vis, ir], dim=1)
    details = []
    for _ in range(levels):
        if min(x.shape[-2:]) < 8:
            break
        low = pyramid_down(x)
        details.append(x - F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False))
        x = low
    fused = x.mean(dim=1, keepdim=True)
    for band in reversed(details):
        square = band * band
        # the box filter is linear: the sign of the windowed energy difference needs one filtered channel
        vis_wins = box_blur(square[:, :1] - square[:, 1:], window) >= 0
        chosen = torch.where(vis_wins, band[:, :1], band[:, 1:])
        fused = F.interpolate(fused, size=band.shape[-2:], mode="bilinear", align_corners=False) + chosen
    return fused


@dataclass(frozen=True)
class SaliencyRule:
    """The ``saliency`` rule's parameters (pixels, luminance units); see the module docstring."""

    levels: int = 4  # pyramid detail levels
    energy_window: int = 3  # box window of the local energy that picks each level's detail
    base_sigma: float = 4.0  # the low frequencies replaced around salient targets (at 1/2 resolution)
    context_sigma: float = 12.0  # surroundings a thermal target is compared with (at 1/4 resolution)
    saliency_tau: float = 0.15  # this much warmer than the surroundings = fully salient
    spread_window: int = 5  # box window: how far the thermal blend reaches around a salient target

    surround: str = "ring"  # what a pixel is compared with: "ring" (a blur around it) or "sides"
    side_offset: int = 12  # "sides": how far to the left and right the thermal image is looked at (px, ×4)

    def __post_init__(self) -> None:
        if self.surround not in SURROUNDS:
            raise ValueError(
                f"SaliencyRule.surround must be one of {', '.join(SURROUNDS)}, got {self.surround!r}"
            )
        if self.side_offset < 4 or self.side_offset % 4:
            raise ValueError(
                f"SaliencyRule.side_offset must be a multiple of 4 px (>= 4), got {self.side_offset}"
            )

    def surroundings(self, ir: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W): the thermal level a pixel must exceed to be salient. ``ring``: the thermal image
        blurred by ``context_sigma``. ``sides``: the warmer of the thermal image ``side_offset`` px to the
        left and to the right (blurred by 4 px, at 1/4 resolution). A road is about as warm along its
        length, so its edges and the lane markings on it are not salient, while a person or a pole is
        warmer than both sides. Limits: a warm target wider than about 2·side_offset is warmer than its
        sides only near its own edges, and the 4-px blur runs in both directions, so a band of ~6 px along
        a *horizontal* warm edge stays salient (docs/fusion_target.md, "The sides surround")."""
        if self.surround == "ring":
            return smooth_at(ir, 4, self.context_sigma)
        small = blur_small(ir, 4, 4.0)
        shift = self.side_offset // 4
        left = F.pad(small, (shift, 0, 0, 0), mode="replicate")[..., : small.shape[-1]]
        right = F.pad(small, (0, shift, 0, 0), mode="replicate")[..., shift:]
        return F.interpolate(
            torch.maximum(left, right), size=ir.shape[-2:], mode="bilinear", align_corners=False
        )

    def thermal_saliency(self, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, halo), each (B,1,H,W) in [0,1]: how much warmer each pixel is than its surroundings
        (spread a little), and those surroundings (the salient map spread smoothly by ~context_sigma/2)."""
        salient = ((ir - self.surroundings(ir)) / self.saliency_tau).clamp(0.0, 1.0)
        halo = (HALO_GAIN * smooth_at(salient, 4, self.context_sigma / 2.0)).clamp(0.0, 1.0)
        return box_blur(salient, self.spread_window), halo

    def __call__(self, y_vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """Fused luminance (B,1,H,W) in [0,1] from ``y_vis`` and ``ir`` (B,1,H,W) in [0,1]."""
        fused = pyramid_fusion(y_vis, ir, self.levels, self.energy_window)
        weight, halo = self.thermal_saliency(ir)
        # thermal low frequencies around targets (the blur is linear: one channel, the difference, is blurred)
        fused = fused + halo * smooth_at(ir - fused, 2, self.base_sigma)
        return (weight * ir + (1.0 - weight) * fused).clamp(0.0, 1.0)


def fused_luminance(guide: str, y_vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """The rule named ``guide`` (one of :data:`GUIDES`) on luminance (B,1,H,W) ×2 -> (B,1,H,W)."""
    if guide == "max":
        return torch.maximum(y_vis, ir)
    if guide == "saliency":
        return SaliencyRule()(y_vis, ir)
    if guide == "saliency_sides":
        return SaliencyRule(surround="sides")(y_vis, ir)
    raise ValueError(f"unknown guide {guide!r}; choose one of {', '.join(GUIDES)}")


def guide_image(guide: str, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """vis (B,C,H,W) shifted to the rule's luminance with its chroma kept (C = 1: the luminance itself).

    Adding the same luminance change to R, G and B keeps Cb and Cr exactly (up to clipping)."""
    y = rgb_to_y(vis)
    return (vis + (fused_luminance(guide, y, ir) - y)).clamp(0.0, 1.0)
