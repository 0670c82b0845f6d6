"""training/export.py and the ONNX export helpers: static/dynamic exports checked against PyTorch, the
error gate, the sidecar and the stale-export refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import training.export as export_script_cli  # noqa: E402
from ssvif_ros.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from ssvif_ros.fusion import export as export_script  # noqa: E402
from ssvif_ros.fusion.backends.onnxruntime_backend import (  # noqa: E402
    FusionExportWrapper,
    StaleExportError,
    check_export_current,
    export_onnx,
    params_sha256,
    sidecar_of,
)
from ssvif_ros.models import SegHead, create_model  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "export.py"


def _checkpoint(path: Path, seed: int, name: str = "lightunet", head: bool = True) -> Path:
    torch.manual_seed(seed)
    model = create_model(name).eval()
    seg_head = SegHead(model.feature_channels, num_classes=4, hidden_channels=8).eval() if head else None
    if seg_head is not None:  # non-trivial BN statistics, so folding/export errors would show
        for bn in (m for m in seg_head.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(path / f"{name}_{seed}.safetensors", model, seg_head)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt"), seed=5)


def _ort_outputs(path: Path, vis: torch.Tensor, ir: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"vis": vis.numpy(), "ir": ir.numpy()})


def _torch_outputs(weights: Path, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ckpt = load_checkpoint(weights)
    with torch.no_grad():
        return FusionExportWrapper(ckpt.model, ckpt.seg_head).eval()(vis, ir)


def test_static_export_with_torch_program_matches_pytorch_and_records_its_weights(
    checkpoint, tmp_path, capsys
):
    code = export_script_cli.main(
        ["--weights", str(checkpoint), "--out", str(tmp_path), "--size", "40x56", "--torch-export"]
    )
    assert code == 0, capsys.readouterr().out
    onnx_path = tmp_path / f"{checkpoint.stem}.onnx"
    info = json.loads(sidecar_of(onnx_path).read_text())
    ckpt_meta = json.loads(checkpoint.with_suffix(".json").read_text())
    assert info["model"] == "lightunet" and info["size"] == [40, 56] and info["opset"] == 18
    assert info["weights_sha256"] == ckpt_meta["weights_sha256"] and info["max_abs_error"] < 1e-3
    assert info["outputs"] == ["fused", "labels"] and (tmp_path / f"{checkpoint.stem}.pt2").is_file()

    torch.manual_seed(11)  # an input the script did not check
    vis, ir = torch.rand(1, 3, 40, 56), torch.rand(1, 1, 40, 56)
    fused, labels = _ort_outputs(onnx_path, vis, ir)
    ref_fused, ref_labels = _torch_outputs(checkpoint, vis, ir)
    assert fused.shape == (1, 3, 40, 56) and labels.shape == (1, 40, 56) and labels.dtype == np.uint8
    assert np.abs(fused - ref_fused.numpy()).max() < 1e-3
    assert (labels != ref_labels.numpy()).mean() < 1e-2  # near-ties may flip a few pixels
    with pytest.raises(Exception, match=r"(?i)dimension|shape|size"):  # a static graph refuses other sizes
        _ort_outputs(onnx_path, torch.rand(1, 3, 48, 56), torch.rand(1, 1, 48, 56))


def test_dynamic_export_runs_at_any_size(checkpoint, tmp_path):
    assert (
        export_script_cli.main(
            ["--weights", str(checkpoint), "--out", str(tmp_path), "--size", "32x48", "--dynamic"]
        )
        == 0
    )
    onnx_path = tmp_path / f"{checkpoint.stem}.onnx"
    assert json.loads(sidecar_of(onnx_path).read_text())["size"] == "dynamic"
    for height, width in ((37, 61), (64, 80)):
        vis, ir = torch.rand(1, 3, height, width), torch.rand(1, 1, height, width)
        fused, labels = _ort_outputs(onnx_path, vis, ir)
        ref_fused, ref_labels = _torch_outputs(checkpoint, vis, ir)
        assert fused.shape == (1, 3, height, width) and labels.shape == (1, height, width)
        assert np.abs(fused - ref_fused.numpy()).max() < 1e-3
        assert (labels != ref_labels.numpy()).mean() < 1e-2


@pytest.mark.parametrize("guide", ["saliency", "learned"])
def test_replicate_padding_and_luminance_decoder_export_and_match_pytorch(tmp_path, guide):
    """lightunet with ``padding=replicate`` (docs/edge_artefact.md; a Pad in edge mode) and the luminance
    decoder and a replicate-padded head, the default model's configuration (and its learned-guide
    variant), goes through ONNX; the sidecar keeps every choice."""
    torch.manual_seed(3)
    model = create_model("lightunet", padding="replicate", correction="luminance", guide=guide).eval()
    with torch.no_grad():
        model.decoder.source_weight.copy_(torch.tensor([0.4, -0.2]))  # not the identity on the rule
    head = SegHead(model.feature_channels, num_classes=4, hidden_channels=8, padding="replicate").eval()
    weights = save_checkpoint(tmp_path / "rep.safetensors", model, head)
    loaded = load_checkpoint(weights)
    assert loaded.model.backbone.stem[0].padding_mode == "replicate"
    assert loaded.seg_head.body[0][0].padding_mode == "replicate"
    assert type(loaded.model.decoder).__name__ == "LuminanceDecoder"
    assert export_script_cli.main(["--weights", str(weights), "--out", str(tmp_path), "--size", "40x56"]) == 0
    vis, ir = torch.rand(1, 3, 40, 56), torch.rand(1, 1, 40, 56)
    fused, labels = _ort_outputs(tmp_path / "rep.onnx", vis, ir)
    ref_fused, ref_labels = _torch_outputs(weights, vis, ir)
    assert np.abs(fused - ref_fused.numpy()).max() < 1e-3
    assert (labels != ref_labels.numpy()).mean() < 1e-2


def test_seafusion_exports_at_a_small_size(tmp_path):
    weights = _checkpoint(tmp_path, seed=2, name="seafusion", head=False)
    assert (
        export_script_cli.main(["--weights", str(weights), "--out", str(tmp_path / "o"), "--size", "24x32"])
        == 0
    )
    onnx_path = tmp_path / "o" / f"{weights.stem}.onnx"
    vis, ir = torch.rand(1, 3, 24, 32), torch.rand(1, 1, 24, 32)
    (fused,) = _ort_outputs(onnx_path, vis, ir)
    assert np.abs(fused - _torch_outputs(weights, vis, ir).numpy()).max() < 1e-3


def test_fixed_size_models_refuse_dynamic_export(tmp_path):
    with pytest.raises(ValueError, match="swinfusion exports only at a fixed size"):
        export_onnx(create_model("swinfusion"), None, tmp_path / "s.onnx", size=None)


def test_an_export_above_the_tolerance_exits_nonzero_with_the_numbers(
    checkpoint, tmp_path, monkeypatch, capsys
):
    real_runner = export_script.onnx_runner

    def off_by_a_bit(path):
        run = real_runner(path)
        return lambda vis, ir: (lambda out: (out[0] + 0.01, out[1]))(run(vis, ir))

    monkeypatch.setattr(export_script_cli, "onnx_runner", off_by_a_bit)
    assert (
        export_script_cli.main(["--weights", str(checkpoint), "--out", str(tmp_path), "--size", "24x32"]) == 1
    )
    out = capsys.readouterr().out
    assert "fused max abs error 0.01" in out and "FAILED" in out


def test_a_stale_export_is_refused(checkpoint, tmp_path):
    assert (
        export_script_cli.main(["--weights", str(checkpoint), "--out", str(tmp_path), "--size", "24x32"]) == 0
    )
    onnx_path = tmp_path / f"{checkpoint.stem}.onnx"
    ckpt = load_checkpoint(checkpoint)
    info = check_export_current(
        onnx_path, ckpt.meta["weights_sha256"], params_sha256(ckpt.model, ckpt.seg_head)
    )
    assert info["size"] == [24, 32]

    other = load_checkpoint(_checkpoint(tmp_path, seed=6))  # retrained: other weights
    with pytest.raises(StaleExportError, match=r"stale: exported from weights with weights_sha256"):
        check_export_current(onnx_path, weights_sha256=other.meta["weights_sha256"])
    with pytest.raises(StaleExportError, match="params_sha256"):
        check_export_current(onnx_path, params_digest=params_sha256(other.model, other.seg_head))
    sidecar_of(onnx_path).unlink()
    with pytest.raises(StaleExportError, match=r"sidecar .* is missing"):
        check_export_current(onnx_path, ckpt.meta["weights_sha256"])
