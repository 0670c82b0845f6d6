"""The label-free levers of issue 14: the saliency rule (guide and loss target) and the balanced CSC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssvif_ros.fusion.baselines import fuse_baseline
from ssvif_ros.models import create_model
from ssvif_ros.models.guides import (
    SaliencyRule,
    fused_luminance,
    gaussian_blur,
    guide_image,
    pyramid_fusion,
    separable_filter,
)
from ssvif_ros.train.losses import (
    FusionLoss,
    balanced_pseudo_label,
    csc_loss,
    csc_pseudo_label,
    marginal_entropy_gap,
    sinkhorn_equipartition,
)


def _road_with_line() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dark visible road with a painted line; the thermal road is warm and uniform (paint = asphalt)."""
    y_vis = torch.full((1, 1, 64, 64), 0.10)
    y_vis[..., 30:34] = 0.45  # the line, visible only
    ir = torch.full((1, 1, 64, 64), 0.60)
    line = torch.zeros(64, 64, dtype=torch.bool)
    line[:, 30:34] = True
    return y_vis, ir, line


def _pedestrian_on_lit_road() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bright lit visible road, a dark-clothed pedestrian; thermal: warm person on cool ground."""
    y_vis = torch.full((1, 1, 96, 96), 0.70)
    ir = torch.full((1, 1, 96, 96), 0.20)
    person = torch.zeros(96, 96, dtype=torch.bool)
    person[30:70, 42:54] = True
    y_vis[0, 0][person] = 0.15
    ir[0, 0][person] = 0.65
    return y_vis, ir, person


def test_saliency_rule_keeps_a_visible_line_that_max_erases() -> None:
    y_vis, ir, line = _road_with_line()
    for guide, keeps in (("max", False), ("saliency", True), ("saliency_sides", True)):
        fused = fused_luminance(guide, y_vis, ir)[0, 0]
        step = float(fused[line].mean() - fused[:, :20].mean())
        assert (step > 0.2) is keeps, (guide, step)


def test_saliency_rule_keeps_a_warm_target_brighter_than_lit_surroundings() -> None:
    y_vis, ir, person = _pedestrian_on_lit_road()
    ring = torch.zeros_like(person)
    ring[22:78, 34:62] = True
    ring &= ~person
    for guide, brighter in (("max", False), ("saliency", True), ("saliency_sides", True)):
        fused = fused_luminance(guide, y_vis, ir)[0, 0]
        assert (float(fused[person].mean()) > float(fused[ring].mean())) is brighter, guide


def _warm_road_with_a_person() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thermal: a warm road band across the image (rows 40–80) on cool ground, a warmer person above it."""
    ir = torch.full((1, 1, 96, 128), 0.20)
    ir[..., 40:80, :] = 0.55
    road_edge = torch.zeros(96, 128, dtype=torch.bool)
    road_edge[48:56, 20:108] = True  # 8–16 px inside the road's edge (beyond the sides' 4-px blur)
    person = torch.zeros(96, 128, dtype=torch.bool)
    person[12:36, 60:68] = True
    ir[0, 0][person] = 0.70
    return ir, road_edge, person


def test_sides_surround_does_not_flag_a_warm_road_that_the_ring_flags() -> None:
    """``surround: sides`` compares a pixel with the thermal image to its left and right: the edge of a
    warm road (as warm along its length) is not salient, a person warmer than both sides is; the ring
    surround (a blur all around) flags the road's edge too, which costs lane markings there."""
    ir, road_edge, person = _warm_road_with_a_person()
    ring, _ = SaliencyRule().thermal_saliency(ir)
    sides, _ = SaliencyRule(surround="sides").thermal_saliency(ir)
    assert float(ring[0, 0][road_edge].mean()) > 0.3
    assert float(sides[0, 0][road_edge].mean()) < 0.05
    assert float(sides[0, 0][person].mean()) > 0.8
    # a road running up the image: its left and right edges are salient for the ring only (this fails if
    # the sides are looked at up/down, on one side only, or if the cooler side is taken)
    ir = torch.full((1, 1, 96, 128), 0.20)
    ir[..., 40:100] = 0.55
    inside_edges = torch.zeros(96, 128, dtype=torch.bool)
    inside_edges[20:76, 44:50] = True
    inside_edges[20:76, 90:96] = True
    ring, _ = SaliencyRule().thermal_saliency(ir)
    sides, _ = SaliencyRule(surround="sides").thermal_saliency(ir)
    assert float(ring[0, 0][inside_edges].mean()) > 0.3
    assert float(sides[0, 0][inside_edges].max()) < 0.05
    assert SaliencyRule(surround="sides").surroundings(torch.rand(2, 1, 17, 23)).shape == (2, 1, 17, 23)
    with pytest.raises(ValueError, match="surround must be one of ring, sides"):
        SaliencyRule(surround="box")
    with pytest.raises(ValueError, match="side_offset must be a multiple of 4"):
        SaliencyRule(surround="sides", side_offset=10)


def test_saliency_rule_on_flat_inputs_is_their_mean_and_any_size_works() -> None:
    for h, w in ((17, 23), (64, 48)):
        y_vis, ir = torch.full((2, 1, h, w), 0.3), torch.full((2, 1, h, w), 0.5)
        fused = SaliencyRule()(y_vis, ir)
        assert fused.shape == (2, 1, h, w)
        assert torch.allclose(fused, torch.full_like(fused, 0.4), atol=1e-5)  # no salient pixel: average


def test_pyramid_fusion_of_an_image_with_itself_is_the_image() -> None:
    x = torch.rand(2, 1, 61, 83)
    assert torch.allclose(pyramid_fusion(x, x), x, atol=1e-5)


def test_gaussian_blur_keeps_constants_and_mass() -> None:
    x = torch.rand(1, 2, 40, 30)
    assert torch.allclose(gaussian_blur(torch.full_like(x, 0.7), 3.0), torch.full_like(x, 0.7))
    assert abs(float(gaussian_blur(x, 1.0).mean() - x.mean())) < 0.02


def test_guide_image_keeps_the_visible_chroma() -> None:
    vis = torch.rand(1, 3, 32, 32) * 0.1 + 0.45
    ir = torch.rand(1, 1, 32, 32) * 0.1 + 0.45
    out = guide_image("saliency", vis, ir)
    # the same luminance change on R, G and B: channel differences are unchanged (no clipping here)
    assert torch.allclose(out[:, 0] - out[:, 1], vis[:, 0] - vis[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="unknown guide"):
        guide_image("median", vis, ir)


@pytest.mark.parametrize(("name", "surround"), [("saliency", "ring"), ("saliency_sides", "sides")])
def test_saliency_baseline_matches_the_torch_rule(name: str, surround: str) -> None:
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    ir = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    fused = fuse_baseline(name, vis, ir)
    t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)[None, None]  # noqa: E731
    expected = SaliencyRule(surround=surround)(t(vis), t(ir))[0, 0].numpy() * 255.0
    assert fused.dtype == np.uint8 and fused.shape == vis.shape
    assert np.abs(fused.astype(np.float32) - expected).max() <= 0.51


def test_lightunet_with_the_saliency_guide_starts_near_its_rule() -> None:
    torch.manual_seed(0)
    model = create_model("lightunet", guide="saliency").eval()
    assert model.model_cfg["guide"] == "saliency"
    vis, ir = torch.rand(1, 3, 48, 64), torch.rand(1, 1, 48, 64)
    with torch.no_grad():
        fused, _ = model(vis, ir)
    assert (fused - guide_image("saliency", vis, ir)).abs().mean() < 0.05
    with pytest.raises(ValueError, match="guide"):
        create_model("lightunet", guide="median")


def test_fusion_loss_target_option() -> None:
    y_vis, ir, _ = _road_with_line()
    vis = y_vis.repeat(1, 3, 1, 1)
    fused = guide_image("saliency", vis, ir)
    saliency_int = FusionLoss(target="saliency").terms(fused, vis, ir)["int"]
    max_int = FusionLoss().terms(fused, vis, ir)["int"]
    assert float(saliency_int) < 1e-4 < float(max_int)
    with pytest.raises(ValueError, match="target"):
        FusionLoss(target="mean")


def test_sinkhorn_equipartition_balances_the_classes() -> None:
    probs = torch.softmax(torch.randn(600, 4) + torch.tensor([4.0, 0, 0, 0]), dim=1)  # class 0 dominates
    q = sinkhorn_equipartition(probs, iterations=20)
    assert torch.allclose(q.sum(dim=1), torch.ones(600), atol=1e-3)
    assert torch.allclose(q.sum(dim=0), torch.full((4,), 150.0), rtol=0.05)
    counts = torch.bincount(q.argmax(dim=1), minlength=4)
    assert int(counts.min()) > 60  # every class is used, where the argmax of probs uses class 0 only


def test_balanced_pseudo_labels_use_every_class_where_the_papers_collapse() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 16, 16) * 0.1
    logits[:, 0] += 3.0  # both branches agree on one fixed map
    paper, _ = csc_pseudo_label(logits, logits.clone())
    balanced, _ = balanced_pseudo_label(logits, logits.clone())
    assert paper.unique().tolist() == [0]
    assert len(balanced.unique()) == 5


def test_marginal_entropy_gap_and_csc_options() -> None:
    uniform = torch.zeros(1, 4, 8, 8)
    collapsed = torch.zeros(1, 4, 8, 8)
    collapsed[:, 2] = 50.0
    assert float(marginal_entropy_gap(uniform)) == pytest.approx(0.0, abs=1e-6)
    assert float(marginal_entropy_gap(collapsed)) == pytest.approx(math.log(4), abs=1e-4)
    base, info = csc_loss(collapsed, collapsed.clone())
    with_gap, _ = csc_loss(collapsed, collapsed.clone(), marginal_entropy=0.5)
    assert float(with_gap - base) == pytest.approx(0.5 * float(info["marginal_gap"]), rel=1e-4)
    with pytest.raises(ValueError, match="balance"):
        csc_loss(uniform, uniform, balance="swav")
    with pytest.raises(ValueError, match="marginal_entropy"):
        csc_loss(uniform, uniform, marginal_entropy=-1.0)


@pytest.mark.parametrize("shape", [(2, 3, 37, 50), (1, 1, 48, 64), (1, 2, 30, 9)])
@pytest.mark.parametrize("stride", [1, 2])
def test_separable_filter_matches_a_direct_correlation(shape: tuple[int, ...], stride: int) -> None:
    """Replicate-padded correlation along W then H, then every stride-th pixel, in numpy."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    taps = [0.1, 0.2, 0.4, 0.25, 0.05]  # asymmetric, so a flipped kernel would fail too
    ref = np.pad(x.numpy(), [(0, 0), (0, 0), (0, 0), (2, 2)], mode="edge")
    ref = sum(t * ref[..., k : k + shape[3]] for k, t in enumerate(taps))
    ref = np.pad(ref, [(0, 0), (0, 0), (2, 2), (0, 0)], mode="edge")
    ref = sum(t * ref[..., k : k + shape[2], :] for k, t in enumerate(taps))
    out = separable_filter(x, taps, stride)
    np.testing.assert_allclose(out.numpy(), ref[..., ::stride, ::stride], atol=1e-6)
