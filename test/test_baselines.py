"""Classic fusion baselines (ssvif_ros/fusion/baselines.py): shapes, colour handling, the fusion rules,
pyramids."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ssvif_ros.fusion.baselines import (
    BASELINES,
    collapse_laplacian_pyramid,
    fuse_average,
    fuse_baseline,
    fuse_laplacian,
    fuse_max_luminance,
    gaussian_pyramid,
    laplacian_pyramid,
)

METHODS = sorted(BASELINES)

# Independent reference for the colour checks: the full BT.601 (JPEG) matrices, Cb/Cr offset 128.
RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCBCR_OFFSET = np.array([0.0, 128.0, 128.0])


def to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ RGB_TO_YCBCR.T + YCBCR_OFFSET


def luminance(rgb: np.ndarray) -> np.ndarray:
    return to_ycbcr(rgb)[..., 0]


def colourful(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Saturated but unclipped colours: smooth hue ramps plus noise, RGB values in [30, 225]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([128 + 90 * np.sin(6 * xx + 2 * c) * np.cos(4 * yy - c) for c in range(3)], axis=-1)
    rgb += rng.normal(0, 5, rgb.shape)
    return np.clip(np.rint(rgb), 30, 225).astype(np.uint8)


def random_u8(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------------------------------------------- shapes, dtypes


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [(48, 64), (33, 47), (5, 3), (1, 1)])
def test_output_shape_and_dtype_follow_the_visible(method: str, size: tuple[int, int]):
    ir = random_u8(size, 1)
    for vis in (random_u8((*size, 3), 0), random_u8(size, 0), random_u8((*size, 1), 0)):
        fused = fuse_baseline(method, vis, ir)
        assert fused.dtype == np.uint8
        assert fused.shape == vis.shape


@pytest.mark.parametrize("method", METHODS)
def test_replicated_three_channel_ir_equals_single_channel(method: str):
    vis, ir = random_u8((31, 40, 3), 0), random_u8((31, 40), 1)
    ir3 = np.repeat(ir[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(fuse_baseline(method, vis, ir3), fuse_baseline(method, vis, ir))
    np.testing.assert_array_equal(fuse_baseline(method, vis, ir[:, :, None]), fuse_baseline(method, vis, ir))


# ------------------------------------------------------------------------------------------- rules


def test_average_of_gray_inputs_is_the_mean():
    a, b = random_u8((37, 29), 0), random_u8((37, 29), 1)
    fused = fuse_average(a, b).astype(np.float64)
    assert np.abs(fused - (a.astype(np.float64) + b) / 2).max() <= 0.5


def test_max_of_gray_inputs_is_the_brighter():
    a, b = random_u8((37, 29), 0), random_u8((37, 29), 1)
    np.testing.assert_array_equal(fuse_max_luminance(a, b), np.maximum(a, b))


def test_max_picks_the_brighter_luminance_per_pixel():
    vis = colourful(40, 50)
    y_vis = luminance(vis)
    ir = random_u8((40, 50), 2)
    fused = fuse_max_luminance(vis, ir)
    unclipped = (fused > 0).all(axis=-1) & (fused < 255).all(axis=-1)
    ir_brighter = (ir > y_vis + 2) & unclipped
    vis_brighter = ir < y_vis - 2
    assert ir_brighter.sum() > 100 and vis_brighter.sum() > 100
    assert np.abs(luminance(fused)[ir_brighter] - ir[ir_brighter]).max() <= 1.0
    assert np.abs(fused.astype(int) - vis)[vis_brighter].max() <= 1


@pytest.mark.parametrize("method", METHODS)
def test_ir_equal_to_the_visible_luminance_gives_back_the_visible(method: str):
    vis = colourful(45, 61)
    ir = np.rint(luminance(vis)).astype(np.uint8)
    fused = fuse_baseline(method, vis, ir)
    assert np.abs(fused.astype(int) - vis).max() <= 1


@pytest.mark.parametrize("method", METHODS)
def test_visible_chroma_is_kept_whatever_the_ir(method: str):
    vis = colourful(45, 61, seed=3)
    ir = random_u8((45, 61), 4) // 2 + 64  # luminance changes a lot, but rarely pushes RGB out of range
    fused = fuse_baseline(method, vis, ir)
    unclipped = (fused > 0).all(axis=-1) & (fused < 255).all(axis=-1)
    assert unclipped.mean() > 0.9
    chroma_error = np.abs(to_ycbcr(fused)[..., 1:] - to_ycbcr(vis)[..., 1:])[unclipped]
    assert chroma_error.max() <= 1.0  # the uint8 rounding of R, G, B only
    assert np.abs(luminance(fused) - luminance(vis)).mean() > 5  # and the luminance did change


@pytest.mark.parametrize("size", [(64, 64), (37, 51), (6, 9)])
@pytest.mark.parametrize("options", [{}, {"levels": None}, {"window": 1}, {"levels": 6, "window": 5}])
def test_laplacian_of_an_image_with_itself_returns_it(size: tuple[int, int], options: dict):
    gray = random_u8(size, 5)
    assert np.abs(fuse_laplacian(gray, gray, **options).astype(int) - gray).max() <= 1
    rgb = random_u8((*size, 3), 6)
    assert np.abs(fuse_laplacian(rgb, rgb, **options).astype(int) - rgb).max() <= 1


def test_laplacian_with_no_levels_is_the_average():
    vis, ir = random_u8((30, 41, 3), 7), random_u8((30, 41), 8)
    np.testing.assert_array_equal(fuse_laplacian(vis, ir, levels=0), fuse_average(vis, ir))


def test_laplacian_keeps_an_ir_edge_and_a_visible_texture():
    """Top half: a fine texture only in the visible. Bottom half: a sharp step only in the IR."""
    h, w = 96, 96
    yy, xx = np.mgrid[0:h, 0:w]
    vis = np.full((h, w), 128.0)
    vis[: h // 2] += 40 * np.sign(np.sin(np.pi * xx[: h // 2] / 2) * np.sin(np.pi * yy[: h // 2] / 2) + 1e-9)
    ir = np.full((h, w), 100.0)
    ir[h // 2 :, w // 2 :] = 220.0
    ir[h // 2 :, : w // 2] = 40.0
    vis, ir = vis.astype(np.uint8), ir.astype(np.uint8)

    def edge_gradient(image: np.ndarray) -> float:
        """Mean horizontal step across the IR edge, bottom half away from the middle row."""
        rows = image[h // 2 + 12 : h - 4].astype(np.float64)
        return float(np.abs(np.diff(rows, axis=1))[:, w // 2 - 2 : w // 2 + 1].max(axis=1).mean())

    def texture_std(image: np.ndarray) -> float:
        return float(image[4 : h // 2 - 12, 4:-4].astype(np.float64).std())

    lap, avg = fuse_laplacian(vis, ir), fuse_average(vis, ir)
    assert edge_gradient(ir) == pytest.approx(180.0)
    assert edge_gradient(lap) > 1.5 * edge_gradient(avg)
    assert edge_gradient(lap) > 0.7 * edge_gradient(ir)
    assert texture_std(lap) > 1.5 * texture_std(avg)
    assert texture_std(lap) > 0.8 * texture_std(vis)


# ---------------------------------------------------------------------------------------- pyramids


@pytest.mark.parametrize("size", [(64, 48), (33, 47), (15, 8), (9, 100), (4, 4)])
def test_laplacian_pyramid_collapses_back_to_the_image(size: tuple[int, int]):
    image = np.random.default_rng(9).uniform(0, 255, size)
    pyramid = laplacian_pyramid(image, levels=5)
    for k, band in enumerate(pyramid):
        assert band.shape == (-(-size[0] // 2**k), -(-size[1] // 2**k))
    assert min(pyramid[-1].shape) >= 4 or len(pyramid) == 1
    np.testing.assert_allclose(collapse_laplacian_pyramid(pyramid), image, atol=1e-9)


@pytest.mark.parametrize("size", [(64, 48), (33, 47), (17, 20)])
def test_flat_image_has_no_detail_at_any_level(size: tuple[int, int]):
    """Expanding a constant gives the same constant, borders and odd sizes included."""
    pyramid = laplacian_pyramid(np.full(size, 77.0), levels=4)
    assert len(pyramid) > 2
    for band in pyramid[:-1]:
        assert np.abs(band).max() < 1e-9
    np.testing.assert_allclose(pyramid[-1], 77.0)


@pytest.mark.parametrize("size", [(40, 30), (33, 47)])
def test_pyramid_matches_burt_adelson_reduce_and_expand(size: tuple[int, int]):
    """Reference: blur with [1,4,6,4,1]/16 and decimate; expand by zero insertion and blur with twice it."""
    kernel = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16

    def blur(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        return ndimage.correlate1d(ndimage.correlate1d(x, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")

    image = np.random.default_rng(10).uniform(0, 255, size)
    g0, g1 = gaussian_pyramid(image, levels=1)
    np.testing.assert_allclose(g1, blur(image, kernel)[::2, ::2], atol=1e-9)
    zero_inserted = np.zeros(size)
    zero_inserted[::2, ::2] = g1
    l0 = laplacian_pyramid(image, levels=1)[0]
    np.testing.assert_allclose(l0, g0 - blur(zero_inserted, 2 * kernel), atol=1e-9)


# -------------------------------------------------------------------------------- registry, errors


def test_registry_names_and_options():
    assert set(BASELINES) == {"average", "max", "laplacian", "saliency", "saliency_sides"}
    vis, ir = random_u8((32, 32, 3), 11), random_u8((32, 32), 12)
    np.testing.assert_array_equal(
        fuse_baseline("laplacian", vis, ir, levels=2, window=1), fuse_laplacian(vis, ir, levels=2, window=1)
    )


def test_unknown_baseline_lists_the_names():
    with pytest.raises(KeyError, match="average, laplacian, max"):
        fuse_baseline("wavelet", random_u8((8, 8), 0), random_u8((8, 8), 1))


@pytest.mark.parametrize(
    ("vis", "ir", "match"),
    [
        (random_u8((20, 30, 3), 0), random_u8((20, 31), 1), r"ir size \(20, 31\).*vis size \(20, 30\)"),
        (random_u8((20, 30, 3), 0).astype(np.float32), random_u8((20, 30), 1), "vis must be uint8.*float32"),
        (random_u8((20, 30, 3), 0), random_u8((20, 30), 1).astype(np.uint16), "ir must be uint8.*uint16"),
        (
            random_u8((20, 30, 4), 0),
            random_u8((20, 30), 1),
            r"vis must be H×W, H×W×1 or H×W×3.*4\)",
        ),
        (random_u8((20, 30, 3), 0), random_u8((2, 20, 30), 1), r"ir must be H×W.*\(2, 20, 30\)"),
        (random_u8((0, 30), 0), random_u8((0, 30), 1), "vis is empty"),
        ([[1, 2], [3, 4]], random_u8((2, 2), 1), "vis must be a numpy array"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_inputs_name_the_input(method: str, vis, ir, match: str):
    with pytest.raises(ValueError, match=match):
        fuse_baseline(method, vis, ir)


@pytest.mark.parametrize("options", [{"levels": -1}, {"levels": 2.5}, {"window": 2}, {"window": 0}])
def test_bad_laplacian_options(options: dict):
    with pytest.raises(ValueError, match=next(iter(options))):
        fuse_laplacian(random_u8((16, 16), 0), random_u8((16, 16), 1), **options)


# ---------------------------------------------------------------------------------------- real data


def test_real_pair_laplacian_is_sharper_than_average(shared_data):
    """One MSRS night pair: every baseline runs at 640×480; the pyramid keeps more detail than the mean."""
    folder = shared_data / "msrs_subset"
    name = sorted(p.name for p in (folder / "vi").glob("*N.png"))[0]
    vis = np.asarray(Image.open(folder / "vi" / name).convert("RGB"))
    ir = np.asarray(Image.open(folder / "ir" / name).convert("L"))

    def spatial_frequency(rgb: np.ndarray) -> float:
        y = luminance(rgb)
        return float(np.sqrt(np.mean(np.diff(y, axis=0) ** 2) + np.mean(np.diff(y, axis=1) ** 2)))

    fused = {method: fuse_baseline(method, vis, ir) for method in METHODS}
    assert all(image.shape == vis.shape and image.dtype == np.uint8 for image in fused.values())
    assert spatial_frequency(fused["laplacian"]) > 1.3 * spatial_frequency(fused["average"])
