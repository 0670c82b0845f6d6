"""The TensorRT engine cache never hands a file to the deserialiser unless this node wrote it: a private
folder, files of this user that nobody else can write, and the SHA-256 recorded when the engine was built.

The deserialiser is a stub that really unpickles the file (as ``torch.export.load`` does), so a planted
engine that got through would create a marker folder; each refusal test checks it did not."""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ssvif_ros.checkpoint import file_sha256
from ssvif_ros.fusion.backends import create_backend
from ssvif_ros.fusion.backends import tensorrt_backend as trtb
from ssvif_ros.fusion.backends.onnxruntime_backend import sidecar_of
from ssvif_ros.models import create_model

MACHINE = {
    "gpu": "Orin",
    "compute_capability": "8.7",
    "tensorrt": "10.3",
    "torch_tensorrt": "2.5",
    "torch": "2",
}
KEY = trtb.engine_cache_key("lightunet", "ab" * 32, (16, 24), "fp32", False, MACHINE)
BUILT = pickle.dumps("engine built by this node")


class Planted:
    """Unpickling this creates ``marker``: what a planted engine does instead of holding an engine."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """A cache folder path, a deserialiser stub that unpickles and records each call, and a compile stub
    that writes a harmless pickle and records the path it was given."""
    calls = {"loaded": [], "compiled": []}

    def deserialise(path):
        calls["loaded"].append(path)
        return pickle.loads(Path(path).read_bytes())

    def compile_fn(path):
        calls["compiled"].append(path)
        path.write_bytes(BUILT)
        return "compiled in memory"

    monkeypatch.setattr(trtb, "load_engine", deserialise)
    folder = tmp_path / "cache" / "tensorrt"
    return folder, trtb.engine_path(folder, KEY), compile_fn, calls, tmp_path / "marker"


def _built(cache):
    """The cache after a first start: the engine compiled, written and recorded by this node."""
    _, path, compile_fn, calls, _ = cache
    assert trtb.load_or_compile(path, KEY, compile_fn) == "compiled in memory"
    assert calls == {"loaded": [], "compiled": [path]}
    calls["compiled"].clear()
    return path, compile_fn, calls


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277], ids=oct)
def test_the_cache_folder_is_created_0700_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        trtb.make_private_dir(tmp_path / "a" / "tensorrt")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a" / "tensorrt") == 0o700
    trtb.check_private_dir(tmp_path / "a" / "tensorrt")


def test_the_cache_folder_is_private_from_the_start_not_only_after_the_chmod(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    old = os.umask(0)
    try:
        trtb.make_private_dir(tmp_path / "tensorrt")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "tensorrt") == 0o700


def test_an_engine_this_node_built_and_recorded_is_loaded(cache):
    path, compile_fn, calls = _built(cache)
    folder = path.parent
    assert _mode(folder) == 0o700 and _mode(path) == 0o600 and _mode(sidecar_of(path)) == 0o600
    record = json.loads(sidecar_of(path).read_text())
    assert record.pop("engine_sha256") == file_sha256(path) and record == KEY
    assert trtb.cached_engine_ok(path, KEY)
    assert trtb.load_or_compile(path, KEY, compile_fn) == "engine built by this node"
    assert calls == {"loaded": [path], "compiled": []}


@pytest.mark.parametrize("plant", ["engine replaced", "record without hash", "hash of another file"])
def test_a_planted_engine_whose_record_matches_but_for_the_hash_is_never_deserialised(cache, plant):
    path, compile_fn, calls = _built(cache)
    marker = cache[4]
    side = sidecar_of(path)
    record = json.loads(side.read_text())
    path.write_bytes(pickle.dumps(Planted(marker)))  # this user's file, 0600, in the private folder
    if plant == "record without hash":
        del record["engine_sha256"]
    elif plant == "hash of another file":
        record["engine_sha256"] = file_sha256(side)
    if plant != "engine replaced":
        side.write_text(json.dumps(record))
    with pytest.raises(trtb.UnsafeCacheError, match=r"SHA-256 .*changed or planted.*delete it"):
        trtb.cached_engine_ok(path, KEY)
    with pytest.warns(
        UserWarning, match=rf"{re.escape(path.name)} has SHA-256.*rebuilding the TensorRT engine"
    ):
        assert trtb.load_or_compile(path, KEY, compile_fn) == "compiled in memory"
    assert calls == {"loaded": [], "compiled": [path]} and not marker.exists()
    assert path.read_bytes() == BUILT and json.loads(side.read_text())["engine_sha256"] == file_sha256(path)


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777], ids=oct)
def test_a_cache_folder_others_can_write_is_refused_and_nothing_is_cached_there(cache, mode):
    path, compile_fn, calls = _built(cache)
    folder = path.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    os.chmod(folder, mode)
    with pytest.raises(
        trtb.UnsafeCacheError, match=rf"{re.escape(str(folder))} is writable by group or others.*chmod 700"
    ):
        trtb.check_private_dir(folder)
    with pytest.warns(UserWarning, match=r"writable by group or others.*without caching it"):
        assert trtb.load_or_compile(path, KEY, compile_fn) == "compiled in memory"
    assert calls["loaded"] == [] and len(calls["compiled"]) == 1
    assert folder not in calls["compiled"][0].parents  # compiled into a private scratch folder instead
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("which", ["engine", "record"])
@pytest.mark.parametrize("mode", [0o620, 0o602], ids=oct)
def test_a_cached_file_others_can_write_is_refused(cache, which, mode):
    path, compile_fn, calls = _built(cache)
    target = path if which == "engine" else sidecar_of(path)
    os.chmod(target, mode)
    with pytest.raises(
        trtb.UnsafeCacheError, match=rf"{re.escape(str(target))} is writable by group or others.*chmod 600"
    ):
        trtb.cached_engine_ok(path, KEY)
    with pytest.warns(UserWarning, match="rebuilding the TensorRT engine"):
        trtb.load_or_compile(path, KEY, compile_fn)
    assert calls == {"loaded": [], "compiled": [path]} and _mode(path) == 0o600


def _owned_by_someone_else(monkeypatch, target: Path) -> None:
    """Make ``os.stat`` / ``os.lstat`` report ``target`` as another user's (no chown needed)."""
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def fake(p, *args, _real=real, **kwargs):
            st = _real(p, *args, **kwargs)
            if isinstance(p, str | os.PathLike) and Path(p) == target:
                fields = list(st)
                fields[stat.ST_UID] = os.getuid() + 1
                return os.stat_result(fields)
            return st

        monkeypatch.setattr(os, name, fake)


@pytest.mark.parametrize("which", ["engine", "record", "folder"])
def test_a_cached_file_or_folder_of_another_user_is_refused(cache, monkeypatch, which):
    path, compile_fn, calls = _built(cache)
    folder = path.parent
    target = {"engine": path, "record": sidecar_of(path), "folder": folder}[which]
    _owned_by_someone_else(monkeypatch, target)
    with pytest.raises(
        trtb.UnsafeCacheError, match=rf"{re.escape(str(target))} belongs to uid \d+, not to this user"
    ):
        trtb.cached_engine_ok(path, KEY)
    with pytest.warns(UserWarning, match="not to this user.*delete it, or chown it"):
        assert trtb.load_or_compile(path, KEY, compile_fn) == "compiled in memory"
    assert calls["loaded"] == [] and len(calls["compiled"]) == 1


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another user needs root")
def test_a_really_chowned_planted_engine_is_refused(cache):
    path, compile_fn, calls = _built(cache)
    marker = cache[4]
    path.write_bytes(pickle.dumps(Planted(marker)))
    record = json.loads(sidecar_of(path).read_text())
    sidecar_of(path).write_text(json.dumps({**record, "engine_sha256": file_sha256(path)}))
    os.chown(path, 65534, 65534)  # nobody planted it, with a record that matches in full
    with pytest.warns(UserWarning, match="belongs to uid 65534"):
        trtb.load_or_compile(path, KEY, compile_fn)
    assert calls == {"loaded": [], "compiled": [path]} and not marker.exists()


def test_a_link_in_place_of_the_engine_is_refused(cache, tmp_path):
    path, compile_fn, calls = _built(cache)
    elsewhere = tmp_path / "elsewhere.ep"
    elsewhere.write_bytes(path.read_bytes())  # the same bytes, so only the link check stops it
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.raises(trtb.UnsafeCacheError, match=rf"{re.escape(str(path))} is not a regular file"):
        trtb.cached_engine_ok(path, KEY)
    with pytest.warns(UserWarning, match="not a regular file"):
        trtb.load_or_compile(path, KEY, compile_fn)
    assert calls == {"loaded": [], "compiled": [path]} and not path.is_symlink()


def test_the_backend_rebuilds_rather_than_load_an_engine_planted_in_its_cache(monkeypatch, cache):
    """The same through ``TensorRTBackend``'s own cache lookup, on a machine made to look like a GPU one."""
    folder, _, _, calls, marker = cache
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", ModuleType("torch_tensorrt"))
    monkeypatch.setattr(trtb, "machine_fingerprint", lambda device, trt: dict(MACHINE))

    def fake_compile(trt, wrapper, example, path):
        calls["compiled"].append(path)
        path.write_bytes(BUILT)
        return lambda vis, ir: vis

    monkeypatch.setattr(trtb, "compile_engine", fake_compile)
    deserialise = trtb.load_engine  # the fixture's stub: unpickles the file, records the call
    monkeypatch.setattr(trtb, "load_engine", lambda path: deserialise(path) and (lambda vis, ir: vis))
    vis, ir = torch.rand(1, 3, 16, 24), torch.rand(1, 1, 16, 24)
    model = create_model("lightunet").eval()

    def start():
        backend = create_backend("tensorrt", model, None, torch.device("cuda"))
        backend.cache_dir = folder
        backend.device = torch.device("cpu")  # stands in for the GPU while compiling
        return backend

    start().run(vis, ir)
    (path,) = calls["compiled"]
    path.write_bytes(pickle.dumps(Planted(marker)))
    with pytest.warns(UserWarning, match="changed or planted"):
        start().run(vis, ir)
    assert calls["loaded"] == [] and calls["compiled"] == [path, path] and not marker.exists()
    start().run(vis, ir)  # rebuilt and recorded: the next start loads it
    assert calls["loaded"] == [path] and len(calls["compiled"]) == 2
