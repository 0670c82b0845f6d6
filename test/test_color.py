"""Colour handling: YCbCr round trip, luminance weights, IR reduction and the Y-channel wrapper."""

from __future__ import annotations

import pytest
import torch

from ssvif_ros.models import FusionModel, YChannelFusion, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from ssvif_ros.models.color import channel_sum, infrared_single_channel


def test_ycbcr_round_trip_and_bt601_luma():
    rgb = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert rgb_to_y(red).item() == pytest.approx(0.299)
    gray = torch.full((1, 3, 2, 2), 0.4)
    ycc = rgb_to_ycbcr(gray)
    assert torch.allclose(ycc, torch.tensor([0.4, 0.5, 0.5]).view(1, 3, 1, 1).expand_as(ycc), atol=1e-6)


def test_channel_sum_is_the_weighted_sum_over_channels():
    x, w = torch.rand(2, 8, 5, 7), torch.randn(8)
    expected = (x * w.view(1, 8, 1, 1)).sum(dim=1, keepdim=True)
    assert torch.allclose(channel_sum(x, w), expected, atol=1e-6)
    rgb = torch.rand(3, 3, 4, 6)
    luma = 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]
    assert torch.allclose(rgb_to_y(rgb), luma, atol=1e-6)


def test_channel_sum_keeps_full_precision_under_autocast_and_runs_on_meta_tensors():
    """Mixed-precision training must not get a bfloat16 luminance (the elementwise form never did), and
    FLOP counts trace the model on the meta device, which has no autocast state."""
    x, w = torch.rand(1, 3, 5, 7), torch.tensor([0.299, 0.587, 0.114])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = channel_sum(x, w)
    assert y.dtype == torch.float32
    assert torch.allclose(y, channel_sum(x, w), atol=1e-7)
    assert channel_sum(x.to("meta"), w.to("meta")).shape == (1, 1, 5, 7)


def test_infrared_replicated_is_reduced_to_one_channel():
    ir = torch.rand(1, 1, 5, 6)
    assert infrared_single_channel(ir) is ir
    assert torch.allclose(infrared_single_channel(ir.repeat(1, 3, 1, 1)), ir, atol=1e-6)
    with pytest.raises(ValueError, match="ir must be"):
        infrared_single_channel(torch.rand(1, 2, 5, 6))


class _TakeIR(torch.nn.Module):
    """A fake 1-channel fusion: output = IR; features = the two inputs stacked."""

    def forward(self, vis, ir):
        return torch.cat([vis, ir], 1)


class _Identity(torch.nn.Module):
    def forward(self, features, vis, ir):
        return features[:, 1:2]


def test_y_channel_wrapper_keeps_visible_chroma_and_replaces_luma():
    inner = FusionModel(_TakeIR(), _Identity(), in_chans=1, feature_channels=2)
    model = YChannelFusion(inner)
    vis = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    ir = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.25
    fused, features = model(vis, ir)
    assert fused.shape == vis.shape and features.shape == (1, 2, 8, 8)
    ycc_f, ycc_v = rgb_to_ycbcr(fused), rgb_to_ycbcr(vis)
    assert torch.allclose(ycc_f[:, :1], ir, atol=1e-5)
    assert torch.allclose(ycc_f[:, 1:], ycc_v[:, 1:], atol=1e-5)
    with pytest.raises(ValueError, match="in_chans=1"):
        YChannelFusion(FusionModel(_TakeIR(), _Identity(), in_chans=3, feature_channels=4))


def test_fusion_model_rejects_mismatched_inputs():
    model = FusionModel(_TakeIR(), _Identity(), in_chans=1, feature_channels=2)
    with pytest.raises(ValueError, match=r"vis must be \(B,1,H,W\)"):
        model(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="does not match"):
        model(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5))
