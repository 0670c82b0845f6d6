"""SeAFusion and LightUNet: shapes at odd sizes, output range, size, gradient flow, Sobel init, FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ssvif_ros.models.base import FusionModel
from ssvif_ros.models.color import rgb_to_y, rgb_to_ycbcr
from ssvif_ros.models.guides import guide_image, pyramid_fusion
from ssvif_ros.models.lightunet import lightunet, max_luminance_guide
from ssvif_ros.models.seafusion import SOBEL_X, SOBEL_Y, SobelGradient, seafusion

FACTORIES = {"seafusion": seafusion, "lightunet": lightunet}


def _inputs(in_chans: int, height: int, width: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(height * 1000 + width + in_chans)
    vis = torch.rand(batch, in_chans, height, width, generator=gen)
    ir = torch.rand(batch, 1, height, width, generator=gen)
    return vis, ir


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size", [(37, 53), (9, 16)])
def test_shapes_and_range_at_odd_sizes(name: str, in_chans: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = FACTORIES[name](in_chans=in_chans).eval()
    assert isinstance(model, FusionModel)
    vis, ir = _inputs(in_chans, *size, batch=2)
    with torch.no_grad():
        fused, features = model(vis, ir)
    assert fused.shape == vis.shape
    assert features.shape[:2] == (2, model.feature_channels)
    assert features.shape[2] <= size[0] and features.shape[3] <= size[1]
    assert torch.isfinite(fused).all() and torch.isfinite(features).all()
    assert fused.min() >= 0.0 and fused.max() <= 1.0


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_output_in_range_for_extreme_inputs(name: str) -> None:
    torch.manual_seed(0)
    model = FACTORIES[name](in_chans=3).eval()
    vis = torch.ones(1, 3, 20, 24)
    vis[..., :10, :] = 0.0
    ir = 1.0 - vis[:, :1]
    with torch.no_grad():
        fused, _ = model(vis, ir)
    assert torch.isfinite(fused).all()
    assert fused.min() >= 0.0 and fused.max() <= 1.0


def test_seafusion_parameter_count_matches_paper() -> None:
    params = sum(p.numel() for p in seafusion(in_chans=1).parameters())
    assert abs(params - 0.17e6) <= 0.05 * 0.17e6, params


def test_seafusion_sobel_branch_starts_as_sobel_and_is_learnable() -> None:
    model = seafusion(in_chans=1)
    sobels = [m for m in model.modules() if isinstance(m, SobelGradient)]
    assert len(sobels) == 4  # two dense blocks per modality encoder
    for sobel in sobels:
        channels = sobel.conv_x.weight.shape[0]
        assert torch.equal(sobel.conv_x.weight, SOBEL_X.expand(channels, 1, 3, 3))
        assert torch.equal(sobel.conv_y.weight, SOBEL_Y.expand(channels, 1, 3, 3))
        assert sobel.conv_x.weight.requires_grad and sobel.conv_y.weight.requires_grad
    # Orientation: a ramp along x excites only the x kernel (away from the zero-padded border).
    sobel = sobels[0]
    ramp = torch.arange(8.0).expand(1, sobel.conv_x.in_channels, 8, 8)
    with torch.no_grad():
        gx, gy = sobel.conv_x(ramp)[..., 1:-1, 1:-1], sobel.conv_y(ramp)[..., 1:-1, 1:-1]
    assert torch.allclose(gx.abs(), torch.full_like(gx, 8.0))
    assert torch.allclose(gy, torch.zeros_like(gy))


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("through", ["fused", "features"])
def test_gradients_reach_the_backbone(name: str, through: str) -> None:
    torch.manual_seed(0)
    model = FACTORIES[name](in_chans=3).train()
    vis, ir = _inputs(3, 21, 30, batch=2)
    fused, features = model(vis, ir)
    out = fused if through == "fused" else features
    loss = (out - torch.rand_like(out)).abs().mean()
    loss.backward()
    named = list(model.backbone.named_parameters())
    missing = [n for n, p in named if p.grad is None]
    assert not missing, f"no gradient through {through} for backbone parameters {missing}"
    first_name, first = named[0]  # the first conv, farthest from the loss
    assert first.grad.abs().sum() > 0, f"zero gradient at {first_name} through {through}"


def test_lightunet_starts_near_its_guide() -> None:
    torch.manual_seed(0)
    model = lightunet(in_chans=3).eval()
    vis, ir = _inputs(3, 32, 40)
    with torch.no_grad():
        fused, _ = model(vis, ir)
    guide = max_luminance_guide(vis, ir)
    assert (fused - guide).abs().mean() < 0.1


def test_luminance_decoder_starts_on_its_rule_and_keeps_the_visible_chroma() -> None:
    """``correction: luminance`` changes the luminance only: the output's Cb, Cr are the visible image's
    wherever no channel clips, even after the correction has been trained away from zero."""
    torch.manual_seed(0)
    model = lightunet(guide="saliency", correction="luminance").eval()
    vis = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(4)) * 0.3 + 0.3
    ir = torch.rand(1, 1, 32, 40, generator=torch.Generator().manual_seed(5)) * 0.3 + 0.2
    with torch.no_grad():
        fused, _ = model(vis, ir)
        rule = guide_image("saliency", vis, ir)
        assert (fused - rule).abs().mean() < 1e-3
        model.decoder.source_weight.copy_(torch.tensor([0.8, -0.5]))  # a trained-looking correction
        model.decoder.context_bias.fill_(0.3)
        fused, _ = model(vis, ir)
    ycc_f, ycc_v = rgb_to_ycbcr(fused), rgb_to_ycbcr(vis)
    unclipped = ((fused > 0) & (fused < 1)).all(dim=1, keepdim=True).expand_as(ycc_f[:, 1:])
    assert unclipped.float().mean() > 0.9
    assert (ycc_f[:, :1] - rgb_to_ycbcr(rule)[:, :1]).abs().mean() > 0.02  # the luminance did move
    assert torch.allclose(ycc_f[:, 1:][unclipped], ycc_v[:, 1:][unclipped], atol=1e-5)
    with pytest.raises(ValueError, match="correction must be one of joint, luminance"):
        lightunet(correction="split")


def test_learned_guide_blends_the_pyramid_towards_thermal_by_a_predicted_weight() -> None:
    """``guide: learned`` starts near the sources' Laplacian pyramid (thermal weight sigmoid(-3)), and its
    blend weight comes from the features: a large blend bias puts the guide on the thermal image."""
    torch.manual_seed(0)
    model = lightunet(guide="learned", correction="luminance").eval()
    vis, ir = _inputs(3, 32, 40)
    y_vis = rgb_to_y(vis)
    with torch.no_grad():
        squeezed = model.decoder.squeeze(model.backbone(vis, ir))
        pyramid = pyramid_fusion(y_vis, ir)
        start = model.decoder.guide_luminance(squeezed, y_vis, ir)
        assert 0.03 < ((start - pyramid) / (ir - pyramid)).median() < 0.07
        model.decoder.blend_bias.fill_(20.0)
        assert torch.allclose(model.decoder.guide_luminance(squeezed, y_vis, ir), ir, atol=1e-6)
        model.decoder.blend_bias.fill_(-20.0)
        assert torch.allclose(model.decoder.guide_luminance(squeezed, y_vis, ir), pyramid, atol=1e-6)
    # the weight is trained through the whole forward pass, and it varies with the features per pixel
    model.decoder.blend_bias.data.fill_(0.0)
    fused, _ = model(vis, ir)
    fused.mean().backward()
    assert model.decoder.blend_weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.decoder.blend_weight.copy_(torch.linspace(-500.0, 500.0, model.decoder.blend_weight.numel()))
        guide = model.decoder.guide_luminance(squeezed, y_vis, ir)
        weight = (guide - pyramid) / (ir - pyramid)
        valid = (ir - pyramid).abs() > 0.05
        assert weight[valid].max() - weight[valid].min() > 0.5
    with pytest.raises(ValueError, match="'learned' needs correction: luminance"):
        lightunet(guide="learned", correction="joint")


def test_lightunet_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="widths"):
        lightunet(widths=(16, 32))


def _flops(factory, height: int, width: int) -> int:
    # Meta tensors: the count needs shapes only, so the 480×640 SeAFusion pass costs nothing.
    with torch.device("meta"):
        model = factory(in_chans=3).eval()
        vis, ir = torch.empty(1, 3, height, width), torch.empty(1, 1, height, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(vis, ir)
    return counter.get_total_flops()


def test_lightunet_has_twenty_times_fewer_flops_than_seafusion() -> None:
    sea, light = _flops(seafusion, 480, 640), _flops(lightunet, 480, 640)
    assert sea > 0 and light > 0
    assert light * 20 <= sea, f"lightunet {light / 1e9:.2f} GFLOPs vs seafusion {sea / 1e9:.2f} GFLOPs"


def _registry():
    """The registry module (every built-in model registered by importing ssvif_ros.models)."""
    from ssvif_ros.models import registry

    return registry


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("color", ["rgb", "y"])
def test_create_model_in_both_colour_modes(name: str, color: str) -> None:
    registry = _registry()
    assert name in registry.list_models()
    torch.manual_seed(0)
    model = registry.create_model(name, color=color).eval()
    vis, ir = _inputs(3, 37, 53)
    with torch.no_grad():
        fused, features = model(vis, ir)
    assert fused.shape == (1, 3, 37, 53)
    assert features.shape[1] == model.feature_channels
    assert fused.min() >= 0.0 and fused.max() <= 1.0
    assert model.model_name == name and model.model_cfg["color"] == color


def test_max_luminance_guide_has_the_brighter_luminance_and_the_visible_chroma() -> None:
    # Ranges chosen so that no channel clips: vis in [0.3, 0.6], shift at most 0.5 - 0.3.
    vis = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 0.3 + 0.3
    ir = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(5)) * 0.3 + 0.2
    guide = max_luminance_guide(vis, ir)
    ycc_g, ycc_v = rgb_to_ycbcr(guide), rgb_to_ycbcr(vis)
    assert torch.allclose(ycc_g[:, :1], torch.maximum(ycc_v[:, :1], ir), atol=1e-5)
    assert torch.allclose(ycc_g[:, 1:], ycc_v[:, 1:], atol=1e-5)
    gray = vis[:, :1]
    assert torch.allclose(max_luminance_guide(gray, ir), torch.maximum(gray, ir))


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_lightunet_padding_decides_whether_the_borders_look_like_content(padding: str) -> None:
    """docs/edge_artefact.md: on a flat image every feature cell should be the same. With zero padding the
    stride-2 convs see the padding on the left and top only, so border cells differ; replicate does not."""
    torch.manual_seed(0)
    model = lightunet(padding=padding).eval()
    vis, ir = torch.full((1, 3, 64, 96), 0.6), torch.full((1, 1, 64, 96), 0.3)
    with torch.no_grad():
        features = model.backbone(vis, ir)[0]
    spread = (features - features[:, 8:9, 12:13]).abs().amax().item()  # against an interior cell
    assert (spread < 1e-5) if padding == "replicate" else (spread > 1e-3)
    with pytest.raises(ValueError, match="padding must be one of zeros, replicate"):
        lightunet(padding="reflect101")
