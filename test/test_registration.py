"""Homography registration: pass-through, resize, known motions to sub-pixel accuracy, validation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ssvif_ros.fusion.registration import Registration, homography_from_intrinsics

RNG = np.random.default_rng(11)


def _smooth_image(height: int, width: int, dtype: type = np.uint8) -> np.ndarray:
    """Low-frequency content (bilinear warps of it are nearly exact)."""
    coarse = RNG.random((max(height // 8, 2), max(width // 8, 2))).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    top = 255 if dtype == np.uint8 else 60000
    return np.clip(smooth * top, 0, top).astype(dtype)


def _blob(height: int, width: int, x: float, y: float, dtype: type = np.uint16) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    top = 255 if dtype == np.uint8 else 60000
    return (np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2)) * top).astype(dtype)


def _centroid(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return float((weights * xs).sum() / weights.sum()), float((weights * ys).sum() / weights.sum())


def _rigid(angle_deg: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def test_identity_same_size_is_a_passthrough() -> None:
    thermal = _smooth_image(30, 40)
    assert Registration(np.eye(3), (30, 40))(thermal) is thermal
    assert Registration(np.eye(3) * 2.0, (30, 40))(thermal) is thermal  # scale of H is irrelevant


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_identity_other_size_is_a_bilinear_resize(dtype: type) -> None:
    thermal = _smooth_image(24, 32, dtype)
    registration = Registration(np.eye(3), (48, 64))
    out = registration(thermal)
    expected = np.asarray(Image.fromarray(thermal).resize((64, 48), Image.Resampling.BILINEAR))
    expected = expected.astype(np.int64)
    assert out.dtype == dtype and out.flags.writeable
    assert np.abs(out.astype(np.int64) - expected).max() <= 1  # OpenCV and Pillow round differently
    # the general warp path follows the same pixel convention as the resize (checked by forcing it)
    registration.is_identity = False
    tolerance = 1 if dtype == np.uint8 else 257
    assert np.abs(registration(thermal).astype(np.int64) - expected).max() <= tolerance


@pytest.mark.parametrize(("size", "max_diff", "mean_diff"), [((45, 60), 8, 1.5), ((20, 30), 25, 1.5)])
def test_shrinking_stays_within_the_stated_tolerance_of_pillow(
    size: tuple[int, int], max_diff: int, mean_diff: float
) -> None:
    """Against the Pillow antialiased resize it replaced, on a noisy image (harder than the real frames of
    the module docstring): a slight shrink (640×512 → 640×480 cameras) is bilinear, a shrink of more than 2×
    averages areas (no aliasing); single pixels at sharp edges differ most."""
    thermal = np.clip(_smooth_image(48, 64).astype(int) + RNG.integers(-20, 21, (48, 64)), 0, 255)
    thermal = thermal.astype(np.uint8)
    out = Registration(np.eye(3), size)(thermal).astype(int)
    pillow = np.asarray(Image.fromarray(thermal).resize(size[::-1], Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(out - pillow).max() <= max_diff and np.abs(out - pillow).mean() < mean_diff


def test_pure_scaling_equals_a_resize() -> None:
    thermal = _smooth_image(40, 60)
    # scale by 2 about the top-left image corner (-0.5, -0.5): thermal pixel x → 2x + 0.5
    scaling = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    out = Registration(scaling, (40, 60))(thermal)
    quadrant = np.asarray(Image.fromarray(thermal[:20, :30]).resize((60, 40), Image.Resampling.BILINEAR))
    # the crop's last row/column clamp at its edge, the full image interpolates on: compare the rest
    assert np.abs(out[:-2, :-2].astype(int) - quadrant[:-2, :-2]).max() <= 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize(
    "homography",
    [
        _rigid(0.0, 5.25, -3.5),  # translation
        _rigid(12.0, 4.2, -3.1),  # rotation about the origin + translation
        np.array([[1.05, 0.02, -2.0], [-0.01, 0.97, 1.5], [2e-4, -1e-4, 1.0]]),  # perspective
    ],
)
def test_known_homography_moves_a_dot_where_expected(dtype: type, homography: np.ndarray) -> None:
    x, y = 30.3, 20.7
    out = Registration(homography, (60, 80))(_blob(60, 80, x, y, dtype))
    assert out.dtype == dtype
    projected = homography @ np.array([x, y, 1.0])
    expected = projected[:2] / projected[2]
    assert np.allclose(_centroid(out), expected, atol=0.1)


def test_resize_and_warp_together_use_native_thermal_pixels() -> None:
    # Worked example of the module docstring: thermal 40×32 → visible 80×64, shift by (-12, -5).
    shift = np.array([[1.0, 0.0, -12.0], [0.0, 1.0, -5.0], [0.0, 0.0, 1.0]])
    native_x, native_y = 20.25, 15.75  # resized: ((20.25 + 0.5) · 2 - 0.5, ...) = (41.0, 32.0)
    out = Registration(shift, (64, 80))(_blob(32, 40, native_x, native_y))
    # The blob is 2× wider after the resize, so compare the peak position via a centroid.
    assert np.allclose(_centroid(out), (41.0 - 12.0, 32.0 - 5.0), atol=0.15)


def test_native_calibration_converts_as_documented() -> None:
    # A calibration on native thermal pixels (320×256 → visible 640×512) becomes H_native · S⁻¹.
    h_native = np.array([[1.9, 0.01, -20.0], [0.02, 2.1, -7.0], [1e-5, 0.0, 1.0]])
    resize = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])  # W/w = H/h = 2
    registration = Registration(h_native @ np.linalg.inv(resize), (512, 640))
    x_src, y_src, _ = registration.source_coordinates((256, 320))
    native = np.linalg.inv(h_native) @ np.array([100.0, 200.0, 1.0])
    assert np.allclose((x_src[200, 100], y_src[200, 100]), native[:2] / native[2])


def test_round_trip_with_the_inverse() -> None:
    thermal = _smooth_image(60, 80)
    homography = _rigid(7.0, 3.0, -2.0)
    there = Registration(homography, (60, 80))(thermal)
    back = Registration(np.linalg.inv(homography), (60, 80))(there)
    interior = (slice(12, -12), slice(12, -12))  # away from the zero-filled, uncovered border
    difference = np.abs(back[interior].astype(int) - thermal[interior])
    assert difference.max() <= 6 and difference.mean() < 1.0


def test_uint16_values_are_preserved_by_a_translation() -> None:
    thermal = RNG.integers(1000, 60000, (20, 30)).astype(np.uint16)
    out = Registration(_rigid(0.0, 3.0, 2.0), (20, 30))(thermal)  # integer shift: exact copy
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[2:, 3:], thermal[:-2, :-3])
    assert np.all(out[:2] == 0) and np.all(out[:, :3] == 0)  # zero fill where no thermal data


def test_valid_mask_marks_the_covered_pixels() -> None:
    registration = Registration(_rigid(0.0, 3.0, 2.0), (20, 30))
    mask = registration.valid_mask((20, 30))
    assert mask.shape == (20, 30) and mask[2:, 3:].all() and not mask[:2].any() and not mask[:, :3].any()
    assert Registration(np.eye(3), (20, 30)).valid_mask((10, 15)).all()


def test_strong_perspective_does_not_sample_behind_the_camera() -> None:
    # This homography (its own inverse) has its horizon at visible x = 20; the thermal image centre lands
    # at x > 20 (visible x = 40 shows thermal x = 40, x = 99 thermal x ≈ 25). Visible (0, 0) maps to thermal
    # (0, 0) as well, but from the other side of the horizon ("behind the camera"): it must stay uncovered.
    homography = np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [-0.05, 0.0, 1.0]])
    registration = Registration(homography, (20, 100))
    x_src, y_src, _ = registration.source_coordinates((20, 100))
    assert (x_src[0, 0], y_src[0, 0]) == (0.0, 0.0)  # inside the thermal image, yet behind
    out = registration(np.full((20, 100), 200, np.uint8))
    assert out[0, 0] == 0 and np.all(out[:, 40:] == 200)
    np.testing.assert_array_equal(out > 0, registration.valid_mask((20, 100)))


def test_caches_coverage_per_input_size() -> None:
    registration = Registration(_rigid(3.0, 1.0, 1.0), (30, 40))
    registration(_smooth_image(30, 40))
    coverage = registration._coverage[(30, 40)]
    registration(_smooth_image(30, 40))
    assert registration._coverage[(30, 40)] is coverage


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_warp_matches_exact_bilinear_sampling(dtype: type) -> None:
    """OpenCV's fixed-point warp (1/32 px) against float64 bilinear sampling at
    :meth:`Registration.source_coordinates`, edge-clamped, 0 where not covered: within one grey level."""
    thermal = _smooth_image(36, 44, dtype)
    homography = np.array([[1.05, 0.02, -3.0], [-0.01, 0.97, 2.5], [2e-4, -1e-4, 1.0]])
    registration = Registration(homography, (40, 50))
    x, y, _ = registration.source_coordinates(thermal.shape)
    x, y = np.clip(x, 0, thermal.shape[1] - 1), np.clip(y, 0, thermal.shape[0] - 1)
    x0, y0 = (
        np.minimum(np.floor(x).astype(int), thermal.shape[1] - 2),
        np.minimum(np.floor(y).astype(int), thermal.shape[0] - 2),
    )
    fx, fy = x - x0, y - y0
    t = thermal.astype(np.float64)
    exact = (
        t[y0, x0] * (1 - fx) * (1 - fy)
        + t[y0, x0 + 1] * fx * (1 - fy)
        + t[y0 + 1, x0] * (1 - fx) * fy
        + t[y0 + 1, x0 + 1] * fx * fy
    )
    exact = np.where(registration.valid_mask(thermal.shape), exact, 0.0)
    one_level = 1 if dtype == np.uint8 else 257
    assert np.abs(registration(thermal).astype(np.float64) - exact).max() <= one_level


@pytest.mark.parametrize(
    "homography",
    [np.eye(2), np.full((3, 3), np.nan), np.zeros((3, 3)), [[1, 2, 3], [2, 4, 6], [0, 0, 1]], "eye"],
)
def test_bad_homography_names_the_parameter(homography: object) -> None:
    with pytest.raises(ValueError, match=r"registration\.homography"):
        Registration(homography, (10, 10))  # type: ignore[arg-type]


def test_nine_numbers_are_accepted_row_major() -> None:
    flat = [1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    np.testing.assert_array_equal(Registration(flat, (5, 5)).homography, np.reshape(flat, (3, 3)))


def test_bad_size_and_input_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"registration\.output_size"):
        Registration(np.eye(3), (0, 10))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        Registration(np.eye(3), (4, 4))(np.zeros((4, 4), np.float32))


def test_full_size_frame_sanity() -> None:
    thermal = _smooth_image(480, 640)
    out = Registration(_rigid(1.0, 2.0, -1.0), (480, 640))(thermal)
    assert out.shape == (480, 640) and out.dtype == np.uint8
    assert np.abs(out[40:-40, 40:-40].astype(int).mean() - thermal[40:-40, 40:-40].mean()) < 5


def _project(k: np.ndarray, direction: np.ndarray) -> np.ndarray:
    p = k @ direction
    return p[:2] / p[2]


def test_homography_from_intrinsics_maps_directions_seen_by_both_cameras() -> None:
    """The plane at infinity: a distant point seen at thermal pixel K_t d (native 320×256) and visible pixel
    K_v R d (640×480) must be mapped onto each other, in the resized-thermal convention of the module."""
    k_t = np.array([[410.0, 0, 161.0], [0, 412.0, 126.0], [0, 0, 1]])
    k_v = np.array([[820.0, 0, 318.0], [0, 815.0, 242.0], [0, 0, 1]])
    angle = np.deg2rad(1.5)  # thermal camera yawed by 1.5° about the visible camera's y axis
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    homography = homography_from_intrinsics(k_v, k_t.ravel(), (256, 320), (480, 640), rotation)
    sx, sy = 640 / 320, 480 / 256
    for direction in ([0.1, -0.05, 1.0], [-0.2, 0.15, 1.0], [0.0, 0.0, 1.0]):
        d = np.array(direction)
        native = _project(k_t, d)
        resized = np.array([(native[0] + 0.5) * sx - 0.5, (native[1] + 0.5) * sy - 0.5, 1.0])
        mapped = homography @ resized
        np.testing.assert_allclose(mapped[:2] / mapped[2], _project(k_v, rotation @ d), atol=1e-9)


def test_homography_from_intrinsics_identity_and_refusals() -> None:
    k = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    np.testing.assert_allclose(
        homography_from_intrinsics(k, k, (480, 640), (480, 640)), np.eye(3), atol=1e-12
    )
    with pytest.raises(ValueError, match="proper rotation"):
        homography_from_intrinsics(k, k, (480, 640), (480, 640), np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="thermal camera matrix K"):
        homography_from_intrinsics(k, np.zeros(9), (480, 640), (480, 640))
