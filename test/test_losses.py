"""Fusion loss and cross-segmentation consistency (CSC) loss on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from ssvif_ros.models.color import rgb_to_ycbcr
from ssvif_ros.train.losses import FusionLoss, csc_loss, csc_pseudo_label, sobel_magnitude, soft_dice_loss

SIZE = 24  # at least the 11-pixel SSIM window


def _rgb(seed: int, low: float = 0.2, high: float = 0.8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(2, 3, SIZE, SIZE, generator=g)


def _gray(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, SIZE, SIZE, generator=g)


# ---------------------------------------------------------------- fusion loss


def test_sobel_of_a_vertical_step_is_four_beside_the_edge_and_zero_elsewhere():
    image = torch.zeros(1, 1, 6, 8)
    image[..., 4:] = 1.0
    grad = sobel_magnitude(image)[0, 0]
    # Columns 3 and 4 straddle the step: Gx = (1 + 2 + 1)·1; replicate padding keeps rows 0/5 the same.
    torch.testing.assert_close(grad[:, 3:5], torch.full((6, 2), 4.0))
    assert grad[:, :3].abs().max() == 0 and grad[:, 5:].abs().max() == 0
    # No edge along the frame (zero padding would give 2.1 there); only float rounding remains.
    assert sobel_magnitude(torch.full((1, 1, 5, 5), 0.7)).abs().max() < 1e-6


def test_identical_images_give_zero_fusion_terms():
    gray = _gray(0)
    for fused, vis in ((gray.repeat(1, 3, 1, 1), gray.repeat(1, 3, 1, 1)), (gray, gray)):
        total, terms = FusionLoss()(fused.clone(), vis, gray)
        for name in ("int", "grad", "ssim", "color"):
            assert terms[name].abs() < 1e-5, (name, terms[name])
        assert total.abs() < 1e-3


def test_intensity_is_zero_when_fused_copies_the_only_nonzero_source():
    vis = _rgb(1)
    _, terms = FusionLoss()(vis.clone(), vis, torch.zeros(2, 1, SIZE, SIZE))
    assert terms["int"] < 1e-6 and terms["grad"] < 1e-5

    ir = _gray(2)
    fused = ir.repeat(1, 3, 1, 1)  # gray RGB whose luminance is ir
    _, terms = FusionLoss()(fused, torch.zeros_like(fused), ir)
    assert terms["int"] < 1e-6 and terms["grad"] < 1e-5
    # ...and is the mean gap to the brighter source otherwise.
    _, terms = FusionLoss()(torch.zeros_like(fused), torch.zeros_like(fused), ir)
    torch.testing.assert_close(terms["int"], ir.mean())


def test_ssim_term_averages_the_two_sources():
    vis, ir = _gray(3), _gray(4)
    _, terms = FusionLoss()(vis.clone(), vis, ir)
    # SSIM(F, vis) = 1, so the term is half the structural distance to ir (unrelated noise: SSIM ≈ 0).
    torch.testing.assert_close(terms["ssim"], 0.5 * (1 - ssim(vis, ir, data_range=1.0)))
    assert 0.4 < terms["ssim"] < 0.6
    _, swapped = FusionLoss()(ir.clone(), ir, vis)
    torch.testing.assert_close(terms["ssim"], swapped["ssim"])


def test_color_term_zero_with_visible_chroma_and_positive_otherwise():
    vis, ir = _rgb(5), _gray(6)
    loss = FusionLoss()
    # Adding the same amount to R, G and B moves only luminance: the chroma stays the visible one.
    _, same_chroma = loss(vis + 0.1, vis, ir)
    assert same_chroma["color"] < 1e-6
    _, swapped = loss(vis[:, [2, 0, 1]], vis, ir)
    expected = (rgb_to_ycbcr(vis[:, [2, 0, 1]])[:, 1:] - rgb_to_ycbcr(vis)[:, 1:]).abs().mean()
    torch.testing.assert_close(swapped["color"], expected)
    assert swapped["color"] > 0.01
    _, gray_terms = loss(_gray(7), _gray(8), ir)
    assert gray_terms["color"] == 0  # 1-channel images have no colour term


def test_total_is_the_weighted_sum_of_unweighted_terms_and_gradients_reach_fused():
    vis, ir = _rgb(9), _gray(10)
    fused = _rgb(11).requires_grad_(True)
    loss = FusionLoss(w_int=1.0, w_grad=2.0, w_ssim=3.0, w_color=4.0)
    total, terms = loss(fused, vis, ir)
    expected = terms["int"] + 2 * terms["grad"] + 3 * terms["ssim"] + 4 * terms["color"]
    torch.testing.assert_close(total, expected)
    assert all(terms[name] > 0 for name in ("int", "grad", "ssim", "color"))
    total.backward()
    assert fused.grad is not None and torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
    # Each term on its own also reaches fused (they stay attached for a weighting scheme).
    for name in terms:
        f = fused.detach().clone().requires_grad_(True)
        FusionLoss().terms(f, vis, ir)[name].backward()
        assert f.grad.abs().sum() > 0, name


def test_fusion_loss_rejects_mismatched_inputs_and_negative_weights():
    vis = _rgb(12)
    with pytest.raises(ValueError, match="vis"):
        FusionLoss()(vis, vis[:, :1], _gray(0))
    with pytest.raises(ValueError, match="ir"):
        FusionLoss()(vis, vis, torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="w_color"):
        FusionLoss(w_color=-1.0)


# ---------------------------------------------------------------- CSC loss


def _logits_for(labels: torch.Tensor, num_classes: int, margin: float) -> torch.Tensor:
    """(B,H,W) labels -> (B,K,H,W) logits with ``margin`` on the labelled class."""
    return margin * F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def test_more_confident_branch_gives_the_pseudo_label_at_each_pixel():
    labels_a = torch.zeros(1, 2, 2, dtype=torch.long)
    labels_b = torch.ones(1, 2, 2, dtype=torch.long)
    logits_a = _logits_for(labels_a, 3, margin=2.0)
    logits_b = _logits_for(labels_b, 3, margin=2.0)
    logits_b[0, :, 0, 1] *= 3.0  # b more confident at (0,1)
    logits_a[0, :, 1, 0] *= 3.0  # a more confident at (1,0); the rest are ties, which go to a
    pseudo, a_teacher = csc_pseudo_label(logits_a, logits_b)
    assert pseudo.tolist() == [[[0, 1], [0, 0]]]
    assert a_teacher.tolist() == [[[True, False], [True, True]]]
    _, info = csc_loss(logits_a, logits_b)
    assert info["teacher_a_fraction"] == 0.75


def test_ce_part_matches_cross_entropy_on_the_pseudo_labels():
    g = torch.Generator().manual_seed(0)
    logits_a = torch.randn(2, 4, 6, 5, generator=g)
    logits_b = torch.randn(2, 4, 6, 5, generator=g)
    pseudo, _ = csc_pseudo_label(logits_a, logits_b)
    loss, info = csc_loss(logits_a, logits_b)
    torch.testing.assert_close(info["ce_a"], F.cross_entropy(logits_a, pseudo))
    torch.testing.assert_close(info["ce_b"], F.cross_entropy(logits_b, pseudo))
    expected = 0.5 * (info["ce_a"] + info["dice_a"] + info["ce_b"] + info["dice_b"])
    torch.testing.assert_close(loss, expected)


def test_soft_dice_by_hand_on_uniform_predictions():
    n, k, s = 12, 3, 1.0
    logits = torch.zeros(1, k, 3, 4)  # p = 1/3 everywhere
    target = torch.zeros(1, 3, 4, dtype=torch.long)  # every pixel class 0
    dice0 = (2 * n / k + s) / (n / k + n + s)
    dice_absent = s / (n / k + s)
    expected = 1 - (dice0 + 2 * dice_absent) / 3
    assert soft_dice_loss(logits, target, smooth=s).item() == pytest.approx(expected, rel=1e-6)


def test_pseudo_label_is_detached():
    g = torch.Generator().manual_seed(1)
    logits_a = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    logits_b = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    pseudo, a_teacher = csc_pseudo_label(logits_a, logits_b)
    assert not pseudo.requires_grad and not a_teacher.requires_grad
    loss, _ = csc_loss(logits_a, logits_b)
    loss.backward()
    # The same gradient as training each branch on fixed labels: nothing flows through label selection.
    fixed_a = logits_a.detach().clone().requires_grad_(True)
    fixed_b = logits_b.detach().clone().requires_grad_(True)
    reference = 0.5 * (
        F.cross_entropy(fixed_a, pseudo)
        + soft_dice_loss(fixed_a, pseudo)
        + F.cross_entropy(fixed_b, pseudo)
        + soft_dice_loss(fixed_b, pseudo)
    )
    reference.backward()
    torch.testing.assert_close(logits_a.grad, fixed_a.grad)
    torch.testing.assert_close(logits_b.grad, fixed_b.grad)
    assert logits_a.grad.abs().sum() > 0 and logits_b.grad.abs().sum() > 0


def test_agreeing_confident_branches_cost_little_disagreeing_ones_a_lot():
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 4, (2, 8, 8), generator=g)
    agree, info = csc_loss(_logits_for(labels, 4, 12.0), _logits_for(labels, 4, 12.0))
    other = (labels + 1) % 4
    disagree, _ = csc_loss(_logits_for(labels, 4, 12.0), _logits_for(other, 4, 13.0))
    assert agree < 0.01 and info["agreement"] == 1.0
    assert disagree > 5.0


def test_dice_smoothing_keeps_an_empty_class_finite():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = _logits_for(labels, 3, 10.0)
    logits[:, 2] = -1.0e4  # class 2: absent from the label and exactly zero probability (underflow)
    assert soft_dice_loss(logits, labels, smooth=0.0).isnan()  # 0/0 without smoothing
    loss, info = csc_loss(logits, logits.clone(), smooth=1.0)
    assert math.isfinite(loss.item()) and info["dice_a"] < 0.01


def test_csc_rejects_different_shapes_naming_them():
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\).*\(1, 3, 8, 8\)"):
        csc_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8))
