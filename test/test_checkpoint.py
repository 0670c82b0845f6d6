"""Checkpoints: round trip from the sidecar alone, atomic writes, and clear errors for bad pairs."""

from __future__ import annotations

import json

import pytest
import torch

from ssvif_ros.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sidecar_path
from ssvif_ros.models import SegHead, create_model


def _pair(seed: int = 0, size: tuple[int, int] = (24, 40)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, *size, generator=g), torch.rand(1, 1, *size, generator=g)


@pytest.mark.parametrize("color", ["rgb", "y"])
def test_round_trip_rebuilds_model_and_seg_head_from_sidecar(tmp_path, color):
    torch.manual_seed(0)
    model = create_model("lightunet", color=color).eval()
    head = SegHead(model.feature_channels, num_classes=9, hidden_channels=16).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, head, meta={"training": {"epochs": 3}})

    meta = json.loads(sidecar_path(path).read_text())
    assert meta["model"] == {"name": "lightunet", "cfg": {"color": color}}
    assert meta["seg_head"] == {
        "in_channels": model.feature_channels,
        "num_classes": 9,
        "hidden_channels": 16,
    }
    assert meta["training"] == {"epochs": 3}

    ckpt = load_checkpoint(path)
    vis, ir = _pair()
    with torch.no_grad():
        fused_a, feat_a = model(vis, ir)
        fused_b, feat_b = ckpt.model(vis, ir)
        assert torch.equal(fused_a, fused_b)
        assert torch.equal(head(feat_a, size=vis.shape[-2:]), ckpt.seg_head(feat_b, size=vis.shape[-2:]))
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_checkpoint_without_seg_head(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", create_model("lightunet"))
    assert load_checkpoint(path).seg_head is None


def test_torn_pair_is_detected(tmp_path):
    a = save_checkpoint(tmp_path / "a.safetensors", create_model("lightunet"))
    torch.manual_seed(1)
    b = save_checkpoint(tmp_path / "b.safetensors", create_model("lightunet"))
    sidecar_path(a).write_text(sidecar_path(b).read_text())  # weights of a, sidecar of b
    with pytest.raises(CheckpointError, match="different saves"):
        load_checkpoint(a)


def test_clear_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    path = save_checkpoint(tmp_path / "m.safetensors", create_model("lightunet"))
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match=r"m\.json is missing"):
        load_checkpoint(path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    sidecar_path(bad).write_text(
        json.dumps({"format": "ssvif_ros.checkpoint/1", "model": {"name": "x", "cfg": {}}})
    )
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_checkpoint(tmp_path / "m.pt", create_model("lightunet"))


def test_weights_that_do_not_fit_the_model(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", create_model("lightunet"))
    meta = json.loads(sidecar_path(path).read_text())
    meta["model"]["name"] = "seafusion"
    sidecar_path(path).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match the weights"):
        load_checkpoint(path)
