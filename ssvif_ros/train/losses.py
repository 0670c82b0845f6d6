"""Training losses: the unsupervised fusion loss and the cross-segmentation consistency (CSC) loss.

Fusion loss (SwinFusion's terms plus a colour term), with F the fused image and Y(·) the BT.601
luminance (:func:`ssvif_ros.models.color.rgb_to_y`; a 1-channel image is its own luminance):

- ``int``   = L1(Y(F), T), with the intensity target T = max(Y(vis), ir) (``target="max"``, SwinFusion)
  or the pyramid thermal-saliency rule (``target="saliency"``, :mod:`ssvif_ros.models.guides`), which
  keeps the visible detail where the thermal image is flat and the thermal image around warm targets
- ``grad``  = L1(S(Y(F)), max(S(Y(vis)), S(ir))), S = Sobel |Gx| + |Gy| (replicate padding)
- ``ssim``  = 0.5·(1 − SSIM(Y(F), Y(vis))) + 0.5·(1 − SSIM(Y(F), ir))   (pytorch-msssim, data_range 1)
- ``color`` = L1(CbCr(F), CbCr(vis))   (RGB only; 0 for 1-channel images)

The intensity, gradient and structure terms are taken on luminance because the infrared source has no
colour: comparing each RGB channel with max(vis_c, ir) would pull hot regions towards gray, fighting the
colour term. So luminance carries the fusion and the chroma is tied to the visible image, each by one term.

CSC loss (SSVIF): the fused-feature head and the SegFormer on the fused image teach each other; at each
pixel the branch with the higher maximum softmax probability provides the (detached) pseudo label, and
both branches are trained on it with cross-entropy + soft Dice. Two label-free options keep the branches
from agreeing on one fixed map: Sinkhorn–Knopp balancing of the pseudo labels over the batch and a
marginal-entropy term (see :func:`csc_loss`). :func:`supervised_seg_loss` is the same
CE + Dice against ground-truth labels (the label-supervised reference of ``ssvif.supervision: labels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from ssvif_ros.models.color import infrared_single_channel, rgb_to_y, rgb_to_ycbcr
from ssvif_ros.models.guides import GUIDES, fused_luminance

FUSION_TERMS = ("int", "grad", "ssim", "color")

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| of each channel: (B,C,H,W) -> (B,C,H,W).

    Replicate padding, so a flat image has zero gradient at its border too (zero padding would invent
    an edge along the frame and reward the fused image for copying it).
    """
    if image.dim() != 4:
        raise ValueError(f"sobel_magnitude expects (B,C,H,W), got {tuple(image.shape)}")
    channels = image.shape[1]
    kx = _SOBEL_X.to(image)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(channels, 1, 1, 1)  # (2C,1,3,3)
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(padded, kernels, groups=channels)  # (B,2C,H,W): Gx, Gy per channel
    g = g.view(image.shape[0], channels, 2, *image.shape[-2:])
    return g.abs().sum(dim=2)


@dataclass(frozen=True)
class FusionLoss:
    """Weighted sum of the fusion terms; defaults follow SwinFusion (λ_int 20, λ_grad 20, λ_ssim 10).

    ``w_color`` (30) was chosen by a measured ablation (RESULTS.md, "Colour weight"): it gave the lowest ΔE
    with unchanged SSIM/Qabf/VIF among {0, 1, 3, 10, 30}.

    ``loss(fused, vis, ir) -> (total, terms)``: ``fused`` and ``vis`` (B,3,H,W) RGB or (B,1,H,W)
    luminance in [0,1], ``ir`` (B,1,H,W) (or replicated (B,3,H,W)) in [0,1]. ``terms`` maps
    "int", "grad", "ssim", "color" to the UNWEIGHTED scalar terms, still attached to the graph so a
    weighting scheme can recombine them; ``total = Σ w_k · terms[k]``.
    SSIM needs images of at least ``ssim_win_size`` pixels per side.
    """

    w_int: float = 20.0
    w_grad: float = 20.0
    w_ssim: float = 10.0
    w_color: float = 30.0
    ssim_win_size: int = 11
    target: str = "max"

    def __post_init__(self) -> None:
        if self.target not in GUIDES:
            raise ValueError(f"FusionLoss.target must be one of {', '.join(GUIDES)}, got {self.target!r}")
        for name in FUSION_TERMS:
            if getattr(self, f"w_{name}") < 0:
                raise ValueError(f"FusionLoss.w_{name} must be >= 0, got {getattr(self, f'w_{name}')}")

    @property
    def weights(self) -> dict[str, float]:
        """Term name -> weight, in the order of :data:`FUSION_TERMS`."""
        return {name: float(getattr(self, f"w_{name}")) for name in FUSION_TERMS}

    def terms(self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four unweighted terms (0-dim tensors)."""
        _check_fusion_shapes(fused, vis, ir)
        ir = infrared_single_channel(ir)
        fused_y, vis_y = rgb_to_y(fused), rgb_to_y(vis)

        with torch.no_grad():
            target = fused_luminance(self.target, vis_y, ir)
        intensity = F.l1_loss(fused_y, target)
        gradient = F.l1_loss(
            sobel_magnitude(fused_y), torch.maximum(sobel_magnitude(vis_y), sobel_magnitude(ir))
        )
        win = self.ssim_win_size
        structure = 0.5 * (1.0 - ssim(fused_y, vis_y, data_range=1.0, win_size=win)) + 0.5 * (
            1.0 - ssim(fused_y, ir, data_range=1.0, win_size=win)
        )
        if fused.shape[1] == 3:
            color = F.l1_loss(rgb_to_ycbcr(fused)[:, 1:], rgb_to_ycbcr(vis)[:, 1:])
        else:
            color = fused.new_zeros(())
        return {"int": intensity, "grad": gradient, "ssim": structure, "color": color}

    def __call__(
        self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.terms(fused, vis, ir)
        total = sum((w * terms[name] for name, w in self.weights.items()), start=fused.new_zeros(()))
        return total, terms


def _check_fusion_shapes(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> None:
    if fused.dim() != 4 or fused.shape[1] not in (1, 3):
        raise ValueError(f"fused must be (B,3,H,W) RGB or (B,1,H,W) luminance, got {tuple(fused.shape)}")
    if vis.shape != fused.shape:
        raise ValueError(f"vis {tuple(vis.shape)} must have the shape of fused {tuple(fused.shape)}")
    if ir.dim() != 4 or ir.shape[0] != fused.shape[0] or ir.shape[-2:] != fused.shape[-2:]:
        raise ValueError(f"ir {tuple(ir.shape)} does not match fused {tuple(fused.shape)} in batch or size")


def _check_logits(logits_a: torch.Tensor, logits_b: torch.Tensor) -> None:
    if logits_a.dim() != 4 or logits_a.shape != logits_b.shape:
        raise ValueError(
            "csc_loss needs two logits of the same (B,K,H,W) shape, got "
            f"logits_a {tuple(logits_a.shape)} and logits_b {tuple(logits_b.shape)}"
        )


@torch.no_grad()
def csc_pseudo_label(logits_a: torch.Tensor, logits_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, the argmax of the more confident branch (higher max softmax probability; ties go to a).

    (B,K,H,W) ×2 -> (labels (B,H,W) int64, a_is_teacher (B,H,W) bool); computed without gradient.
    """
    _check_logits(logits_a, logits_b)
    conf_a, label_a = logits_a.float().softmax(dim=1).max(dim=1)
    conf_b, label_b = logits_b.float().softmax(dim=1).max(dim=1)
    a_is_teacher = conf_a >= conf_b
    return torch.where(a_is_teacher, label_a, label_b), a_is_teacher


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 − mean over classes of (2·Σ p·y + s) / (Σ p + Σ y + s), sums over batch and pixels.

    ``logits`` (B,K,H,W), ``target`` (B,H,W) int64 class indices. Every class counts, also those absent
    from the target; the smoothing ``s`` keeps an absent class with (near-)zero predicted mass finite
    (its Dice tends to 1) instead of 0/0.
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs)
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    return 1.0 - dice.mean()


CSC_BALANCES = ("none", "sinkhorn")


@torch.no_grad()
def sinkhorn_equipartition(probs: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Class assignment (N,K) nearest to ``probs`` (N,K) whose K classes each get N/K of the mass.

    Sinkhorn–Knopp as in SeLa/SwAV: alternately normalise the classes to equal totals and each row to 1.
    Taking the argmax of the result gives pseudo labels that use every class, so two branches cannot
    agree on one image-independent map (the collapse of the paper's CSC at our scale).
    """
    q = probs.double().clamp(min=1e-12)
    q = q / q.sum()
    n, k = q.shape
    for _ in range(iterations):
        q = q / (q.sum(dim=0, keepdim=True) * k)
        q = q / (q.sum(dim=1, keepdim=True) * n)
    return (q * n).float()


def marginal_entropy_gap(logits: torch.Tensor) -> torch.Tensor:
    """log K − H(mean softmax over batch and pixels) for ``logits`` (B,K,H,W): 0 when every class is used
    equally often on average, log K when one class takes every pixel (IIC's marginal entropy term)."""
    mean = logits.float().softmax(dim=1).mean(dim=(0, 2, 3)).clamp(min=1e-12)
    return math.log(logits.shape[1]) + (mean * mean.log()).sum()


@torch.no_grad()
def balanced_pseudo_label(
    logits_a: torch.Tensor, logits_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`csc_pseudo_label` with the teacher's probabilities balanced across classes over the batch
    (:func:`sinkhorn_equipartition`) before the argmax. Same shapes and outputs."""
    _check_logits(logits_a, logits_b)
    probs_a, probs_b = logits_a.float().softmax(dim=1), logits_b.float().softmax(dim=1)
    a_is_teacher = probs_a.amax(dim=1) >= probs_b.amax(dim=1)
    teacher = torch.where(a_is_teacher.unsqueeze(1), probs_a, probs_b)  # (B,K,H,W)
    b, k, h, w = teacher.shape
    flat = teacher.permute(0, 2, 3, 1).reshape(-1, k)
    labels = sinkhorn_equipartition(flat).argmax(dim=1).view(b, h, w)
    return labels, a_is_teacher


def csc_loss(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    smooth: float = 1.0,
    balance: str = "none",
    marginal_entropy: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-segmentation consistency: mean of the two branches' (CE + soft Dice) on the shared pseudo label.

    ``logits_a``, ``logits_b``: (B,K,H,W), the same shape (a: fused-feature head, b: SegFormer, by
    convention). ``balance="none"`` is the paper's form (the more confident branch's argmax);
    ``"sinkhorn"`` balances the teacher's probabilities across classes first (:func:`balanced_pseudo_label`).
    ``marginal_entropy`` > 0 adds that weight times each branch's :func:`marginal_entropy_gap` (averaged).
    Returns ``(loss, info)``; ``info`` holds detached 0-dim tensors for logging (no host
    sync): "teacher_a_fraction" (share of pixels where a gave the label), "agreement" (share of pixels
    where both argmaxes agree), "ce_a", "dice_a", "ce_b", "dice_b" and "marginal_gap" (mean of the two).
    """
    if smooth < 0:
        raise ValueError(f"csc_loss: smooth must be >= 0, got {smooth}")
    if balance not in CSC_BALANCES:
        raise ValueError(f"csc_loss: balance must be one of {', '.join(CSC_BALANCES)}, got {balance!r}")
    if marginal_entropy < 0:
        raise ValueError(f"csc_loss: marginal_entropy must be >= 0, got {marginal_entropy}")
    pseudo_label = balanced_pseudo_label if balance == "sinkhorn" else csc_pseudo_label
    labels, a_is_teacher = pseudo_label(logits_a, logits_b)
    ce_a = F.cross_entropy(logits_a.float(), labels)
    ce_b = F.cross_entropy(logits_b.float(), labels)
    dice_a = soft_dice_loss(logits_a, labels, smooth)
    dice_b = soft_dice_loss(logits_b, labels, smooth)
    gap = 0.5 * (marginal_entropy_gap(logits_a) + marginal_entropy_gap(logits_b))
    loss = 0.5 * ((ce_a + dice_a) + (ce_b + dice_b))
    if marginal_entropy > 0:
        loss = loss + marginal_entropy * gap
    with torch.no_grad():
        agreement = (logits_a.argmax(dim=1) == logits_b.argmax(dim=1)).float().mean()
    info = {
        "teacher_a_fraction": a_is_teacher.float().mean(),
        "agreement": agreement,
        "ce_a": ce_a.detach(),
        "dice_a": dice_a.detach(),
        "ce_b": ce_b.detach(),
        "dice_b": dice_b.detach(),
        "marginal_gap": gap.detach(),
    }
    return loss, info


def labelled_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of ``logits`` (B,K,H,W) against ``labels`` (B,H,W) class ids, the mean over the labelled
    pixels (``ignore_index`` skipped; 0 when none is labelled, where the built-in mean would give NaN)."""
    valid = labels != ignore_index
    loss = F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore_index, reduction="sum")
    return loss / valid.sum().clamp(min=1)


def labelled_ce_dice(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, soft Dice) of ``logits`` (B,K,H,W) against ``labels`` (B,H,W) int64 class ids,
    both over the labelled pixels only (``ignore_index`` skipped; CE 0 when none is labelled).

    The Dice is :func:`soft_dice_loss` on the labelled pixels: it weighs every class alike, so a small
    class (a thermal target covering 3 % of an image) counts as much as the background, where plain
    cross-entropy lets "background everywhere" look good.
    """
    logits, labels = logits.float(), labels.long()
    valid = labels != ignore_index
    ce = labelled_ce(logits, labels, ignore_index)
    # soft_dice_loss sums over batch and pixels, so the labelled pixels as one (1,K,N,1) image give
    # exactly the Dice over labelled pixels
    picked = logits.permute(0, 2, 3, 1)[valid].t().reshape(1, logits.shape[1], -1, 1)
    dice = soft_dice_loss(picked, labels[valid].view(1, -1, 1))
    return ce, dice


def supervised_seg_loss(
    logits_a: torch.Tensor, logits_b: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Label-supervised counterpart of :func:`csc_loss`: mean of the two branches' (CE + soft Dice)
    against ground-truth ``labels`` instead of the shared pseudo label (a SeAFusion-like reference).

    ``logits_a``, ``logits_b``: (B,K,H,W), the same shape; ``labels``: (B,H,W) int64 class ids in
    [0, K) or ``ignore_index``. Pixels at ``ignore_index`` count in neither term: the cross-entropy is
    the mean over labelled pixels (0 when there are none), the Dice is :func:`soft_dice_loss` on the
    labelled pixels only. Returns ``(loss, info)`` with detached 0-dim tensors: "agreement" (share of
    pixels where both argmaxes agree, as in :func:`csc_loss`), "accuracy_a"/"accuracy_b" (pixel
    accuracy of each branch on labelled pixels), "labelled_fraction", and "ce_a", "dice_a", "ce_b",
    "dice_b".
    """
    _check_logits(logits_a, logits_b)
    if labels.shape != (logits_a.shape[0], *logits_a.shape[2:]):
        raise ValueError(
            f"supervised_seg_loss: labels {tuple(labels.shape)} must be (B,H,W) of logits "
            f"{tuple(logits_a.shape)}"
        )
    labels = labels.long()
    valid = labels != ignore_index
    n_valid = valid.sum()

    ce_a, dice_a = labelled_ce_dice(logits_a, labels, ignore_index)
    ce_b, dice_b = labelled_ce_dice(logits_b, labels, ignore_index)
    loss = 0.5 * ((ce_a + dice_a) + (ce_b + dice_b))
    with torch.no_grad():  # one argmax per branch serves both accuracies and the agreement
        pred_a, pred_b = logits_a.argmax(dim=1), logits_b.argmax(dim=1)
        acc_a = ((pred_a == labels) & valid).sum().float() / n_valid.clamp(min=1)
        acc_b = ((pred_b == labels) & valid).sum().float() / n_valid.clamp(min=1)
        agreement = (pred_a == pred_b).float().mean()
    info = {
        "agreement": agreement,
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "labelled_fraction": valid.float().mean(),
        "ce_a": ce_a.detach(),
        "dice_a": dice_a.detach(),
        "ce_b": ce_b.detach(),
        "dice_b": dice_b.detach(),
    }
    return loss, info
