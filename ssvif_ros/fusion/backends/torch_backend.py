"""Eager PyTorch backend: the model and its segmentation head on one device, fp32 or (CUDA) fp16.

Inference-only rewrite done once at creation, on a copy (the caller's modules are never modified):
every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential`` (lightunet's
``ConvBNReLU``, seafusion's decoder, the segmentation head) is folded into one conv whose weight and bias
absorb the BatchNorm's running statistics and affine terms; the BatchNorm becomes an ``nn.Identity``.
In eval mode this is the same function (float rounding aside, ≤ 1e-5 on [0, 1] images) with one pass over
the activations fewer per pair.

``channels_last`` (on by default) also stores the copied conv weights in channels-last (NHWC) memory
format, which oneDNN's CPU convolutions run faster; the inputs stay NCHW (the first conv returns NHWC and
the rest follows) and outputs are unchanged up to float rounding. On the 2-core development CPU
(``bench/inference.py``, three runs) it cut the folded model's median latency by 5–48 % in 21 of 24
cases (the others: 2 threads, two of them under heavy load from other jobs); lightunet 480×640, 1 thread:
30 ms vs 36 ms in the quietest run.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ssvif_ros.fusion.backends import PRECISION_DTYPES


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """A plain 2-D conv feeding a BatchNorm2d over its output channels with running statistics."""
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
    )


def fold_conv_batchnorm(module: nn.Module) -> int:
    """Fold every (Conv2d, BatchNorm2d) pair adjacent in an ``nn.Sequential`` of ``module``, **in place**.

    Only pairs inside a Sequential are touched: there the conv's output feeds nothing but the BatchNorm,
    so folding cannot change any other path. ``module`` must be in eval mode (folding bakes in the running
    statistics, which is what eval mode computes with). Returns the number of pairs folded.
    """
    if module.training:
        raise ValueError("fold_conv_batchnorm needs a module in eval mode (call .eval() first)")
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if _foldable(conv, bn):
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
                folded += 1
    return folded


class TorchBackend:
    """``run(vis_t, ir_t, want_labels) -> (fused_t (1,3,H,W), labels_t (1,H,W) uint8 | None)``.

    The modules are copied, put in eval mode, BatchNorm-folded (``fold_batchnorm``, on by default; see
    the module docstring), moved to ``device``, cast to half for fp16 and made
    ``channels_last`` (unless off), so the caller's modules stay untouched. ``run`` is called under
    ``torch.inference_mode``. ``folded_batchnorms`` counts the pairs folded in the model and head together.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        seg_head: nn.Module | None,
        device: torch.device,
        precision: str = "fp32",
        fold_batchnorm: bool = True,
        channels_last: bool = True,
    ) -> None:
        self.device = device
        self.precision = precision
        self.input_dtype = PRECISION_DTYPES[precision]
        self.channels_last_inputs = channels_last  # NHWC weights, and the engine allocates NHWC inputs
        self.folded_batchnorms = 0
        self.model = self._prepare(model, fold_batchnorm)
        self.seg_head = self._prepare(seg_head, fold_batchnorm) if seg_head is not None else None

    def _prepare(self, module: nn.Module, fold_batchnorm: bool) -> nn.Module:
        """A folded eval-mode copy of ``module`` on the device in the input dtype (and memory format)."""
        module = copy.deepcopy(module).eval()
        if fold_batchnorm:
            with torch.no_grad():
                self.folded_batchnorms += fold_conv_batchnorm(module)
        module = module.to(device=self.device, dtype=self.input_dtype)
        return module.to(memory_format=torch.channels_last) if self.channels_last_inputs else module

    @property
    def has_segmentation(self) -> bool:
        return self.seg_head is not None

    @torch.inference_mode()
    def run(
        self, vis_t: torch.Tensor, ir_t: torch.Tensor, want_labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        fused, features = self.model(vis_t, ir_t)
        labels = None
        if want_labels:
            if self.seg_head is None:
                raise RuntimeError("this model has no segmentation head in its checkpoint")
            logits = self.seg_head(features, size=tuple(vis_t.shape[-2:]))
            labels = logits.argmax(dim=1).to(torch.uint8)
        return fused, labels
