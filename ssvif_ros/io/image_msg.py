"""``sensor_msgs/Image`` <-> numpy without cv_bridge, validated, fast enough for 640×480 at 30 Hz.

Why our own: cv_bridge needs a matching Boost/numpy build, which a pip-installed ROS Python environment
does not have. This module needs numpy and OpenCV (colour conversions); ``sensor_msgs`` is imported only
to build an output message, so reading works on any object with the ``Image`` fields (e.g. messages
deserialised by ``rosbags``, whose ``data`` is a numpy array).

Reading (:func:`image_to_numpy`, :func:`to_rgb8`, :func:`to_thermal`):

- ``step`` (bytes per row) may exceed ``width × bytes per pixel`` (padded rows): the rows are sliced, not
  copied, and any ``step`` is allowed, also one that is not a multiple of the pixel size.
- 16-bit data is returned as native ``uint16``; it is byte-swapped (one copy) only when ``is_bigendian``
  differs from the host.
- ``data`` shorter than ``step × height`` is an error. Longer ``data`` is accepted and the trailing bytes
  are ignored, as cv_bridge does (its Python ``imgmsg_to_cv2`` builds ``np.ndarray(shape, buffer=data)``,
  which raises only when the buffer is too small; the C++ ``toCvShare`` does not check the size at all).
  ``strict=True`` makes longer data an error too.
- Without padding or byte swap the result is a *view* of ``msg.data`` (no copy, ~µs): copy it before
  modifying it if the message is still used elsewhere.

Writing (:func:`numpy_to_image`, :func:`fill_image`): native byte order, ``step = width × bytes per pixel``,
``data`` set from an ``array.array('B')`` filled from the array's bytes. This is the fast path of the
generated message setter (also with ``ROS_PYTHON_CHECK_FIELDS=1``, where assigning ``bytes`` costs ~100 ms
a frame because every byte is range-checked); assigning an ``ndarray`` or a list costs ~100 ms a frame.
:func:`fill_image` reuses the existing buffer when the size is unchanged (no allocation).

Every problem with an incoming message raises :class:`MalformedImage`, which names the topic and field.
"""

from __future__ import annotations

import array
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np

if TYPE_CHECKING:  # only for annotations: reading does not need ROS installed
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header


class EncodingInfo(NamedTuple):
    """Pixel layout of one ``sensor_msgs`` encoding."""

    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(np.dtype(np.uint8), 3),
    "bgr8": EncodingInfo(np.dtype(np.uint8), 3),
    "rgba8": EncodingInfo(np.dtype(np.uint8), 4),
    "bgra8": EncodingInfo(np.dtype(np.uint8), 4),
    "mono8": EncodingInfo(np.dtype(np.uint8), 1),
    "8UC1": EncodingInfo(np.dtype(np.uint8), 1),
    "mono16": EncodingInfo(np.dtype(np.uint16), 1),
    "16UC1": EncodingInfo(np.dtype(np.uint16), 1),
}
"""Supported encodings (names as in ``sensor_msgs/image_encodings.hpp``, case-sensitive)."""

IMAGE_TYPE = "sensor_msgs/msg/Image"  # the message type names, as bags and image_transport spell them
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
VISIBLE_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")
"""Encodings :func:`to_rgb8` accepts."""

THERMAL_ENCODINGS: tuple[str, ...] = ("mono8", "8UC1", "mono16", "16UC1")
"""Encodings :func:`to_thermal` accepts (single channel, 8 or 16 bit)."""

_HOST_IS_BIGENDIAN = sys.byteorder == "big"


class MalformedImage(ValueError):
    """An ``Image`` message that cannot be decoded; ``topic`` and ``field`` say where, ``reason`` why."""

    def __init__(self, topic: str, field: str, reason: str) -> None:
        self.topic = topic
        self.field = field
        self.reason = reason
        super().__init__(f"image on topic {topic or '<unnamed>'!s}: field '{field}': {reason}")

    def __reduce__(self) -> tuple[type[MalformedImage], tuple[str, str, str]]:
        return (type(self), (self.topic, self.field, self.reason))


def _positive_int(msg: Any, field: str, topic: str) -> int:
    value = getattr(msg, field)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MalformedImage(topic, field, f"must be an integer, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise MalformedImage(topic, field, f"must be > 0, got {value}")
    return int(value)


def _data_bytes(data: Any, topic: str) -> np.ndarray:
    """``msg.data`` as a flat ``uint8`` array, without a copy for any buffer-protocol object."""
    if isinstance(data, (list, tuple)):  # a message built by hand; slow but correct
        try:
            flat = np.asarray(data)
        except ValueError:  # ragged nesting
            flat = np.asarray([], dtype=object)
        if flat.ndim != 1 or (
            flat.size and (flat.dtype.kind not in "iu" or flat.min() < 0 or flat.max() > 255)
        ):
            raise MalformedImage(topic, "data", "a list must be flat and hold integers in 0..255")
        return flat.astype(np.uint8)
    if isinstance(data, np.ndarray) and data.dtype.hasobject:  # its buffer holds pointers, not pixels
        raise MalformedImage(topic, "data", "a numpy array of Python objects is not image bytes")
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise MalformedImage(
            topic,
            "data",
            f"must be a bytes-like object (array.array, bytes, ndarray), got {type(data).__name__}",
        ) from exc


def image_to_numpy(msg: Image, topic: str = "", strict: bool = False) -> np.ndarray:
    """Decode an ``Image`` into its own layout: ``(H, W)`` for one channel, else ``(H, W, C)``.

    Channel order is the encoding's (``bgr8`` stays BGR; see :func:`to_rgb8`); dtype is ``uint8`` or native
    ``uint16``. A view of ``msg.data`` when neither padding nor a byte swap is involved (may then be
    non-contiguous if rows are padded). Raises :class:`MalformedImage` naming ``topic`` and the field.
    """
    encoding = msg.encoding
    info = ENCODINGS.get(encoding) if isinstance(encoding, str) else None
    if info is None:
        raise MalformedImage(
            topic, "encoding", f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        )
    height = _positive_int(msg, "height", topic)
    width = _positive_int(msg, "width", topic)
    bigendian = msg.is_bigendian
    if not isinstance(bigendian, (bool, int, np.integer)) or int(bigendian) not in (0, 1):
        raise MalformedImage(
            topic, "is_bigendian", f"must be 0/1 (or a bool), got {type(bigendian).__name__} {bigendian!r}"
        )
    step = msg.step
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise MalformedImage(topic, "step", f"must be an integer, got {type(step).__name__} {step!r}")
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise MalformedImage(
            topic,
            "step",
            f"{step} is smaller than width × bytes per pixel = {width} × {info.bytes_per_pixel} = "
            f"{row_bytes} for {encoding}",
        )
    step = int(step)
    flat = _data_bytes(msg.data, topic)
    expected = step * height
    if flat.size < expected or (strict and flat.size != expected):
        raise MalformedImage(
            topic,
            "data",
            f"length {flat.size} bytes, expected step × height = {step} × {height} = {expected}",
        )
    rows = flat[:expected].reshape(height, step)
    if step != row_bytes:
        rows = rows[:, :row_bytes]  # padded rows: a strided view, no copy
    if info.dtype.itemsize == 1:
        pixels = rows
    else:
        pixels = rows.view(info.dtype.newbyteorder(">" if bigendian else "<"))
        if bool(bigendian) != _HOST_IS_BIGENDIAN:
            pixels = pixels.astype(info.dtype)  # byte swap into native order (the one copy)
    if info.channels > 1:
        pixels = pixels.reshape(height, width, info.channels)
    return pixels


# OpenCV conversion code from each non-RGB visible encoding to RGB.
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
}


def to_rgb8(msg: Image, topic: str = "", strict: bool = False) -> np.ndarray:
    """Visible image message → C-contiguous ``uint8 (H, W, 3)`` RGB.

    ``rgb8`` without padding is returned as a view of ``msg.data``; BGR is reordered, alpha dropped and
    gray (``mono8``/``8UC1``) replicated to three channels. 16-bit encodings are rejected.
    """
    encoding = msg.encoding
    if isinstance(encoding, str) and encoding in ENCODINGS and encoding not in VISIBLE_ENCODINGS:
        raise MalformedImage(
            topic,
            "encoding",
            f"{encoding!r} is not a visible-image encoding; expected one of {', '.join(VISIBLE_ENCODINGS)}",
        )
    pixels = image_to_numpy(msg, topic, strict)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, _TO_RGB[encoding])  # 8-60× faster than numpy channel copies


def to_thermal(msg: Image, topic: str = "", strict: bool = False) -> np.ndarray:
    """Thermal image message → C-contiguous ``uint8 (H, W)`` or native ``uint16 (H, W)``.

    Colour encodings are rejected: a colour-mapped thermal image (e.g. an ``rgb8`` "iron" palette) is not
    a monotonic temperature scale, so converting it to gray would be wrong.
    """
    encoding = msg.encoding
    if isinstance(encoding, str) and encoding in ENCODINGS and encoding not in THERMAL_ENCODINGS:
        raise MalformedImage(
            topic,
            "encoding",
            f"{encoding!r} is not a thermal encoding; expected single-channel "
            f"{', '.join(THERMAL_ENCODINGS)} (colour-mapped thermal is not radiometric)",
        )
    return np.ascontiguousarray(image_to_numpy(msg, topic, strict))


def _checked_array(array_: np.ndarray, encoding: str) -> tuple[np.ndarray, EncodingInfo]:
    """C-contiguous copy-free (when possible) ``array_`` checked against ``encoding``'s layout."""
    info = ENCODINGS.get(encoding)
    if info is None:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if not isinstance(array_, np.ndarray):
        raise TypeError(f"expected a numpy array for {encoding}, got {type(array_).__name__}")
    shape = array_.shape
    if info.channels == 1 and array_.ndim == 3 and shape[2] == 1:
        array_ = array_[..., 0]
        shape = array_.shape
    ok_shape = (array_.ndim == 2) if info.channels == 1 else (array_.ndim == 3 and shape[2] == info.channels)
    if not ok_shape or array_.dtype != info.dtype:
        want = "(H, W)" if info.channels == 1 else f"(H, W, {info.channels})"
        raise ValueError(
            f"encoding {encoding} needs a {info.dtype.name} array of shape {want}, "
            f"got {array_.dtype.name} {shape}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"cannot encode an empty image of shape {shape}")
    return np.ascontiguousarray(array_), info


def fill_image(msg: Image, array_: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Write ``array_`` (in ``encoding``'s layout, e.g. RGB for ``rgb8``) into ``msg`` in place; returns it.

    Reuses ``msg.data``'s buffer when its size already matches (no allocation), so do not fill a message
    that is still referenced elsewhere (rclpy's ``publish`` serialises synchronously, so refilling after
    ``publish`` returns is safe). ``header`` (when given) is assigned as is.
    """
    pixels, info = _checked_array(array_, encoding)
    flat = pixels.reshape(-1).view(np.uint8)
    current = msg.data
    if isinstance(current, array.array) and current.typecode == "B" and len(current) == flat.size:
        np.frombuffer(current, dtype=np.uint8)[:] = flat
    else:
        data = array.array("B")
        data.frombytes(flat)
        msg.data = data
    if header is not None:
        msg.header = header
    msg.height = int(pixels.shape[0])
    msg.width = int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_HOST_IS_BIGENDIAN)
    msg.step = int(pixels.shape[1]) * info.bytes_per_pixel
    return msg


def numpy_to_image(array_: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """New ``sensor_msgs/Image`` holding ``array_`` (layout of ``encoding``; native byte order, no padding).

    ``rgb8``/``bgr8``: ``uint8 (H, W, 3)``; ``rgba8``/``bgra8``: ``(H, W, 4)``; ``mono8``/``8UC1``:
    ``uint8 (H, W)``; ``mono16``/``16UC1``: ``uint16 (H, W)``. Raises ``ValueError`` on a mismatch.
    """
    from sensor_msgs.msg import Image

    return fill_image(Image(), array_, encoding, header)
