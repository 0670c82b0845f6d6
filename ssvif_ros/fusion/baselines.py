"""Classic, training-free fusion baselines: reference points for evaluation and something for the demo.

Three methods, all with the models' classic Y-channel colour handling: the visible RGB is converted to
YCbCr (BT.601 full range, JPEG convention, Cb/Cr offset 128), its luminance Y is fused with the infrared
image, the visible Cb/Cr are kept, and the result is converted back to RGB and clipped to uint8.

- ``average``: Y_f = (Y_vis + IR) / 2.
- ``max``: Y_f = max(Y_vis, IR) per pixel.
- ``laplacian``: Burt & Adelson Laplacian-pyramid fusion. Both luminances are decomposed with the 5-tap
  binomial kernel [1, 4, 6, 4, 1] / 16; each detail coefficient is taken from the source with the larger
  local energy (mean of squared coefficients in a ``window`` x ``window`` neighbourhood; ``window=1`` is
  the plain larger-absolute-value rule); the coarsest (low-pass) level is averaged.
- ``saliency``: the Laplacian-pyramid thermal-saliency rule of :mod:`ssvif_ros.models.guides` (the target
  and guide of the default model), so tables show what the model adds over its own closed-form rule.
- ``saliency_sides``: the same rule with a pixel's saliency measured against the thermal image to its left
  and right (a warm road is not salient, a person is).

Plain numpy (no OpenCV; torch only inside the two saliency rules, which reuse the model's), so evaluation
tables and the demo can use these without a model; the pyramid filters compute only the samples they keep
(640×480 Laplacian fusion: ~11 ms of one core).

Arrays: ``vis`` is H×W×3 RGB uint8 (or H×W / H×W×1 gray), ``ir`` is H×W uint8 (or H×W×1, or H×W×3
replicated gray, which is reduced to its luminance); the output is uint8 with the visible's shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

__all__ = [
    "BASELINES",
    "collapse_laplacian_pyramid",
    "fuse_average",
    "fuse_baseline",
    "fuse_laplacian",
    "fuse_max_luminance",
    "fuse_saliency",
    "fuse_saliency_sides",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "max_pyramid_levels",
]

# BT.601 full-range (JPEG) luma weights, as in ssvif_ros/models/color.py: Y = 0.299 R + 0.587 G + 0.114 B.
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# The pyramids use the Burt & Adelson generating kernel with a = 0.375, i.e. the binomial [1, 4, 6, 4, 1]/16,
# written out as slicing arithmetic in _reduce_axis and _expand_axis.
# A pyramid step is only taken while the current level's short side is at least this, so the coarsest
# level keeps a short side of >= 4 px.
_MIN_SIDE_TO_REDUCE = 8


# ---------------------------------------------------------------------------------------------- inputs


def _check_inputs(vis: np.ndarray, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and split the inputs: returns (vis as H×W or H×W×3 uint8, ir as H×W float32)."""
    vis = _check_uint8_image("vis", vis)
    ir = _check_uint8_image("ir", ir)
    if vis.shape[:2] != ir.shape[:2]:
        raise ValueError(
            f"ir size {ir.shape[:2]} (H, W) does not match vis size {vis.shape[:2]}; "
            "register/resize the infrared image to the visible one first"
        )
    ir_gray = _luminance(ir) if ir.ndim == 3 else ir.astype(np.float32)
    return vis, ir_gray


def _check_uint8_image(name: str, image: np.ndarray) -> np.ndarray:
    """H×W, H×W×1 or H×W×3 uint8 array; an H×W×1 array is returned as H×W."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got dtype {image.dtype} (convert 16-bit thermal first)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"{name} must be H×W, H×W×1 or H×W×3, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    return image


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """(H,W,3) RGB (uint8 or float) -> (H,W) float32 BT.601 luminance Y in [0,255]."""
    r, g, b = (rgb[:, :, c].astype(np.float32, copy=False) for c in range(3))
    wr, wg, wb = (np.float32(w) for w in _LUMA_WEIGHTS)
    return wr * r + wg * g + wb * b


# ---------------------------------------------------------------------------------------------- colour


def _fuse_luminance(
    vis: np.ndarray, ir: np.ndarray, fuse_y: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Apply ``fuse_y(y_vis, ir) -> y_fused`` (all (H,W) float32) with Y-channel colour handling.

    Gray ``vis`` (H×W or H×W×1) gives a gray result of the same shape; RGB keeps the visible Cb/Cr.
    """
    gray_or_rgb, ir_gray = _check_inputs(vis, ir)
    if gray_or_rgb.ndim == 2:
        fused_y = fuse_y(gray_or_rgb.astype(np.float32), ir_gray)
        return _to_uint8(fused_y).reshape(vis.shape)  # H×W or H×W×1, as given

    # Keeping Cb/Cr and converting back is, for BT.601 full range, exactly adding the luminance change to
    # each of R, G and B (the inverse matrix's Y column is [1, 1, 1]); this skips two 3×3 colour transforms.
    rgb = gray_or_rgb.astype(np.float32)
    y_vis = _luminance(rgb)
    fused_y = np.clip(fuse_y(y_vis, ir_gray), 0.0, 255.0)
    rgb += (fused_y - y_vis)[:, :, None]
    return _to_uint8(rgb)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip a float image to [0,255] and round half up to uint8; ``image`` is used as scratch space."""
    np.clip(image, 0.0, 255.0, out=image)
    image += 0.5
    return image.astype(np.uint8)  # truncation of a non-negative value = floor


# -------------------------------------------------------------------------------------------- pyramids


def max_pyramid_levels(shape: tuple[int, ...]) -> int:
    """How many pyramid steps an image of this (H, W, ...) size allows (coarsest short side >= 4 px)."""
    h, w = shape[0], shape[1]
    levels = 0
    while min(h, w) >= _MIN_SIDE_TO_REDUCE:
        h, w = (h + 1) // 2, (w + 1) // 2
        levels += 1
    return levels


def _along(axis: int, index: slice | int) -> tuple[slice | int, ...]:
    """Index tuple selecting ``index`` along ``axis`` (0 or 1) and everything along the others."""
    return (slice(None),) * axis + (index,)


def _mirror_pad(x: np.ndarray, axis: int, left: list[int], right: list[int]) -> np.ndarray:
    """``x`` with the samples at indices ``left`` prepended and ``right`` appended along ``axis``."""
    m = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = m + len(left) + len(right)
    padded = np.empty(shape, dtype=x.dtype)
    padded[_along(axis, slice(len(left), len(left) + m))] = x
    for k, i in enumerate(left):
        padded[_along(axis, k)] = x[_along(axis, i)]
    for k, i in enumerate(right):
        padded[_along(axis, len(left) + m + k)] = x[_along(axis, i)]
    return padded


def _reduce_axis(x: np.ndarray, axis: int) -> np.ndarray:
    """Binomial [1, 4, 6, 4, 1]/16 filter along ``axis``, evaluated at the even samples only (length
    n -> ceil(n/2)). Borders are 'mirror' (whole-sample symmetric: ... x2 x1 | x0 x1 x2 ...); n >= 3."""
    n = x.shape[axis]
    k = (n + 1) // 2
    p = _mirror_pad(x, axis, left=[2, 1], right=[n - 2, n - 3])  # p[j] = x[j - 2]
    out = np.multiply(p[_along(axis, slice(2, 2 + 2 * k, 2))], 6.0)
    out += p[_along(axis, slice(0, 2 * k, 2))]
    out += p[_along(axis, slice(4, 4 + 2 * k, 2))]
    odd = np.add(p[_along(axis, slice(1, 1 + 2 * k, 2))], p[_along(axis, slice(3, 3 + 2 * k, 2))])
    odd *= 4.0
    out += odd
    out *= 1.0 / 16.0
    return out


def _reduce(image: np.ndarray) -> np.ndarray:
    """(H,W) -> (ceil(H/2), ceil(W/2)): the Burt & Adelson REDUCE (binomial blur, keep even samples).

    Only the kept samples are computed (plain numpy slicing, several times faster than filtering the
    whole image with scipy.ndimage and decimating).
    """
    return _reduce_axis(_reduce_axis(image, axis=0), axis=1)


def _expand_axis(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Upsample ``x`` (length m = ceil(n/2) along ``axis``) to length ``n``: the polyphase form of zero
    insertion followed by the 2×[1, 4, 6, 4, 1]/16 kernel with mirror borders on the length-``n`` grid,
    out[2i] = (x[i-1] + 6 x[i] + x[i+1]) / 8 and out[2i+1] = (x[i] + x[i+1]) / 2.

    The mirror of the length-``n`` grid lands on x[1] on the left, and on the right on x[m-2] for odd
    ``n`` (the last sample sits on the grid's end) or x[m-1] for even ``n`` (a zero-inserted slot does).
    """
    m = x.shape[axis]
    if m == 1:  # a single sample: every output equals it
        return np.repeat(x, n, axis=axis)
    p = _mirror_pad(x, axis, left=[1], right=[m - 2 if n % 2 else m - 1])  # p[j] = x[j - 1]
    shape = list(x.shape)
    shape[axis] = n
    out = np.empty(shape, dtype=x.dtype)
    centre, after = p[_along(axis, slice(1, m + 1))], p[_along(axis, slice(2, m + 2))]
    even = out[_along(axis, slice(0, None, 2))]  # m samples
    np.multiply(centre, 6.0, out=even)
    even += p[_along(axis, slice(0, m))]
    even += after
    even *= 0.125
    odd = out[_along(axis, slice(1, None, 2))]  # n // 2 samples
    np.add(centre[_along(axis, slice(0, n // 2))], after[_along(axis, slice(0, n // 2))], out=odd)
    odd *= 0.5
    return out


def _expand(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(ceil(H/2), ceil(W/2)) -> (H,W): the Burt & Adelson EXPAND; exact for odd H or W."""
    if image.shape != ((shape[0] + 1) // 2, (shape[1] + 1) // 2):
        raise ValueError(f"cannot expand a {image.shape} level to {shape}")
    return _expand_axis(_expand_axis(image, shape[0], axis=0), shape[1], axis=1)


def _as_float_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"pyramids take a 2-D (H,W) image, got shape {image.shape}")
    return image.astype(np.float64 if image.dtype == np.float64 else np.float32)


def gaussian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """(H,W) image -> [G0 = image, G1, ..., Gn], Gk of size ceil(H/2^k) × ceil(W/2^k).

    ``n = min(levels, max_pyramid_levels(image.shape))``; float32 (float64 if the input is float64).
    """
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    pyramid = [_as_float_image(image)]
    for _ in range(min(levels, max_pyramid_levels(pyramid[0].shape))):
        pyramid.append(_reduce(pyramid[-1]))
    return pyramid


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """(H,W) image -> [L0, ..., L(n-1), Gn]: detail bands Lk = Gk - expand(Gk+1), then the low-pass Gn.

    :func:`collapse_laplacian_pyramid` inverts it exactly (up to float rounding).
    """
    gaussians = gaussian_pyramid(image, levels)
    details = [fine - _expand(coarse, fine.shape) for fine, coarse in itertools.pairwise(gaussians)]
    return [*details, gaussians[-1]]


def collapse_laplacian_pyramid(pyramid: list[np.ndarray]) -> np.ndarray:
    """[L0, ..., L(n-1), Gn] -> the (H,W) image: Gk = Lk + expand(Gk+1), from the coarsest level up."""
    if not pyramid:
        raise ValueError("cannot collapse an empty pyramid")
    image = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        image = detail + _expand(image, detail.shape)
    return image


# ----------------------------------------------------------------------------------- luminance rules


def _average_rule(y_vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    return 0.5 * (y_vis + ir)


def _max_rule(y_vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    return np.maximum(y_vis, ir)


def _box_sum(x: np.ndarray, window: int) -> np.ndarray:
    """(H,W) sum over a ``window`` x ``window`` neighbourhood (window odd), mirror borders."""
    h, w = x.shape
    padded = np.pad(x, window // 2, mode="reflect")  # numpy 'reflect' = scipy 'mirror'
    rows = padded[0:h].copy()
    for k in range(1, window):
        rows += padded[k : k + h]
    out = rows[:, 0:w].copy()
    for k in range(1, window):
        out += rows[:, k : k + w]
    return out


def _laplacian_rule(y_vis: np.ndarray, ir: np.ndarray, levels: int | None, window: int) -> np.ndarray:
    if levels is None:
        levels = max_pyramid_levels(y_vis.shape)
    pyr_vis = laplacian_pyramid(y_vis, levels)
    pyr_ir = laplacian_pyramid(ir, levels)
    fused = []
    for band_vis, band_ir in zip(pyr_vis[:-1], pyr_ir[:-1], strict=True):
        if window > 1:
            # Box filtering is linear, so the sign of the local-energy difference needs one filter only.
            vis_wins = _box_sum(band_vis * band_vis - band_ir * band_ir, window) >= 0.0
        else:
            vis_wins = np.abs(band_vis) >= np.abs(band_ir)
        fused.append(np.where(vis_wins, band_vis, band_ir))
    fused.append(0.5 * (pyr_vis[-1] + pyr_ir[-1]))
    return collapse_laplacian_pyramid(fused)


# -------------------------------------------------------------------------------------------- public


def fuse_average(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Mean of the visible luminance and the IR; visible chroma kept. uint8 with ``vis``'s shape."""
    return _fuse_luminance(vis, ir, _average_rule)


def fuse_max_luminance(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Per-pixel brighter of visible luminance and IR; visible chroma kept. uint8 with ``vis``'s shape."""
    return _fuse_luminance(vis, ir, _max_rule)


def fuse_laplacian(vis: np.ndarray, ir: np.ndarray, levels: int | None = 4, window: int = 3) -> np.ndarray:
    """Laplacian-pyramid fusion of the visible luminance and the IR; visible chroma kept.

    ``levels``: pyramid steps (detail bands); capped so the coarsest level's short side stays >= 4 px;
    ``None`` takes as many as the size allows. ``window``: side of the local-energy window for choosing
    detail coefficients (odd, >= 1; 1 = larger absolute value). A 3×3 window (default) makes the choice
    follow structures rather than single noisy coefficients, which avoids salt-and-pepper seams.
    Returns uint8 with ``vis``'s shape.
    """
    if levels is not None and (not isinstance(levels, int | np.integer) or levels < 0):
        raise ValueError(f"levels must be a non-negative int or None, got {levels!r}")
    if not isinstance(window, int | np.integer) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd int >= 1, got {window!r}")
    return _fuse_luminance(vis, ir, lambda y_vis, ir_gray: _laplacian_rule(y_vis, ir_gray, levels, window))


def _saliency_rule(y_vis: np.ndarray, ir: np.ndarray, surround: str = "ring") -> np.ndarray:
    import torch  # the rule is the model's own (one implementation); torch only when this baseline runs

    from ssvif_ros.models.guides import SaliencyRule

    def as_tensor(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32) / 255.0)[None, None]

    with torch.inference_mode():
        fused = SaliencyRule(surround=surround)(as_tensor(y_vis), as_tensor(ir))
    return fused[0, 0].numpy() * np.float32(255.0)


def fuse_saliency(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Laplacian-pyramid fusion with thermal saliency (:class:`ssvif_ros.models.guides.SaliencyRule`) on the
    luminance; visible chroma kept. uint8 with ``vis``'s shape."""
    return _fuse_luminance(vis, ir, _saliency_rule)


def fuse_saliency_sides(vis: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """:func:`fuse_saliency` with the saliency measured against the thermal image to the left and right
    (``SaliencyRule(surround="sides")``). uint8 with ``vis``'s shape."""
    return _fuse_luminance(vis, ir, lambda y_vis, ir_gray: _saliency_rule(y_vis, ir_gray, "sides"))


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "average": fuse_average,
    "max": fuse_max_luminance,
    "laplacian": fuse_laplacian,
    "saliency": fuse_saliency,
    "saliency_sides": fuse_saliency_sides,
}


def fuse_baseline(name: str, vis: np.ndarray, ir: np.ndarray, **options) -> np.ndarray:
    """Run the baseline registered as ``name`` (see :data:`BASELINES`); ``options`` go to that function."""
    try:
        fuse = BASELINES[name]
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; available: {', '.join(sorted(BASELINES))}") from None
    return fuse(vis, ir, **options)
