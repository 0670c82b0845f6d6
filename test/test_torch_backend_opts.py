"""TorchBackend's Conv+BatchNorm folding and channels_last: same outputs, caller's model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ssvif_ros.fusion.backends.torch_backend import TorchBackend, fold_conv_batchnorm
from ssvif_ros.fusion.engine import FusionEngine, empty_inputs
from ssvif_ros.models import SegHead, create_model

CPU = torch.device("cpu")


def _trained_looking_batchnorms(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial running statistics and affine terms, so a wrong fold cannot pass by accident."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(0.3 + 2 * torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize("name", ["lightunet", "seafusion"])
def test_folded_model_matches_unfolded_and_leaves_the_original_alone(name):
    torch.manual_seed(0)
    model = _trained_looking_batchnorms(create_model(name), seed=1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batchnorms = _count(model, nn.BatchNorm2d)
    assert batchnorms > 0

    backend = TorchBackend(model, None, CPU, channels_last=False)
    assert backend.folded_batchnorms == batchnorms  # every BN of these models follows a conv
    assert _count(backend.model, nn.BatchNorm2d) == 0
    unfolded = TorchBackend(model, None, CPU, fold_batchnorm=False, channels_last=False)
    assert unfolded.folded_batchnorms == 0 and _count(unfolded.model, nn.BatchNorm2d) == batchnorms

    gen = torch.Generator().manual_seed(2)
    vis, ir = torch.rand(1, 3, 40, 56, generator=gen), torch.rand(1, 1, 40, 56, generator=gen)
    with torch.inference_mode():
        expected = model(vis, ir)[0]
    fused, labels = backend.run(vis, ir)
    assert labels is None
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(unfolded.run(vis, ir)[0], expected, atol=0, rtol=0)
    channels_last = TorchBackend(model, None, CPU)  # the default: folded and channels_last
    weights = [p for p in channels_last.model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    torch.testing.assert_close(channels_last.run(vis, ir)[0], expected, atol=1e-5, rtol=0)

    # The caller's model: same modules, same tensors.
    assert backend.model is not model and _count(model, nn.BatchNorm2d) == batchnorms
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_original_keeps_its_training_mode_and_the_head_is_folded_too():
    torch.manual_seed(3)
    model = _trained_looking_batchnorms(create_model("lightunet"), seed=4).train()
    head = _trained_looking_batchnorms(SegHead(model.feature_channels, num_classes=5, hidden_channels=8), 5)
    backend = TorchBackend(model, head.eval(), CPU)
    assert model.training and not backend.model.training
    assert backend.folded_batchnorms == _count(model, nn.BatchNorm2d) + _count(head, nn.BatchNorm2d)
    assert _count(backend.seg_head, nn.BatchNorm2d) == 0
    vis, ir = torch.rand(1, 3, 32, 48), torch.rand(1, 1, 32, 48)
    with torch.inference_mode():
        _, features = model.eval()(vis, ir)
        logits = head(features, size=(32, 48))
    _, labels = backend.run(vis, ir, want_labels=True)
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4  # pixels whose argmax no rounding can flip
    assert clear.float().mean() > 0.9
    assert torch.equal(labels.long()[clear], logits.argmax(1)[clear])


def test_only_adjacent_conv_batchnorm_pairs_in_a_sequential_are_folded():
    torch.manual_seed(6)
    seq = nn.Sequential(
        nn.BatchNorm2d(3),  # no conv before it
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(4),  # a ReLU in between: not foldable
        nn.Conv2d(4, 4, 1),
        nn.BatchNorm2d(4),  # foldable
    )
    seq = _trained_looking_batchnorms(seq, seed=7).eval()
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        expected = seq(x)
        assert fold_conv_batchnorm(seq) == 1
        torch.testing.assert_close(seq(x), expected, atol=1e-5, rtol=0)
    assert [type(m) for m in seq] == [
        nn.BatchNorm2d,
        nn.Conv2d,
        nn.ReLU,
        nn.BatchNorm2d,
        nn.Conv2d,
        nn.Identity,
    ]
    with pytest.raises(ValueError, match="eval mode"):
        fold_conv_batchnorm(nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)).train())


def test_empty_inputs_layouts():
    vis, ir = empty_inputs(5, 7, CPU, torch.float32, channels_last=True)
    assert vis.shape == (1, 3, 5, 7) and ir.shape == (1, 1, 5, 7)
    assert vis.stride() == (105, 1, 21, 3) and ir.stride() == (35, 1, 7, 1)  # NHWC, spelt out for C = 1
    vis, ir = empty_inputs(5, 7, CPU, torch.float32)
    assert vis.is_contiguous() and ir.is_contiguous() and vis.stride() == (105, 35, 7, 1)


def test_engine_feeds_the_channels_last_backend_nhwc_inputs_with_the_same_result():
    torch.manual_seed(0)
    engine = FusionEngine(model_name="lightunet")  # torch backend, channels_last by default
    assert engine.backend.channels_last_inputs
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (37, 50), dtype=np.uint8)
    nhwc = engine.fuse(vis, ir).image
    buffers = engine._buffers_for(37, 50)
    assert buffers.vis.is_contiguous(memory_format=torch.channels_last) and buffers.ir.stride()[1] == 1
    engine = FusionEngine(
        weights=engine.checkpoint,
        backend=TorchBackend(engine.checkpoint.model, None, CPU, channels_last=False),
    )
    assert not engine.backend.channels_last_inputs
    nchw = engine.fuse(vis, ir).image
    assert engine._buffers_for(37, 50).vis.is_contiguous()
    assert np.abs(nhwc.astype(int) - nchw).max() <= 1
