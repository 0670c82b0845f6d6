"""Model registry: ``register_model``, ``create_model(name, **cfg)``, ``list_models()`` (timm style).

A registered factory takes keyword arguments only and returns a :class:`FusionModel` whose visible
input has ``in_chans`` channels. ``create_model`` adds the colour handling, so every model created here
takes RGB visible images whatever its colour mode:

- ``color="rgb"`` (the SSVIF setting): the model fuses RGB (B,3,H,W) with IR and outputs RGB.
- ``color="y"`` (the classic setting): the model fuses luminance; :class:`YChannelFusion` restores colour
  from the visible CbCr.

The created module records ``model_name`` and ``model_cfg`` (everything needed to rebuild it), which is
what checkpoints store next to the weights.

A leaf module: it imports no model. The built-in models register themselves when :mod:`ssvif_ros.models`
imports them (as timm's model modules do), so importing the package is enough to find them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ssvif_ros.models.color import YChannelFusion

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

COLOR_MODES = ("rgb", "y")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered fusion model, sorted."""
    return sorted(_REGISTRY)


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The registered factory of ``name`` (its signature is what a checkpoint's sidecar may set)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, color: str = "rgb", multitask: bool = False, **cfg) -> nn.Module:
    """Build model ``name`` in colour mode ``color`` ("rgb" or "y") with factory arguments ``cfg``;
    ``multitask`` adds MultiTaskVIF's shared trunk between backbone and image decoder
    (:class:`~ssvif_ros.models.base.SharedTrunk`).

    Returns a module with ``forward(vis, ir) -> (fused, features)`` where ``vis`` is (B,3,H,W) RGB in
    [0,1], ``ir`` is (B,1,H,W) (or (B,3,H,W) replicated) in [0,1], ``fused`` is (B,3,H,W) in [0,1] and
    ``features`` is (B, model.feature_channels, h, w).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown fusion model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, got {color!r}")
    model = _REGISTRY[name](in_chans=3 if color == "rgb" else 1, **cfg)
    if multitask:
        from ssvif_ros.models.base import SharedTrunk  # registry stays a leaf at import time

        model.trunk = SharedTrunk(model.feature_channels)
        cfg = {"multitask": True, **cfg}
    if color == "y":
        model = YChannelFusion(model)
    model.model_name = name
    model.model_cfg = {"color": color, **cfg}
    return model
