"""The label-supervised reference (SeAFusion-like): SSVIF's two branches trained with CE + soft Dice on the
ground-truth labels instead of the CSC pseudo labels (``ssvif.supervision: labels``)."""

from __future__ import annotations

from typing import Any

import torch

from ssvif_ros.train.frameworks.ssvif import SSVIF
from ssvif_ros.train.losses import supervised_seg_loss


class LabelSupervised(SSVIF):
    """SSVIF with :func:`~ssvif_ros.train.losses.supervised_seg_loss` as the second task (no teacher)."""

    name = "supervised"
    task_title = "supervised segmentation (labels)"
    needs_labels = True

    def task_loss(
        self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], vis: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = batch["label"].to(outputs["logits_a"].device, non_blocking=True)
        loss, info = supervised_seg_loss(outputs["logits_a"], outputs["logits_b"], labels)
        return loss, {"agreement": info["agreement"]}
