"""CS2Fusion (issue 16): the model (dense encoders, DDM decoder), the CPN's parts and losses on hand-made
cases, the config rules, a tiny run, and the export of the inference model without the training-only CPN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import training.train as train_cli
from ssvif_ros.config import ConfigError
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.models import create_model
from ssvif_ros.models.cs2fusion import DemandDrivenModule, DenseEncoder
from ssvif_ros.train import config as train_config
from ssvif_ros.train.frameworks.cs2fusion import (
    CompensationNet,
    cut_patches,
    minmax,
    negative_loss,
    positive_loss,
    similarities,
    sso,
)

REPO = Path(__file__).resolve().parents[1]


def test_the_dense_encoder_concatenates_its_four_layers_and_the_model_fuses_luminance() -> None:
    enc = DenseEncoder(4)
    out = enc(torch.rand(2, 1, 9, 11))
    assert out.shape == (2, 16, 9, 11)
    assert [m[0].in_channels for m in enc.layers] == [1, 4, 8, 12]  # 1, w, 2w, 3w: dense inputs
    model = create_model("cs2fusion", color="y", width=4).eval()
    fused, features = model(torch.rand(1, 3, 16, 20), torch.rand(1, 1, 16, 20))
    assert fused.shape == (1, 3, 16, 20) and features.shape == (1, 32, 16, 20)
    with pytest.raises(ValueError, match="color='y'"):
        create_model("cs2fusion")


def test_the_demand_driven_module_sends_no_gradient_to_the_encoders() -> None:
    ddm = DemandDrivenModule(6, 10)
    d = torch.rand(2, 6, 5, 5, requires_grad=True)
    e = torch.rand(2, 10, 5, 5, requires_grad=True)
    out = ddm(d, e)
    out.sum().backward()
    assert out.shape == d.shape and d.grad is not None and e.grad is None
    gate = torch.sigmoid(ddm.gate(torch.cat([d.amax((2, 3), keepdim=True), d.mean((2, 3), keepdim=True)], 1)))
    assert gate.shape == (2, 6, 1, 1)  # one gate per image and channel


def test_cpn_parts_on_hand_made_cases() -> None:
    x = torch.tensor([[[[1.0, 3.0], [5.0, 9.0]]]])
    assert torch.equal(minmax(x), torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]]))
    a = CompensationNet(8, 4)(torch.rand(2, 8, 6, 6))
    assert a.shape == (2, 1, 6, 6) and float(a.amin()) == 0.0 and float(a.amax()) == pytest.approx(1.0)
    assert sso(torch.rand(2, 5, 4, 4)).shape == (2, 5, 4, 4)
    same = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = similarities(same, same)
    assert s[0, 0] == pytest.approx(1 - 5e-4) and s[0, 1] == pytest.approx(5e-4)  # clamped cosine
    # aligned positives cost less than opposed ones; for negatives it is the other way round
    assert positive_loss(similarities(same, same), 0.25) < positive_loss(
        similarities(same, same.flip(0)), 0.25
    )
    assert negative_loss(similarities(same, same.flip(0))) < negative_loss(similarities(same, same))
    cut = cut_patches(torch.ones(1, 1, 16, 16), 2, 4, torch.Generator().manual_seed(0))
    assert 0 < int((cut == 0).sum()) <= 2 * 16


def test_the_framework_needs_the_cs2fusion_model_in_luminance(tmp_path: Path) -> None:
    cfg = {"framework": "cs2fusion", "data": {"roots": [str(tmp_path)]}}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"needs model\.name=cs2fusion and model\.color=y"):
        train_config.resolve_config(path, [])
    resolved = train_config.resolve_config(path, ["model.name=cs2fusion", "model.color=y"])
    assert resolved["ssvif"]["two_stage"] is False and resolved["weighting"]["name"] == "fixed"


@pytest.fixture(scope="module")
def cs_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ssvif_ros.data.synthetic import write_dataset

    base = tmp_path_factory.mktemp("cs")
    write_dataset(base / "scenes", 8, seed=3, width=48, height=40, progress=False)
    config = base / "tiny_cs.yaml"
    tiny = (REPO / "config" / "train" / "tiny.yaml").read_text()
    config.write_text(
        tiny.replace("name: lightunet", "name: cs2fusion")
        .replace("color: rgb", "color: y")
        .replace("cfg: {widths: [8, 16, 32], squeeze_channels: 4}", "cfg: {width: 4}")
    )
    run_dir = base / "run"
    argv = ["--config", str(config), "--framework", "cs2fusion", f"data.roots=[{base / 'scenes'}]"]
    assert train_cli.main([*argv, f"run.dir={run_dir}", "training.max_epochs=2"]) == 0
    return run_dir


def test_a_tiny_run_trains_both_losses_and_exports_the_model_without_the_cpn(cs_run: Path) -> None:
    side = json.loads((cs_run / "best.json").read_text())
    assert side["model"]["name"] == "cs2fusion" and side["seg_head"] is None  # the CPN is training-only
    header = (cs_run / "metrics.csv").read_text().splitlines()
    columns = header[0].split(",")
    last = dict(zip(columns, header[-1].split(","), strict=True))
    assert float(last["train_fusion"]) > 0 and float(last["train_csc"]) > 0
    engine = FusionEngine(weights=cs_run / "best.safetensors")
    rng = np.random.default_rng(0)
    vis, ir = (
        rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
        rng.integers(0, 256, (40, 48), dtype=np.uint8),
    )
    eager = engine.fuse(vis, ir).image
    pytest.importorskip("onnxruntime")
    exported = FusionEngine(weights=cs_run / "best.safetensors", backend="onnxruntime").fuse(vis, ir).image
    assert np.abs(exported.astype(int) - eager).max() <= 1
