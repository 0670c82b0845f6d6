"""MultiTaskVIF (Zhao, Howes, Zhang; IEEE TIP 2025, arXiv 2505.06665): the fusion model's decoder becomes a
multi-task head that gives the fused image and a segmentation map from the same fused features, trained
end to end in one stage with the fusion loss plus CE + Dice on labels.

The paper does not publish the head's layers, loss weights or settings; the choices here (see
docs/multitask.md): a shared trunk after the backbone (:class:`~ssvif_ros.models.base.SharedTrunk`, built
with ``create_model(..., multitask=True)``) splits into the model's own image decoder and a
:class:`~ssvif_ros.models.SegHead` — the checkpoint's segmentation head, whose class names come from the
data's ``classes.json``; loss = fusion + ``multitask.seg_weight`` · (CE + soft Dice) over labelled pixels
(pairs without labels count for the fusion loss only); one stage from the first epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssvif_ros.train.frameworks.base import TrainingFramework
from ssvif_ros.train.losses import labelled_ce_dice


class MultiTaskVIF(TrainingFramework):
    """Fusion loss + ``w`` · (CE + Dice) of the segmentation path on the labels (``"csc"`` names the task)."""

    name = "multitask"
    has_task = True
    task_title = "MultiTaskVIF segmentation (labels)"
    needs_labels = True

    def build_modules(self) -> dict[str, nn.Module]:
        return {"seg_head": self.build_seg_head()}

    def branch_outputs(
        self, modules: dict[str, nn.Module], fused: torch.Tensor, features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {"logits_a": modules["seg_head"](features, tuple(fused.shape[-2:]))}

    def task_loss(
        self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], vis: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(CE + Dice over labelled pixels, info "agreement" = pixel accuracy on them)."""
        logits = outputs["logits_a"]
        labels = batch["label"].to(logits.device, non_blocking=True).long()
        ce, dice = labelled_ce_dice(logits, labels, 255)
        with torch.no_grad():
            valid = labels != 255
            accuracy = ((logits.argmax(dim=1) == labels) & valid).sum().float() / valid.sum().clamp(min=1)
        return ce + dice, {"agreement": accuracy}
