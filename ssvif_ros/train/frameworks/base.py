"""The training-framework interface: what a recipe adds to the fusion model it trains.

A framework builds its training-only modules (segmentation branches, a contrastive projector...) and turns a
batch and the fusion model's outputs into *named losses*: always ``"fusion"``, plus ``"csc"`` (the second
task, whatever it is) in the joint stage. The trainer owns everything else (data, optimiser, stages,
weighting of the named losses, non-finite steps, checkpoints, resume), so a new recipe (MultiTaskVIF,
CS2Fusion) is one new module here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ssvif_ros.models import SegHead
from ssvif_ros.train.losses import FusionLoss


@dataclass
class StepLosses:
    """One batch's losses: ``named`` (``"fusion"`` and, in the joint stage, ``"csc"``: attached, unweighted,
    the weighting combines them), the fusion loss's unweighted ``terms`` and detached ``info`` scalars for
    the logs (``"agreement"``, ``"teacher_a"``)."""

    named: dict[str, torch.Tensor]
    terms: dict[str, torch.Tensor]
    info: dict[str, torch.Tensor] = field(default_factory=dict)


class TrainingFramework:
    """Base: the fusion loss alone (no training-only modules, no second task).

    ``cfg`` is the resolved training config; ``feature_channels`` the fusion model's feature width.
    """

    name = "fusion"
    task_title = "cross-segmentation consistency"  # the second task, for the curves
    needs_labels = False  # items carry "label" (B,H,W) int64 (255 = ignore)

    has_task = False  # True when the framework has a second task (a joint stage)

    def __init__(self, cfg: dict[str, Any], feature_channels: int) -> None:
        self.cfg = cfg
        self.feature_channels = feature_channels
        self.fusion_loss = FusionLoss(**cfg["loss"])

    def bind_model(self, model: nn.Module) -> None:
        """The fusion model being trained, for a framework whose losses run it again (CS2Fusion's
        impaired-visible pass); most ignore it."""

    def build_modules(self) -> dict[str, nn.Module]:
        """Training-only modules, built in this order (the RNG draws of a run depend on it)."""
        return {}

    def build_seg_head(self) -> SegHead:
        """The feature-level segmentation head as the ``ssvif`` config section describes it."""
        s = self.cfg["ssvif"]
        return SegHead(self.feature_channels, s["num_classes"], s["seg_head_hidden"], s["seg_head_padding"])

    def branch_outputs(
        self, modules: dict[str, nn.Module], fused: torch.Tensor, features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Joint stage only: the training-only modules on the model's outputs (run under autocast)."""
        return {}

    def losses(
        self,
        batch: dict[str, Any],
        vis: torch.Tensor,
        ir: torch.Tensor,
        fused: torch.Tensor,
        outputs: dict[str, torch.Tensor],
        joint: bool,
    ) -> StepLosses:
        """Named losses in float32: "fusion" (:meth:`fusion_terms`) and, joint, "csc" (:meth:`task_loss`);
        ``outputs``: :meth:`branch_outputs` (empty outside the joint stage)."""
        total, terms = self.fusion_terms(vis, ir, fused.float(), outputs)
        step = StepLosses({"fusion": total}, terms)
        if joint:
            step.named["csc"], step.info = self.task_loss(batch, outputs, vis, ir)
        return step

    def fusion_terms(
        self, vis: torch.Tensor, ir: torch.Tensor, fused: torch.Tensor, outputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(fusion loss, its named terms detached) of ``fused`` (float32) against the sources: the
        configured :class:`FusionLoss`; a framework with its own backbone loss overrides this."""
        return self.fusion_loss(fused, vis, ir)

    def task_loss(
        self, batch: dict[str, Any], outputs: dict[str, torch.Tensor], vis: torch.Tensor, ir: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The second task's (loss, info with "agreement" and, with pseudo labels, "teacher_a"); only a
        framework with a task (:attr:`has_task`) has a joint stage that calls it."""
        raise NotImplementedError(f"{type(self).__name__} has no second task")
