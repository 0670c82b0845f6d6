"""16 → 8 bit thermal AGC: pass-through, fixed window, dataset-rule equality, temporal smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from ssvif_ros.data.image_files import thermal16_to_uint8
from ssvif_ros.fusion.thermal import ThermalToU8, apply_window, percentile_window, window_lut

RNG = np.random.default_rng(3)


def _scene(height: int = 48, width: int = 64, spread: float = 300.0) -> np.ndarray:
    """Radiometric-like counts: a smooth gradient plus noise around 8000."""
    gradient = np.linspace(-1.0, 1.0, width)[None, :] * spread
    noise = RNG.normal(0.0, spread / 4, (height, width))
    return np.clip(8000 + gradient + noise, 0, 65535).astype(np.uint16)


def test_uint8_passes_through_without_copy() -> None:
    frame = RNG.integers(0, 256, (10, 12)).astype(np.uint8)
    assert ThermalToU8()(frame) is frame
    assert ThermalToU8(mode="fixed", fixed_range=(0, 100))(frame) is frame


def test_fixed_range_maps_linearly_and_clips() -> None:
    frame = np.array([[0, 1000, 1500, 2000, 3000, 65535]], dtype=np.uint16)
    out = ThermalToU8(mode="fixed", fixed_range=(1000, 2000))(frame)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 0, 128, 255, 255, 255]])  # 127.5 + 0.5 → 128


@pytest.mark.parametrize("window", [(1.0, 99.0), (5.0, 90.0), (0.0, 100.0)])
def test_auto_without_smoothing_equals_the_dataset_rule(window: tuple[float, float]) -> None:
    convert = ThermalToU8(low_percentile=window[0], high_percentile=window[1], smoothing=0.0, subsample=1)
    for spread in (50.0, 400.0, 3000.0):  # several frames: every frame is mapped on its own
        frame = _scene(37, 53, spread)
        np.testing.assert_array_equal(convert(frame), thermal16_to_uint8(frame, "percentile", window))


def test_first_frame_sets_the_window_even_with_smoothing() -> None:
    frame = _scene()
    convert = ThermalToU8(smoothing=0.9, subsample=1)
    np.testing.assert_array_equal(convert(frame), thermal16_to_uint8(frame))
    assert convert.window == pytest.approx(percentile_window(frame, 1.0, 99.0))


def test_subsampled_window_is_close_to_the_full_one() -> None:
    frame = _scene(240, 320)
    full = percentile_window(frame, 1.0, 99.0, subsample=1)
    sub = percentile_window(frame, 1.0, 99.0, subsample=4)
    width = full[1] - full[0]
    assert abs(sub[0] - full[0]) < 0.05 * width and abs(sub[1] - full[1]) < 0.05 * width


def _flicker_sequence(frames: int = 24) -> list[np.ndarray]:
    """A static scene where a hot object (5 % of the pixels) appears every other frame."""
    base = _scene(40, 50)
    sequence = []
    for index in range(frames):
        frame = base.copy()
        if index % 2:
            frame[:10, :10] = 12000  # hot spot: pushes the 99th percentile up
        sequence.append(frame)
    return sequence


def test_smoothing_reduces_brightness_flicker() -> None:
    sequence = _flicker_sequence()

    def background_means(smoothing: float) -> np.ndarray:
        convert = ThermalToU8(smoothing=smoothing, subsample=1)
        return np.array([convert(frame)[20:, 20:].mean() for frame in sequence])

    raw = background_means(0.0)
    smooth = background_means(0.9)
    # Without smoothing the static background jumps every frame; with it the steps are much smaller.
    assert np.var(np.diff(raw[4:])) > 10 * np.var(np.diff(smooth[4:]))
    assert np.abs(np.diff(raw)).mean() > 5.0


def test_reset_forgets_the_window() -> None:
    convert = ThermalToU8(smoothing=0.9, subsample=1)
    convert(_scene(spread=3000.0))
    frame = _scene(spread=100.0)
    assert not np.array_equal(convert(frame), thermal16_to_uint8(frame))
    convert.reset()
    assert convert.window is None
    np.testing.assert_array_equal(convert(frame), thermal16_to_uint8(frame))


def test_flat_frame_maps_to_zero_without_warnings() -> None:
    flat = np.full((8, 9), 7777, np.uint16)
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(ThermalToU8()(flat), 0)
        np.testing.assert_array_equal(apply_window(flat, 7777.0, 7777.0), 0)
    np.testing.assert_array_equal(ThermalToU8()(flat), thermal16_to_uint8(flat))


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"mode": "agc"}, "thermal.mode"),
        ({"low_percentile": 99, "high_percentile": 1}, "thermal.low_percentile"),
        ({"smoothing": 1.0}, "thermal.smoothing"),
        ({"subsample": 0}, "thermal.subsample"),
        ({"mode": "fixed"}, "thermal.fixed_range"),
        ({"mode": "fixed", "fixed_range": (500, 100)}, "thermal.fixed_range"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        ThermalToU8(**kwargs)


def test_bad_frames_are_rejected() -> None:
    with pytest.raises(ValueError, match="uint8 or uint16"):
        ThermalToU8()(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        ThermalToU8()(np.zeros((4, 4, 3), np.uint16))


def test_full_size_frame_sanity() -> None:
    frame = _scene(480, 640, spread=2000.0)
    out = ThermalToU8()(frame)
    assert out.shape == (480, 640) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255 and 100 < out.mean() < 155


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_percentile_window_equals_numpy_percentile_bit_for_bit(dtype) -> None:
    """The histogram shortcut must give exactly numpy's linear-method percentiles (the dataset rule)."""
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max
    cases = [np.full((3, 4), 17, dtype), np.array([[top]], dtype), np.array([[0, top]], dtype)]
    for _ in range(300):
        shape = tuple(int(v) for v in rng.integers(1, 90, size=2))
        base, spread = int(rng.integers(0, top)), int(rng.integers(1, 5000))
        cases.append(np.clip(base + rng.integers(0, spread, shape), 0, top).astype(dtype))
    for frame in cases:
        for low, high in ((1.0, 99.0), (0.0, 100.0), (2.5, 97.3), (0.5, 99.5)):
            expected = np.percentile(frame.astype(np.float32), (low, high))
            assert percentile_window(frame, low, high) == (float(expected[0]), float(expected[1]))


def test_window_lut_equals_the_formula_on_every_count() -> None:
    """The table computes only the counts inside the window; outside it must still equal the formula."""
    counts = np.arange(65536, dtype=np.float32)
    rng = np.random.default_rng(3)
    windows = [(0.0, 65535.0), (0.0, 1.0), (65534.0, 65535.0), (1000.0, 1000.5), (5.25, 7.75)]
    windows += [tuple(sorted(rng.uniform(0, 65535, size=2))) for _ in range(50)]
    lows, widths = rng.uniform(0, 60000, 50), rng.uniform(0.1, 900, 50)
    windows += [(low, low + width) for low, width in zip(lows, widths, strict=True)]
    for low, high in windows:
        scale = 255.0 / (high - low)
        expected = np.clip((counts - low) * scale + 0.5, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(window_lut(low, high), expected, err_msg=f"window {low}, {high}")
    assert not window_lut(42.0, 42.0).any()


def _uniform_scene(rng: np.random.Generator, low: int, high: int) -> np.ndarray:
    return rng.integers(low, high, (60, 80), dtype=np.uint16)


def test_a_scene_cut_resettles_the_smoothed_window_at_once():
    """A bag of unrelated stills: the second scene's counts lie far above the first's. Smoothing alone would
    keep most of the old window and whiten the new frames; the cut check uses the frame's own window."""
    rng = np.random.default_rng(0)
    cold, warm = _uniform_scene(rng, 3000, 4000), _uniform_scene(rng, 20000, 30000)
    fresh = ThermalToU8(smoothing=0.0, subsample=1)(warm)
    smoothed = ThermalToU8(smoothing=0.9, subsample=1, scene_cut=0.0)
    for _ in range(5):
        smoothed(cold)
    assert (smoothed(warm) == 255).mean() > 0.9  # the failure: all white
    converter = ThermalToU8(smoothing=0.9, subsample=1)
    for _ in range(5):
        converter(cold)
    np.testing.assert_array_equal(converter(warm), fresh)
    assert converter.scene_cuts == 1


def test_a_slow_drift_is_smoothed_not_taken_for_a_cut():
    rng = np.random.default_rng(1)
    converter = ThermalToU8(smoothing=0.9, subsample=1)
    base = _uniform_scene(rng, 10000, 12000)
    for step in range(40):  # the scene warms by 0.5 % of its range per frame
        converter(base + np.uint16(10 * step))
    assert converter.scene_cuts == 0
    with pytest.raises(ValueError, match="scene_cut"):
        ThermalToU8(scene_cut=-1.0)


def test_a_fast_pan_resettles_instead_of_lagging_behind():
    """A camera panning from cold sky to warm ground: the range moves by a fifth of its width per frame;
    smoothing alone lags a whole scene behind and saturates, the cut check catches up."""
    rng = np.random.default_rng(2)
    frames = [_uniform_scene(rng, 5000 + 400 * k, 7000 + 400 * k) for k in range(15)]
    lagging = ThermalToU8(smoothing=0.9, subsample=1, scene_cut=0.0)
    settling = ThermalToU8(smoothing=0.9, subsample=1)
    saturated = [((lagging(frame) == 255).mean(), (settling(frame) == 255).mean()) for frame in frames]
    assert saturated[-1][0] > 0.5 and settling.scene_cuts >= 3
    assert max(settled for _, settled in saturated) < 0.4  # re-settles every few frames while panning
