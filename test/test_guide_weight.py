"""training/guide_weight.py: the learned guide's thermal weight per labelled class."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import training.guide_weight as guide_weight_cli
from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.data.synthetic import main as synthetic_main
from ssvif_ros.eval import guide_weight
from ssvif_ros.eval.probe import load_labelled
from ssvif_ros.models import create_model
from ssvif_ros.models.guides import SaliencyRule, pyramid_fusion


def learned_model(multitask: bool = False):
    """A learned-guide lightunet whose thermal weight varies over the image (and, with ``multitask``, a
    shared trunk that is not the identity, so features before and after it differ)."""
    torch.manual_seed(0)
    model = create_model(
        "lightunet", multitask=multitask, widths=[8, 8, 16], guide="learned", correction="luminance"
    ).eval()
    with torch.no_grad():
        model.decoder.blend_weight.normal_(0.0, 10.0)
        model.decoder.blend_bias.zero_()
        if multitask:
            for p in model.trunk.parameters():
                p.normal_(0.0, 0.5)
    return model


def weight_seen_by_forward(model, vis, ir) -> torch.Tensor:
    """The thermal weight the decoder computes inside ``model(vis, ir)``, recorded on the way."""
    seen = []
    original = model.decoder.thermal_weight

    def record(squeezed, like):
        seen.append(original(squeezed, like))
        return seen[-1]

    model.decoder.thermal_weight = record
    try:
        with torch.no_grad():
            model(vis, ir)
    finally:
        del model.decoder.thermal_weight
    return seen[0]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    data = tmp_path_factory.mktemp("scenes")
    synthetic_main(["--out", str(data), "-n", "3", "--size", "64x48", "--num-classes", "9"])
    label = data / "label" / sorted(p.name for p in (data / "label").iterdir())[0]
    pixels = np.array(Image.open(label))
    pixels[:4] = 255  # an ignored band
    Image.fromarray(pixels).save(label)
    return data


@pytest.mark.parametrize("multitask", [False, True])
def test_the_tool_reads_the_weight_the_forward_pass_uses(multitask):
    model = learned_model(multitask)
    vis, ir = torch.rand(1, 3, 32, 48), torch.rand(1, 1, 32, 48)
    ir[..., 8:20, 10:30] += 2.0  # a warm block: features, and so the weight, vary over the image
    ir = ir / 3.0
    weight = guide_weight.learned_thermal_weight(model, vis, ir)
    assert weight.shape == (1, 1, 32, 48) and float(weight.std()) > 1e-3
    torch.testing.assert_close(weight, weight_seen_by_forward(model, vis, ir))
    if multitask:  # the trunk matters: the backbone's features alone give another weight
        with torch.no_grad():
            before_trunk = model.decoder.thermal_weight(model.decoder.squeeze(model.backbone(vis, ir)), ir)
        assert float((before_trunk - weight).abs().max()) > 1e-3


def test_the_guide_blends_the_pyramid_towards_thermal_by_that_weight():
    model = learned_model()
    vis, ir, y_vis = torch.rand(1, 3, 32, 48), torch.rand(1, 1, 32, 48), torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        squeezed = model.decoder.squeeze(model.backbone(vis, ir))
        guide = model.decoder.guide_luminance(squeezed, y_vis, ir)
        weight = model.decoder.thermal_weight(squeezed, ir)
    pyramid = pyramid_fusion(y_vis, ir)
    torch.testing.assert_close(guide, pyramid + weight * (ir - pyramid))


def test_per_class_means_are_the_scene_means_of_each_class(tmp_path, scenes):
    model = learned_model()
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model)
    names = [f"c{k}" for k in range(9)]
    report = guide_weight.weight_per_class(ckpt, [scenes], names)
    assert report["pairs"] == 3 and report["rule"] == "saliency"
    expected: dict[int, tuple[list, list]] = {}
    for sample in load_labelled([scenes], None, None):
        vis = torch.from_numpy(sample["vis"].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        ir = torch.from_numpy(sample["ir"].astype(np.float32) / 255.0)[None, None]
        learned = weight_seen_by_forward(model, vis, ir)[0, 0].numpy()
        rule = SaliencyRule().thermal_saliency(ir)[0][0, 0].numpy()
        label = np.asarray(sample["label"])
        for c in set(np.unique(label)) - {255}:
            expected.setdefault(int(c), ([], []))
            expected[int(c)][0].append(learned[label == c].mean())
            expected[int(c)][1].append(rule[label == c].mean())
    assert [row["id"] for row in report["classes"]] == sorted(expected)
    for row in report["classes"]:
        assert row["name"] == names[row["id"]] and row["scenes"] == len(expected[row["id"]][0])
        assert row["learned"] == pytest.approx(np.mean(expected[row["id"]][0]), abs=1e-6)
        assert row["rule"] == pytest.approx(np.mean(expected[row["id"]][1]), abs=1e-6)
    with pytest.raises(ValueError, match=r"label id \d+ has no name"):
        guide_weight.weight_per_class(ckpt, [scenes], names[:2])


def test_cli_writes_the_report_and_refuses_a_model_without_a_learned_guide(tmp_path, scenes, capsys):
    good = save_checkpoint(tmp_path / "learned.safetensors", learned_model())
    out = tmp_path / "report"
    assert guide_weight_cli.main(["--weights", str(good), "--data", str(scenes), "--out", str(out)]) == 0
    report = json.loads((out / "guide_weight.json").read_text())
    names = json.loads((scenes / "classes.json").read_text())["names"]
    assert report["pairs"] == 3 and {r["name"] for r in report["classes"]} <= set(names)
    table = (out / "guide_weight.md").read_text()
    assert "| class | learned thermal weight | saliency rule's weight |" in table
    plain = save_checkpoint(tmp_path / "max.safetensors", create_model("lightunet", widths=[8, 8, 16]))
    assert guide_weight_cli.main(["--weights", str(plain), "--data", str(scenes)]) == 2
    assert f"{plain}: no learned guide" in capsys.readouterr().err
    assert guide_weight_cli.main(["--weights", str(good), "--data", str(tmp_path)]) == 2
    assert f"no classes.json with 'names' in {tmp_path}" in capsys.readouterr().err
