"""Fusion-quality metrics (EN, MI, VIF, Qabf, SSIM, MS-SSIM, ΔE) and segmentation IoU.

Inputs are numpy uint8 images, H×W (gray) or H×W×3 (RGB). Every metric except ΔE works on the gray
image ``round(0.299 R + 0.587 G + 0.114 B)`` (:func:`to_gray`). Metrics that compare the fused image F
with the sources are the *sum* over the two sources (VIS and IR), as is usual in the infrared–visible
fusion literature, so e.g. SSIM of a perfect copy of both is 2. ``METRIC_CONVENTIONS`` gives one line
per metric (for the README table); each function's docstring states the details.

Speed: :func:`evaluate_fusion` shares the gray conversions, the filtered moments of F and the first
MS-SSIM scale with SSIM; filters are separable and run in float32 on mean-centred images (variances
and covariances do not depend on the offset, which keeps float32 cancellation errors small).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

METRIC_NAMES: tuple[str, ...] = ("EN", "MI", "VIF", "Qabf", "SSIM", "MS_SSIM", "DeltaE")

METRIC_CONVENTIONS: dict[str, str] = {
    "EN": "Shannon entropy of gray F, 256 bins, bits (higher = more information).",
    "MI": "MI(F,VIS) + MI(F,IR) from 256×256 joint histograms of the gray images, natural log (nats).",
    "VIF": (
        "VIFp (Sheikh & Bovik vifp_mscale): 4 scales, Gaussian windows 17/9/5/3 (σ = N/5), "
        "σ_n² = 2, 'valid' filtering; VIF(VIS→F) + VIF(IR→F), source = reference."
    ),
    "Qabf": (
        "Xydeas–Petrović edge preservation, 3×3 Sobel (zero padding), Γg 0.9994 κg −15 σg 0.5, "
        "Γα 0.9879 κα −22 σα 0.8, L = 1; angle atan(gy/gx), π/2 where gx = 0; in [0, 1]."
    ),
    "SSIM": (
        "SSIM(F,VIS) + SSIM(F,IR) on gray: Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, L 255, "
        "mean over valid windows (no padding); max 2."
    ),
    "MS_SSIM": (
        "MS-SSIM(F,VIS) + MS-SSIM(F,IR), Wang's 5 scales (weights 0.0448 0.2856 0.3001 0.2363 "
        "0.1333), 2×2 average downsampling, same window as SSIM; needs ≥ 161 px a side (else NaN)."
    ),
    "DeltaE": "Mean CIEDE2000 between F and VIS in CIELAB (sRGB, D65, 2°); gray replicated to 3 channels.",
}

# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    """Validate one uint8 image (H×W, H×W×1 or H×W×3) and return it as an ndarray; errors name ``name``."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: expected dtype uint8 (values 0–255), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"{name}: expected shape H×W or H×W×3, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    return image


def _check_same_size(images: dict[str, np.ndarray]) -> tuple[int, int]:
    """All images share one H×W; the error lists each input's size."""
    sizes = {name: img.shape[:2] for name, img in images.items()}
    first_name, first = next(iter(sizes.items()))
    for name, size in sizes.items():
        if size != first:
            listed = ", ".join(f"{n} {s[0]}×{s[1]}" for n, s in sizes.items())
            raise ValueError(f"{name}: size {size[0]}×{size[1]} differs from {first_name} ({listed})")
    return first


def to_gray(image: np.ndarray, name: str = "image") -> np.ndarray:
    """H×W×3 RGB uint8 -> H×W uint8 ``round(0.299 R + 0.587 G + 0.114 B)`` (halves round up); H×W as is.

    Computed exactly in integers: ``(299 R + 587 G + 114 B + 500) // 1000``.
    """
    image = _check_image(image, name)
    if image.ndim == 2:
        return image
    rgb = image.astype(np.uint32)
    gray = (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000
    return gray.astype(np.uint8)


def _sources_and_fused(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, ...]:
    """Validate a (vis, ir, fused) triple and return their gray uint8 images (H×W each)."""
    images = {
        "vis": _check_image(vis, "vis"),
        "ir": _check_image(ir, "ir"),
        "fused": _check_image(fused, "fused"),
    }
    _check_same_size(images)
    return tuple(to_gray(img, name) for name, img in images.items())


def _float(gray: np.ndarray) -> np.ndarray:
    return gray.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Filtering helpers
# --------------------------------------------------------------------------------------------------


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of odd ``size``; its outer product is MATLAB's fspecial('gaussian')."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(x**2) / (2 * sigma**2))
    return (w / w.sum()).astype(np.float32)


def _filter_valid(stack: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (..., H, W) float32 with a symmetric odd 1-D kernel ``w``.

    Returns (..., H - n + 1, W - n + 1), n = len(w): only windows fully inside the image. Along H the
    sum runs over shifted row blocks (contiguous, folded by symmetry), which is several times faster
    than ``ndimage.correlate1d`` on that axis; along W ``correlate1d`` is used and cropped.
    """
    n = len(w)
    r = n // 2
    rows = stack.shape[-2] - n + 1
    out = w[r] * stack[..., r : r + rows, :]
    pair = np.empty_like(out)
    for k in range(r):
        np.add(stack[..., k : k + rows, :], stack[..., n - 1 - k : n - 1 - k + rows, :], out=pair)
        pair *= w[k]
        out += pair
    out = ndimage.correlate1d(out, w, axis=-1, mode="constant")
    return out[..., r : out.shape[-1] - r]


def _local_moments(
    images: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], w: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Local Gaussian means, variances and covariances ('valid' windows) of several same-size images.

    ``images``: float32 H×W arrays; ``pairs``: index pairs (i, j) whose covariance is wanted.
    Returns (means, variances, covariances), each a list of float32 (H-n+1)×(W-n+1) maps. Each image is
    centred on its global mean first (moments are exact in real arithmetic, float32 error shrinks).
    Variances are E[x²] − E[x]² without clamping (callers clamp as their reference does).
    """
    offsets = [float(img.mean(dtype=np.float64)) for img in images]
    centred = [img - np.float32(m) for img, m in zip(images, offsets, strict=True)]
    k = len(centred)
    stack = np.stack(centred + [c * c for c in centred] + [centred[i] * centred[j] for i, j in pairs])
    filtered = _filter_valid(stack, w)
    mu_c = filtered[:k]
    variances = [filtered[k + i] - mu_c[i] * mu_c[i] for i in range(k)]
    covariances = [filtered[2 * k + n] - mu_c[i] * mu_c[j] for n, (i, j) in enumerate(pairs)]
    means = [mu_c[i] + np.float32(offsets[i]) for i in range(k)]
    return means, variances, covariances


# --------------------------------------------------------------------------------------------------
# EN and MI
# --------------------------------------------------------------------------------------------------


def _entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0].astype(np.float64)
    p /= p.sum()
    return float(-(p * np.log2(p)).sum())


def _mutual_information_u8(a: np.ndarray, b: np.ndarray) -> float:
    """MI (nats) of two H×W uint8 images from their 256×256 joint histogram."""
    joint = np.bincount(a.ravel().astype(np.int32) * 256 + b.ravel(), minlength=256 * 256)
    p_ab = joint.reshape(256, 256).astype(np.float64) / a.size
    p_a = p_ab.sum(axis=1, keepdims=True)
    p_b = p_ab.sum(axis=0, keepdims=True)
    nz = p_ab > 0
    return float((p_ab[nz] * np.log(p_ab[nz] / (p_a * p_b)[nz])).sum())


def entropy(fused: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the gray fused image's 256-bin histogram; 0 (constant) … 8 (uniform)."""
    gray = to_gray(fused, "fused")
    return _entropy_bits(np.bincount(gray.ravel(), minlength=256))


def mutual_information(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """MI = MI(F, VIS) + MI(F, IR) in nats, each from the 256×256 joint histogram of the gray images.

    MI(X, Y) = Σ p(x,y) ln(p(x,y) / (p(x) p(y))); symmetric in the two sources.
    """
    gv, gi, gf = _sources_and_fused(vis, ir, fused)
    return _mutual_information_u8(gf, gv) + _mutual_information_u8(gf, gi)


# --------------------------------------------------------------------------------------------------
# VIF (pixel-domain, multi-scale)
# --------------------------------------------------------------------------------------------------

_VIF_WINDOW_SIZES = (17, 9, 5, 3)
_VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10


def _vif_scale_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Sizes of the valid moment maps at the 4 VIFp scales (a size ≤ 0 means the image is too small)."""
    sizes = []
    h, w = height, width
    for scale, n in enumerate(_VIF_WINDOW_SIZES):
        if scale > 0:
            h, w = (h - n + 2) // 2, (w - n + 2) // 2  # 'valid' filter, then keep every 2nd sample
        sizes.append((h - n + 1, w - n + 1))
    return sizes


def _vif_min_side() -> int:
    side = 1
    while min(min(s) for s in _vif_scale_sizes(side, side)) < 1:
        side += 1
    return side


def _vif_terms(sigma1_sq: np.ndarray, sigma2_sq: np.ndarray, sigma12: np.ndarray) -> tuple[float, float]:
    """Numerator and denominator sums of one VIFp scale, with the reference code's clamping rules.

    ``sigma1_sq``: reference (source) variance, ``sigma2_sq``: distorted (fused) variance, ``sigma12``:
    their covariance, all H×W float32 maps.
    """
    eps = np.float32(_VIF_EPS)
    s1 = np.maximum(sigma1_sq, 0)
    s2 = np.maximum(sigma2_sq, 0)
    g = sigma12 / (s1 + eps)
    sv = s2 - g * sigma12
    flat_ref = s1 < eps
    g[flat_ref] = 0
    sv[flat_ref] = s2[flat_ref]
    s1[flat_ref] = 0
    flat_dist = s2 < eps
    g[flat_dist] = 0
    sv[flat_dist] = 0
    negative = g < 0
    sv[negative] = s2[negative]
    g[negative] = 0
    np.maximum(sv, eps, out=sv)
    nsq = np.float32(_VIF_SIGMA_NSQ)
    num = np.log10(1 + g * g * s1 / (sv + nsq)).sum(dtype=np.float64)
    den = np.log10(1 + s1 / nsq).sum(dtype=np.float64)
    return float(num), float(den)


def _vif_sum(fused: np.ndarray, sources: Sequence[np.ndarray]) -> float:
    """Σ over sources of VIFp(source → fused); float32 H×W gray inputs, F's moments shared."""
    height, width = fused.shape
    if min(min(s) for s in _vif_scale_sizes(height, width)) < 1:
        raise ValueError(
            f"VIF needs images at least {_vif_min_side()} px on each side (4 scales, windows 17/9/5/3); "
            f"got {height}×{width}"
        )
    images = [fused, *sources]
    pairs = [(i, 0) for i in range(1, len(images))]  # (reference = source, distorted = fused)
    num = np.zeros(len(sources))
    den = np.zeros(len(sources))
    for scale, n in enumerate(_VIF_WINDOW_SIZES):
        w = _gaussian_1d(n, n / 5)
        if scale > 0:
            images = list(_filter_valid(np.stack(images), w)[:, ::2, ::2])
        _, variances, covariances = _local_moments(images, pairs, w)
        for k in range(len(sources)):
            dn, dd = _vif_terms(variances[k + 1], variances[0], covariances[k])
            num[k] += dn
            den[k] += dd
    return float(sum(nu / de if de > 0 else math.nan for nu, de in zip(num, den, strict=True)))


def vif(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """VIF = VIFp(VIS → F) + VIFp(IR → F): pixel-domain multi-scale VIF, source = reference.

    Follows Sheikh & Bovik's ``vifp_mscale.m``: 4 scales with Gaussian windows N = 17, 9, 5, 3
    (σ = N/5), noise variance σ_n² = 2, 'valid' filtering, and before scales 2–4 the images are
    filtered with that scale's window ('valid') and every second row/column kept. Each VIFp is
    Σ_scales Σ log10(1 + g² σ_ref² / (σ_v² + σ_n²)) / Σ_scales Σ log10(1 + σ_ref² / σ_n²); a copy of
    the source scores 1, so F = VIS = IR gives 2. Needs at least 41 px a side (ValueError otherwise).
    """
    gv, gi, gf = _sources_and_fused(vis, ir, fused)
    return _vif_sum(_float(gf), [_float(gv), _float(gi)])


# --------------------------------------------------------------------------------------------------
# Qabf (Xydeas–Petrović)
# --------------------------------------------------------------------------------------------------

_QABF_GAMMA_G, _QABF_KAPPA_G, _QABF_SIGMA_G = 0.9994, -15.0, 0.5
_QABF_GAMMA_A, _QABF_KAPPA_A, _QABF_SIGMA_A = 0.9879, -22.0, 0.8
_QABF_L = 1.0


def _sobel_strength_angle(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel edge strength and orientation of (K, H, W) float32 images (zero padding, 'same' size).

    gx = right − left and gy = top − bottom (row 0 at the top), i.e. correlation with the Sobel kernels
    [-1 0 1; -2 0 2; -1 0 1] and [1 2 1; 0 0 0; -1 -2 -1]; MATLAB's conv2 with those kernels negates
    both, which leaves the outputs unchanged (flipping only one would flip the sign of the angle).
    Orientation is atan(gy / gx) in (−π/2, π/2), and π/2 where gx = 0 (as in the common Qabf.m);
    it is an edge orientation modulo π as that code defines it, not a signed gradient direction.
    """
    p = np.pad(stack, ((0, 0), (1, 1), (1, 1)))
    smooth_rows = p[:, :-2, :] + 2 * p[:, 1:-1, :] + p[:, 2:, :]  # [1 2 1]ᵀ, (K, H, W+2)
    gx = smooth_rows[:, :, 2:] - smooth_rows[:, :, :-2]
    smooth_cols = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # [1 2 1], (K, H+2, W)
    gy = smooth_cols[:, :-2, :] - smooth_cols[:, 2:, :]
    strength = np.sqrt(gx * gx + gy * gy)  # exact squares: integer gradients up to ±1020
    zero_x = gx == 0
    angle = np.arctan(gy / np.where(zero_x, np.float32(1), gx))
    angle[zero_x] = np.float32(np.pi / 2)
    return strength, angle


def _qabf_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Per-pixel edge preservation Q^{SF} = Q_g · Q_α of one source S in F (H×W float32)."""
    lo = np.minimum(g_src, g_f)
    hi = np.maximum(g_src, g_f)
    rel_strength = np.divide(lo, hi, out=np.zeros_like(hi), where=hi > 0)  # 0 where either is 0
    rel_angle = 1 - np.abs(a_src - a_f) / np.float32(np.pi / 2)
    q_g = _QABF_GAMMA_G / (1 + np.exp(_QABF_KAPPA_G * (rel_strength - _QABF_SIGMA_G)))
    q_a = _QABF_GAMMA_A / (1 + np.exp(_QABF_KAPPA_A * (rel_angle - _QABF_SIGMA_A)))
    return q_g * q_a


def _qabf_gray(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    strength, angle = _sobel_strength_angle(np.stack([vis, ir, fused]))
    num = 0.0
    den = 0.0
    for k in range(2):
        weight = strength[k] ** _QABF_L if _QABF_L != 1 else strength[k]
        q = _qabf_preservation(strength[k], angle[k], strength[2], angle[2])
        num += float((q * weight).sum(dtype=np.float64))
        den += float(weight.sum(dtype=np.float64))
    return num / den if den > 0 else math.nan


def qabf(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """Qabf: Xydeas–Petrović gradient-based fusion quality, in [0, 1] (1 = all source edges kept).

    Gray images, 3×3 Sobel with zero padding ('same' size; so image borders count as edges unless the
    image is 0 there). Strength g = √(gx² + gy²); orientation α = atan(gy/gx), set to π/2 where gx = 0
    (the common MATLAB convention; no division by zero). For each source S: G = min(gS, gF)/max(gS, gF)
    (0 where either is 0), A = 1 − |αS − αF|/(π/2), Q^{SF} = Γg/(1+e^{κg(G−σg)}) · Γα/(1+e^{κα(A−σα)})
    with Γg 0.9994, κg −15, σg 0.5, Γα 0.9879, κα −22, σα 0.8. Qabf = Σ(Q^{AF} gA + Q^{BF} gB)/Σ(gA + gB)
    (weights gradient^L, L = 1). The sigmoids are not 0 at G = 0: an all-zero F scores ≈ 5e-4, not 0.
    NaN when neither source has any gradient.
    """
    gv, gi, gf = _sources_and_fused(vis, ir, fused)
    return _qabf_gray(_float(gv), _float(gi), _float(gf))


# --------------------------------------------------------------------------------------------------
# SSIM and MS-SSIM
# --------------------------------------------------------------------------------------------------

_SSIM_WINDOW = _gaussian_1d(11, 1.5)
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIDE = (len(_SSIM_WINDOW) - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # 161


def _ssim_cs(fused: np.ndarray, sources: Sequence[np.ndarray]) -> tuple[list[float], list[float]]:
    """Mean SSIM and mean contrast-structure term cs of F against each source at one scale.

    float32 H×W gray inputs (0–255 scale); means over the 'valid' 11×11 windows.
    """
    height, width = fused.shape
    n = len(_SSIM_WINDOW)
    if min(height, width) < n:
        raise ValueError(f"SSIM needs images at least {n} px on each side; got {height}×{width}")
    images = [fused, *sources]
    pairs = [(0, i) for i in range(1, len(images))]
    means, variances, covariances = _local_moments(images, pairs, _SSIM_WINDOW)
    c1, c2 = np.float32(_SSIM_C1), np.float32(_SSIM_C2)
    ssims, css = [], []
    for k in range(len(sources)):
        mu_f, mu_s = means[0], means[k + 1]
        cs_map = (2 * covariances[k] + c2) / (variances[0] + variances[k + 1] + c2)
        lum_map = (2 * mu_f * mu_s + c1) / (mu_f * mu_f + mu_s * mu_s + c1)
        css.append(float(cs_map.mean(dtype=np.float64)))
        ssims.append(float((lum_map * cs_map).mean(dtype=np.float64)))
    return ssims, css


def _downsample_2x2(image: np.ndarray) -> np.ndarray:
    """2×2 block average; an odd last row/column is paired with itself (Wang's imfilter 'symmetric')."""
    height, width = image.shape
    if height % 2 or width % 2:
        image = np.pad(image, ((0, height % 2), (0, width % 2)), mode="edge")
    return 0.25 * (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2])


def _ms_ssim_sum(
    fused: np.ndarray,
    sources: Sequence[np.ndarray],
    first_scale: tuple[list[float], list[float]] | None = None,
) -> float:
    """Σ over sources of MS-SSIM(F, source); ``first_scale`` reuses :func:`_ssim_cs` at full size."""
    height, width = fused.shape
    if min(height, width) < MS_SSIM_MIN_SIDE:
        raise ValueError(
            f"MS-SSIM needs images at least {MS_SSIM_MIN_SIDE} px on each side (5 scales of an 11-px "
            f"window); got {height}×{width}"
        )
    levels = len(MS_SSIM_WEIGHTS)
    images = [fused, *sources]
    log_ms = np.zeros(len(sources))
    for level in range(levels):
        if level > 0:
            images = [_downsample_2x2(img) for img in images]
        if level == 0 and first_scale is not None:
            ssims, css = first_scale
        else:
            ssims, css = _ssim_cs(images[0], images[1:])
        terms = ssims if level == levels - 1 else css
        for k, value in enumerate(terms):
            # Negative cs/ssim (anti-correlated structure) is clamped to 0, as in pytorch-msssim.
            log_ms[k] += MS_SSIM_WEIGHTS[level] * (math.log(value) if value > 0 else -math.inf)
    return float(np.exp(log_ms).sum())


def ssim(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """SSIM = SSIM(F, VIS) + SSIM(F, IR) on gray images, in [−2, 2] (2 = F equals both).

    Gaussian 11×11 window, σ = 1.5, K1 = 0.01, K2 = 0.03, L = 255, population (not sample)
    covariances, mean of the SSIM map over windows fully inside the image (no padding). Matches
    scikit-image ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=255)``, whose crop of (11−1)/2 px per side keeps exactly these windows.
    """
    gv, gi, gf = _sources_and_fused(vis, ir, fused)
    return float(sum(_ssim_cs(_float(gf), [_float(gv), _float(gi)])[0]))


def ms_ssim(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> float:
    """MS-SSIM = MS-SSIM(F, VIS) + MS-SSIM(F, IR) on gray images, in [0, 2].

    Wang, Simoncelli & Bovik (2003): 5 scales, weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333,
    Π_{j<5} cs_j^{w_j} · ssim_5^{w_5}, each term the mean over valid windows as in :func:`ssim`, 2×2
    average downsampling between scales (an odd last row/column is averaged with its own copy, as in
    Wang's msssim.m; pytorch-msssim zero-pads instead, so the two agree exactly when H and W are
    multiples of 16). Negative terms are clamped to 0 (as pytorch-msssim does).
    Raises ValueError for images under 161 px on a side.
    """
    gv, gi, gf = _sources_and_fused(vis, ir, fused)
    return _ms_ssim_sum(_float(gf), [_float(gv), _float(gi)])


# --------------------------------------------------------------------------------------------------
# ΔE (CIEDE2000)
# --------------------------------------------------------------------------------------------------

# sRGB (IEC 61966-2-1) primaries to XYZ, D65, as in scikit-image; reference white D65, 2° observer.
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=np.float32,
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_SRGB_TO_LINEAR = np.where(
    (v := np.arange(256, dtype=np.float64) / 255) > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92
).astype(np.float32)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """H×W×3 (or H×W gray, replicated) sRGB uint8 -> H×W×3 float32 CIELAB (D65, 2°)."""
    image = _check_image(image, "image")
    linear = _SRGB_TO_LINEAR[image]
    if linear.ndim == 2:
        linear = np.repeat(linear[..., None], 3, axis=-1)
    xyz = linear @ (_XYZ_FROM_RGB.T / _WHITE_D65[None, :])
    f = np.where(xyz > np.float32(0.008856), np.cbrt(xyz), np.float32(7.787) * xyz + np.float32(16 / 116))
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


_CIEDE_CHUNK = 32768  # pixels per block: temporaries stay in cache, several times faster than whole images


def _ciede2000_block(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 of (N, 3) float32 Lab rows (Sharma, Wu & Dalal 2005, kL = kC = kH = 1)."""
    f32 = np.float32
    pi, two_pi, deg = f32(np.pi), f32(2 * np.pi), f32(np.pi / 180)
    pow25_7 = f32(25.0**7)
    l1, a1, b1 = lab1[:, 0], lab1[:, 1], lab1[:, 2]
    l2, a2, b2 = lab2[:, 0], lab2[:, 1], lab2[:, 2]

    c_bar = 0.5 * (np.hypot(a1, b1) + np.hypot(a2, b2))
    c_bar7 = c_bar**7
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + pow25_7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.arctan2(b1, a1p)  # (−π, π]; atan2(0, 0) = 0 as the formula asks
    h1p[h1p < 0] += two_pi
    h2p = np.arctan2(b2, a2p)
    h2p[h2p < 0] += two_pi
    chroma_zero = (c1p * c2p) == 0

    dh = h2p - h1p
    dh[dh > pi] -= two_pi
    dh[dh < -pi] += two_pi
    dh[chroma_zero] = 0
    d_l = l2 - l1
    d_c = c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(0.5 * dh)

    l_bar = 0.5 * (l1 + l2)
    c_bar_p = 0.5 * (c1p + c2p)
    # Mean hue: half the sum, moved by π when the hues lie more than π apart (the shorter arc);
    # the plain sum where a chroma is 0.
    h_bar = h1p + h2p
    around = (np.abs(h1p - h2p) > pi) & ~chroma_zero
    below = h_bar < two_pi
    h_bar[~chroma_zero] *= 0.5
    h_bar[around & below] += pi
    h_bar[around & ~below] -= pi

    t = (
        1
        - 0.17 * np.cos(h_bar - 30 * deg)
        + 0.24 * np.cos(2 * h_bar)
        + 0.32 * np.cos(3 * h_bar + 6 * deg)
        - 0.20 * np.cos(4 * h_bar - 63 * deg)
    )
    d_theta = 30 * deg * np.exp(-(((h_bar / deg - 275) / 25) ** 2))
    c_bar_p7 = c_bar_p**7
    r_c = 2 * np.sqrt(c_bar_p7 / (c_bar_p7 + pow25_7))
    l50 = (l_bar - 50) ** 2
    s_l = 1 + 0.015 * l50 / np.sqrt(20 + l50)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -np.sin(2 * d_theta) * r_c
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(np.maximum(tl * tl + tc * tc + th * th + r_t * tc * th, 0))


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 colour difference of two (..., 3) CIELAB arrays -> (...) float32.

    Sharma, Wu & Dalal (2005) with kL = kC = kH = 1; float32, computed in blocks of pixels.
    """
    if lab1.shape != lab2.shape or lab1.shape[-1] != 3:
        raise ValueError(
            f"ciede2000: expected two (..., 3) Lab arrays of one shape, got {lab1.shape}, {lab2.shape}"
        )
    flat1 = np.ascontiguousarray(lab1, dtype=np.float32).reshape(-1, 3)
    flat2 = np.ascontiguousarray(lab2, dtype=np.float32).reshape(-1, 3)
    out = np.empty(flat1.shape[0], dtype=np.float32)
    for start in range(0, flat1.shape[0], _CIEDE_CHUNK):
        block = slice(start, start + _CIEDE_CHUNK)
        out[block] = _ciede2000_block(flat1[block], flat2[block])
    return out.reshape(lab1.shape[:-1])


def delta_e(vis: np.ndarray, fused: np.ndarray) -> float:
    """ΔE: mean CIEDE2000 between F and VIS in CIELAB (sRGB, D65, 2°); 0 when F = VIS.

    A gray F (or VIS) is replicated to three channels, so a gray F against a colour VIS is penalised
    for the lost chroma. Lab conversion as scikit-image ``rgb2lab`` (float32 here).
    """
    images = {"vis": _check_image(vis, "vis"), "fused": _check_image(fused, "fused")}
    _check_same_size(images)
    return float(ciede2000(rgb_to_lab(images["fused"]), rgb_to_lab(images["vis"])).mean(dtype=np.float64))


# --------------------------------------------------------------------------------------------------
# All metrics at once
# --------------------------------------------------------------------------------------------------


def evaluate_fusion(vis: np.ndarray, ir: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """All seven metrics of one (vis, ir, fused) triple, sharing the gray conversions and filtering.

    vis, ir, fused: uint8 H×W or H×W×3, the same H×W (errors name the input at fault).
    Returns {"EN", "MI", "VIF", "Qabf", "SSIM", "MS_SSIM", "DeltaE"} as floats, equal to the
    individual functions. MS_SSIM is NaN (not an error) when a side is under 161 px, so small datasets
    can still be scored; :func:`ms_ssim` itself raises. Conventions: ``METRIC_CONVENTIONS``.
    """
    images = {
        "vis": _check_image(vis, "vis"),
        "ir": _check_image(ir, "ir"),
        "fused": _check_image(fused, "fused"),
    }
    height, width = _check_same_size(images)
    gray = {name: to_gray(img, name) for name, img in images.items()}
    gv, gi, gf = (_float(gray[n]) for n in ("vis", "ir", "fused"))

    result: dict[str, float] = {}
    result["EN"] = _entropy_bits(np.bincount(gray["fused"].ravel(), minlength=256))
    result["MI"] = _mutual_information_u8(gray["fused"], gray["vis"]) + _mutual_information_u8(
        gray["fused"], gray["ir"]
    )
    result["VIF"] = _vif_sum(gf, [gv, gi])
    result["Qabf"] = _qabf_gray(gv, gi, gf)
    first_scale = _ssim_cs(gf, [gv, gi])
    result["SSIM"] = float(sum(first_scale[0]))
    if min(height, width) >= MS_SSIM_MIN_SIDE:
        result["MS_SSIM"] = _ms_ssim_sum(gf, [gv, gi], first_scale=first_scale)
    else:
        result["MS_SSIM"] = math.nan
    result["DeltaE"] = float(
        ciede2000(rgb_to_lab(images["fused"]), rgb_to_lab(images["vis"])).mean(dtype=np.float64)
    )
    return result


# --------------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")


def _images_by_stem(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{role} folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise ValueError(
                    f"{role} folder {folder}: two images share the stem '{path.stem}': "
                    f"{found[path.stem].name} and {path.name}"
                )
            found[path.stem] = path
    return found


def read_image_u8(path: str | Path) -> np.ndarray:
    """Read an 8-bit image with PIL: gray files -> H×W uint8, anything else -> H×W×3 RGB uint8."""
    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            raise ValueError(f"{path}: {img.mode} image; the fusion metrics need 8-bit images")
        mode = "L" if img.mode in ("L", "LA", "1") else "RGB"
        return np.asarray(img.convert(mode), dtype=np.uint8)


def _json_safe(value: float | str) -> float | str | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate_fusion_folders(
    vis_dir: str | Path,
    ir_dir: str | Path,
    fused_dir: str | Path,
    out_csv: str | Path | None = None,
    out_json: str | Path | None = None,
) -> tuple[list[dict[str, float | str]], dict[str, float]]:
    """Score every visible image in ``vis_dir`` against its IR and fused images (matched by file stem).

    Images are .png/.jpg/.jpeg/.bmp; each visible stem needs an IR and a fused image with that stem
    (a missing one is a FileNotFoundError naming the expected file); extra IR/fused images are ignored.
    Returns (per_image, mean): per_image rows are {"name": stem, **metrics}; mean averages each metric
    over the images where it is finite (MS_SSIM is NaN for images under 161 px; a warning says how
    many were left out). ``out_csv``: one row per image then a "mean" row. ``out_json``:
    {"per_image": [...], "mean": {...}, "count": n}, with NaN written as null.
    """
    vis_dir, ir_dir, fused_dir = Path(vis_dir), Path(ir_dir), Path(fused_dir)
    vis_files = _images_by_stem(vis_dir, "visible")
    ir_files = _images_by_stem(ir_dir, "infrared")
    fused_files = _images_by_stem(fused_dir, "fused")
    if not vis_files:
        raise FileNotFoundError(f"visible folder {vis_dir} has no {'/'.join(IMAGE_SUFFIXES)} images")
    suffixes = "|".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
    per_image: list[dict[str, float | str]] = []
    for stem, vis_path in vis_files.items():
        if stem not in ir_files:
            raise FileNotFoundError(f"infrared image missing: {ir_dir / stem}.({suffixes}) for {vis_path}")
        if stem not in fused_files:
            raise FileNotFoundError(f"fused image missing: {fused_dir / stem}.({suffixes}) for {vis_path}")
        paths = {"vis": vis_path, "ir": ir_files[stem], "fused": fused_files[stem]}
        try:
            scores = evaluate_fusion(**{role: read_image_u8(path) for role, path in paths.items()})
        except (TypeError, ValueError) as err:
            listed = ", ".join(str(path) for path in paths.values())
            raise type(err)(f"{stem}: {err} (files {listed})") from err
        per_image.append({"name": stem, **scores})

    mean: dict[str, float] = {}
    for key in METRIC_NAMES:
        values = np.array([row[key] for row in per_image], dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            warnings.warn(
                f"{key}: {int((~finite).sum())} of {len(values)} images have no value (NaN) and are left "
                "out of the mean",
                stacklevel=2,
            )
        mean[key] = float(values[finite].mean()) if finite.any() else math.nan

    if out_csv is not None:
        out_csv = Path(out_csv)
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        with out_csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["name", *METRIC_NAMES])
            writer.writeheader()
            writer.writerows(per_image)
            writer.writerow({"name": "mean", **mean})
    if out_json is not None:
        out_json = Path(out_json)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "per_image": [{k: _json_safe(v) for k, v in row.items()} for row in per_image],
            "mean": {k: _json_safe(v) for k, v in mean.items()},
            "count": len(per_image),
        }
        out_json.write_text(json.dumps(payload, indent=2) + "\n")
    return per_image, mean


# --------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = target class, columns = predicted class.

    ``pred`` and ``target``: integer label maps of one shape. Pixels whose target is ``ignore_index``
    are skipped; any other label outside [0, num_classes) is a ValueError.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} differs from target shape {target.shape}")
    for name, labels in (("pred", pred), ("target", target)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    keep = target != ignore_index
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    for name, labels in (("target", t), ("pred", p)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            bad = labels[(labels < 0) | (labels >= num_classes)][0]
            raise ValueError(f"{name}: label {bad} outside [0, {num_classes}) (ignore_index={ignore_index})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU_c = TP / (TP + FP + FN) per class from a confusion matrix; NaN for a class absent from both."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    iou = np.full(tp.shape, np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    return iou


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in target or prediction (nanmean); NaN if none is."""
    iou = iou_per_class(cm)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else math.nan
