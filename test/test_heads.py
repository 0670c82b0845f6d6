"""The training-only segmentation branches: SegHead on fused features and the SegFormer presets."""

from __future__ import annotations

import pytest
import torch

from ssvif_ros.models.heads import SegHead
from ssvif_ros.models.segformer import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SEGFORMER_PRESETS,
    build_segformer,
    segformer_config,
)


def test_seghead_upsamples_to_image_size_and_trains():
    head = SegHead(in_channels=16, num_classes=9, hidden_channels=8)
    features = torch.rand(2, 16, 8, 12, requires_grad=True)
    logits = head(features, size=(32, 48))
    assert logits.shape == (2, 9, 32, 48)
    logits.square().mean().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.parameters())


def test_seghead_upsampling_is_bilinear_without_corner_alignment():
    head = SegHead(in_channels=4, num_classes=3, hidden_channels=4).eval()
    features = torch.rand(1, 4, 5, 7)
    low = head(features)  # size=None keeps the feature resolution
    assert low.shape == (1, 3, 5, 7)
    expected = torch.nn.functional.interpolate(low, size=(20, 28), mode="bilinear", align_corners=False)
    torch.testing.assert_close(head(features, size=(20, 28)), expected)


def test_seghead_rejects_wrong_channels():
    head = SegHead(in_channels=16)
    with pytest.raises(ValueError, match=r"\(B,16,h,w\)"):
        head(torch.rand(1, 8, 4, 4), size=(16, 16))


def test_b3_preset_structure_and_parameter_count():
    config = segformer_config("b3", num_classes=9)
    assert list(config.hidden_sizes) == [64, 128, 320, 512]
    assert list(config.depths) == [3, 4, 18, 3]
    assert list(config.num_attention_heads) == [1, 2, 5, 8]
    assert list(config.sr_ratios) == [8, 4, 2, 1]
    assert config.decoder_hidden_size == 768
    assert config.num_labels == 9
    # Built once (about a second), no forward. SegFormer-B3 is 47.3 M with ADE20K's 150 classes; with
    # 9 classes the 768->K classifier is (150-9)*769 = 108k smaller: 47.23 M measured.
    model = build_segformer("b3", num_classes=9)
    n_params = sum(p.numel() for p in model.parameters())
    assert 47.0e6 < n_params < 47.5e6, n_params
    encoder = sum(p.numel() for p in model.model.segformer.parameters())
    assert 43.5e6 < encoder < 44.5e6, encoder  # MiT-b3 encoder, about 44 M


def test_b0_preset_matches_mit_b0_and_runs_at_64px():
    config = segformer_config("b0")
    assert list(config.hidden_sizes) == [32, 64, 160, 256]
    assert list(config.depths) == [2, 2, 2, 2]
    assert config.decoder_hidden_size == 256
    model = build_segformer("b0", num_classes=9).eval()
    assert 3.6e6 < sum(p.numel() for p in model.parameters()) < 3.8e6  # 3.7 M with 9 classes
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 9, 64, 64)


def test_tiny_forward_upsamples_normalises_and_backpropagates():
    model = build_segformer("tiny", num_classes=5)
    image = torch.rand(2, 3, 40, 56, requires_grad=True)
    logits = model(image)
    assert logits.shape == (2, 5, 40, 56)
    logits.mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0

    # The wrapper feeds the Hugging Face model ImageNet-normalised pixels.
    model.eval()
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        raw = model.model(pixel_values=(x - mean) / std).logits
        expected = torch.nn.functional.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected)


def test_overrides_reach_the_config_and_typos_raise():
    assert segformer_config("tiny", drop_path_rate=0.0).drop_path_rate == 0.0
    with pytest.raises(TypeError, match="drop_path_rat"):
        segformer_config("tiny", drop_path_rat=0.0)
    with pytest.raises(KeyError, match="b9"):
        segformer_config("b9")
    # Building a config must not mutate the shared presets.
    segformer_config("tiny").hidden_sizes.append(1)
    assert SEGFORMER_PRESETS["tiny"]["hidden_sizes"] == [8, 16, 32, 64]


def test_segformer_rejects_wrong_channel_count():
    model = build_segformer("tiny", num_classes=3)
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        model(torch.rand(1, 1, 32, 32))
    one_channel = build_segformer("tiny", num_classes=3, num_channels=1).eval()
    with torch.no_grad():
        assert one_channel(torch.rand(1, 1, 32, 32)).shape == (1, 3, 32, 32)


def test_seg_head_padding_is_kept_by_the_checkpoint_and_decides_the_border(tmp_path) -> None:
    """docs/edge_artefact.md: with zeros the head's 3×3 convs give the outer feature cells a border of their
    own (a flat input gives different logits there); replicate does not. The sidecar keeps the choice, and
    leaves it out for zeros so heads saved before the option load as they were."""
    from ssvif_ros.checkpoint import load_checkpoint, save_checkpoint, seg_head_config
    from ssvif_ros.models import create_model

    flat = torch.full((1, 8, 12, 16), 0.5)
    for padding in ("zeros", "replicate"):
        torch.manual_seed(0)
        head = SegHead(8, num_classes=3, hidden_channels=4, padding=padding).eval()
        with torch.no_grad():
            logits = head(flat)
        spread = (logits - logits[:, :, 6:7, 8:9]).abs().amax().item()
        assert (spread < 1e-6) if padding == "replicate" else (spread > 1e-4)
    assert "padding" not in seg_head_config(SegHead(8, padding="zeros"))
    model = create_model("lightunet")
    weights = save_checkpoint(
        tmp_path / "m.safetensors", model, SegHead(model.feature_channels, 3, 4, "replicate")
    )
    assert load_checkpoint(weights).seg_head.body[0][0].padding_mode == "replicate"
    with pytest.raises(ValueError, match="padding must be one of zeros, replicate"):
        SegHead(8, padding="reflect")
