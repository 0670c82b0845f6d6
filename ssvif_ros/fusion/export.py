"""Export a fusion checkpoint and check the exported program against eager PyTorch (the library of
``training/export.py``): ONNX and torch.export runners and the output comparison."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ssvif_ros.fusion.backends.onnxruntime_backend import (
    FusionExportWrapper,
    open_session,
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
