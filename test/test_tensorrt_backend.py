"""TensorRT backend without a GPU: cache keys, sidecar-checked reuse, compile arguments and the messages
that say what is missing. Compilation and loading are replaced by fakes; the real path needs CUDA."""

from __future__ import annotations

import json
import sys
from types import ModuleType, SimpleNamespace

import pytest
import torch

from ssvif_ros.checkpoint import file_sha256
from ssvif_ros.fusion.backends import BackendUnavailable, create_backend
from ssvif_ros.fusion.backends import tensorrt_backend as trtb
from ssvif_ros.fusion.backends.onnxruntime_backend import FusionExportWrapper, sidecar_of
from ssvif_ros.models import SegHead, create_model

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
MACHINE = {
    "gpu": "Orin (nvgpu)",
    "compute_capability": "8.7",
    "tensorrt": "10.3.0",
    "torch_tensorrt": "2.5.0",
    "torch": "2.5.0",
}


@pytest.fixture(scope="module")
def modules():
    torch.manual_seed(0)
    model = create_model("lightunet").eval()
    head = SegHead(model.feature_channels, num_classes=4, hidden_channels=8).eval()
    return model, head


def _key(**changes) -> dict:
    args = {
        "model_name": "lightunet",
        "params_digest": "ab" * 32,
        "size": (480, 640),
        "precision": "fp16",
        "with_labels": True,
        "machine": dict(MACHINE),
    }
    machine_changes = {k: v for k, v in changes.items() if k in MACHINE}
    args.update({k: v for k, v in changes.items() if k not in MACHINE})
    args["machine"] = {**args["machine"], **machine_changes}
    return trtb.engine_cache_key(**args)


def test_cache_key_holds_every_field_and_each_field_changes_the_engine_file(tmp_path):
    key = _key()
    assert key["model"] == "lightunet" and key["params_sha256"] == "ab" * 32
    assert key["size"] == [480, 640] and key["precision"] == "fp16"
    assert key["outputs"] == ["fused", "labels"]
    assert {k: key[k] for k in MACHINE} == MACHINE
    base = trtb.engine_path(tmp_path, key)
    assert base.parent == tmp_path and base.name.startswith("lightunet_480x640_fp16_labels_")
    variants = {
        "model": _key(model_name="swinfusion"),
        "weights": _key(params_digest="cd" * 32),
        "size": _key(size=(480, 641)),
        "precision": _key(precision="fp32"),
        "outputs": _key(with_labels=False),
        **{field: _key(**{field: MACHINE[field] + "x"}) for field in MACHINE},
    }
    paths = {field: trtb.engine_path(tmp_path, k) for field, k in variants.items()}
    for field, variant in variants.items():
        assert variant != key, field
        assert paths[field] != base, f"changing {field} kept the engine file name"
    assert len(set(paths.values())) == len(paths)
    assert trtb.engine_path(tmp_path, _key()) == base  # deterministic


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """A machine that looks like it has CUDA and torch-tensorrt; compile/load are counting fakes that write
    and read a marker file instead of a TensorRT engine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", ModuleType("torch_tensorrt"))
    machine = dict(MACHINE)
    monkeypatch.setattr(trtb, "machine_fingerprint", lambda device, trt: dict(machine))
    calls = SimpleNamespace(compiled=[], loaded=[], fail_load=False, machine=machine)

    def fake_compile(trt, wrapper, example, path):
        calls.compiled.append((wrapper.seg_head is not None, tuple(example[0].shape), example[0].dtype))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        return wrapper

    def fake_load(path):
        calls.loaded.append(path)
        if calls.fail_load:
            raise RuntimeError("truncated archive")
        return calls.wrapper

    monkeypatch.setattr(trtb, "compile_engine", fake_compile)
    monkeypatch.setattr(trtb, "load_engine", fake_load)
    return calls


def _backend(modules, calls, cache_dir, precision="fp32"):
    model, head = modules
    backend = create_backend("tensorrt", model, head, CUDA, precision)
    assert isinstance(backend, trtb.TensorRTBackend) and backend.cache_dir.name == "tensorrt"
    backend.cache_dir = cache_dir
    backend.device = CPU  # stands in for the GPU, so _compile's copy-to-device runs here
    calls.wrapper = FusionExportWrapper(model, head).eval()
    return backend


def _inputs(h=16, w=24):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 1, h, w, generator=gen)


def test_first_run_compiles_and_records_the_key_then_a_matching_sidecar_is_loaded(
    fake_gpu, modules, tmp_path
):
    backend = _backend(modules, fake_gpu, tmp_path)
    vis, ir = _inputs()
    fused, labels = backend.run(vis, ir, want_labels=True)
    assert fake_gpu.compiled == [(True, (1, 3, 16, 24), torch.float32)] and fake_gpu.loaded == []
    with torch.no_grad():
        expected_fused, expected_labels = FusionExportWrapper(*modules)(vis, ir)
    torch.testing.assert_close(fused, expected_fused)
    assert labels.dtype == torch.uint8 and torch.equal(labels, expected_labels)
    key = backend.cache_key(True, (16, 24))
    path = trtb.engine_path(tmp_path, key)
    record = json.loads(sidecar_of(path).read_text())
    assert record.pop("engine_sha256") == file_sha256(path) and record == key
    assert backend.run(vis, ir)[1] is None and len(fake_gpu.compiled) == 2  # fused-only engine: its own
    backend.run(vis, ir, want_labels=True)
    assert len(fake_gpu.compiled) == 2  # kept in memory: no second compile or load

    again = _backend(modules, fake_gpu, tmp_path)  # a later start: the cached engine is loaded
    again.run(vis, ir, want_labels=True)
    assert fake_gpu.loaded == [path] and len(fake_gpu.compiled) == 2


@pytest.mark.parametrize("tamper", ["tensorrt", "gpu", "missing", "not json"])
def test_a_stale_foreign_or_missing_sidecar_makes_a_rebuild_not_a_load(fake_gpu, modules, tmp_path, tamper):
    vis, ir = _inputs()
    backend = _backend(modules, fake_gpu, tmp_path)
    backend.run(vis, ir)
    path = trtb.engine_path(tmp_path, backend.cache_key(False, (16, 24)))
    side = sidecar_of(path)
    if tamper == "missing":
        side.unlink()
    elif tamper == "not json":
        side.write_text("{")
    else:  # an engine built on another GPU / TensorRT copied in under this name
        side.write_text(json.dumps({**json.loads(side.read_text()), tamper: "other"}))
    _backend(modules, fake_gpu, tmp_path).run(vis, ir)
    assert fake_gpu.loaded == [] and len(fake_gpu.compiled) == 2
    record = json.loads(side.read_text())
    assert record.pop("engine_sha256") == file_sha256(path) and record == backend.cache_key(False, (16, 24))


def test_another_gpu_or_new_weights_get_their_own_engine(fake_gpu, modules, tmp_path):
    vis, ir = _inputs()
    backend = _backend(modules, fake_gpu, tmp_path)
    backend.run(vis, ir)
    fake_gpu.machine["compute_capability"] = "7.2"  # e.g. a Xavier sharing the cache folder
    other = _backend(modules, fake_gpu, tmp_path)
    other.run(vis, ir)
    assert fake_gpu.loaded == [] and len(fake_gpu.compiled) == 2 and len(list(tmp_path.glob("*.ep"))) == 2
    model, head = modules
    retrained = create_model("lightunet").eval()
    retrained.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(retrained.parameters()).add_(0.01)
    assert create_backend("tensorrt", retrained, head, CUDA).params_digest != backend.params_digest


def test_an_engine_that_fails_to_load_is_rebuilt_with_a_warning(fake_gpu, modules, tmp_path):
    vis, ir = _inputs()
    _backend(modules, fake_gpu, tmp_path).run(vis, ir)
    fake_gpu.fail_load = True
    with pytest.warns(UserWarning, match="failed to load.*rebuilding"):
        _backend(modules, fake_gpu, tmp_path).run(vis, ir)
    assert len(fake_gpu.loaded) == 1 and len(fake_gpu.compiled) == 2


def test_fp16_compiles_a_half_model_with_half_inputs(fake_gpu, modules, tmp_path, monkeypatch):
    backend = _backend(modules, fake_gpu, tmp_path, precision="fp16")
    assert backend.input_dtype == torch.float16
    compiled = {}

    def fake_compile_engine(trt, wrapper, example, path):
        compiled["dtypes"] = {p.dtype for p in wrapper.parameters()}
        compiled["inputs"] = [t.dtype for t in example]
        path.write_bytes(b"engine")
        return lambda vis, ir: vis

    monkeypatch.setattr(trtb, "compile_engine", fake_compile_engine)
    vis, ir = _inputs()
    backend.run(vis.half(), ir.half())
    assert compiled == {"dtypes": {torch.float16}, "inputs": [torch.float16, torch.float16]}
    assert all(p.dtype == torch.float32 for p in modules[0].parameters())  # the caller's model untouched


def _fake_torch_tensorrt(explicit_typing: bool, arg_inputs: bool) -> tuple[ModuleType, dict]:
    seen: dict = {}

    def dynamo_compile(exported_program, inputs=None, use_explicit_typing=False): ...

    def dynamo_compile_old(exported_program, inputs=None, enabled_precisions=None): ...

    def compile(module, ir="default", inputs=None, **kwargs):
        seen["compile"] = {"ir": ir, "inputs": inputs, **kwargs}
        return module

    def save_new(module, file_path, *, output_format="exported_program", arg_inputs=None, inputs=None):
        seen["save"] = {"arg_inputs": arg_inputs, "inputs": inputs}
        with open(file_path, "wb") as f:
            f.write(b"engine")

    def save_old(module, file_path, *, output_format="exported_program", inputs=None):
        save_new(module, file_path, inputs=inputs)

    trt = ModuleType("torch_tensorrt")
    trt.dynamo = SimpleNamespace(compile=dynamo_compile if explicit_typing else dynamo_compile_old)
    trt.compile = compile
    trt.save = save_new if arg_inputs else save_old
    return trt, seen


@pytest.mark.parametrize("new_api", [True, False])
def test_compile_engine_passes_fixed_inputs_and_the_precision_the_installed_version_understands(
    tmp_path, new_api
):
    trt, seen = _fake_torch_tensorrt(explicit_typing=new_api, arg_inputs=new_api)
    example = (torch.zeros(1, 3, 8, 12, dtype=torch.float16), torch.zeros(1, 1, 8, 12, dtype=torch.float16))
    wrapper = torch.nn.Identity()
    path = tmp_path / "sub" / "e.ep"
    assert trtb.compile_engine(trt, wrapper, example, path) is wrapper
    assert path.read_bytes() == b"engine" and [p.name for p in path.parent.iterdir()] == ["e.ep"]
    assert seen["compile"]["ir"] == "dynamo" and seen["compile"]["inputs"] == list(example)
    if new_api:
        assert seen["compile"]["use_explicit_typing"] is True and "enabled_precisions" not in seen["compile"]
        assert seen["save"]["arg_inputs"] == list(example) and seen["save"]["inputs"] is None
    else:
        assert seen["compile"]["enabled_precisions"] == {torch.float16}
        assert seen["save"]["inputs"] == list(example)


@pytest.mark.parametrize(
    ("cuda", "installed", "device", "says_cuda", "says_install"),
    [
        (False, False, CPU, True, True),
        (True, False, CUDA, False, True),
        (False, True, CPU, True, False),
        (True, True, CPU, True, False),  # a GPU exists but device cpu was chosen
    ],
)
def test_an_unusable_machine_is_refused_at_start_with_what_to_install(
    monkeypatch, modules, cuda, installed, device, says_cuda, says_install
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", ModuleType("torch_tensorrt") if installed else None)
    with pytest.raises(BackendUnavailable, match="backend 'tensorrt' cannot run here") as info:
        create_backend("tensorrt", modules[0], None, device)
    message = str(info.value)
    assert ("needs a CUDA device" in message) == says_cuda
    assert (trtb.INSTALL_HINT in message) == says_install
    assert "precision" not in message  # the node blames the parameter named in the message


def test_fp16_on_the_cpu_is_refused(modules):
    with pytest.raises(BackendUnavailable, match="fp16 needs a CUDA device"):
        create_backend("tensorrt", modules[0], None, CPU, "fp16")
    with pytest.raises(BackendUnavailable, match="needs a model"):
        create_backend("tensorrt", None, None, CPU)
