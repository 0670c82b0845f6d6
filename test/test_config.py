"""ssvif_ros.config: YAML + dotted overrides checked against a defaults dict; ssvif_ros.train.state basics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ssvif_ros.config import ConfigError, diff_configs, dump_config, get_dotted, load_config, parse_override
from ssvif_ros.train.state import (
    capture_rng_state,
    flatten_state,
    latest_train_state,
    load_train_state,
    prune_train_states,
    restore_rng_state,
    save_train_state,
    unflatten_state,
)

DEFAULTS = {
    "seed": 0,
    "model": {"name": "lightunet", "cfg": {}},
    "training": {"lr": 1e-4, "batch_size": 10, "betas": [0.9, 0.999], "seg_lr": None, "amp": True},
}
OPEN = ("model.cfg",)


def test_file_then_overrides_with_yaml_types(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1e-3\n  batch_size: 4\nmodel:\n  cfg: {widths: [8, 16, 32]}\n")
    cfg = load_config(
        path, ["training.seg_lr=5e-4", "training.amp=false", "seed=3"], defaults=DEFAULTS, open_keys=OPEN
    )
    assert cfg["training"]["lr"] == 1e-3 and isinstance(cfg["training"]["lr"], float)  # PyYAML's "1e-3" str
    assert cfg["training"]["batch_size"] == 4 and cfg["training"]["amp"] is False and cfg["seed"] == 3
    assert cfg["training"]["seg_lr"] == "5e-4"  # a null default takes the value as YAML gives it
    assert cfg["model"]["cfg"] == {"widths": [8, 16, 32]}
    assert DEFAULTS["model"]["cfg"] == {}  # defaults are not mutated


def test_open_keys_take_anything_below_them() -> None:
    cfg = load_config(
        None, ["model.cfg.depth=3", "model.cfg.block.kind=swin"], defaults=DEFAULTS, open_keys=OPEN
    )
    assert cfg["model"]["cfg"] == {"depth": 3, "block": {"kind": "swin"}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.lrr=1", "unknown key 'training.lrr' (did you mean lr"),
        ("model.nmae=x", "unknown key 'model.nmae'"),
        ("training.batch_size=true", "must be an integer"),
        ("training.amp=1", "must be true or false"),
        ("training.betas=0.9", "must be a list"),
        ("model.name=3", "must be a string"),
        ("model=x", "model is a section"),
        ("training.lr.x=1", "training.lr is a value"),
        ("=1", "not of the form"),
        ("training.lr", "not of the form"),
        ("training..lr=1", "not of the form"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override], defaults=DEFAULTS, open_keys=OPEN)
    assert message in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", defaults=DEFAULTS)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml", defaults=DEFAULTS)
    (tmp_path / "typo.yaml").write_text("training:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key 'training\.batchsize'"):
        load_config(tmp_path / "typo.yaml", defaults=DEFAULTS)


def test_dump_round_trip_and_helpers() -> None:
    cfg = load_config(None, ["training.lr=0.01", "model.cfg.w=[1,2]"], defaults=DEFAULTS, open_keys=OPEN)
    again = load_config(None, defaults=yaml.safe_load(dump_config(cfg)))
    assert again == cfg
    assert get_dotted(cfg, "training.lr") == 0.01
    with pytest.raises(KeyError, match=r"training\.nope"):
        get_dotted(cfg, "training.nope")
    assert diff_configs(DEFAULTS, cfg) == ["model.cfg.w", "training.lr"]
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


def test_train_state_round_trip_and_torn_saves(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.rand(4, 3)).sum().backward()
    opt.step()
    tensors, tree = flatten_state(opt.state_dict(), "optimizer.")
    folder = tmp_path / "state"
    for step in (1, 2, 3):
        save_train_state(folder / f"e0000-s{step:06d}", tensors, {"optimizer": tree, "step": step})
    prune_train_states(folder, keep=2)
    assert sorted(p.stem for p in folder.glob("*.safetensors")) == ["e0000-s000002", "e0000-s000003"]
    loaded, meta = load_train_state(latest_train_state(folder))
    restored = unflatten_state(meta["optimizer"], loaded)
    fresh = torch.optim.Adam(model.parameters(), lr=0.1)
    fresh.load_state_dict(restored)
    for key, value in opt.state_dict()["state"][0].items():
        assert torch.equal(fresh.state_dict()["state"][0][key], value)
    # A save torn between its two files (new tensors, old record) is skipped for the previous one.
    (folder / "e0000-s000003.safetensors").write_bytes(b"half written")
    assert latest_train_state(folder).stem == "e0000-s000002"


def test_rng_capture_restore() -> None:
    tensors, meta = capture_rng_state()
    first = torch.rand(3)
    restore_rng_state(tensors, meta)
    assert torch.equal(torch.rand(3), first)
