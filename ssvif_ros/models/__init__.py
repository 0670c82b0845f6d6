"""Fusion models (backbone + image decoder), their registry, and the training-only segmentation head.

The SegFormer branch lives in :mod:`ssvif_ros.models.segformer` and is not imported here: it pulls in
``transformers``, which inference never needs.
"""

from .base import FusionModel
from .color import YChannelFusion, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from .heads import SegHead
from .registry import create_model, list_models, register_model

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
