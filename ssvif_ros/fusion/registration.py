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

Cost (OpenCV, one thread, 640×512 → 640×480, ``bench/registration.py``): identity + same size is a
pass-through (the input object, no copy); identity + other size is ``cv2.resize`` (bilinear; area averaging
when shrinking by more than 2×), 0.47–0.53 ms for uint8 where the Pillow antialiased bilinear it replaced
took 1.0–1.3 ms. On 20 MSRS thermal frames the two differ by 0.08 grey levels on average at 640×512 →
640×480 (up to 6 at single edge pixels), 0.25 (≤ 1) when enlarging, 0.26 (≤ 23 at edges: area vs triangle
filter) when shrinking 2.4×. A general homography is one ``cv2.warpPerspective`` (edge replicated, 1/32 px
fixed point; within one grey level of exact bilinear sampling) then, where the thermal camera does not
cover the whole visible frame, a multiply by the cached coverage mask: 0.94–1.05 ms for uint8 and uint16,
where the numpy gather over cached maps it replaced took 2.3–2.7 ms (uint8) and 3.7–3.9 ms (uint16).
``uint8`` and ``uint16`` frames keep their dtype.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike

_CACHE_SIZE = 2


@dataclass(frozen=True)
class _Coverage:
    """What a warp needs for one input size: the visible → native-thermal matrix and which visible pixels
    the thermal image covers (``all_valid`` skips the masking when it covers them all)."""

    to_native: np.ndarray  # 3×3 float64, for cv2.warpPerspective with WARP_INVERSE_MAP
    valid: np.ndarray  # bool (H, W)
    keep: np.ndarray  # valid as 0/1 uint8, multiplied into the warped frame
    all_valid: bool


def _resize_step(in_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """3×3 ``S`` taking native pixels of an ``in_size`` (H, W) image to pixels of it resized to ``out_size``
    (pixel centres: ``x' = (x + 0.5) · W'/W − 0.5``), the step of the module docstring's convention."""
    sx, sy = out_size[1] / in_size[1], out_size[0] / in_size[0]
    return np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])


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
        self._coverage: OrderedDict[tuple[int, int], _Coverage] = OrderedDict()

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
            return thermal if in_size == self.output_size else self._resize(thermal)
        coverage = self._coverage_for(in_size)
        out_h, out_w = self.output_size
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = cv2.warpPerspective(
            thermal, coverage.to_native, (out_w, out_h), flags=flags, borderMode=cv2.BORDER_REPLICATE
        )
        if not coverage.all_valid:
            np.multiply(warped, coverage.keep, out=warped, casting="unsafe")
        return warped

    def _resize(self, thermal: np.ndarray) -> np.ndarray:
        """Bilinear to the visible size; area averaging when either axis shrinks more than 2× (bilinear
        would skip source pixels and alias)."""
        out_h, out_w = self.output_size
        in_h, in_w = thermal.shape
        shrink = out_h * 2 < in_h or out_w * 2 < in_w
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(thermal, (out_w, out_h), interpolation=interpolation)

    def valid_mask(self, input_size: Sequence[int]) -> np.ndarray:
        """bool ``(H, W)``: visible pixels that receive thermal data for a thermal frame of ``input_size``."""
        height, width = _validated_size(input_size)
        if self.is_identity:
            return np.ones(self.output_size, dtype=bool)
        return self._coverage_for((height, width)).valid

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

    def _coverage_for(self, in_size: tuple[int, int]) -> _Coverage:
        coverage = self._coverage.get(in_size)
        if coverage is not None:
            self._coverage.move_to_end(in_size)
            return coverage
        coverage = self._build_coverage(in_size)
        self._coverage[in_size] = coverage
        while len(self._coverage) > _CACHE_SIZE:
            self._coverage.popitem(last=False)
        return coverage

    def _build_coverage(self, in_size: tuple[int, int]) -> _Coverage:
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
        # Inside the thermal pixel area the edge is replicated (borders do not darken); outside, 0.
        to_native = np.linalg.inv(_resize_step(in_size, self.output_size)) @ self._inverse
        return _Coverage(
            to_native=to_native, valid=valid, keep=valid.astype(np.uint8), all_valid=bool(valid.all())
        )


def homography_from_intrinsics(
    k_visible: ArrayLike,
    k_thermal: ArrayLike,
    thermal_size: Sequence[int],
    visible_size: Sequence[int],
    rotation: ArrayLike | None = None,
) -> np.ndarray:
    """The ``registration.homography`` of two cameras from their calibrations: the plane at infinity.

    A direction ``d`` in the thermal camera's optical frame is seen at thermal pixel ``K_t d`` and at
    visible pixel ``K_v R d`` (``R``: thermal → visible rotation of the optical frames; identity for a
    boresighted rig), so native thermal pixels map to visible ones by ``K_v R K_t⁻¹``; the result is that,
    times the inverse of the resize step, as the module docstring's convention asks. Exact for distant
    scenes (parallax of the baseline ignored) and rectified or low-distortion images. ``k_*``: 3×3 (or 9
    numbers, as ``sensor_msgs/CameraInfo.k``); sizes ``(height, width)``.
    """
    k_v = np.asarray(k_visible, dtype=np.float64).reshape(3, 3)
    k_t = np.asarray(k_thermal, dtype=np.float64).reshape(3, 3)
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) <= 0:
        raise ValueError(f"rotation must be a proper rotation matrix (R·Rᵀ = I, det 1), got {r.tolist()}")
    for name, k in (("visible", k_v), ("thermal", k_t)):
        if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
            raise ValueError(f"the {name} camera matrix K needs focal lengths > 0, got {k.tolist()}")
    resize = _resize_step(_validated_size(thermal_size), _validated_size(visible_size))
    homography = k_v @ r @ np.linalg.inv(k_t) @ np.linalg.inv(resize)
    return homography / homography[2, 2]
