"""ONNX export of a fusion model (+ segmentation head) and an ONNX Runtime backend that runs it.

Graph contract (inputs and outputs of every export, by name):

- inputs ``vis`` (1,C,H,W) float32 in [0, 1] (C = the model's ``in_chans``) and ``ir`` (1,1,H,W) float32;
- output ``fused`` (1,C,H,W) float32 in [0, 1];
- output ``labels`` (1,H,W) **uint8 class ids** (the argmax of the head's logits, computed in the graph),
  only in exports made ``with_labels`` from a checkpoint with a head. Class ids rather than logits: that is
  what the engine publishes, and it keeps the output 9× smaller than float logits.

H and W are fixed (``size``) or dynamic (``size=None``; every model but ``swinfusion``, whose shifted-window
mask is computed for one size and so exports only at a fixed size).

Each ``.onnx`` has a JSON sidecar (``x.onnx`` -> ``x.onnx.json``) recording the model, the weights it was
exported from (``weights_sha256`` of the checkpoint file when known, and ``params_sha256`` of the tensors
themselves), the size or ``"dynamic"``, the opset and the measured max abs error against PyTorch, so an
export made from other weights is refused instead of silently run (:func:`check_export_current`).

:class:`OnnxRuntimeBackend` exports the engine's model itself on first use into a cache folder keyed by
``params_sha256`` + size + opset (``$SSVIF_ROS_CACHE`` or ``~/.cache/ssvif_ros``, or ``cache_dir``), so
the engine needs nothing more than ``backend="onnxruntime"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssvif_ros.checkpoint import atomic_write_bytes
from ssvif_ros.fusion.backends import BackendUnavailable
from ssvif_ros.models.guides import shape_independent_filters

EXPORT_FORMAT = "ssvif_ros.onnx/2"  # 2: luminance as a matrix product (a faster graph, same values)
DEFAULT_OPSET = 18
FIXED_SIZE_MODELS = frozenset({"swinfusion"})  # shift mask computed per size: no dynamic H/W export
INPUT_NAMES = ("vis", "ir")


class StaleExportError(BackendUnavailable):
    """An .onnx made from other weights than the checkpoint's (or without a readable sidecar)."""


class FusionExportWrapper(nn.Module):
    """``forward(vis (1,C,H,W), ir (1,1,H,W)) -> fused (1,C,H,W)`` or ``(fused, labels (1,H,W) uint8)``."""

    def __init__(self, model: nn.Module, seg_head: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.seg_head = seg_head

    def forward(
        self, vis: torch.Tensor, ir: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        fused, features = self.model(vis, ir)
        if self.seg_head is None:
            return fused
        logits = self.seg_head(features, size=(vis.shape[-2], vis.shape[-1]))
        return fused, logits.argmax(dim=1).to(torch.uint8)


def sidecar_of(onnx_path: str | os.PathLike) -> Path:
    """``x.onnx`` -> ``x.onnx.json``."""
    return Path(str(onnx_path) + ".json")


def params_sha256(model: nn.Module, seg_head: nn.Module | None = None) -> str:
    """SHA-256 over the model name/config and every tensor of the model and head (names, shapes, bytes):
    a cache key that exists for any model, checkpoint-loaded or not."""
    h = hashlib.sha256()
    h.update(json.dumps([getattr(model, "model_name", type(model).__name__)], sort_keys=True).encode())
    h.update(json.dumps(getattr(model, "model_cfg", None), sort_keys=True, default=str).encode())
    for prefix, module in (("model.", model), ("seg_head.", seg_head)):
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{prefix}{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def export_onnx(
    model: nn.Module,
    seg_head: nn.Module | None,
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    with_labels: bool = True,
) -> Path:
    """Export ``model`` (+ ``seg_head`` when ``with_labels``) to ``path`` with the legacy TorchScript-based
    exporter (the dynamo one needs onnxscript). ``size`` (H, W) fixes the input size; None makes H, W
    dynamic (refused for models in :data:`FIXED_SIZE_MODELS`). The file is written atomically; the caller
    writes the sidecar (:func:`write_export_sidecar`)."""
    name = getattr(model, "model_name", type(model).__name__)
    if size is None and name in FIXED_SIZE_MODELS:
        raise ValueError(
            f"model {name} exports only at a fixed size (its shift mask depends on it): give size"
        )
    height, width = size if size is not None else (64, 96)
    in_chans = int(getattr(model, "in_chans", 3))
    wrapper = FusionExportWrapper(model, seg_head if with_labels else None).eval()
    vis = torch.rand(1, in_chans, height, width)
    ir = torch.rand(1, 1, height, width)
    outputs = ["fused", "labels"] if wrapper.seg_head is not None else ["fused"]
    dynamic_axes = None
    if size is None:
        spatial = {2: "height", 3: "width"}
        dynamic_axes = {"vis": spatial, "ir": spatial, "fused": spatial}
        if "labels" in outputs:
            dynamic_axes["labels"] = {1: "height", 2: "width"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        shapes = contextlib.nullcontext() if size is not None else shape_independent_filters()
        with warnings.catch_warnings(), torch.no_grad(), shapes:
            warnings.simplefilter("ignore")  # TracerWarnings on the models' shape checks, deprecation notes
            torch.onnx.export(
                wrapper,
                (vis, ir),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=outputs,
                dynamic_axes=dynamic_axes,
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_export_sidecar(onnx_path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write ``info`` (model, weights_sha256, params_sha256, size, opset, outputs, max_abs_error) next to
    the .onnx."""
    side = sidecar_of(onnx_path)
    atomic_write_bytes(side, (json.dumps({"format": EXPORT_FORMAT, **info}, indent=2) + "\n").encode())
    return side


def read_export_sidecar(onnx_path: str | os.PathLike) -> dict[str, Any]:
    side = sidecar_of(onnx_path)
    try:
        info = json.loads(side.read_text())
    except FileNotFoundError:
        raise StaleExportError(
            f"{onnx_path}: sidecar {side} is missing, so the weights it was exported from are unknown; "
            "re-export with training/export.py"
        ) from None
    except json.JSONDecodeError as e:
        raise StaleExportError(f"{side}: not valid JSON ({e})") from None
    if info.get("format") != EXPORT_FORMAT:
        raise StaleExportError(f"{side}: format is {info.get('format')!r}, expected {EXPORT_FORMAT!r}")
    return info


def check_export_current(
    onnx_path: str | os.PathLike, weights_sha256: str | None = None, params_digest: str | None = None
) -> dict[str, Any]:
    """Refuse (StaleExportError) an export whose sidecar records other weights than ``weights_sha256``
    (the checkpoint sidecar's) or ``params_digest`` (:func:`params_sha256`); returns the sidecar."""
    info = read_export_sidecar(onnx_path)
    for field, expected in (("weights_sha256", weights_sha256), ("params_sha256", params_digest)):
        if expected is None:
            continue
        recorded = info.get(field)
        if recorded != expected:
            raise StaleExportError(
                f"{onnx_path} is stale: exported from weights with {field} {str(recorded)[:12]}, but the "
                f"checkpoint has {expected[:12]}; re-export it with training/export.py"
            )
    return info


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable(
            "backend 'onnxruntime' needs ONNX Runtime and onnx: pip install onnxruntime onnx "
            "(or onnxruntime-gpu for CUDA)"
        ) from None
    return onnxruntime


def open_session(path: str | os.PathLike, threads: int, providers: Sequence[str] = ("CPUExecutionProvider",)):
    """An ONNX Runtime ``InferenceSession`` for ``path`` on ``threads`` intra-op threads (one inter-op
    thread: the graph runs sequentially), the providers in order of preference."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))


def default_cache_dir() -> Path:
    env = os.environ.get("SSVIF_ROS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssvif_ros"


def providers_for(device: torch.device, available: list[str]) -> list[str]:
    """Execution providers to ask for: TensorRT/CUDA first on a CUDA device when this onnxruntime has them,
    the CPU always last."""
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device.type == "cuda" else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """``run(vis_t, ir_t, want_labels) -> (fused_t (1,C,H,W), labels_t (1,H,W) uint8 | None)`` with ONNX
    Runtime, fp32 only.

    Two graphs are kept: fused only (no head work when labels are not wanted) and fused + labels (built on
    the first call that wants labels). Each is exported into ``cache_dir`` and reused across runs: by
    default once per input size seen (``static_shapes``; a camera's size does not change, and ONNX
    Runtime plans a static graph better: lightunet 256×256 on one thread 4.95 vs 5.69 ms with a dynamic
    export, same process), or once with dynamic H, W (``static_shapes=False``; fixed-size models are always
    static). Intra-op threads follow ``torch.get_num_threads()`` so both backends use the same CPU budget.
    """

    name = "onnxruntime"
    channels_last_inputs = False

    def __init__(
        self,
        model: nn.Module,
        seg_head: nn.Module | None,
        device: torch.device,
        precision: str = "fp32",
        cache_dir: str | os.PathLike | None = None,
        opset: int = DEFAULT_OPSET,
        static_shapes: bool = True,
    ) -> None:
        self._ort = _import_onnxruntime()
        if precision != "fp32":
            raise BackendUnavailable(f"backend 'onnxruntime' runs fp32 only (got precision {precision!r})")
        self.device = device
        self.precision = precision
        self.input_dtype = torch.float32
        self.model = model.eval()
        self.seg_head = seg_head.eval() if seg_head is not None else None
        self.model_name = str(getattr(model, "model_name", type(model).__name__))
        self.opset = opset
        self.static_shapes = bool(static_shapes) or self.model_name in FIXED_SIZE_MODELS
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.params_digest = params_sha256(model, seg_head)
        self.providers = providers_for(device, self._ort.get_available_providers())
        self._sessions: dict[tuple[bool, tuple[int, int] | None], Any] = {}

    @property
    def has_segmentation(self) -> bool:
        return self.seg_head is not None

    def onnx_path(self, with_labels: bool, size: tuple[int, int] | None) -> Path:
        """Where the cached export for (with_labels, size or dynamic) lives."""
        shape = "dynamic" if size is None else f"{size[0]}x{size[1]}"
        outputs = "labels" if with_labels else "fused"
        return (
            self.cache_dir
            / f"{self.model_name}_{self.params_digest[:16]}_{shape}_op{self.opset}_{outputs}.onnx"
        )

    def _session(self, with_labels: bool, height: int, width: int):
        size = (height, width) if self.static_shapes else None
        key = (with_labels, size)
        session = self._sessions.get(key)
        if session is not None:
            return session
        path = self.onnx_path(with_labels, size)
        try:
            check_export_current(path, params_digest=self.params_digest)
            cached = path.is_file()
        except StaleExportError:
            cached = False
        if not cached:
            export_onnx(self.model, self.seg_head, path, size=size, opset=self.opset, with_labels=with_labels)
            write_export_sidecar(
                path,
                {
                    "model": self.model_name,
                    "weights_sha256": None,
                    "params_sha256": self.params_digest,
                    "size": "dynamic" if size is None else list(size),
                    "opset": self.opset,
                    "outputs": ["fused", "labels"] if with_labels else ["fused"],
                    "max_abs_error": None,
                },
            )
        session = open_session(path, torch.get_num_threads(), self.providers)
        self._sessions[key] = session
        return session

    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if want_labels and self.seg_head is None:
            raise RuntimeError("this model has no segmentation head in its checkpoint")
        height, width = int(vis_t.shape[-2]), int(vis_t.shape[-1])
        session = self._session(want_labels, height, width)
        feeds = {
            "vis": np.ascontiguousarray(vis_t.detach().float().cpu().numpy()),
            "ir": np.ascontiguousarray(ir_t.detach().float().cpu().numpy()),
        }
        outputs = session.run(None, feeds)
        fused = torch.from_numpy(outputs[0]).to(self.device)
        labels = torch.from_numpy(outputs[1]).to(self.device) if want_labels else None
        return fused, labels
