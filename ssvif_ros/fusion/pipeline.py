"""Per-pair processing shared by the fusion node and the offline replay, so the two cannot disagree.

For one synchronised pair (visible ``uint8 (H, W, 3)`` RGB, thermal ``uint8|uint16 (h, w)`` as decoded
from the message)::

    thermal ──► ThermalToU8 (16 → 8 bit gain, stateful per stream) ──► Registration (resize + homography
    to the visible (H, W)) ──► engine.fuse(visible, thermal_u8) ──► FusedResult

The node (:mod:`ssvif_ros.node.fuse_node`) and ``ssvif-replay`` (:mod:`ssvif_ros.tools.replay`) both go
through
:class:`PairProcessor`; only the ROS plumbing around it differs. ROS-free.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ssvif_ros.fusion.registration import Registration
from ssvif_ros.fusion.thermal import ThermalToU8

__all__ = ["IDENTITY", "Fuser", "PairOutput", "PairProcessor", "aspect_mismatch", "timed_fuse"]

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


class Fuser(Protocol):
    """What the processor needs from :class:`~ssvif_ros.fusion.engine.FusionEngine` (or a baseline
    wrapper)."""

    @property
    def has_segmentation(self) -> bool: ...

    def fuse(self, vis: np.ndarray, ir: np.ndarray, want_labels: bool = False) -> Any: ...


@dataclass
class PairOutput:
    """What one pair produced: the registered 8-bit thermal the model saw, the engine's result and the
    time spent in ``engine.fuse`` (seconds)."""

    thermal_u8: np.ndarray  # (H, W) uint8, registered to the visible frame
    result: Any  # FusedResult: image (H, W, 3) uint8, labels (H, W) uint8 or None
    inference_s: float


def aspect_mismatch(vis_shape: Sequence[int], thermal_shape: Sequence[int]) -> float:
    """``|aspect_thermal / aspect_visible − 1|`` for (H, W, ...) shapes; 0 for the same aspect ratio."""
    vis_aspect = vis_shape[1] / vis_shape[0]
    th_aspect = thermal_shape[1] / thermal_shape[0]
    return abs(th_aspect / vis_aspect - 1.0)


def timed_fuse(fuser: Fuser, vis: np.ndarray, ir_u8: np.ndarray, want_labels: bool) -> tuple[Any, float]:
    """``fuser.fuse(vis, ir_u8, want_labels)`` and the seconds it took (the node's "inference" time)."""
    started = time.perf_counter()
    result = fuser.fuse(vis, ir_u8, want_labels=want_labels)
    return result, time.perf_counter() - started


class PairDropped(ValueError):
    """A pair :class:`PairProcessor` refuses; ``reason`` names the counter (``"aspect"``) and the message
    says what was wrong with it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PairProcessor:
    """Thermal gain → registration → engine for the pairs of one (visible, thermal) stream.

    ``thermal_to_u8`` keeps the stream's gain state (smoothed window), so use one processor per stream and
    :meth:`reset` it when the stream restarts (bag loop, clock jump). ``homography``: 9 numbers or 3×3, see
    :mod:`ssvif_ros.fusion.registration`; ``max_aspect_mismatch``: the largest :func:`aspect_mismatch` a
    pair may
    have (beyond it the thermal image is from another camera or mis-remapped).
    """

    def __init__(
        self,
        engine: Fuser,
        thermal_to_u8: ThermalToU8,
        homography: Sequence[float] | np.ndarray = IDENTITY,
        max_aspect_mismatch: float = 0.25,
    ) -> None:
        self.engine = engine
        self.thermal_to_u8 = thermal_to_u8
        self.homography = np.asarray(homography, dtype=np.float64)
        Registration(self.homography, (1, 1))  # validate now, not at the first pair
        self.max_aspect_mismatch = float(max_aspect_mismatch)
        self._registration: Registration | None = None

    def registration_for(self, size: tuple[int, int]) -> Registration:
        """The :class:`Registration` to the visible ``size`` (H, W), rebuilt when the size changes."""
        if self._registration is None or self._registration.output_size != tuple(size):
            self._registration = Registration(self.homography, size)
        return self._registration

    def check_aspect(self, vis_shape: Sequence[int], thermal_shape: Sequence[int]) -> None:
        """Raise :class:`PairDropped` ("aspect") when the two images cannot show the same view."""
        mismatch = aspect_mismatch(vis_shape, thermal_shape)
        if mismatch > self.max_aspect_mismatch:
            (vh, vw), (th, tw) = vis_shape[:2], thermal_shape[:2]
            raise PairDropped(
                "aspect",
                f"thermal {tw}×{th} (aspect {tw / th:.2f}) does not match visible {vw}×{vh} (aspect "
                f"{vw / vh:.2f}): mismatch {mismatch:.2f} > max_aspect_mismatch {self.max_aspect_mismatch:g}",
            )

    def prepare(self, vis: np.ndarray, thermal: np.ndarray) -> np.ndarray:
        """The aspect check, then raw thermal ``(h, w)`` uint8/uint16 → ``uint8 (H, W)`` in the visible
        frame (advances the gain). Raises :class:`PairDropped`. Share it when several fusers run on a pair."""
        self.check_aspect(vis.shape, thermal.shape)
        return self.registration_for((vis.shape[0], vis.shape[1]))(self.thermal_to_u8(thermal))

    def process(self, vis: np.ndarray, thermal: np.ndarray, want_labels: bool) -> PairOutput:
        """One pair through :meth:`prepare` and the engine. Raises :class:`PairDropped`."""
        ir = self.prepare(vis, thermal)
        result, inference_s = timed_fuse(self.engine, vis, ir, want_labels)
        return PairOutput(ir, result, inference_s)

    def reset(self) -> None:
        """Forget the stream's gain state (the next frame sets the window anew)."""
        self.thermal_to_u8.reset()
