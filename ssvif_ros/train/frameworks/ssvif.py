"""SSVIF (arXiv 2509.22450): a feature-level SegHead and a from-scratch SegFormer on the fused image teach
each other through the cross-segmentation consistency loss, label-free
(:func:`~ssvif_ros.train.losses.csc_loss`, with the paper's pseudo labels or the Sinkhorn-balanced ones:
``ssvif.csc_balance``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssvif_ros.train.config import csc_options
from ssvif_ros.train.frameworks.base import TrainingFramework
from ssvif_ros.train.losses import csc_loss


class SSVIF(TrainingFramework):
    """Fusion loss + CSC between the SegHead (``logits_a``) and the SegFormer (``logits_b``)."""

    name = "ssvif"
    has_task = True

    def build_modules(self) -> dict[str, nn.Module]:
        from ssvif_ros.models.segformer import build_segformer  # pulls in transformers: only when needed

        s = self.cfg["ssvif"]
        seg_head = self.build_seg_head()
        segformer = build_segformer(s["segformer"], s["num_classes"], **s["segformer_overrides"])
        return {"seg_head": seg_head, "segformer": segformer}

    def branch_outputs(
        self, modules: dict[str, nn.Module], fused: torch.Tensor, features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {
            "logits_a": modules["seg_head"](features, tuple(fused.shape[-2:])),
            "logits_b": modules["segformer"](fused),
        }

    def task_loss(
        self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], vis: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, info with "agreement" and "teacher_a") of the second task."""
        loss, info = csc_loss(outputs["logits_a"], outputs["logits_b"], **csc_options(self.cfg))
        return loss, {"agreement": info["agreement"], "teacher_a": info["teacher_a_fraction"]}
