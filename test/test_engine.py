"""FusionEngine: numpy in/out equals the model's own forward; labels from the checkpoint's seg head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.fusion.engine import FusionEngine, resolve_device
from ssvif_ros.models import SegHead, create_model


def _pair(h: int = 30, w: int = 44, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)


def test_fuse_matches_model_forward_and_seg_head(tmp_path):
    torch.manual_seed(0)
    model = create_model("lightunet").eval()
    head = SegHead(model.feature_channels, num_classes=5, hidden_channels=8).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, head)
    engine = FusionEngine(weights=path)
    assert engine.has_segmentation and engine.name == "lightunet"

    vis, ir = _pair()
    result = engine.fuse(vis, ir, want_labels=True)
    assert result.image.shape == vis.shape and result.image.dtype == np.uint8
    assert result.labels.shape == vis.shape[:2] and result.labels.dtype == np.uint8

    with torch.no_grad():
        vis_t = torch.from_numpy(vis).permute(2, 0, 1)[None].float() / 255
        ir_t = torch.from_numpy(ir)[None, None].float() / 255
        fused, features = model(vis_t, ir_t)
        expected = (fused[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        expected_labels = head(features, size=vis.shape[:2]).argmax(1)[0].numpy()
    assert np.array_equal(result.image, expected)
    assert np.array_equal(result.labels, expected_labels)


def test_bad_inputs_and_missing_seg_head():
    engine = FusionEngine(model_name="lightunet")
    vis, ir = _pair()
    with pytest.raises(ValueError, match="vis must be"):
        engine.fuse(vis[..., 0], ir)
    with pytest.raises(ValueError, match="ir must be"):
        engine.fuse(vis, ir.astype(np.uint16))
    with pytest.raises(ValueError, match="not registered"):
        engine.fuse(vis, ir[:-1])
    with pytest.raises(RuntimeError, match="no segmentation head"):
        engine.fuse(vis, ir, want_labels=True)
    with pytest.raises(ValueError, match="exactly one"):
        FusionEngine()


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no usable CUDA"):
            resolve_device("cuda:0")
