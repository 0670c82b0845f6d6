"""The training-only SegFormer branch that segments the fused image (the SSVIF image branch).

Built from a ``transformers.SegformerConfig`` with random initialisation: nothing is downloaded and
``from_pretrained`` is never called (load weights yourself with ``load_state_dict`` if you have them).

Input normalisation: the wrapper takes images in [0,1] and normalises them inside ``forward`` with the
ImageNet mean/std (the convention MiT/SegFormer encoders are trained with, so ImageNet-pretrained
weights can be loaded into ``.model`` unchanged). For ``num_channels`` other than 3 the channel-averaged
ImageNet statistics (mean 0.449, std 0.226) are used for every channel.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig, SegformerForSemanticSegmentation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Encoder/decoder sizes of the Mix Transformer variants (SegFormer paper, Table 1 / its configs).
# Patch sizes (7,3,3,3), strides (4,2,2,2) and MLP ratios 4 are the SegformerConfig defaults for all.
SEGFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "b0": {
        "hidden_sizes": [32, 64, 160, 256],
        "depths": [2, 2, 2, 2],
        "num_attention_heads": [1, 2, 5, 8],
        "sr_ratios": [8, 4, 2, 1],
        "decoder_hidden_size": 256,
    },
    "b3": {
        "hidden_sizes": [64, 128, 320, 512],
        "depths": [3, 4, 18, 3],
        "num_attention_heads": [1, 2, 5, 8],
        "sr_ratios": [8, 4, 2, 1],
        "decoder_hidden_size": 768,
    },
    # For tests only: about 0.12 M parameters, same four-stage structure.
    "tiny": {
        "hidden_sizes": [8, 16, 32, 64],
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 2, 4, 8],
        "sr_ratios": [8, 4, 2, 1],
        "decoder_hidden_size": 32,
    },
}


def _config_fields() -> set[str]:
    """Keyword arguments SegformerConfig understands (it silently accepts unknown ones, so we check)."""
    params = inspect.signature(SegformerConfig.__init__).parameters.values()
    named = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    return named | {"num_labels"}


def segformer_config(
    preset: str = "b0", num_classes: int = 9, num_channels: int = 3, **overrides: Any
) -> SegformerConfig:
    """The ``SegformerConfig`` of ``preset`` with ``num_classes`` outputs; ``overrides`` replace fields."""
    if preset not in SEGFORMER_PRESETS:
        raise KeyError(f"unknown SegFormer preset {preset!r}; presets: {', '.join(SEGFORMER_PRESETS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    unknown = sorted(set(overrides) - _config_fields())
    if unknown:
        raise TypeError(f"unknown SegformerConfig field(s) {unknown} in build_segformer overrides")
    # Copy the lists so a config (or a caller) never mutates the shared presets.
    fields = {key: list(v) if isinstance(v, list) else v for key, v in SEGFORMER_PRESETS[preset].items()}
    fields.update(overrides)
    return SegformerConfig(num_channels=num_channels, num_labels=num_classes, **fields)


class SegFormer(nn.Module):
    """``forward(image (B, num_channels, H, W) in [0,1]) -> logits (B, num_classes, H, W)``.

    SegFormer predicts at 1/4 resolution; the logits are upsampled bilinearly (align_corners=False) to the
    input size. The Hugging Face module is ``self.model``; its config is ``self.config``.
    """

    def __init__(self, config: SegformerConfig):
        super().__init__()
        self.config = config
        self.model = SegformerForSemanticSegmentation(config)
        self.num_channels = config.num_channels
        self.num_classes = config.num_labels
        if self.num_channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            mean = (sum(IMAGENET_MEAN) / 3,) * self.num_channels
            std = (sum(IMAGENET_STD) / 3,) * self.num_channels
        # Not persistent: they are constants, so state dicts stay loadable into a bare Hugging Face model.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != self.num_channels:
            raise ValueError(
                f"SegFormer expects image (B,{self.num_channels},H,W) in [0,1], got {tuple(image.shape)}"
            )
        pixel_values = (image - self.mean) / self.std
        logits = self.model(pixel_values=pixel_values).logits
        if logits.shape[-2:] != image.shape[-2:]:
            logits = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def build_segformer(
    preset: str = "b0", num_classes: int = 9, num_channels: int = 3, **overrides: Any
) -> SegFormer:
    """A randomly initialised :class:`SegFormer` for ``preset`` ("b0", "b3" or "tiny").

    ``overrides`` are ``SegformerConfig`` fields (e.g. ``drop_path_rate=0.0``); unknown names raise.
    """
    return SegFormer(segformer_config(preset, num_classes, num_channels, **overrides))
