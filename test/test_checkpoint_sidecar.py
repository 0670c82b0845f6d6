"""Bad sidecar contents end in a one-line CheckpointError ("bad sidecar PATH: ..."), found before any
model is built: wrong types, unknown keys, extra seg head keys, and sizes the weights do not have."""

from __future__ import annotations

import inspect
import json
import logging

import numpy as np
import pytest
from PIL import Image

from ssvif_ros import checkpoint
from ssvif_ros.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sidecar_path
from ssvif_ros.models import SegHead, create_model, list_models, registry
from ssvif_ros.tools import fuse_images


@pytest.fixture
def weights(tmp_path):
    """A lightunet checkpoint with a seg head (tiny widths: quick to save and load)."""
    model = create_model("lightunet", widths=(4, 8, 8), squeeze_channels=2)
    head = SegHead(model.feature_channels, num_classes=3, hidden_channels=4)
    return save_checkpoint(tmp_path / "m.safetensors", model, head)


def edit_sidecar(path, edit) -> None:
    meta = json.loads(sidecar_path(path).read_text())
    edit(meta)
    sidecar_path(path).write_text(json.dumps(meta))


def refused(path, match: str) -> str:
    """The error load_checkpoint raises for ``path``, which must name the sidecar and match ``match``."""
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"bad sidecar {sidecar_path(path)}: ")
    assert "\n" not in message
    return message


def test_the_checkpoint_loads_before_any_edit(weights):
    assert load_checkpoint(weights).seg_head.num_classes == 3


def test_a_model_name_that_is_not_a_string(weights):
    edit_sidecar(weights, lambda m: m["model"].update(name=["lightunet"]))
    refused(weights, r"model\.name: expected a registered model \(cs2fusion, lightunet, .*\), got \['lightun")


def test_an_unregistered_model_name_suggests_the_closest(weights):
    edit_sidecar(weights, lambda m: m["model"].update(name="lightunett"))
    refused(weights, r"got 'lightunett' \(did you mean 'lightunet'\?\)")


def test_an_unknown_cfg_key_names_the_closest_valid_one(weights):
    edit_sidecar(weights, lambda m: m["model"]["cfg"].update(widht=[4, 8, 8]))
    refused(
        weights,
        r"model\.cfg has unknown key 'widht' \(did you mean 'widths'\?\); valid keys: color, multitask, "
        r"widths",
    )


@pytest.mark.parametrize("key", ["__class__", "in_chans"])
def test_hostile_cfg_keys_are_refused(weights, key):
    edit_sidecar(weights, lambda m: m["model"]["cfg"].update({key: 1}))
    refused(weights, f"model\\.cfg has unknown key '{key}'")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("squeeze_channels", "2", r"model\.cfg\.squeeze_channels: expected int, got '2'"),
        ("squeeze_channels", True, r"model\.cfg\.squeeze_channels: expected int, got True"),
        ("squeeze_channels", 2.0, r"model\.cfg\.squeeze_channels: expected int, got 2\.0"),
        ("widths", "4,8,8", r"model\.cfg\.widths: expected list of 3 ints, got '4,8,8'"),
        ("widths", [4, 8], r"model\.cfg\.widths: expected list of 3 ints, got \[4, 8\]"),
        ("widths", [4, "8", 8], r"model\.cfg\.widths: expected list of 3 ints"),
        ("guide", 1, r"model\.cfg\.guide: expected string, got 1"),
        ("color", "bgr", r"model\.cfg\.color: expected one of 'rgb', 'y', got 'bgr'"),
    ],
)
def test_values_of_the_wrong_type(weights, key, value, expected):
    edit_sidecar(weights, lambda m: m["model"]["cfg"].update({key: value}))
    refused(weights, expected)


def test_a_value_the_factory_refuses(weights):
    edit_sidecar(weights, lambda m: m["model"]["cfg"].update(guide="mean"))
    refused(weights, r"model 'lightunet' refuses cfg .*: lightunet guide must be one of")
    edit_sidecar(weights, lambda m: m["model"]["cfg"].update(guide="max", widths=[-1, 8, 8]))
    refused(weights, r"model 'lightunet' refuses cfg .*negative dimension")  # torch's error, first line only


@pytest.mark.parametrize(
    ("seg_head", "expected"),
    [
        ({"dropout": 0.1}, r"seg_head has unknown key 'dropout'; valid keys: in_channels, num_classes"),
        ({"num_class": 3}, r"seg_head has unknown key 'num_class' \(did you mean 'num_classes'\?\)"),
        ({"num_classes": "3"}, r"seg_head\.num_classes: expected int, got '3'"),
        ({"num_classes": -3}, r"seg_head refuses .*num_classes must be >= 1"),
    ],
)
def test_bad_seg_head_fields(weights, seg_head, expected):
    edit_sidecar(weights, lambda m: m["seg_head"].update(seg_head))
    refused(weights, expected)


def test_a_seg_head_that_is_not_an_object_or_lacks_in_channels(weights):
    edit_sidecar(weights, lambda m: m.update(seg_head=[8, 3, 4]))
    refused(weights, r"seg_head: expected an object of keyword arguments, got \[8, 3, 4\]")
    edit_sidecar(weights, lambda m: m.update(seg_head={"num_classes": 3}))
    refused(weights, r"seg_head lacks in_channels")


def test_huge_widths_are_refused_from_the_header_without_building(weights, monkeypatch):
    """Sized on the meta device against the weights' header: the weights are not even read."""

    def never(*args, **kwargs):
        raise AssertionError("the weights were read before the sidecar was checked")

    monkeypatch.setattr(checkpoint, "load_file", never)
    edit_sidecar(weights, lambda m: m["model"]["cfg"].update(widths=[16000, 32000, 64000]))
    refused(
        weights,
        r"model 'lightunet' does not match the weights: model\.backbone\.stem\.0\.weight "
        r"\(sidecar gives \(16000, 4, 3, 3\), file has \(4, 4, 3, 3\)\)",
    )
    edit_sidecar(weights, lambda m: m["model"]["cfg"].update(widths=[4, 8, 8]))
    edit_sidecar(weights, lambda m: m["seg_head"].update(hidden_channels=1_000_000))
    refused(weights, r"seg_head does not match the weights: seg_head\.body\.0\.0\.weight \(sidecar gives")


def test_a_model_of_another_architecture_names_the_first_differing_tensor(weights):
    edit_sidecar(weights, lambda m: m["model"].update(name="seafusion", cfg={"color": "rgb"}))
    refused(
        weights,
        r"model 'seafusion' does not match the weights: model\.\S+ \(sidecar gives \(.*\), file has none\)",
    )


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_is_sized_before_it_is_built(name):
    """On the meta device where the model allows it (the same shapes as a real build), or else through
    the size limit; either way a million-fold int parameter is refused without a real build."""
    color = "y" if name == "cs2fusion" else "rgb"  # cs2fusion fuses luminance only
    shapes = {k: tuple(v.shape) for k, v in create_model(name, color=color).state_dict().items()}
    if checkpoint.builds_on_meta(name):
        assert checkpoint._meta_shapes(lambda: create_model(name, color=color)) == shapes
    real = {checkpoint.MODEL_PREFIX + k: v for k, v in shapes.items()}
    factory = registry._REGISTRY[name]
    huge = {
        p.name: p.default * 1_000_000
        for p in inspect.signature(factory).parameters.values()
        if type(p.default) is int and p.name != "in_chans"
    }
    if huge:
        with pytest.raises(CheckpointError, match="does not match the weights"):
            checkpoint.check_sizes(
                sidecar_path("x.safetensors"), (name, {"color": color, **huge}, None), real
            )


def test_a_model_that_cannot_be_built_on_meta_falls_back_to_a_size_limit(tmp_path):
    cfg = {"embed_dim": 8, "depths": [1, 1, 1], "num_heads": 2, "window_size": 2}
    path = save_checkpoint(tmp_path / "s.safetensors", create_model("swinfusion", **cfg))
    if checkpoint.builds_on_meta("swinfusion"):
        pytest.skip("swinfusion is sized on the meta device now: no fallback to test")
    assert load_checkpoint(path).model.model_name == "swinfusion"
    edit_sidecar(path, lambda m: m["model"]["cfg"].update(embed_dim=100_000))
    refused(path, r"model 'swinfusion' does not match the weights: cfg\.embed_dim = 100000 exceeds every")
    edit_sidecar(path, lambda m: m["model"]["cfg"].update(embed_dim=12))  # within the limit: built, compared
    refused(path, r"model 'swinfusion' does not match the weights: model\.\S+ \(sidecar gives \(6, 3, 3, 3\)")


def test_a_sidecar_that_is_not_a_json_object(weights):
    sidecar_path(weights).write_text("[1, 2]")
    refused(weights, r"expected a JSON object, got list")
    sidecar_path(weights).write_text('{"format": ' + "9" * 5000 + "}")
    refused(weights, r"not valid JSON")


def test_a_directory_is_not_a_missing_file(tmp_path, capsys):
    folder = tmp_path / "m.safetensors"
    folder.mkdir()
    with pytest.raises(CheckpointError, match=r"m\.safetensors is a directory, not a \.safetensors file"):
        load_checkpoint(folder)
    vis, ir = tmp_path / "vis.png", tmp_path / "ir.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(vis)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(ir)
    code = fuse_images.main([str(vis), str(ir), "-o", str(tmp_path / "f.png"), "--weights", str(folder)])
    assert code == 2 and "is a directory, not a .safetensors file" in capsys.readouterr().err


def test_ssvif_fuse_reports_a_bad_sidecar_in_one_line_with_exit_2(tmp_path, weights, capsys):
    vis, ir = tmp_path / "vis.png", tmp_path / "ir.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(vis)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(ir)
    edit_sidecar(weights, lambda m: m["model"].update(name=["lightunet"]))
    code = fuse_images.main([str(vis), str(ir), "-o", str(tmp_path / "f.png"), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: bad sidecar {sidecar_path(weights)}: model.name: expected a registered")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "f.png").exists()


def test_the_node_blames_the_weights_parameter_not_model(weights):
    pytest.importorskip("rclpy")
    from ssvif_ros.node.fuse_node import ConfigError, load_engine, parse_config

    edit_sidecar(weights, lambda m: m["model"].update(name="no_such_model"))
    cfg = parse_config({"weights": str(weights), "device": "cpu"}, defaults=True)
    with pytest.raises(ConfigError, match=r"^parameter 'weights': bad sidecar .*m\.json: model\.name"):
        load_engine(cfg, logging.getLogger("test"))


def test_without_the_seg_head_its_fields_are_still_checked(weights):
    edit_sidecar(weights, lambda m: m["seg_head"].update(dropout=0.1))
    with pytest.raises(CheckpointError, match="seg_head has unknown key 'dropout'"):
        load_checkpoint(weights, with_seg_head=False)
