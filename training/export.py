"""Export a checkpoint's fusion model (+ segmentation head) to ONNX, and optionally to a torch.export program.

    python training/export.py --weights W.safetensors --out DIR [--size 480x640] [--dynamic] [--opset 18]
                              [--torch-export] [--tolerance 1e-3]

Writes ``DIR/<weights stem>.onnx`` with inputs ``vis`` (1,C,H,W), ``ir`` (1,1,H,W) float32 in [0,1] and
outputs ``fused`` (1,C,H,W) float32 in [0,1] plus, when the checkpoint has a segmentation head, ``labels``
(1,H,W) uint8 class ids (argmax in the graph; see :mod:`ssvif_ros.fusion.backends.onnxruntime_backend`),
and its
sidecar ``<stem>.onnx.json`` (model, weights_sha256, params_sha256, size or "dynamic", opset, errors).
``--dynamic`` makes H and W dynamic (not for swinfusion); otherwise the graph is fixed at ``--size``. A
dynamic graph of a model with a pyramid guide (``saliency``, ``saliency_sides``, ``learned``) keeps the
4 pyramid levels it was traced with (64×96), so it matches PyTorch for inputs of 64 px or more a side only.
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
from collections.abc import Sequence
from pathlib import Path

from ssvif_ros.checkpoint import load_checkpoint
from ssvif_ros.cli import size_arg
from ssvif_ros.fusion.backends.onnxruntime_backend import (
    DEFAULT_OPSET,
    FIXED_SIZE_MODELS,
    FusionExportWrapper,
    export_onnx,
    params_sha256,
    write_export_sidecar,
)
from ssvif_ros.fusion.export import compare, export_program, onnx_runner


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
