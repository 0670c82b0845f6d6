"""Fusion quality at each inference precision (the library of ``training/precision_quality.py``): fp16,
bf16 and ONNX Runtime int8 against fp32 on the same pairs, through the engine."""

from __future__ import annotations

import json
import math
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssvif_ros.checkpoint import Checkpoint, atomic_write_bytes, load_checkpoint
from ssvif_ros.cli import comma_list
from ssvif_ros.data import PairedFolderDataset
from ssvif_ros.eval.fusion import HIGHER_IS_BETTER, select_indices
from ssvif_ros.eval.metrics import METRIC_NAMES, evaluate_fusion
from ssvif_ros.fusion.backends.onnxruntime_backend import FusionExportWrapper, export_onnx, open_session
from ssvif_ros.fusion.backends.torch_backend import TorchBackend
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.fusion.export import compare, onnx_runner

REFERENCE = "fp32"
PRECISIONS: dict[str, str] = {
    "fp32": "float32, engine torch backend (reference)",
    "fp16": "IEEE half: folded weights and inputs cast, torch on CPU (quality only; GPU: tensor cores)",
    "bf16": "bfloat16: folded weights and inputs cast, torch on CPU",
    "onnx_fp32": "the fp32 ONNX export in ONNX Runtime CPU",
    "int8": "ONNX Runtime static int8 (QDQ), Conv layers, per-channel weights, MinMax calibration",
    "int8_allops": "ONNX Runtime static int8 (QDQ), every quantizable op, per-channel weights, MinMax",
}
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INT8_OP_TYPES: dict[str, list[str] | None] = {"int8": ["Conv"], "int8_allops": None}  # None = ORT's default
ONNX_PRECISIONS = ("onnx_fp32", *INT8_OP_TYPES)


# --------------------------------------------------------------------------------------------- backends


class CastTorchBackend(TorchBackend):
    """The engine's CPU torch backend (copy, BN folded, channels_last) with weights and inputs in ``dtype``.

    :func:`~ssvif_ros.fusion.backends.create_backend` allows fp16 only on CUDA (where it is fast); this
    class exists
    to measure the rounding cost of fp16/bf16 on the CPU, not to deploy them there.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype, precision: str) -> None:
        super().__init__(model, None, torch.device("cpu"), "fp32")
        self.model = self.model.to(dtype)
        self.input_dtype = dtype
        self.precision = precision


class OnnxSessionBackend:
    """An ONNX Runtime session over a fused-only graph (inputs ``vis``, ``ir``; output ``fused``) as a
    :class:`~ssvif_ros.fusion.backends.Backend`: (1,3,H,W), (1,1,H,W) float32 -> ((1,3,H,W) float32, None)."""

    name = "onnxruntime"
    has_segmentation = False
    input_dtype = torch.float32
    channels_last_inputs = False

    def __init__(self, path: Path, precision: str, threads: int) -> None:
        self.device = torch.device("cpu")
        self.precision = precision
        self.session = open_session(path, threads)

    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        feeds = {"vis": vis_t.numpy(), "ir": ir_t.numpy()}
        return torch.from_numpy(self.session.run(["fused"], feeds)[0]), None


def engine_with_backend(ckpt: Checkpoint, backend: Any) -> FusionEngine:
    """A FusionEngine for the loaded checkpoint whose model runs on ``backend`` (the engine builds its input
    buffers in ``backend.input_dtype``)."""
    return FusionEngine(weights=ckpt, backend=backend)


def engine_inputs(vis: np.ndarray, ir: np.ndarray) -> dict[str, np.ndarray]:
    """vis (H,W,3) and ir (H,W) uint8 -> ONNX feeds (1,3,H,W), (1,1,H,W) float32 in [0,1], computed like
    the engine's fp32 input buffers (float32 then a float32 division by 255)."""
    vis_t = (
        torch.from_numpy(np.require(vis, requirements="CW")).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    )
    ir_t = torch.from_numpy(np.require(ir, requirements="CW")).unsqueeze(0).unsqueeze(0).float().div_(255.0)
    return {"vis": vis_t.contiguous().numpy(), "ir": ir_t.numpy()}


@dataclass
class OnnxArtifacts:
    """The fp32 export (checked against PyTorch like training/export.py does) and its int8 variants."""

    fp32: Path
    fp32_max_abs_error: float
    int8: dict[str, Path | str] = field(default_factory=dict)  # precision -> quantized .onnx or error text
    preprocess_error: str | None = None  # quant_pre_process failed: the plain export was quantized


def build_onnx(
    model: nn.Module,
    workdir: Path,
    int8_precisions: Sequence[str],
    calibration: Callable[[], Iterator[dict[str, np.ndarray]]],
    check_size: tuple[int, int],
) -> OnnxArtifacts:
    """Export ``model`` (fused output only, dynamic H×W) to ``workdir``, check it against eager PyTorch at
    ``check_size`` (H, W), pre-process it for quantization and quantize it once per ``int8_precisions``
    entry with calibration feeds from ``calibration()``. A quantization error is kept as its text."""
    fp32 = export_onnx(model, None, workdir / "fp32.onnx", size=None, with_labels=False)
    wrapper = FusionExportWrapper(model.eval(), None).eval()
    in_chans = int(getattr(model, "in_chans", 3))
    errors = compare(wrapper, onnx_runner(fp32), [check_size], in_chans)
    artifacts = OnnxArtifacts(fp32=fp32, fp32_max_abs_error=errors["fused_max_abs_error"])
    if not int8_precisions:
        return artifacts
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        for precision in int8_precisions:
            artifacts.int8[precision] = f"onnxruntime.quantization is not available: {e}"
        return artifacts

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = calibration()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    prepared = workdir / "fp32_prepared.onnx"
    try:
        quant_pre_process(str(fp32), str(prepared))  # shape inference + graph optimisation, as ORT advises
    except Exception as e:  # recorded in the results; quantization proceeds on the plain export
        artifacts.preprocess_error = _error_text(e)
        prepared = fp32
    for precision in int8_precisions:
        out = workdir / f"{precision}.onnx"
        try:
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=INT8_OP_TYPES[precision],
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
            artifacts.int8[precision] = out
        except Exception as e:  # the failure text is the result for this precision
            artifacts.int8[precision] = f"quantize_static failed: {type(e).__name__}: {e}"
    return artifacts


# --------------------------------------------------------------------------------------------- scoring


@dataclass
class PrecisionRun:
    """Accumulated results of one precision over the evaluated pairs."""

    name: str
    engine: FusionEngine | None = None
    error: str | None = None
    setup_s: float = 0.0
    scores: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRIC_NAMES})
    seconds: list[float] = field(default_factory=list)
    max_abs: int = 0
    sum_abs: float = 0.0
    values: int = 0
    changed_pixels: int = 0
    pixels: int = 0
    changed_images: int = 0

    def add_difference(self, fused: np.ndarray, reference: np.ndarray) -> None:
        """Accumulate |fused - reference| of two (H,W,3) uint8 images."""
        diff = np.abs(fused.astype(np.int16) - reference.astype(np.int16))
        changed = int(np.count_nonzero(diff.max(axis=2)))
        self.max_abs = max(self.max_abs, int(diff.max()))
        self.sum_abs += float(diff.sum(dtype=np.int64))
        self.values += diff.size
        self.changed_pixels += changed
        self.pixels += diff.shape[0] * diff.shape[1]
        self.changed_images += int(changed > 0)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarize(run: PrecisionRun, reference: dict[str, float] | None) -> dict[str, Any]:
    """JSON-ready result of one precision (NaN written as None)."""
    result: dict[str, Any] = {"description": PRECISIONS[run.name], "error": run.error}
    if run.error is not None and not run.seconds:
        return result
    means = {m: _mean(v) for m, v in run.scores.items()}
    result.update(
        {
            "pairs": len(run.seconds),
            "means": means,
            "metric_change_vs_fp32": {m: means[m] - reference[m] for m in METRIC_NAMES}
            if reference
            else None,
            "difference_vs_fp32": {
                "max_abs": run.max_abs,
                "mean_abs": run.sum_abs / run.values if run.values else math.nan,
                "changed_pixels_percent": 100.0 * run.changed_pixels / run.pixels if run.pixels else math.nan,
                "changed_images": run.changed_images,
            },
            "ms_per_image_median": 1e3 * float(np.median(run.seconds)),
            "setup_s": run.setup_s,
        }
    )
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


# --------------------------------------------------------------------------------------------- the run


def _select(dataset: PairedFolderDataset, split: str | None, limit: int | None) -> list[int]:
    """evaluate_fusion's pair selection (a ValueError when the split has no pair)."""
    return select_indices(dataset, split, limit)


def measure(
    weights: Path,
    roots: Sequence[Path],
    out: Path,
    precisions: Sequence[str] = ("fp32", "fp16", "bf16", "int8"),
    split: str | None = "test",
    calib_split: str = "train",
    limit: int | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Fuse and score the ``split`` pairs of ``roots`` at every precision; write precision.json/.md into
    ``out`` and return the JSON content. Raises ValueError for a bad precision name or calibration pairs
    that overlap the evaluated ones."""
    names = parse_precisions(precisions)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    t_start = time.perf_counter()
    dataset = PairedFolderDataset(list(roots))
    indices = _select(dataset, split, limit)
    int8_names = [n for n in names if n in INT8_OP_TYPES]
    calib_indices: list[int] = []
    if int8_names:
        calib_indices = _select(dataset, calib_split, None)
        overlap = sorted(dataset.names[i] for i in set(calib_indices) & set(indices))
        if overlap:
            raise ValueError(
                f"calibration split {calib_split!r} shares {len(overlap)} pair(s) with the evaluated pairs "
                f"(e.g. {overlap[0]}): int8 must not be calibrated on the pairs it is scored on"
            )
    ckpt = load_checkpoint(weights)
    model = ckpt.model.eval()
    size_hw = tuple(int(v) for v in dataset.read_arrays(indices[0])["ir"].shape)  # ONNX check size
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="ssvif_precision_") as tmp:
            runs, onnx_info = _build_runs(names, ckpt, dataset, calib_indices, size_hw, Path(tmp), threads)
            _fuse_all(runs, dataset, indices)
    finally:
        torch.set_num_threads(previous_threads)

    reference = {m: _mean(v) for m, v in runs[REFERENCE].scores.items()}
    results = {name: summarize(run, reference if name != REFERENCE else None) for name, run in runs.items()}
    report = {
        "weights": str(weights),
        "weights_sha256": ckpt.meta.get("weights_sha256"),
        "model": getattr(model, "model_name", type(model).__name__),
        "data": [str(r) for r in roots],
        "split": split,
        "count": len(indices),
        "pairs": [dataset.names[i] for i in indices],
        "calib_split": calib_split if int8_names else None,
        "calib_pairs": [dataset.names[i] for i in calib_indices],
        "first_pair_size_hw": list(size_hw),
        "threads": threads,
        "onnx": onnx_info,
        "precisions": results,
        "wall_s": time.perf_counter() - t_start,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "precision.json", (json.dumps(_json_safe(report), indent=2) + "\n").encode())
    atomic_write_bytes(out / "precision.md", markdown_report(report).encode())
    return report


def _build_runs(
    names: Sequence[str],
    ckpt: Checkpoint,
    dataset: PairedFolderDataset,
    calib_indices: Sequence[int],
    check_size: tuple[int, int],
    workdir: Path,
    threads: int,
) -> tuple[dict[str, PrecisionRun], dict[str, Any] | None]:
    """One PrecisionRun per precision with its engine built, or its error recorded (fp32 errors raise)."""
    model = ckpt.model
    runs = {name: PrecisionRun(name) for name in names}
    for name in names:
        if name in TORCH_DTYPES:
            t0 = time.perf_counter()
            try:
                backend = CastTorchBackend(model, TORCH_DTYPES[name], name)
                runs[name].engine = engine_with_backend(ckpt, backend)
            except Exception as e:
                if name == REFERENCE:
                    raise
                runs[name].error = _error_text(e)
            runs[name].setup_s = time.perf_counter() - t0
    onnx_names = [n for n in names if n in ONNX_PRECISIONS]
    if not onnx_names:
        return runs, None

    def calibration() -> Iterator[dict[str, np.ndarray]]:
        for i in calib_indices:
            sample = dataset.read_arrays(i)
            yield engine_inputs(sample["vis"], sample["ir"])

    t0 = time.perf_counter()
    try:
        artifacts = build_onnx(
            model, workdir, [n for n in onnx_names if n in INT8_OP_TYPES], calibration, check_size
        )
    except Exception as e:  # an export failure fails every ONNX precision, not the run
        for name in onnx_names:
            runs[name].error = f"ONNX export failed: {_error_text(e)}"
        return runs, {"error": _error_text(e)}
    build_s = time.perf_counter() - t0
    info: dict[str, Any] = {
        "export": "dynamic H×W, fused output only, opset of ssvif_ros.fusion.backends.onnxruntime_backend",
        "fp32_export_max_abs_error_vs_torch": artifacts.fp32_max_abs_error,
        "export_and_quantization_s": build_s,
        "quantization_preprocess_error": artifacts.preprocess_error,
        "int8": {
            "format": "QDQ",
            "weights": "int8, per channel, symmetric",
            "activations": "int8, per tensor, asymmetric, MinMax over the calibration pairs",
            "op_types": {
                n: INT8_OP_TYPES[n] or "onnxruntime default (all it can quantize)" for n in INT8_OP_TYPES
            },
        },
    }
    for name in onnx_names:
        path = artifacts.fp32 if name == "onnx_fp32" else artifacts.int8[name]
        if isinstance(path, str):
            runs[name].error = path
            continue
        try:
            runs[name].engine = engine_with_backend(ckpt, OnnxSessionBackend(path, name, threads))
        except Exception as e:
            runs[name].error = f"ONNX Runtime could not load the {name} model: {_error_text(e)}"
        runs[name].setup_s = build_s
    return runs, info


def _fuse_all(runs: dict[str, PrecisionRun], dataset: PairedFolderDataset, indices: Sequence[int]) -> None:
    """Fuse every pair at every precision (interleaved, so load changes hit all alike) and score it."""
    for k, i in enumerate(indices):
        sample = dataset.read_arrays(i)
        vis, ir = sample["vis"], sample["ir"]
        reference: np.ndarray | None = None
        for name, run in runs.items():
            if run.engine is None:
                continue
            try:
                t0 = time.perf_counter()
                fused = run.engine.fuse(vis, ir).image
                run.seconds.append(time.perf_counter() - t0)
            except Exception as e:
                if name == REFERENCE:
                    raise
                run.error = f"failed on pair {dataset.names[i]}: {_error_text(e)}"
                traceback.print_exc()
                run.engine = None
                continue
            if name == REFERENCE:
                reference = fused
            run.add_difference(fused, reference)
            for metric, value in evaluate_fusion(vis, ir, fused).items():
                run.scores[metric].append(value)
        done = ", ".join(f"{n} {1e3 * r.seconds[-1]:.0f} ms" for n, r in runs.items() if r.engine is not None)
        print(f"[{k + 1}/{len(indices)}] {dataset.names[i]}: {done}", flush=True)


# --------------------------------------------------------------------------------------------- report


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, fmt)


def _small_cell(value: float, fmt: str) -> str:
    """Like :func:`_cell`, but a non-zero value that ``fmt`` would print as zero is shown as 1.2e-07."""
    if not math.isnan(value) and 0 < abs(value) < 0.005:
        return format(value, ".1e")
    return _cell(value, fmt)


def markdown_report(report: dict[str, Any]) -> str:
    """precision.md: precision × metric means + image differences + ms/image, then the metric changes."""
    higher = HIGHER_IS_BETTER
    arrows = {m: "↑" if higher[m] else "↓" for m in METRIC_NAMES}
    header = " | ".join(f"{m} {arrows[m]}" for m in METRIC_NAMES)
    lines = [
        f"| precision | {header} | max diff | mean diff | % px changed | ms/image |",
        "|---|" + "---|" * (len(METRIC_NAMES) + 4),
    ]
    changes = ["| precision | " + " | ".join(f"Δ{m}" for m in METRIC_NAMES) + " |",
               "|---|" + "---|" * len(METRIC_NAMES)]  # fmt: skip
    errors = []
    for name, r in report["precisions"].items():
        if "means" not in r:
            lines.append(f"| {name} | " + " | ".join(["—"] * (len(METRIC_NAMES) + 4)) + " |")
            errors.append(f"- **{name}**: {r['error']}")
            continue
        if r["error"]:
            errors.append(f"- **{name}** (partial, {r['pairs']} pairs): {r['error']}")
        d = r["difference_vs_fp32"]
        cells = [_cell(r["means"][m], ".4f") for m in METRIC_NAMES]
        cells += [str(d["max_abs"]), _small_cell(d["mean_abs"], ".4f")]
        cells.append(_small_cell(d["changed_pixels_percent"], ".2f"))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['ms_per_image_median']:.1f} |")
        if r["metric_change_vs_fp32"] is not None:
            delta = r["metric_change_vs_fp32"]
            changes.append(f"| {name} | " + " | ".join(_cell(delta[m], "+.1e") for m in METRIC_NAMES) + " |")
    text = [
        f"Model {report['model']} (`{Path(report['weights']).name}`), {report['count']} pairs of split "
        f"{report['split']!r} from {', '.join(report['data'])}; {report['threads']} thread(s).",
        "",
        *lines,
        "",
        "Differences are of the uint8 fused image from fp32's, in grey levels over all pixels and channels; "
        "% px changed counts pixels with any channel different. ms/image: median `FusionEngine.fuse` time "
        "on a shared CPU (indicative). SSIM, MS_SSIM, VIF and MI are sums over the two sources.",
    ]
    if len(changes) > 2:
        text += ["", "Change of each metric mean from fp32:", "", *changes]
    text += ["", "Notes:", ""]
    text += [f"- {name}: {r['description']}" for name, r in report["precisions"].items()]
    text.append(
        "- fp16 here runs on the CPU only to measure its quality cost: the values are rounded to the same "
        "IEEE half format as on a GPU, where fp16 runs on tensor cores and is the deployment precision (its "
        "CPU latency says nothing about deployment)."
    )
    onnx = report.get("onnx")
    if onnx and "fp32_export_max_abs_error_vs_torch" in onnx:
        error = onnx["fp32_export_max_abs_error_vs_torch"]
        text.append(
            f"- The fp32 ONNX export differs from PyTorch by at most {error:.1e} on a random input of the "
            "pairs' size (values in [0, 1])."
        )
    if report.get("calib_pairs"):
        text.append(
            f"- int8 calibration: {len(report['calib_pairs'])} pairs of split {report['calib_split']!r} "
            "(disjoint from the evaluated pairs)."
        )
    if errors:
        text += ["", "Errors:", "", *errors]
    return "\n".join(text) + "\n"


def parse_precisions(text: str | Sequence[str]) -> list[str]:
    """``"fp16,int8"`` -> ``["fp32", "fp16", "int8"]``: known names only, no repeats, fp32 (the reference)
    first and always present."""
    names = comma_list(text) if isinstance(text, str) else [str(t) for t in text]
    unknown = [n for n in names if n not in PRECISIONS]
    if unknown:
        raise ValueError(f"unknown precision(s) {', '.join(unknown)}: choose from {', '.join(PRECISIONS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"precision(s) given twice: {', '.join(repeated)}")
    return [REFERENCE, *[n for n in names if n != REFERENCE]]
