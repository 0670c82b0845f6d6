"""Training frameworks: the fusion loss alone, SSVIF (label-free CSC), the label-supervised reference and
MultiTaskVIF (a multi-task head, supervised, one stage) and CS2Fusion (contrastive compensation,
self-supervised, one stage).

:func:`framework_for` picks one from the config (``framework``, ``ssvif.csc``, ``ssvif.supervision``), so
existing configs keep their meaning; see :mod:`ssvif_ros.train.frameworks.base` for the interface.
"""

from __future__ import annotations

from typing import Any

from ssvif_ros.train.frameworks.base import StepLosses, TrainingFramework
from ssvif_ros.train.frameworks.cs2fusion import CS2Fusion
from ssvif_ros.train.frameworks.multitask import MultiTaskVIF
from ssvif_ros.train.frameworks.ssvif import SSVIF
from ssvif_ros.train.frameworks.supervised import LabelSupervised

__all__ = [
    "SSVIF",
    "CS2Fusion",
    "LabelSupervised",
    "MultiTaskVIF",
    "StepLosses",
    "TrainingFramework",
    "framework_for",
]


def framework_for(cfg: dict[str, Any], feature_channels: int) -> TrainingFramework:
    """The framework a resolved config asks for: ``framework: original`` or ``ssvif.csc: false`` train
    with the fusion loss alone; ``framework: multitask`` is MultiTaskVIF; otherwise SSVIF, label-supervised
    with ``ssvif.supervision: labels``."""
    if cfg["framework"] == "multitask":
        return MultiTaskVIF(cfg, feature_channels)
    if cfg["framework"] == "cs2fusion":
        return CS2Fusion(cfg, feature_channels)
    if not cfg["ssvif"]["csc"]:
        return TrainingFramework(cfg, feature_channels)
    if cfg["ssvif"]["supervision"] == "labels":
        return LabelSupervised(cfg, feature_channels)
    return SSVIF(cfg, feature_channels)
