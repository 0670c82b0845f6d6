"""SwinFusion: shapes at odd sizes, range, size of the published model, gradient paths, cross-attention,
the shifted-window mask, and padding/cropping consistency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssvif_ros.models import create_model
from ssvif_ros.models.swinfusion import (
    CrossSwinBlock,
    SwinBlock,
    attend,
    pad_to_multiple,
    shifted_window_mask,
    swinfusion,
)

# A reduced model (same structure, fewer/smaller blocks) for the tests that run backward passes.
SMALL = {"embed_dim": 12, "depths": (2, 2, 2), "num_heads": 2, "window_size": 4, "drop_path_rate": 0.0}


def _inputs(in_chans: int, height: int = 20, width: int = 27, batch: int = 1, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    vis = torch.rand(batch, in_chans, height, width, generator=gen)
    ir = torch.rand(batch, 1, height, width, generator=gen)
    return vis, ir


@pytest.mark.parametrize("in_chans", [1, 3])
def test_published_model_odd_size_shapes_and_range(in_chans):
    torch.manual_seed(0)
    model = swinfusion(in_chans=in_chans).eval()
    assert model.feature_channels == 60
    vis, ir = _inputs(in_chans)
    with torch.no_grad():
        fused, features = model(vis, ir)
    assert fused.shape == (1, in_chans, 20, 27)
    assert features.shape == (1, 60, 20, 27)
    assert torch.isfinite(features).all()
    assert fused.min() >= 0.0 and fused.max() <= 1.0


def test_create_model_y_mode_takes_and_returns_rgb():
    torch.manual_seed(0)
    model = create_model("swinfusion", color="y", **SMALL).eval()
    vis, ir = _inputs(3, height=13, width=21, batch=2)
    with torch.no_grad():
        fused, features = model(vis, ir)
    assert fused.shape == (2, 3, 13, 21)
    assert features.shape == (2, 12, 13, 21)
    assert fused.min() >= 0.0 and fused.max() <= 1.0


def test_parameter_count_matches_paper():
    n_params = sum(p.numel() for p in swinfusion(in_chans=1).parameters())
    assert abs(n_params - 0.97e6) / 0.97e6 < 0.05, n_params


def test_tiny_input_smaller_than_reflect_padding():
    model = swinfusion(in_chans=1, **SMALL).eval()
    vis, ir = _inputs(1, height=1, width=3)
    with torch.no_grad():
        fused, features = model(vis, ir)
    assert fused.shape == (1, 1, 1, 3) and features.shape == (1, 12, 1, 3)


@pytest.mark.parametrize("target", ["features", "fused"])
def test_gradients_reach_every_backbone_parameter(target):
    torch.manual_seed(0)
    model = swinfusion(in_chans=3, **SMALL)
    vis, ir = _inputs(3, height=9, width=14)
    fused, features = model(vis, ir)
    loss = (features if target == "features" else fused).square().mean()
    loss.backward()
    for name, param in model.backbone.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient to backbone.{name}"
    decoder_grads = [p.grad for p in model.decoder.parameters()]
    if target == "features":
        assert all(g is None for g in decoder_grads)
    else:
        assert all(g is not None for g in decoder_grads)


def test_fused_gradient_flows_where_output_is_clamped():
    # The clamp keeps the image in [0,1] but lets gradients through, so saturated pixels still learn.
    torch.manual_seed(0)
    model = swinfusion(in_chans=1, **SMALL)
    with torch.no_grad():
        model.decoder.to_image[-1].bias.fill_(5.0)  # every pixel far above 1
    vis, ir = _inputs(1, height=8, width=8)
    fused, _ = model(vis, ir)
    assert torch.equal(fused, torch.ones_like(fused))
    fused.mean().backward()
    assert model.backbone.shallow[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shift", [0, 2])
def test_cross_block_queries_the_other_modality(shift):
    torch.manual_seed(0)
    block = CrossSwinBlock(dim=12, num_heads=2, window=4, shift=shift, mlp_ratio=2.0).eval()
    mask = shifted_window_mask(8, 8, 4, 2, torch.device("cpu"))
    a = torch.randn(1, 8, 8, 12)
    b = torch.randn(1, 8, 8, 12)
    b_changed = b + torch.randn_like(b)
    with torch.no_grad():
        out_a, out_b = block(a, b, mask)
        out_a2, out_b2 = block(a, b_changed, mask)
    assert not torch.allclose(out_a, out_a2, atol=1e-4), "visible stream ignores the infrared stream"
    assert not torch.allclose(out_b, out_b2, atol=1e-4)


def test_shift_mask_blocks_attention_across_the_wrap_around():
    torch.manual_seed(0)
    size, window, shift = 16, 8, 4
    mask = shifted_window_mask(size, size, window, shift, torch.device("cpu"))
    assert mask.shape == ((size // window) ** 2, window * window, window * window)
    assert shifted_window_mask(size, size, window, shift, torch.device("cpu")) is mask  # cached
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    assert (mask[-1] != 0).any()  # the bottom-right one holds four

    block = SwinBlock(dim=12, num_heads=2, window=window, shift=shift, mlp_ratio=2.0).eval()
    x = torch.randn(1, size, size, 12)

    def output_at_origin(x_in: torch.Tensor, block_mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return block(x_in, block_mask)[0, 0, 0]

    base = output_at_origin(x, mask)
    change = 3.0 * torch.randn(12)  # not a constant: LayerNorm would erase that
    far = x.clone()
    far[0, size - 1, size - 1] += change  # other side of the image, same shifted window as (0, 0)
    near = x.clone()
    near[0, 3, 3] += change  # same window and same region as (0, 0)
    assert torch.allclose(output_at_origin(far, mask), base, atol=1e-6)
    assert not torch.allclose(output_at_origin(near, mask), base, atol=1e-4)
    # Without the mask the wrap-around pair would interact: the mask is what keeps them apart.
    no_mask = torch.zeros_like(mask)
    assert not torch.allclose(output_at_origin(far, no_mask), output_at_origin(x, no_mask), atol=1e-4)


@pytest.mark.parametrize("num_windows", [4, 70])  # 70 windows × batch 2: the CPU form works in chunks
@pytest.mark.parametrize("per_window_bias", [False, True])
def test_attention_forms_agree(num_windows, per_window_bias):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, num_windows, 3, 16, 5) for _ in range(3))
    bias = torch.randn(num_windows, 3, 16, 16) if per_window_bias else torch.randn(3, 16, 16)
    explicit = attend(q, k, v, bias, use_sdpa=False)
    fused = attend(q, k, v, bias, use_sdpa=True)
    reference = torch.softmax(q @ k.transpose(-2, -1) / 5**0.5 + bias, dim=-1) @ v
    assert torch.allclose(explicit, reference, atol=1e-5)
    assert torch.allclose(fused, reference, atol=1e-5)


def test_pad_to_multiple_reflects_and_keeps_multiples():
    x = torch.rand(1, 2, 16, 24)
    assert pad_to_multiple(x, 8) is x
    y = torch.rand(1, 2, 13, 21)
    padded = pad_to_multiple(y, 8)
    assert padded.shape == (1, 2, 16, 24)
    assert torch.equal(padded[..., :13, :21], y)
    assert torch.equal(padded, F.pad(y, (0, 3, 0, 3), mode="reflect"))


def test_padding_then_cropping_is_consistent():
    torch.manual_seed(0)
    model = swinfusion(in_chans=3, **SMALL).eval()
    vis, ir = _inputs(3, height=13, width=21)
    with torch.no_grad():
        features = model.backbone(vis, ir)
        # The backbone on an odd size = its output on the reflect-padded (window-multiple) input, cropped.
        features_padded = model.backbone(pad_to_multiple(vis, 4), pad_to_multiple(ir, 4))
        assert features_padded.shape[-2:] == (16, 24)
        assert torch.allclose(features, features_padded[..., :13, :21], atol=1e-5)
        # Same for the decoder, which pads its input features again.
        fused = model.decoder(features, vis, ir)
        fused_padded = model.decoder(pad_to_multiple(features, 4), vis, ir)
        assert torch.allclose(fused, fused_padded[..., :13, :21], atol=1e-5)


def test_mask_cached_in_inference_mode_serves_training():
    model = swinfusion(in_chans=1, **SMALL)
    vis, ir = _inputs(1, height=11, width=7)  # a size no other test uses
    with torch.inference_mode():
        model(vis, ir)
    fused, _ = model(vis, ir)
    fused.mean().backward()
    assert model.backbone.shallow[0].weight.grad is not None
