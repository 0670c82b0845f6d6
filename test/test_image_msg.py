"""sensor_msgs/Image <-> numpy: every encoding, byte order, row padding, and each malformed field."""

from __future__ import annotations

import array
import pickle
import sys

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ssvif_ros.io.image_msg import (
    ENCODINGS,
    MalformedImage,
    fill_image,
    image_to_numpy,
    numpy_to_image,
    to_rgb8,
    to_thermal,
)

RNG = np.random.default_rng(7)
HOST_BIG = sys.byteorder == "big"


def _random_array(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    info = ENCODINGS[encoding]
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    high = 256 if info.dtype == np.uint8 else 65536
    return RNG.integers(0, high, shape).astype(info.dtype)


def _raw_message(
    pixels: np.ndarray, encoding: str, bigendian: bool, padding: int = 0, extra: int = 0
) -> Image:
    """Builds the message bytes by hand (independently of the code under test)."""
    height, width = pixels.shape[:2]
    ordered = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = ordered.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    data = padded.tobytes() + b"\xcd" * extra
    return Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1] + padding,
        data=array.array("B", data),
    )


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_encoding_round_trips(encoding: str) -> None:
    pixels = _random_array(encoding)
    header = Header(frame_id="cam")
    header.stamp.sec = 12
    msg = numpy_to_image(pixels, encoding, header)
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * ENCODINGS[encoding].bytes_per_pixel
    assert msg.is_bigendian == int(HOST_BIG)
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12
    assert memoryview(msg.data).nbytes == msg.step * msg.height  # bytes-like, right size
    back = image_to_numpy(msg, "/t")
    assert back.dtype == pixels.dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 6, 3])  # 3: a row stride that is not a multiple of 2 bytes
def test_sixteen_bit_byte_order_and_padding(encoding: str, bigendian: bool, padding: int) -> None:
    pixels = _random_array(encoding, 4, 9)
    pixels[0, 0] = 0x0102  # asymmetric bytes: a missing/extra swap cannot go unnoticed
    msg = _raw_message(pixels, encoding, bigendian, padding)
    out = to_thermal(msg, "/thermal")
    assert out.dtype == np.uint16 and out.dtype.isnative and out.flags.c_contiguous
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("padding", [0, 5])
def test_to_rgb8_channel_order(encoding: str, padding: int) -> None:
    rgb = _random_array("rgb8", 6, 4)
    if encoding == "mono8":
        raw = rgb[..., 0]
        expected = np.repeat(raw[..., None], 3, axis=2)
    else:
        raw = rgb[..., ::-1] if encoding.startswith("bgr") else rgb
        if encoding.endswith("a8"):
            alpha = RNG.integers(0, 256, (6, 4, 1)).astype(np.uint8)
            raw = np.concatenate([raw, alpha], axis=2)  # alpha is dropped
        expected = rgb
    out = to_rgb8(_raw_message(np.ascontiguousarray(raw), encoding, False, padding), "/camera")
    assert out.dtype == np.uint8 and out.shape == (6, 4, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_unpadded_rgb8_is_a_view_and_padding_is_sliced_without_copy() -> None:
    rgb = _random_array("rgb8")
    msg = numpy_to_image(rgb, "rgb8")
    assert np.shares_memory(to_rgb8(msg), np.frombuffer(msg.data, np.uint8))
    padded = _raw_message(rgb, "rgb8", False, padding=4)
    view = image_to_numpy(padded)
    assert np.shares_memory(view, np.frombuffer(padded.data, np.uint8))
    np.testing.assert_array_equal(view, rgb)


def test_longer_data_is_ignored_like_cv_bridge_unless_strict() -> None:
    pixels = _random_array("mono8")
    msg = _raw_message(pixels, "mono8", False, padding=2, extra=5)
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)
    with pytest.raises(MalformedImage, match="data"):
        image_to_numpy(msg, "/x", strict=True)


def test_rosbags_style_ndarray_data_is_accepted() -> None:
    pixels = _random_array("mono16")
    msg = _raw_message(pixels, "mono16", True)
    msg_like = type("RosbagsImage", (), {})()
    for field in ("height", "width", "encoding", "is_bigendian", "step"):
        setattr(msg_like, field, getattr(msg, field))
    msg_like.data = np.frombuffer(msg.data, np.uint8).copy()
    np.testing.assert_array_equal(image_to_numpy(msg_like), pixels)


def _valid_mono16() -> Image:
    return _raw_message(_random_array("mono16", 3, 4), "mono16", False)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("width", 0, "> 0"),
        ("height", 0, "> 0"),
        ("encoding", "yuv422", "unsupported"),
        ("encoding", "", "unsupported"),
        ("step", 7, "smaller than"),
        ("data", array.array("B", bytes(23)), "expected step × height"),
        ("data", "not bytes", "bytes-like"),
        ("is_bigendian", "yes", "0/1"),
        ("is_bigendian", 2, "0/1"),
        ("step", 8.0, "integer"),
    ],
)
def test_malformed_messages_name_topic_and_field(field: str, value: object, reason: str) -> None:
    msg = _valid_mono16()
    object.__setattr__(msg, f"_{field}", value)  # bypass the setter, as a bad publisher could
    with pytest.raises(MalformedImage) as info:
        image_to_numpy(msg, "/flir/image_raw")
    error = info.value
    assert error.topic == "/flir/image_raw" and error.field == field
    assert "/flir/image_raw" in str(error) and f"'{field}'" in str(error) and reason in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.topic, copy.field, str(copy)) == (error.topic, error.field, str(error))


def test_wrong_kind_of_encoding_for_the_stream() -> None:
    with pytest.raises(MalformedImage, match="not a visible-image encoding") as info:
        to_rgb8(_valid_mono16(), "/cam")
    assert info.value.field == "encoding"
    rgb_msg = numpy_to_image(_random_array("rgb8"), "rgb8")
    with pytest.raises(MalformedImage, match="not a thermal encoding"):
        to_thermal(rgb_msg, "/thermal")


@pytest.mark.parametrize("encoding", [["rgb8"], None, 8, b"mono16"])
@pytest.mark.parametrize("decode", [to_rgb8, to_thermal, image_to_numpy])
def test_a_non_string_encoding_is_a_malformed_message(encoding: object, decode) -> None:
    """In-process callers can put anything in the field: a MalformedImage, never a TypeError."""
    msg = _valid_mono16()
    object.__setattr__(msg, "_encoding", encoding)
    with pytest.raises(MalformedImage, match="unsupported encoding") as info:
        decode(msg, "/cam")
    assert info.value.field == "encoding"


def test_numpy_to_image_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="rgb8 needs a uint8 array of shape"):
        numpy_to_image(np.zeros((4, 5), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="mono16 needs a uint16"):
        numpy_to_image(np.zeros((4, 5), np.uint8), "mono16")
    with pytest.raises(ValueError, match="unsupported encoding"):
        numpy_to_image(np.zeros((4, 5), np.uint8), "jpeg")
    # (H, W, 1) is accepted for one channel; a non-contiguous input is encoded correctly
    strided = _random_array("mono8", 6, 8)[::2, ::2, None]
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(strided, "mono8")), strided[..., 0])


def test_fill_image_reuses_the_buffer_when_the_size_matches() -> None:
    first, second = _random_array("rgb8"), _random_array("rgb8")
    msg = numpy_to_image(first, "rgb8")
    buffer = msg.data
    assert fill_image(msg, second, "rgb8") is msg
    assert msg.data is buffer
    np.testing.assert_array_equal(image_to_numpy(msg), second)
    fill_image(msg, _random_array("mono16", 3, 3), "mono16")  # other size: a new buffer
    assert msg.data is not buffer and (msg.encoding, msg.step, len(msg.data)) == ("mono16", 6, 18)


def test_full_size_frame_sanity() -> None:
    bgr = _random_array("bgr8", 480, 640)
    rgb = to_rgb8(numpy_to_image(bgr, "bgr8"), "/camera/image_raw")
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    raw = _random_array("mono16", 480, 640)
    np.testing.assert_array_equal(to_thermal(_raw_message(raw, "mono16", True, padding=64)), raw)


@pytest.mark.parametrize(
    "data", [np.array([1, 2, 3, 4], dtype=object), [[1, 2], [3]], [[1, 2, 3, 4], [0, 0, 0, 0]]]
)
def test_data_that_only_a_hand_built_object_can_carry_is_refused(data: object) -> None:
    """bench/fuzz_messages.py found these: an object array decoded as its pointers, nested lists raising
    ValueError. A real Image's setter refuses them; an in-process caller's object must be refused too."""
    msg = type("RawImage", (), {})()
    for field, value in (
        ("height", 1),
        ("width", 4),
        ("encoding", "mono8"),
        ("is_bigendian", 0),
        ("step", 4),
    ):
        setattr(msg, field, value)
    msg.data = data
    with pytest.raises(MalformedImage) as info:
        to_thermal(msg, "/t")
    assert info.value.field == "data"
