"""Closed-form luminance fusion rules in torch: the guides of lightunet and the targets of the fusion loss.

Two rules, both on luminance (B,1,H,W) in [0,1]:

- ``max``: ``max(Y_vis, ir)``, SwinFusion's intensity target. It keeps every warm target, but where the
  thermal road is brighter than the painted lines of a dark visible image it keeps the road and erases the
  lines, and where lit surroundings are brighter than a pedestrian's thermal signal it hides the pedestrian.
- ``saliency``: two-scale fusion plus thermal saliency. Each source is split into a base (Gaussian blur)
  and a detail layer; the fused detail is, per pixel, the detail of the source with more local detail
  energy (lane markings, texture), laid on the brighter base. Where the thermal image is *salient* (warmer
  than its own surroundings by ``saliency_tau`` or more: a person on cool ground, not a uniformly warm
  road) the fused luminance blends to the raw thermal image, and in the target's surroundings (within
  about ``context_sigma``) the base layer is the thermal one, detail still chosen per pixel: a warm target
  stays brighter than what is around it even where lit visible surroundings (street lights, headlights)
  are brighter than its thermal signal, and painted lines or texture there are kept.

Parameters are in pixels of the image the rule sees and were chosen on the synthetic training scenes only
(see docs/fusion_target.md). The wide blurs run at 1/2 and 1/4 resolution and the narrow windows are box
filters, so the rule costs a few cheap passes and suits a per-frame guide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssvif_ros.models.color import rgb_to_y

GUIDES = ("max", "saliency")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel, replicate borders: (B,C,H,W) -> (B,C,H,W)."""
    radius = max(1, int(3.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    kx = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    ky = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kx, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), ky, groups=channels)


def box_blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a ``size`` × ``size`` window (odd), borders averaged over the pixels inside: same shape."""
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


def smooth_at(x: torch.Tensor, factor: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` full-resolution pixels computed at 1/``factor`` resolution (cheap for
    the wide blurs of low-frequency layers): (B,C,H,W) -> (B,C,H,W)."""
    small = F.avg_pool2d(x, factor, ceil_mode=True)
    blurred = gaussian_blur(small, sigma / factor)
    return F.interpolate(blurred, size=x.shape[-2:], mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class SaliencyRule:
    """The ``saliency`` rule's parameters (pixels, luminance units); see the module docstring."""

    base_sigma: float = 4.0  # base/detail split of the two-scale fusion (computed at 1/2 resolution)
    energy_window: int = 5  # box window of the detail energy that picks the detail source
    context_sigma: float = 12.0  # surroundings a thermal target is compared with (at 1/4 resolution)
    saliency_tau: float = 0.15  # this much warmer than the surroundings = fully salient
    spread_window: int = 5  # box window: how far the thermal blend reaches around a salient target

    def thermal_saliency(self, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, halo), each (B,1,H,W) in [0,1]: how much warmer each pixel is than its surroundings
        (spread a little), and the surroundings themselves (salient pixels dilated by ~context_sigma)."""
        salient = ((ir - smooth_at(ir, 4, self.context_sigma)) / self.saliency_tau).clamp(0.0, 1.0)
        radius = max(1, round(self.context_sigma / 4.0))
        halo = F.max_pool2d(F.avg_pool2d(salient, 4, ceil_mode=True), 2 * radius + 1, 1, radius)
        halo = F.interpolate(halo, size=ir.shape[-2:], mode="bilinear", align_corners=False)
        return box_blur(salient, self.spread_window), halo

    def __call__(self, y_vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """Fused luminance (B,1,H,W) in [0,1] from ``y_vis`` and ``ir`` (B,1,H,W) in [0,1]."""
        base_vis, base_ir = smooth_at(torch.cat([y_vis, ir], dim=1), 2, self.base_sigma).split(1, dim=1)
        detail_vis, detail_ir = y_vis - base_vis, ir - base_ir
        energy_vis = box_blur(detail_vis * detail_vis, self.energy_window)
        energy_ir = box_blur(detail_ir * detail_ir, self.energy_window)
        detail = torch.where(energy_vis >= energy_ir, detail_vis, detail_ir)
        weight, halo = self.thermal_saliency(ir)
        base = halo * base_ir + (1.0 - halo) * torch.maximum(base_vis, base_ir)
        two_scale = (base + detail).clamp(0.0, 1.0)
        return weight * ir + (1.0 - weight) * two_scale


def fused_luminance(guide: str, y_vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """The rule named ``guide`` (one of :data:`GUIDES`) on luminance (B,1,H,W) ×2 -> (B,1,H,W)."""
    if guide == "max":
        return torch.maximum(y_vis, ir)
    if guide == "saliency":
        return SaliencyRule()(y_vis, ir)
    raise ValueError(f"unknown guide {guide!r}; choose one of {', '.join(GUIDES)}")


def guide_image(guide: str, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """vis (B,C,H,W) shifted to the rule's luminance with its chroma kept (C = 1: the luminance itself).

    Adding the same luminance change to R, G and B keeps Cb and Cr exactly (up to clipping)."""
    y = rgb_to_y(vis)
    return (vis + (fused_luminance(guide, y, ir) - y)).clamp(0.0, 1.0)
