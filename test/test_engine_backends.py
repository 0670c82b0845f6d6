"""Backends behind FusionEngine: selection and its errors, passthrough, reused inputs, warm-up, CUDA fp16."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.fusion.backends import BackendUnavailable, PassthroughBackend, create_backend
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.models import SegHead, create_model

CPU = torch.device("cpu")


def _pair(h: int = 24, w: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = create_model("lightunet").eval()
    head = SegHead(model.feature_channels, num_classes=4, hidden_channels=8).eval()
    return save_checkpoint(tmp_path_factory.mktemp("b") / "m.safetensors", model, head)


def test_unknown_planned_and_misconfigured_backends_say_what_to_do():
    model = create_model("lightunet")
    with pytest.raises(
        BackendUnavailable, match=r"unknown backend 'tflite'.*torch, onnxruntime, passthrough"
    ):
        create_backend("tflite", model, None, CPU)
    with pytest.raises(
        BackendUnavailable, match=r"backend 'tensorrt' cannot run here.*needs a CUDA device"
    ) as info:
        create_backend("tensorrt", model, None, CPU)  # TensorRT runs on CUDA only, whatever is installed
    if importlib.util.find_spec("torch_tensorrt") is None:
        assert "pip install -r requirements/gpu-optional.txt" in str(info.value)
    with pytest.raises(BackendUnavailable, match="fp16 needs a CUDA device"):
        create_backend("torch", model, None, CPU, "fp16")
    with pytest.raises(BackendUnavailable, match="precision must be"):
        create_backend("torch", model, None, CPU, "int8")


def test_passthrough_backend_returns_the_visible_image_unchanged():
    engine = FusionEngine(model_name="lightunet", backend="passthrough")
    assert isinstance(engine.backend, PassthroughBackend) and not engine.has_segmentation
    vis, ir = _pair()
    result = engine.fuse(vis, ir)
    np.testing.assert_array_equal(result.image, vis)
    assert result.labels is None
    with pytest.raises(RuntimeError, match="no segmentation head"):
        engine.fuse(vis, ir, want_labels=True)


def test_torch_backend_labels_are_the_seg_head_argmax(checkpoint):
    engine = FusionEngine(weights=checkpoint)
    assert engine.backend.name == "torch" and engine.num_classes == 4
    vis, ir = _pair(seed=2)
    vis_t = torch.from_numpy(vis).permute(2, 0, 1)[None].float() / 255
    ir_t = torch.from_numpy(ir)[None, None].float() / 255
    fused, labels = engine.backend.run(vis_t, ir_t, want_labels=True)
    assert fused.shape == (1, 3, 24, 40) and labels.shape == (1, 24, 40) and labels.dtype == torch.uint8
    with torch.no_grad():
        _, features = engine.checkpoint.model(vis_t, ir_t)
        expected = engine.checkpoint.seg_head(features, size=(24, 40)).argmax(1)
    assert torch.equal(labels.long(), expected)
    assert engine.backend.run(vis_t, ir_t, want_labels=False)[1] is None


def test_input_tensors_are_reused_per_size_and_results_are_fresh(checkpoint):
    engine = FusionEngine(weights=checkpoint)
    engine.warmup(24, 40)
    buffers = engine._buffers[(24, 40)]
    pointers = (buffers.vis.data_ptr(), buffers.ir.data_ptr())
    vis, ir = _pair(seed=3)
    first = engine.fuse(vis, ir, want_labels=True)
    second = engine.fuse(*_pair(seed=4), want_labels=True)
    assert (engine._buffers[(24, 40)].vis.data_ptr(), engine._buffers[(24, 40)].ir.data_ptr()) == pointers
    assert not np.array_equal(first.image, second.image)  # the first result was not overwritten
    np.testing.assert_array_equal(first.image, engine.fuse(vis, ir).image)
    for h in (8, 16, 32):
        engine.fuse(*_pair(h=h, w=h))
    assert len(engine._buffers) == 2  # bounded


def test_read_only_inputs_are_accepted():
    engine = FusionEngine(model_name="lightunet")
    vis, ir = _pair()
    vis_ro = np.frombuffer(vis.tobytes(), dtype=np.uint8).reshape(vis.shape)
    ir_ro = np.frombuffer(ir.tobytes(), dtype=np.uint8).reshape(ir.shape)
    np.testing.assert_array_equal(engine.fuse(vis_ro, ir_ro).image, engine.fuse(vis, ir).image)


def test_warmup_rejects_a_bad_size():
    engine = FusionEngine(model_name="lightunet", backend="passthrough")
    with pytest.raises(ValueError, match="warm-up size"):
        engine.warmup(0, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_matches_cpu(checkpoint, precision):
    cpu = FusionEngine(weights=checkpoint, device="cpu")
    gpu = FusionEngine(weights=checkpoint, device="cuda", precision=precision)
    gpu.warmup(24, 40)
    vis, ir = _pair(seed=5)
    a, b = cpu.fuse(vis, ir, want_labels=True), gpu.fuse(vis, ir, want_labels=True)
    tolerance = 1 if precision == "fp32" else 3
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= tolerance
    assert (a.labels == b.labels).mean() > 0.95


def test_auto_picks_the_fastest_backend_this_machine_can_run(monkeypatch):
    from ssvif_ros.fusion import backends

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    have = {"onnx": True, "onnxruntime": True, "torch_tensorrt": False}
    monkeypatch.setattr(backends, "_importable", lambda *mods: all(have[m] for m in mods))
    assert backends.resolve_backend("auto", cpu) == "onnxruntime"
    assert backends.resolve_backend("auto", cpu, "fp16") == "torch"  # ONNX Runtime runs fp32 only
    assert backends.resolve_backend("auto", cuda) == "torch"
    have["torch_tensorrt"] = True
    assert backends.resolve_backend("auto", cuda) == "tensorrt"
    have["onnxruntime"] = False
    assert backends.resolve_backend("auto", cpu) == "torch"
    assert backends.resolve_backend("torch", cpu) == "torch"  # an explicit choice is kept


def test_an_engine_with_backend_auto_says_which_backend_it_runs():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    engine = FusionEngine(model_name="lightunet", backend="auto")
    assert engine.backend.name == "onnxruntime"
