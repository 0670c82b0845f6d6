"""TensorRT backend through torch-tensorrt, with compiled engines cached on disk.

On the first frame of a size the fusion model (+ segmentation head, when labels are wanted) is compiled
with ``torch_tensorrt.compile(ir="dynamo")`` for that fixed input size at the engine's precision, saved as
an ExportedProgram (``.ep``) in ``$SSVIF_ROS_CACHE/tensorrt`` (default ``~/.cache/ssvif_ros/tensorrt``),
and reused on later starts. A TensorRT engine is only valid for the exact weights, size, precision, GPU and
TensorRT build it was made with, so each ``x.ep`` has a JSON sidecar ``x.ep.json`` holding its cache key
(:func:`engine_cache_key`); an engine whose sidecar differs from the key wanted now (or is missing) is
rebuilt, never loaded.

Loading an engine unpickles it, so whoever can write the cache can run code in the node. Before anything
deserialises a cached engine (:func:`cached_engine_ok`), the folder, the sidecar and the engine must belong
to this user and be writable by nobody else (as ssh checks its keys), and the engine's SHA-256 must be the
one the sidecar recorded when this node built it; otherwise the engine is rebuilt, with a warning that names
the file and what to do. The folder is created 0700 and engines and sidecars are written 0600. (The ONNX
Runtime export cache of :mod:`.onnxruntime_backend` has no such checks and needs none against this: an ONNX
file is protobuf data that ONNX Runtime parses, with no pickle or code in it, so a planted export can
change the images but not run code.)

Everything that touches CUDA, TensorRT or torch-tensorrt runs inside functions, so this module imports on
any machine; :func:`require_tensorrt` says what is missing where it cannot run.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import stat
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ssvif_ros.checkpoint import atomic_write_bytes, file_sha256
from ssvif_ros.fusion.backends import PRECISION_DTYPES, BackendUnavailable
from ssvif_ros.fusion.backends.onnxruntime_backend import (
    FusionExportWrapper,
    default_cache_dir,
    params_sha256,
    sidecar_of,
)

ENGINE_FORMAT = "ssvif_ros.tensorrt/1"
INSTALL_HINT = (
    "pip install -r requirements/gpu-optional.txt (torch-tensorrt matching torch 2.13) or, on a Jetson, "
    "JetPack's torch and torch-tensorrt"
)


def require_tensorrt(device: torch.device) -> ModuleType:
    """The ``torch_tensorrt`` module, or :class:`BackendUnavailable` naming everything missing here."""
    missing = []
    if device.type != "cuda" or not torch.cuda.is_available():
        seen = "this torch sees no CUDA device" if not torch.cuda.is_available() else "set device cuda"
        missing.append(f"a CUDA device (device is {device}; {seen})")
    try:
        import torch_tensorrt
    except (ImportError, OSError) as err:  # OSError: installed, but a TensorRT/CUDA library fails to load
        torch_tensorrt = None
        broken = f" (importing it failed: {err})" if isinstance(err, OSError) else ""
        missing.append(f"torch-tensorrt{broken}: {INSTALL_HINT}")
    if missing:
        raise BackendUnavailable(
            f"backend 'tensorrt' cannot run here: it needs {'; and it needs '.join(missing)}. "
            "Use backend 'torch' or 'onnxruntime' instead"
        )
    return torch_tensorrt


def machine_fingerprint(device: torch.device, trt: ModuleType) -> dict[str, str]:
    """What an engine is bound to besides the model: GPU name, compute capability, library versions."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    try:
        import tensorrt

        tensorrt_version = str(tensorrt.__version__)
    except ImportError:
        tensorrt_version = "unknown"
    return {
        "gpu": torch.cuda.get_device_name(index),
        "compute_capability": f"{major}.{minor}",
        "tensorrt": tensorrt_version,
        "torch_tensorrt": str(getattr(trt, "__version__", "unknown")),
        "torch": torch.__version__,
    }


def engine_cache_key(
    model_name: str,
    params_digest: str,
    size: tuple[int, int],
    precision: str,
    with_labels: bool,
    machine: dict[str, str],
) -> dict[str, Any]:
    """Every field an engine depends on; the sidecar of a usable cached engine equals this exactly."""
    return {
        "format": ENGINE_FORMAT,
        "model": model_name,
        "params_sha256": params_digest,
        "size": [int(size[0]), int(size[1])],
        "precision": precision,
        "outputs": ["fused", "labels"] if with_labels else ["fused"],
        **machine,
    }


def engine_path(cache_dir: str | os.PathLike, key: dict[str, Any]) -> Path:
    """``MODEL_HxW_PRECISION_OUTPUTS_DIGEST.ep`` with DIGEST a hash of the whole key, so engines for
    different weights, GPUs or library versions never share a file."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    height, width = key["size"]
    return Path(cache_dir) / (
        f"{key['model']}_{height}x{width}_{key['precision']}_{key['outputs'][-1]}_{digest}.ep"
    )


def _accepts(fn: Callable, parameter: str) -> bool:
    try:
        return parameter in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def compile_engine(
    trt: ModuleType, wrapper: nn.Module, example: tuple[torch.Tensor, torch.Tensor], path: Path
) -> Callable:
    """Compile ``wrapper`` (already on the GPU in the inputs' dtype) for the fixed shapes of ``example``
    and save it to ``path`` (written to a temporary name, then renamed); returns the compiled module."""
    if _accepts(trt.dynamo.compile, "use_explicit_typing"):
        typing_kwargs: dict[str, Any] = {"use_explicit_typing": True}  # run in the dtype of model + inputs
    else:  # older torch-tensorrt: precisions are enabled explicitly
        typing_kwargs = {"enabled_precisions": {example[0].dtype}}
    module = trt.compile(wrapper, ir="dynamo", inputs=list(example), **typing_kwargs)
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".ep", dir=path.parent)
    os.close(fd)
    try:
        inputs_name = "arg_inputs" if _accepts(trt.save, "arg_inputs") else "inputs"
        trt.save(module, tmp, **{inputs_name: list(example)})
        os.chmod(tmp, 0o600)  # in case save replaced mkstemp's private file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return module


def load_engine(path: Path) -> Callable:
    """A saved engine as a callable module (torch_tensorrt must be imported: it registers the TRT ops)."""
    return torch.export.load(str(path)).module()


class UnsafeCacheError(RuntimeError):
    """A cached engine that is not loaded because someone other than this user could have written it, or
    it is not the file this node built; the message names the file and what to do about it."""


def _check_owned_and_private(path: Path, st: os.stat_result, chmod: str) -> None:
    if st.st_uid != os.getuid():
        raise UnsafeCacheError(
            f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}), so it may have been "
            "planted (loading a cached engine runs code): delete it, or chown it to this user"
        )
    if st.st_mode & 0o022:
        raise UnsafeCacheError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}), so it may have been "
            f"planted (loading a cached engine runs code): run chmod {chmod} {path}"
        )


def make_private_dir(path: Path) -> None:
    """Create the cache folder (and parents) with mode 0700, set again after ``makedirs`` since the umask
    applies to it. An existing folder is left as it is: :func:`check_private_dir` judges it."""
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)


def check_private_dir(path: Path) -> None:
    """Refuse (:class:`UnsafeCacheError`) a cache folder that is not this user's or that others can write:
    whoever can write it can swap in an engine, and loading one runs code in the node."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCacheError(f"{path} is not a folder: remove it or set SSVIF_ROS_CACHE elsewhere")
    _check_owned_and_private(path, st, "700")


def check_private_file(path: Path) -> None:
    """Refuse (:class:`UnsafeCacheError`) a cached file that is a link, is not this user's or that others
    can write (the file itself, not where a link points, is what this node wrote)."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeCacheError(f"{path} is not a regular file (a link?): delete it")
    _check_owned_and_private(path, st, "600")


def cached_engine_ok(path: Path, key: dict[str, Any]) -> bool:
    """Whether the engine at ``path`` may be deserialised: False on a plain miss (no sidecar or engine, or a
    sidecar for another key); :class:`UnsafeCacheError` when the folder, sidecar or engine fails
    :func:`check_private_dir` / :func:`check_private_file` or the engine's SHA-256 is not the recorded one.
    Reads only the JSON sidecar and the engine's bytes (for the hash)."""
    side = sidecar_of(path)
    check_private_dir(path.parent)
    if not os.path.lexists(side):
        return False
    check_private_file(side)
    try:
        recorded = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    expected = recorded.pop("engine_sha256", None)
    if recorded != key or not os.path.lexists(path):
        return False
    check_private_file(path)
    actual = file_sha256(path)
    if actual != expected:
        wanted = f"{expected[:16]}…" if isinstance(expected, str) else "none"
        raise UnsafeCacheError(
            f"{path} has SHA-256 {actual[:16]}…, but {side.name} recorded {wanted} when this node built it, "
            "so it was changed or planted: not loading it (delete it if this repeats)"
        )
    return True


def write_engine_record(path: Path, key: dict[str, Any]) -> None:
    """Make the engine just built at ``path`` 0600 and record ``key`` and its SHA-256 in its sidecar
    (written atomically, 0600): the hash :func:`cached_engine_ok` wants before loading it."""
    os.chmod(path, 0o600)
    record = {**key, "engine_sha256": file_sha256(path)}
    atomic_write_bytes(sidecar_of(path), (json.dumps(record, indent=2) + "\n").encode())


def load_or_compile(path: Path, key: dict[str, Any], compile_fn: Callable[[Path], Callable]) -> Callable:
    """Load ``path`` when :func:`cached_engine_ok` passes; otherwise (a miss, a refused file or a failed
    load, the last two with a warning) drop engine and sidecar, ``compile_fn(path)`` a new engine there and
    record it (:func:`write_engine_record`). In a folder others can write, nothing is loaded or cached: the
    engine is compiled into a private temporary folder, so nothing planted there is ever run."""
    make_private_dir(path.parent)
    try:
        check_private_dir(path.parent)
    except UnsafeCacheError as err:
        warnings.warn(f"{err}; compiling the TensorRT engine without caching it", stacklevel=2)
        with tempfile.TemporaryDirectory() as scratch:
            return compile_fn(Path(scratch) / path.name)
    try:
        if cached_engine_ok(path, key):
            return load_engine(path)
    except UnsafeCacheError as err:
        warnings.warn(f"{err}; rebuilding the TensorRT engine", stacklevel=2)
    except Exception as err:  # a truncated or otherwise unreadable file: rebuild it
        warnings.warn(f"{path}: cached TensorRT engine failed to load ({err}); rebuilding it", stacklevel=2)
    sidecar_of(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)  # a link there would send the new engine wherever it points
    module = compile_fn(path)
    write_engine_record(path, key)
    return module


class TensorRTBackend:
    """``run(vis_t, ir_t, want_labels) -> (fused_t (1,C,H,W), labels_t (1,H,W) uint8 | None)`` with
    TensorRT, fp32 or fp16, on a CUDA device.

    One engine per (outputs, input size), compiled or loaded on the first frame that needs it (the first
    start compiles: minutes on a Jetson). The eager modules stay where the caller keeps them; only a copy
    goes to the GPU, and only while compiling.
    """

    name = "tensorrt"
    channels_last_inputs = False

    def __init__(
        self,
        model: nn.Module,
        seg_head: nn.Module | None,
        device: torch.device,
        precision: str = "fp32",
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self._trt = require_tensorrt(device)
        self.device = device
        self.precision = precision
        self.input_dtype = PRECISION_DTYPES[precision]
        self.model = model.eval()
        self.seg_head = seg_head.eval() if seg_head is not None else None
        self.model_name = str(getattr(model, "model_name", type(model).__name__))
        self.params_digest = params_sha256(model, seg_head)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "tensorrt"
        self.machine = machine_fingerprint(device, self._trt)
        self._engines: dict[tuple[bool, tuple[int, int]], Callable] = {}

    @property
    def has_segmentation(self) -> bool:
        return self.seg_head is not None

    def cache_key(self, with_labels: bool, size: tuple[int, int]) -> dict[str, Any]:
        return engine_cache_key(
            self.model_name, self.params_digest, size, self.precision, with_labels, self.machine
        )

    def _compile(self, with_labels: bool, vis_t: torch.Tensor, ir_t: torch.Tensor, path: Path) -> Callable:
        head = self.seg_head if with_labels else None
        wrapper = copy.deepcopy(FusionExportWrapper(self.model, head))
        wrapper = wrapper.to(device=self.device, dtype=self.input_dtype).eval()
        # Outside inference mode (export cannot trace inference tensors), on fresh inputs, not the buffers.
        with torch.inference_mode(False), torch.no_grad():
            example = (
                torch.rand(vis_t.shape, device=self.device, dtype=self.input_dtype),
                torch.rand(ir_t.shape, device=self.device, dtype=self.input_dtype),
            )
            return compile_engine(self._trt, wrapper, example, path)

    def _engine(self, with_labels: bool, vis_t: torch.Tensor, ir_t: torch.Tensor) -> Callable:
        size = (int(vis_t.shape[-2]), int(vis_t.shape[-1]))
        engine = self._engines.get((with_labels, size))
        if engine is None:
            key = self.cache_key(with_labels, size)
            path = engine_path(self.cache_dir, key)
            engine = load_or_compile(path, key, lambda p: self._compile(with_labels, vis_t, ir_t, p))
            self._engines[(with_labels, size)] = engine
        return engine

    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if want_labels and self.seg_head is None:
            raise RuntimeError("this model has no segmentation head in its checkpoint")
        outputs = self._engine(want_labels, vis_t, ir_t)(vis_t, ir_t)
        if want_labels:
            fused, labels = outputs
            return fused, labels
        return outputs, None
