"""Export a checkpoint's fusion model (+ segmentation head) to ONNX, and optionally to a torch.export program.

    python training/export.py --weights W.safetensors --out DIR [--size 480x640] [--dynamic] [--opset 18]
                              [--torch-export] [--tolerance 1e-3]

Writes ``DIR/<weights stem>.onnx`` with inputs ``vis`` (1,C,H,W), ``ir`` (1,1,H,W) float32 in [0,1] and
outputs ``fused`` (1,C,H,W) float32 in [0,1] plus, when the checkpoint has a segmentation head, ``labels``
(1,H,W) uint8 class ids (argmax in the graph; see :mod:`ssvif_ros.fusion.backends.onnxruntime_backend`),
and its
sidecar ``<stem>.onnx.json`` (model, weights_sha256, params_sha256, size or "dynamic", opset, errors).
``--dynamic`` makes H and W dynamic (not for swinfusion); otherwise the graph is fixed at ``--size``.
``--torch-export`` also writes ``<stem>.pt2`` (``torch.export.save``), always at the fixed ``--size``.

Every export is run against eager PyTorch on random inputs at ``--size`` (and, when dynamic, at a second
odd size); the max abs error of ``fused`` and the fraction of differing labels are printed. The script
exits 1 when the fused error exceeds ``--tolerance`` or more than ``--label-tolerance`` of the labels
differ (near-ties in the logits may flip a few).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing the package

from ssvif_ros.checkpoint import load_checkpoint  # noqa: E402
from ssvif_ros.cli import size_arg  # noqa: E402
from ssvif_ros.fusion.backends.onnxruntime_backend import (  # noqa: E402
    DEFAULT_OPSET,
    FIXED_SIZE_MODELS,
    FusionExportWrapper,
    export_onnx,
    open_session,
    params_sha256,
    write_export_sidecar,
)

Runner = Callable[[torch.Tensor, torch.Tensor], tuple[np.ndarray, np.ndarray | None]]


def compare(
    reference: FusionExportWrapper,
    runner: Runner,
    sizes: Sequence[tuple[int, int]],
    in_chans: int,
    seed: int = 0,
) -> dict[str, float]:
    """Max abs error of fused and fraction of differing labels between eager PyTorch and ``runner``."""
    gen = torch.Generator().manual_seed(seed)
    fused_err, label_diff = 0.0, 0.0
    for height, width in sizes:
        vis = torch.rand(1, in_chans, height, width, generator=gen)
        ir = torch.rand(1, 1, height, width, generator=gen)
        with torch.no_grad():
            expected = reference(vis, ir)
        exp_fused, exp_labels = expected if isinstance(expected, tuple) else (expected, None)
        fused, labels = runner(vis, ir)
        fused_err = max(fused_err, float(np.abs(fused - exp_fused.numpy()).max()))
        if exp_labels is not None and labels is not None:
            label_diff = max(label_diff, float((labels != exp_labels.numpy()).mean()))
    return {"fused_max_abs_error": fused_err, "labels_differ_fraction": label_diff}


def onnx_runner(path: Path) -> Runner:
    session = open_session(path, torch.get_num_threads())

    def run(vis: torch.Tensor, ir: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = session.run(None, {"vis": vis.numpy(), "ir": ir.numpy()})
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    return run


def export_program(wrapper: FusionExportWrapper, path: Path, size: tuple[int, int], in_chans: int) -> Runner:
    """``torch.export`` the wrapper at the fixed ``size``, save it to ``path`` (.pt2) and return a runner of
    the reloaded program. Always static: with dynamic H, W torch.export cannot prove the segmentation
    head's "logits already at image size?" branch away (guard H != ceil(H/4))."""
    vis, ir = torch.rand(1, in_chans, *size), torch.rand(1, 1, *size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.export.export(wrapper, (vis, ir))
    torch.export.save(program, str(path))
    module = torch.export.load(str(path)).module()

    def run(v: torch.Tensor, i: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.no_grad():
            out = module(v, i)
        if isinstance(out, (tuple, list)):
            return out[0].numpy(), out[1].numpy()
        return out.numpy(), None

    return run


def check(name: str, errors: dict[str, float], args: argparse.Namespace) -> bool:
    ok = (
        errors["fused_max_abs_error"] <= args.tolerance
        and errors["labels_differ_fraction"] <= args.label_tolerance
    )
    print(
        f"{name}: fused max abs error {errors['fused_max_abs_error']:.3g} (tolerance {args.tolerance:g}), "
        f"labels differ at {errors['labels_differ_fraction']:.3%} of pixels "
        f"(tolerance {args.label_tolerance:.3%}) -> {'OK' if ok else 'FAILED'}"
    )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, type=Path, help="checkpoint .safetensors (with its .json)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--size", type=size_arg(8), default=(480, 640), help="HxW: export/check size (480x640)")
    p.add_argument("--dynamic", action="store_true", help="dynamic H and W (not for swinfusion)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--torch-export", action="store_true", help="also write a torch.export program (.pt2)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max abs error allowed on fused")
    p.add_argument("--label-tolerance", type=float, default=1e-3, help="fraction of labels allowed to differ")
    args = p.parse_args(argv)

    ckpt = load_checkpoint(args.weights)
    model, head = ckpt.model.eval(), ckpt.seg_head
    name = str(getattr(model, "model_name", "model"))
    if args.dynamic and name in FIXED_SIZE_MODELS:
        p.error(f"model {name} exports only at a fixed size (drop --dynamic)")
    in_chans = int(getattr(model, "in_chans", 3))
    wrapper = FusionExportWrapper(model, head).eval()
    sizes = [args.size]
    if args.dynamic:
        sizes.append((args.size[0] // 2 + 3, args.size[1] // 2 + 5))  # a second, odd size
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.weights.name.removesuffix(".safetensors")

    onnx_path = export_onnx(
        model, head, args.out / f"{stem}.onnx", None if args.dynamic else args.size, args.opset
    )
    errors = compare(wrapper, onnx_runner(onnx_path), sizes, in_chans)
    ok = check(f"ONNX {onnx_path}", errors, args)
    write_export_sidecar(
        onnx_path,
        {
            "model": name,
            "weights": args.weights.name,
            "weights_sha256": ckpt.meta.get("weights_sha256"),
            "params_sha256": params_sha256(model, head),
            "size": "dynamic" if args.dynamic else list(args.size),
            "opset": args.opset,
            "outputs": ["fused", "labels"] if head is not None else ["fused"],
            "checked_sizes": [list(s) for s in sizes],
            "max_abs_error": errors["fused_max_abs_error"],
            "labels_differ_fraction": errors["labels_differ_fraction"],
        },
    )
    if args.torch_export:
        pt2 = args.out / f"{stem}.pt2"
        runner = export_program(wrapper, pt2, args.size, in_chans)
        ok = (
            check(f"torch.export {pt2}", compare(wrapper, runner, [args.size], in_chans, seed=1), args) and ok
        )
    print(json.dumps({"onnx": str(onnx_path), "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
