"""CS2Fusion (Wang et al., Information Fusion 102:102039, 2024): self-supervised fusion guided by a
compensation perception network (CPN) trained contrastively.

Training only (the inference model is :mod:`ssvif_ros.models.cs2fusion`):

- **CPN**: two 3×3 convs on the *detached* encoder features give a one-channel compensation map ``A``,
  min-max normalised per image: where the infrared image should win (``A``) and where the visible one
  should (``1 − A``).
- **Backbone loss** (``"fusion"``): ``‖A⊙(F−IR)‖² + ‖(1−A)⊙(F−VIS)‖²`` (means) plus SSIM losses to both
  sources (window 3), on luminance; ``A`` detached.
- **CPN loss** (``"csc"``, the task slot): CCAM-style contrast over the batch's cosine similarities. Each
  modality's features through the self-correlation and saliency operation (SSO: the part above the
  feature's mean, min-max normalised, + the channel self-correlation applied to the feature, + the
  feature) are positives of that modality's ``A``-weighted features; the visible and infrared weighted
  features are negatives. Positives cost a rank-weighted ``−log s``, negatives ``−log(1 − s)``. A second
  pass with a visible image whose random patches were cut out adds terms weighted 2: as positives of the
  visible SSO features, as the paper's abstract says ("multiple positive samples"), or as negatives of the
  visible weighted features, as the authors' code does (``cs2fusion.impaired: negative``).

Choices where the sources are silent (docs/cs2fusion.md): one feature level (each modality's 64 encoder
channels), pooled to one vector per image; the rank weight ``exp(−α·rank)`` with ``α = cs2fusion.rank_alpha``;
the self-correlation softmax of ``f·fᵀ / HW``. Needs a model whose features are [visible half, infrared
half] (``cs2fusion``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import nn

from ssvif_ros.models.color import rgb_to_y
from ssvif_ros.train.frameworks.base import TrainingFramework

SIM_CLAMP = (5e-4, 1.0 - 5e-4)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-sample (and channel) min-max normalisation over H, W: (B,C,H,W) -> same, in [0, 1]."""
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    return (x - low) / (high - low).clamp(min=1e-6)


def sso(f: torch.Tensor) -> torch.Tensor:
    """Self-correlation and saliency operation, (B,C,H,W) -> (B,C,H,W)."""
    b, c, h, w = f.shape
    salient = minmax(F.relu(f - f.mean(dim=(2, 3), keepdim=True)))
    flat = f.reshape(b, c, h * w)
    attention = torch.softmax(flat @ flat.transpose(1, 2) / (h * w), dim=-1)  # (B,C,C)
    return salient + (attention @ flat).reshape(b, c, h, w) + f


def weighted_vector(f: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted spatial mean, (B,C,H,W) × (B,1,H,W) -> (B,C)."""
    return (f * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp(min=1e-6)


def similarities(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of every row of ``a`` (N,C) with every row of ``b`` (M,C), clamped: (N,M)."""
    return (F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()).clamp(*SIM_CLAMP)


def positive_loss(s: torch.Tensor, alpha: float) -> torch.Tensor:
    """Rank-weighted ``−log s``: within each row the most similar pairs weigh most (``exp(−α·rank)``)."""
    ranks = s.detach().argsort(dim=1, descending=True).argsort(dim=1).float()
    weights = torch.exp(-alpha * ranks)
    return ((-torch.log(s)) * weights).sum() / weights.sum()


def negative_loss(s: torch.Tensor) -> torch.Tensor:
    return -torch.log(1.0 - s).mean()


class CompensationNet(nn.Module):
    """Encoder features (B,C,H,W) -> compensation map ``A`` (B,1,H,W), min-max normalised per image."""

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return minmax(self.net(features))


def cut_patches(x: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` (B,C,H,W) with ``count`` random ``size``² patches per image set to 0 ("impaired areas")."""
    out = x.clone()
    b, _, h, w = x.shape
    for i in range(b):
        for _ in range(count):
            top = int(torch.randint(0, max(1, h - size + 1), (1,), generator=generator))
            left = int(torch.randint(0, max(1, w - size + 1), (1,), generator=generator))
            out[i, :, top : top + size, left : left + size] = 0.0
    return out


class CS2Fusion(TrainingFramework):
    """Backbone loss weighted by the CPN's map + the CPN's contrastive loss, one stage."""

    name = "cs2fusion"
    has_task = True
    task_title = "CS2Fusion contrastive compensation (CPN)"

    def __init__(self, cfg: dict[str, Any], feature_channels: int) -> None:
        super().__init__(cfg, feature_channels)
        self.opts = cfg["cs2fusion"]
        self.model: nn.Module | None = None
        self.generator = torch.Generator().manual_seed(int(cfg["seed"]))

    def bind_model(self, model: nn.Module) -> None:
        self.model = model  # the impaired-visible pass runs its encoders

    def build_modules(self) -> dict[str, nn.Module]:
        return {"cpn": CompensationNet(self.feature_channels, self.opts["cpn_hidden"])}

    def branch_outputs(
        self, modules: dict[str, nn.Module], fused: torch.Tensor, features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        encoded = features.detach()
        return {"A": modules["cpn"](encoded), "encoded": encoded}

    def fusion_terms(
        self, vis: torch.Tensor, ir: torch.Tensor, fused: torch.Tensor, outputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The backbone loss: intensity to each source weighted by the CPN's map ``A`` (infrared) and
        ``1 − A`` (visible), plus SSIM (window 3) to both, in luminance."""
        y_f, y_v = rgb_to_y(fused), rgb_to_y(vis)
        a = outputs["A"].detach().float()
        intensity = (a * (y_f - ir)).pow(2).mean() + ((1 - a) * (y_f - y_v)).pow(2).mean()
        structure = (1 - ssim(y_f, ir, data_range=1.0, win_size=3)) + (
            1 - ssim(y_f, y_v, data_range=1.0, win_size=3)
        )
        zero = intensity.new_zeros(())
        terms = {"int": intensity.detach(), "grad": zero, "ssim": structure.detach(), "color": zero}
        return intensity + structure, terms

    def task_loss(
        self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], vis: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The CPN's loss (see the module doc) and info "agreement" = the mean ``A`` (the infrared share)."""
        y_v = rgb_to_y(vis)
        a, encoded = outputs["A"].float(), outputs["encoded"].float()
        half = encoded.shape[1] // 2
        f_v, f_i = encoded[:, :half], encoded[:, half:]
        w_v, w_i = weighted_vector(f_v, 1 - a), weighted_vector(f_i, a)
        s_v, s_i = sso(f_v).mean(dim=(2, 3)), sso(f_i).mean(dim=(2, 3))
        alpha = float(self.opts["rank_alpha"])
        loss = positive_loss(similarities(s_v, w_v), alpha) + positive_loss(similarities(s_i, w_i), alpha)
        loss = loss + negative_loss(similarities(w_v, w_i))
        if self.opts["impaired_weight"] > 0 and self.model is not None:
            loss = loss + self.opts["impaired_weight"] * self._impaired_terms(y_v, ir, a, s_v, w_v, alpha)
        return loss, {"agreement": a.mean().detach()}

    def _impaired_terms(
        self,
        y_v: torch.Tensor,
        ir: torch.Tensor,
        a: torch.Tensor,
        s_v: torch.Tensor,
        w_v: torch.Tensor,
        alpha: float,
    ) -> torch.Tensor:
        """The visible image with patches cut out, through the model's encoders (no gradient): its
        weighted features as positives of the visible SSO ones, or negatives of the visible weighted ones."""
        size = max(1, y_v.shape[-1] // self.opts["patch_fraction"])
        impaired = cut_patches(y_v, int(self.opts["patches"]), size, self.generator)
        with torch.no_grad():
            half = self.feature_channels // 2
            f_cut = self.model.backbone(impaired, ir)[:, :half]  # type: ignore[union-attr]
        w_cut = weighted_vector(f_cut, 1 - a)
        if self.opts["impaired"] == "positive":
            return positive_loss(similarities(s_v, w_cut), alpha)
        return negative_loss(similarities(w_cut, w_v))
