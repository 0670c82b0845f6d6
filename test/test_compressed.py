"""CompressedImage inputs (issue 17): JPEG/PNG decoding, 16-bit PNG kept 16-bit, clear refusals. The test
images are encoded with Pillow, independently of the OpenCV decoder under test."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage

from ssvif_ros.io.compressed import (
    decode_compressed,
    encode_compressed,
    thermal_from_compressed,
    visible_from_compressed,
)
from ssvif_ros.io.image_msg import MalformedImage

pytest.importorskip("cv2")


def encoded(array: np.ndarray, fmt: str, mode: str | None = None) -> CompressedImage:
    buffer = io.BytesIO()
    PILImage.fromarray(array, mode=mode).save(buffer, format="PNG" if "png" in fmt else "JPEG", quality=95)
    msg = CompressedImage(format=fmt)
    msg.data = buffer.getvalue()
    return msg


RNG = np.random.default_rng(0)


def test_png_visible_is_exact_rgb_and_gray_is_replicated() -> None:
    rgb = RNG.integers(0, 256, (12, 17, 3), dtype=np.uint8)
    np.testing.assert_array_equal(visible_from_compressed(encoded(rgb, "png"), "/cam"), rgb)
    gray = RNG.integers(0, 256, (12, 17), dtype=np.uint8)
    np.testing.assert_array_equal(
        visible_from_compressed(encoded(gray, "png"), "/cam"), np.dstack([gray] * 3)
    )


def test_jpeg_visible_decodes_close_to_the_original() -> None:
    smooth = np.dstack([np.tile(np.linspace(20, 230, 32, dtype=np.uint8), (24, 1))] * 3)
    smooth[..., 0] = 200  # a colour, so channel order matters
    out = visible_from_compressed(encoded(smooth, "rgb8; jpeg compressed bgr8"), "/cam")
    assert out.shape == smooth.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_a_16_bit_png_thermal_image_stays_16_bit() -> None:
    counts = RNG.integers(3000, 9000, (10, 14), dtype=np.uint16)
    out = thermal_from_compressed(encoded(counts, "mono16; png compressed mono16"), "/th")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, counts)


@pytest.mark.parametrize(
    ("make", "field", "reason"),
    [
        (lambda: encoded(RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8), "png"), "format", "single-channel"),
        (lambda: CompressedImage(format="tiff", data=b"x"), "format", "jpeg or png"),
        (lambda: CompressedImage(format="png", data=b"\x89PNG broken"), "data", "not a decodable"),
        (lambda: CompressedImage(format="jpeg", data=b""), "data", "not a decodable"),
    ],
)
def test_bad_compressed_thermal_messages_name_the_field(make, field, reason) -> None:
    with pytest.raises(MalformedImage, match=reason) as info:
        thermal_from_compressed(make(), "/th")
    assert info.value.field == field and info.value.topic == "/th"


def test_a_16_bit_visible_image_is_refused() -> None:
    msg = encoded(RNG.integers(0, 60000, (4, 4), dtype=np.uint16), "png")
    assert decode_compressed(msg).dtype == np.uint16
    with pytest.raises(MalformedImage, match="8-bit"):
        visible_from_compressed(msg, "/cam")


def test_encoded_images_decode_back_as_image_transport_writes_them() -> None:
    """:func:`encode_compressed` (ssvif-make-bag's writer) against the decoders: PNG exact for RGB and
    16-bit counts, JPEG close; the format string is image_transport's."""
    rgb = RNG.integers(0, 256, (12, 17, 3), dtype=np.uint8)
    fmt, data = encode_compressed(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(visible_from_compressed(CompressedImage(format=fmt, data=data), "/c"), rgb)
    counts = RNG.integers(3000, 60000, (10, 14), dtype=np.uint16)
    fmt, data = encode_compressed(counts, "png")
    assert fmt == "mono16; png compressed mono16"
    np.testing.assert_array_equal(
        thermal_from_compressed(CompressedImage(format=fmt, data=data), "/t"), counts
    )
    smooth = np.dstack([np.tile(np.linspace(20, 230, 32, dtype=np.uint8), (24, 1))] * 3)
    fmt, data = encode_compressed(smooth, "jpeg")
    decoded = visible_from_compressed(CompressedImage(format=fmt, data=data), "/c")
    assert fmt.startswith("rgb8; jpeg") and np.abs(decoded.astype(int) - smooth).mean() < 3


def test_encoding_refuses_what_it_cannot_keep() -> None:
    with pytest.raises(ValueError, match="JPEG is 8-bit"):
        encode_compressed(np.zeros((4, 4), np.uint16), "jpeg")
    with pytest.raises(ValueError, match="codec must be jpeg or png"):
        encode_compressed(np.zeros((4, 4), np.uint8), "webp")
    with pytest.raises(ValueError, match="RGB uint8 or gray only"):
        encode_compressed(np.zeros((4, 4, 3), np.float32), "png")
