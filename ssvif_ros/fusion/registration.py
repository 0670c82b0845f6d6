"""Bring the thermal image into the visible camera's pixel grid: resize, then a homography warp.

Convention (read this before writing a calibration into ``registration.homography``):

1. The thermal frame ``(h, w)`` is first resized to the visible size ``output_size = (H, W)`` (bilinear,
   pixel-area convention: thermal pixel centre ``u`` lands at ``(u + 0.5) · W / w - 0.5``).
2. ``homography`` maps pixel coordinates of that *resized thermal image* to visible pixel coordinates,
   the direction ``cv2.warpPerspective(thermal_resized, homography, (W, H))`` uses. Coordinates are in
   pixels with the centre of the top-left pixel at ``(0, 0)``, ``x`` to the right and ``y`` down
   (OpenCV's convention), in homogeneous form ``[x_vis, y_vis, 1]ᵀ ∝ homography · [x_th, y_th, 1]ᵀ``.

So the identity means "the cameras are already aligned up to resolution" (a plain resize), and the same
matrix stays valid if the thermal camera changes its output resolution (binning).

Worked example: thermal 320×256 (w×h), visible 640×512, and every scene feature appears 12 px further
right and 5 px lower in the resized thermal image than in the visible one — a feature at visible
``(100, 200)`` is at resized-thermal ``(112, 205)``. The homography maps thermal → visible, so it shifts
back::

    homography = [[1, 0, -12],
                  [0, 1,  -5],
                  [0, 0,   1]]

and the registered thermal pixel at visible ``(100, 200)`` shows resized-thermal ``(112, 205)``, i.e. the
native thermal pixel ``((112 + 0.5) / 2 - 0.5, (205 + 0.5) / 2 - 0.5) = (55.75, 102.25)``. If a
calibration gives ``H_native`` mapping *native* thermal pixels to visible pixels (e.g.
``cv2.findHomography(thermal_points, visible_points)`` on the unresized thermal image), use
``homography = H_native · S⁻¹`` with ``S`` the resize step ``[[W/w, 0, (W/w - 1)/2], [0, H/h, (H/h - 1)/2],
[0, 0, 1]]``.

Sampling: bilinear, clamped to the edge inside the thermal image's pixel area (so borders do not darken);
visible pixels that the thermal camera does not see (outside that area, or behind the thermal camera's
horizon for a strong perspective) are filled with 0 (cold/black). :meth:`Registration.valid_mask` gives them.

Cost: identity + same size is a pass-through (the input object, no copy); identity + other size is a
Pillow bilinear resize (antialiased when shrinking); a general homography uses index and fixed-point weight
maps cached per input size (built once, ~0.1–0.3 s; then 4 gathers + an integer blend: ~1–2 ms for uint8,
~1.5–3 ms for uint16 at 640×480 on one busy core, where Pillow's ``Image.transform(PERSPECTIVE)`` took
4–7 ms). ``uint8`` and ``uint16`` frames keep their dtype.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

# Sub-pixel resolution of the fixed-point bilinear weights, per axis: uint16 frames use 1/32 px (as
# OpenCV's INTER_BITS) with uint32 sums; uint8 frames use 1/16 px so that value × weight sums stay within
# uint16 (255 · 256 + 128 < 65536), which is ~1 ms a frame faster at 640×480.
_SUBPIXEL_BITS = {np.dtype(np.uint8): 4, np.dtype(np.uint16): 5}
_ACCUMULATOR = {np.dtype(np.uint8): np.uint16, np.dtype(np.uint16): np.uint32}
_CACHE_SIZE = 2


@dataclass(frozen=True)
class _WarpMaps:
    """Precomputed bilinear sampling for one input size: flat source indices and fixed-point weights
    (all ``(H·W,)``); weights are 0 where the output pixel has no thermal coverage."""

    indices: tuple[np.ndarray, ...]  # 4 × intp: (y0, x0), (y0, x1), (y1, x0), (y1, x1)
    weights: dict[np.dtype, tuple[np.ndarray, ...]]  # per input dtype: 4 × uint16, same order
    valid: np.ndarray  # bool (H, W)


def _validated_homography(homography: ArrayLike) -> np.ndarray:
    try:
        matrix = np.asarray(homography, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"registration.homography must be a 3×3 array of numbers: {exc}") from exc
    if matrix.size == 9 and matrix.ndim == 1:
        matrix = matrix.reshape(3, 3)  # a flat list of 9, as a ROS double[] parameter gives it
    if matrix.shape != (3, 3):
        raise ValueError(
            f"registration.homography must be 3×3 (or 9 numbers, row-major), got shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"registration.homography must be finite, got {matrix.tolist()}")
    if np.linalg.cond(matrix) > 1e12:
        raise ValueError(f"registration.homography is singular (not invertible): {matrix.tolist()}")
    return matrix


def _validated_size(output_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in output_size)
        ok = height > 0 and width > 0 and all(float(v) == int(v) for v in output_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"registration.output_size must be (height, width) > 0, got {output_size!r}")
    return height, width


class Registration:
    """``registration(thermal (h, w) uint8|uint16) -> (H, W)`` thermal in the visible frame (same dtype).

    ``homography``: 3×3 (or 9 numbers, row-major) mapping resized-thermal pixels → visible pixels (see the
    module docstring for the convention and a worked example); ``output_size``: visible ``(H, W)``.
    Raises ``ValueError`` naming ``registration.homography`` when it is not 3×3, finite and invertible.
    """

    def __init__(self, homography: ArrayLike, output_size: Sequence[int]) -> None:
        matrix = _validated_homography(homography)
        self.homography = matrix / matrix[2, 2] if matrix[2, 2] != 0 else matrix
        self.output_size = _validated_size(output_size)
        self.is_identity = bool(np.allclose(self.homography, np.eye(3), rtol=0.0, atol=1e-12))
        self._inverse = np.linalg.inv(self.homography)  # visible → resized thermal
        self._maps: OrderedDict[tuple[int, int], _WarpMaps] = OrderedDict()

    def __call__(self, thermal: np.ndarray) -> np.ndarray:
        if (
            not isinstance(thermal, np.ndarray)
            or thermal.ndim != 2
            or thermal.dtype not in (np.uint8, np.uint16)
        ):
            got = (
                f"{thermal.dtype} {thermal.shape}"
                if isinstance(thermal, np.ndarray)
                else type(thermal).__name__
            )
            raise ValueError(f"registration input must be a uint8 or uint16 (h, w) array, got {got}")
        in_size = (thermal.shape[0], thermal.shape[1])
        if self.is_identity:
            if in_size == self.output_size:
                return thermal
            out_h, out_w = self.output_size
            resized = Image.fromarray(thermal).resize((out_w, out_h), Image.Resampling.BILINEAR)
            return np.array(resized)  # np.asarray would give a read-only view of Pillow's bytes
        maps = self._maps_for(in_size)
        flat = thermal.reshape(-1)
        accumulator = _ACCUMULATOR[thermal.dtype]
        shift = 2 * _SUBPIXEL_BITS[thermal.dtype]  # the four weights sum to 2**shift
        (i00, i01, i10, i11), (w00, w01, w10, w11) = maps.indices, maps.weights[thermal.dtype]
        acc = np.multiply(np.take(flat, i00), w00, dtype=accumulator)
        acc += np.multiply(np.take(flat, i01), w01, dtype=accumulator)
        acc += np.multiply(np.take(flat, i10), w10, dtype=accumulator)
        acc += np.multiply(np.take(flat, i11), w11, dtype=accumulator)
        acc += 1 << (shift - 1)
        acc >>= shift
        return acc.astype(thermal.dtype).reshape(self.output_size)

    def valid_mask(self, input_size: Sequence[int]) -> np.ndarray:
        """bool ``(H, W)``: visible pixels that receive thermal data for a thermal frame of ``input_size``."""
        height, width = _validated_size(input_size)
        if self.is_identity:
            return np.ones(self.output_size, dtype=bool)
        return self._maps_for((height, width)).valid

    def source_coordinates(self, input_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, w)`` float64 ``(H, W)``: native thermal pixel coordinates sampled for each visible
        pixel, and the homogeneous denominator ``w`` (its sign tells the points in front of the camera)."""
        in_h, in_w = _validated_size(input_size)
        out_h, out_w = self.output_size
        ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
        inv = self._inverse
        denom = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
        safe = np.where(np.abs(denom) > 1e-12, denom, 1e-12)
        x_res = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / safe
        y_res = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / safe
        # resized-thermal pixel → native thermal pixel (pixel-area convention)
        x_src = (x_res + 0.5) * (in_w / out_w) - 0.5
        y_src = (y_res + 0.5) * (in_h / out_h) - 0.5
        return x_src, y_src, denom

    def _maps_for(self, in_size: tuple[int, int]) -> _WarpMaps:
        maps = self._maps.get(in_size)
        if maps is not None:
            self._maps.move_to_end(in_size)
            return maps
        maps = self._build_maps(in_size)
        self._maps[in_size] = maps
        while len(self._maps) > _CACHE_SIZE:
            self._maps.popitem(last=False)
        return maps

    def _build_maps(self, in_size: tuple[int, int]) -> _WarpMaps:
        in_h, in_w = in_size
        x_src, y_src, denom = self.source_coordinates(in_size)
        # The overall sign of a homography is arbitrary; the side of the horizon the thermal image is on
        # is the one where the thermal image centre lands. Visible pixels on the other side would map to
        # (mirrored) points "behind the camera" and are not covered.
        out_h, out_w = self.output_size
        centre = self.homography @ np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0, 1.0])
        front_sign = 1.0 if centre[2] >= 0 else -1.0
        in_front = denom * front_sign > 1e-12
        valid = in_front & (x_src >= -0.5) & (x_src <= in_w - 0.5) & (y_src >= -0.5) & (y_src <= in_h - 0.5)
        x = np.clip(np.where(valid, x_src, 0.0), 0.0, in_w - 1.0)
        y = np.clip(np.where(valid, y_src, 0.0), 0.0, in_h - 1.0)
        x0 = np.floor(x).astype(np.intp)
        y0 = np.floor(y).astype(np.intp)
        x1 = np.minimum(x0 + 1, in_w - 1)
        y1 = np.minimum(y0 + 1, in_h - 1)
        indices = tuple(
            (row * in_w + col).reshape(-1) for row, col in ((y0, x0), (y0, x1), (y1, x0), (y1, x1))
        )
        weights: dict[np.dtype, tuple[np.ndarray, ...]] = {}
        for dtype, bits in _SUBPIXEL_BITS.items():
            one = 1 << bits
            fx = np.round((x - x0) * one).astype(np.uint16)
            fy = np.round((y - y0) * one).astype(np.uint16)
            gx, gy = one - fx, one - fy
            per_corner = []
            for a, b in ((gx, gy), (fx, gy), (gx, fy), (fx, fy)):
                w = (a * b).astype(np.uint16)  # products of at most 2**bits each: sum is exactly 4**bits
                w[~valid] = 0
                per_corner.append(w.reshape(-1))
            weights[dtype] = tuple(per_corner)
        return _WarpMaps(indices=indices, weights=weights, valid=valid)
