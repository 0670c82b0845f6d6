"""Class palette, mask colouring and alpha blending."""

from __future__ import annotations

import numpy as np
import pytest

from ssvif_ros.data.synthetic import palette as synthetic_palette
from ssvif_ros.fusion.overlay import (
    DEFAULT_NUM_COLOURS,
    IGNORE_INDEX,
    MAX_CLASSES,
    MaskOverlay,
    blend,
    class_palette,
    colorize,
)

RNG = np.random.default_rng(5)
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)


def test_default_palette_has_distinct_colours_and_extends_the_synthetic_one() -> None:
    default = class_palette()
    assert default.shape == (DEFAULT_NUM_COLOURS, 3) and DEFAULT_NUM_COLOURS >= 16
    np.testing.assert_array_equal(default[:15], synthetic_palette(15))
    for k in (2, 5, 10, 15):
        np.testing.assert_array_equal(class_palette(k), synthetic_palette(k))
    largest = class_palette(MAX_CLASSES)
    assert largest.dtype == np.uint8 and len({tuple(rgb) for rgb in largest}) == MAX_CLASSES
    np.testing.assert_array_equal(class_palette(19), default[:19])
    with pytest.raises(ValueError, match="num_classes"):
        class_palette(256)


def test_colorize_maps_ids_and_leaves_unknown_ids_black() -> None:
    labels = np.array([[0, 1, 2], [3, 4, IGNORE_INDEX]], dtype=np.uint8)
    out = colorize(labels, PALETTE)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], PALETTE[:3])
    np.testing.assert_array_equal(out[1, 0], PALETTE[3])
    np.testing.assert_array_equal(out[1, 1:], 0)  # 4 (outside the palette) and 255 (ignore)


def test_colorize_accepts_wide_integer_labels() -> None:
    labels = np.array([[0, 3, -1, 300]], dtype=np.int64)  # e.g. an argmax, or bad ids
    np.testing.assert_array_equal(
        colorize(labels, PALETTE)[0], [PALETTE[0], PALETTE[3], [0, 0, 0], [0, 0, 0]]
    )


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_blend_matches_the_float_formula_and_ignores_uncoloured_ids(alpha: float) -> None:
    image = RNG.integers(0, 256, (16, 20, 3)).astype(np.uint8)
    labels = RNG.integers(0, 6, (16, 20)).astype(np.uint8)  # 4, 5 have no colour
    labels[:3] = IGNORE_INDEX
    out = blend(image, labels, PALETTE, alpha)
    coloured = labels < len(PALETTE)
    weight = round(alpha * 256) / 256  # alpha is used in steps of 1/256
    expected = np.floor(image * (1 - weight) + PALETTE[np.minimum(labels, 3)] * weight + 0.5)
    np.testing.assert_array_equal(out[coloured], expected[coloured])
    np.testing.assert_array_equal(out[~coloured], image[~coloured])  # untouched, bit for bit
    assert out.dtype == np.uint8 and out.flags.c_contiguous and not np.shares_memory(out, image)


def test_blend_does_not_modify_the_input_and_accepts_views() -> None:
    image = RNG.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    before = image.copy()
    labels = np.zeros((10, 12), np.uint8)
    overlay = MaskOverlay(PALETTE, alpha=0.5)
    view = image[:, ::-1]  # a non-contiguous view
    np.testing.assert_array_equal(overlay.blend(view, labels), blend(view.copy(), labels, PALETTE))
    np.testing.assert_array_equal(image, before)


def test_bad_inputs_are_rejected() -> None:
    image = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="must match"):
        blend(image, np.zeros((4, 6), np.uint8), PALETTE)
    with pytest.raises(ValueError, match="uint8"):
        blend(image.astype(np.float32), np.zeros((4, 5), np.uint8), PALETTE)
    with pytest.raises(ValueError, match="alpha"):
        MaskOverlay(PALETTE, alpha=1.5)
    with pytest.raises(ValueError, match="palette"):
        MaskOverlay(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="labels"):
        colorize(np.zeros((4, 5), np.float32), PALETTE)


def test_full_size_frame_sanity() -> None:
    image = RNG.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    labels = RNG.integers(0, DEFAULT_NUM_COLOURS, (480, 640)).astype(np.uint8)
    overlay = MaskOverlay(alpha=0.4)
    out = overlay.blend(image, labels)
    assert out.shape == (480, 640, 3)
    colours = overlay.colorize(labels)
    expected = np.floor(image * (1 - 102 / 256) + colours * (102 / 256) + 0.5)
    np.testing.assert_array_equal(out, expected)


def test_report_titles_leave_the_overlay_legend_corner_alone() -> None:
    """The demo's and replay's tiles put their titles at the bottom-left: the top-left corner of an
    overlay is where its class legend is drawn."""
    from ssvif_ros.eval.report import labelled

    image = np.full((240, 320, 3), 128, np.uint8)
    tile = np.asarray(labelled(image, "overlay: lightunet_ssvif"))
    assert (tile[:120, :] == 128).all()
    assert (tile[-40:, :160] != 128).any()
