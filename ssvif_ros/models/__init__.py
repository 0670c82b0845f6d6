"""Fusion models (backbone + image decoder), their registry, and the training-only segmentation head.

The SegFormer branch lives in :mod:`ssvif_ros.models.segformer` and is not imported here: it pulls in
``transformers``, which inference never needs.
"""

from ssvif_ros.models.base import FusionModel
from ssvif_ros.models.color import YChannelFusion, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from ssvif_ros.models.heads import SegHead
from ssvif_ros.models.registry import create_model, list_models, register_model

# The built-in models register themselves on import (after the registry, which they use).
from ssvif_ros.models import cs2fusion, lightunet, seafusion, swinfusion  # noqa: F401  isort: skip

__all__ = [
    "FusionModel",
    "SegHead",
    "YChannelFusion",
    "create_model",
    "list_models",
    "register_model",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
]
