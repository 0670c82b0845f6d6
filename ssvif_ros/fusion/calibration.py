"""Estimate ``registration.homography`` from a user's own recording, without a target.

Visible and thermal images do not share intensities, but where one is bright the other is predictably
something: their *mutual information* peaks when they are aligned. One homography is shared by every pair
of a rigid rig, so it is fitted to all pairs at once (mean normalised mutual information, NMI): a pair with
little structure or a passing car cannot decide it. Coarse to fine (1/4, 1/2, full resolution): a grid
search over translations first (the basin of a mutual-information optimum is narrow), then Powell's method
over the 8 homography parameters at each level.

Measured (tests and issue 17's note): a known homography applied to the thermal images is recovered within
about 1 px (mean over the image interior) on synthetic scenes and 2.2–2.4 px from 12 real MSRS pairs
(whose own registration is only approximate). Use a dozen pairs or more: from 6 real pairs the NMI surface
is so flat that the OpenCV build alone moved the answer from 2.5 px (4.14) to 4.5 px (5.1). A recording
without shared structure (flat images, one camera covered) is refused, not answered. The result follows
:mod:`ssvif_ros.fusion.registration`: it maps pixels of the thermal image *resized to the visible size* to
visible pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CalibrationError",
    "CalibrationResult",
    "checkerboard",
    "describe_homography",
    "estimate_homography",
]

BINS = 32
LEVELS = (4, 2, 1)  # downscale factors, coarse to fine
BORDER = 0.08  # share of each side left out (image borders and warp fill are not scene)
MIN_STRUCTURE = 0.04  # std of a normalised, smoothed image below this: nothing to align
MIN_PEAK = 0.003  # the best NMI must exceed the NMI a quarter image away by this (real night pairs: ~0.008)
PARAM_SCALE = np.array([1e-2, 1e-2, 1.0, 1e-2, 1e-2, 1.0, 1e-5, 1e-5])  # Powell steps of similar effect


class CalibrationError(ValueError):
    """The recording cannot give a trustworthy homography; the message says why and what to record."""


@dataclass
class CalibrationResult:
    homography: np.ndarray  # (3, 3): resized-thermal pixels -> visible pixels
    nmi_identity: float  # mean NMI over the pairs without any correction
    nmi: float  # with the result
    shift_px: float  # mean displacement the result applies over the image interior
    pairs: int

    def snippet(self) -> str:
        """The line for ``config/fuse.yaml`` (under ``ros__parameters``). Every element is written as a
        double (``1.0``, not ``1``): ROS 2's params-file parser refuses a list of integers and doubles."""
        values = ", ".join(_double(v) for v in (self.homography / self.homography[2, 2]).ravel())
        return f"registration.homography: [{values}]"


def _double(value: float) -> str:
    """``value`` to 6 significant digits as a YAML double that every reader types alike: with a dot
    (``1.0``, ``1.0e-05``; YAML 1.1 reads ``1e-05`` as a string, ROS 2 as a double)."""
    if not math.isfinite(value):
        raise CalibrationError(f"the homography has a non-finite element ({value}): it cannot be written")
    text = repr(float(f"{value:.6g}"))
    mantissa, e, exponent = text.partition("e")
    return text if "." in mantissa else f"{mantissa}.0{e}{exponent}"


def _homography(params: np.ndarray) -> np.ndarray:
    p = np.asarray(params, dtype=np.float64)
    return np.array([[1 + p[0], p[1], p[2]], [p[3], 1 + p[4], p[5]], [p[6], p[7], 1.0]])


def _prepare(image: np.ndarray, size: tuple[int, int], factor: int) -> np.ndarray:
    """Gray, resized to ``size`` (H, W) then 1/``factor``, smoothed, percentiles 1–99 -> [0, 1)."""
    import cv2

    g = image.astype(np.float32)
    if g.ndim == 3:
        g = g[..., :3] @ np.float32([0.299, 0.587, 0.114])
    g = cv2.resize(g, (size[1] // factor, size[0] // factor), interpolation=cv2.INTER_AREA)
    g = cv2.GaussianBlur(g, (0, 0), 1.0)
    lo, hi = np.percentile(g, (1, 99))
    return np.clip((g - lo) / max(hi - lo, 1e-6), 0.0, 0.999)


def nmi(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalised mutual information (H(a) + H(b)) / H(a, b) of two [0,1) images on ``mask``: 1 to 2."""
    ia, ib = (a[mask] * BINS).astype(np.int64), (b[mask] * BINS).astype(np.int64)
    p = np.bincount(ia * BINS + ib, minlength=BINS * BINS).astype(np.float64)
    p /= max(p.sum(), 1.0)
    p2 = p.reshape(BINS, BINS)

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    joint = entropy(p)
    return (entropy(p2.sum(1)) + entropy(p2.sum(0))) / joint if joint > 0 else 1.0


class _Level:
    """The pairs at one scale, and the mean NMI of a homography given in full-resolution pixels."""

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], factor: int) -> None:
        self.factor = factor
        self.vis = [_prepare(v, v.shape[:2], factor) for v, _ in pairs]
        self.th = [_prepare(t, v.shape[:2], factor) for v, t in pairs]
        h, w = self.vis[0].shape
        self.mask = np.zeros((h, w), bool)
        self.mask[int(BORDER * h) : h - int(BORDER * h), int(BORDER * w) : w - int(BORDER * w)] = True

    def score(self, homography: np.ndarray) -> float:
        import cv2

        s = np.diag([self.factor, self.factor, 1.0])
        small = np.linalg.inv(s) @ homography @ s
        total = 0.0
        for v, t in zip(self.vis, self.th, strict=True):
            warped = cv2.warpPerspective(t, small, v.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=-1.0)
            inside = self.mask & (warped >= 0)
            total += nmi(v, np.clip(warped, 0.0, 0.999), inside) if inside.sum() > 100 else 1.0
        return total / len(self.vis)


def _translation_search(level: _Level) -> np.ndarray:
    """The best integer translation (coarse pixels) within ±1/8 of the image, as parameters."""
    h, w = level.vis[0].shape
    best, params = -np.inf, np.zeros(8)
    for dy in range(-(h // 8), h // 8 + 1):
        for dx in range(-(w // 8), w // 8 + 1):
            candidate = np.array([0, 0, dx * level.factor, 0, 0, dy * level.factor, 0, 0], dtype=np.float64)
            score = level.score(_homography(candidate))
            if score > best:
                best, params = score, candidate
    return params


def _check_structure(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    level = _Level(pairs, LEVELS[0])
    flat = [
        i
        for i, (v, t) in enumerate(zip(level.vis, level.th, strict=True))
        if min(v.std(), t.std()) < MIN_STRUCTURE
    ]
    if len(flat) == len(pairs):
        raise CalibrationError(
            f"all {len(pairs)} pair(s) are nearly flat in one camera (a covered lens, a blank wall, the "
            "sky): record both cameras looking at a scene with structure (buildings, people, vehicles)"
        )


def estimate_homography(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> CalibrationResult:
    """``pairs`` of (visible (H,W,3) or (H,W), thermal (h,w) of any size) from one rig -> the homography.
    Raises :class:`CalibrationError` when the recording cannot give a trustworthy answer."""
    from scipy.optimize import minimize

    if not pairs:
        raise CalibrationError("no pairs: record a few seconds of both cameras looking at a scene")
    _check_structure(pairs)
    params = np.zeros(8)
    for i, factor in enumerate(LEVELS):
        level = _Level(pairs, factor)
        if i == 0:
            params = _translation_search(level)
        result = minimize(
            lambda z, lv=level: -lv.score(_homography(z * PARAM_SCALE)),
            params / PARAM_SCALE,
            method="Powell",
            options={"xtol": 1e-3, "ftol": 1e-5, "maxfev": 2000},
        )
        params = result.x * PARAM_SCALE
    return _result(pairs, _homography(params))


def describe_homography(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], homography: np.ndarray
) -> CalibrationResult:
    """How well ``homography`` (from anywhere, e.g. the cameras' calibrations) aligns ``pairs``: the mean
    NMI without and with it, and the mean correction it applies."""
    return _describe(_Level(pairs, 1), homography, len(pairs))


def _describe(full: _Level, homography: np.ndarray, pairs: int) -> CalibrationResult:
    before, after = full.score(np.eye(3)), full.score(homography)
    return CalibrationResult(homography, before, after, _mean_shift(homography, full.vis[0].shape), pairs)


def _result(pairs: Sequence[tuple[np.ndarray, np.ndarray]], homography: np.ndarray) -> CalibrationResult:
    """The result, unless its NMI hardly stands out from the same images shifted by a quarter of their size
    (unrelated images score the same everywhere: the "optimum" is then noise)."""
    full = _Level(pairs, 1)
    result = _describe(full, homography, len(pairs))
    after, (h, w) = result.nmi, pairs[0][0].shape[:2]
    shifts = ((w / 4, 0), (-w / 4, 0), (0, h / 4), (0, -h / 4))
    far = max(full.score(np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ homography) for dx, dy in shifts)
    if after - far < MIN_PEAK:
        raise CalibrationError(
            f"the two cameras share almost no structure (NMI {after:.4f} at the best alignment, {far:.4f} a "
            "quarter image away): not the same view, or nothing visible to both; check the topics and record "
            "a scene with clear shapes"
        )
    return result


def _mean_shift(homography: np.ndarray, size: tuple[int, int]) -> float:
    h, w = size
    xs, ys = np.meshgrid(
        np.linspace(BORDER * w, (1 - BORDER) * w, 9), np.linspace(BORDER * h, (1 - BORDER) * h, 9)
    )
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    moved = homography @ points
    return float(np.hypot(*(moved[:2] / moved[2] - points[:2])).mean())


def checkerboard(
    vis: np.ndarray, thermal_u8: np.ndarray, homography: np.ndarray, cells: int = 8
) -> np.ndarray:
    """(H, W, 3) uint8: visible and registered thermal in alternating squares: edges that continue across
    the squares mean the cameras are aligned."""
    from ssvif_ros.fusion.registration import Registration

    h, w = vis.shape[:2]
    ir = Registration(homography, (h, w))(thermal_u8)
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy * cells // h) + (xx * cells // w)) % 2 == 0
    gray = vis if vis.ndim == 3 else np.dstack([vis] * 3)
    out = gray[..., :3].copy()
    out[board] = np.dstack([ir] * 3)[board]
    return out
