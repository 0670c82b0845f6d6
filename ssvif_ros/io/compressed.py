"""``sensor_msgs/CompressedImage`` (image_transport's ``compressed`` topics) -> numpy, without cv_bridge.

Recorded bags usually carry the visible camera as JPEG and sometimes the thermal one as PNG (16-bit PNG
keeps the radiometric counts). The ``format`` field is image_transport's: ``"jpeg"``/``"png"``, or
``"<encoding>; <codec> compressed <fmt>"`` (e.g. ``"mono16; png compressed mono16"``); the pixels' own
layout is read from the decoded image, so the field is only checked for a known codec. OpenCV decodes
(``IMREAD_UNCHANGED``: 16-bit stays 16-bit, gray stays gray); colour comes out BGR and is turned to RGB.
Errors are :class:`~ssvif_ros.io.image_msg.MalformedImage` naming the topic and field, as for raw images.

:data:`INPUT_DECODERS` is the one table that says how the node, the replay and the calibration read a camera
input of either message type; :func:`encode_compressed` writes what image_transport's ``compressed`` plugin
would (used by ``ssvif-make-bag``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ssvif_ros.io.image_msg import COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, MalformedImage, to_rgb8, to_thermal

__all__ = [
    "CODECS",
    "COMPRESSED_TOPIC_SUFFIX",
    "INPUT_DECODERS",
    "decode_compressed",
    "encode_compressed",
    "thermal_from_compressed",
    "visible_from_compressed",
]

CODECS = ("jpeg", "jpg", "png")
COMPRESSED_TOPIC_SUFFIX = "/compressed"  # image_transport: compressed images of TOPIC are on TOPIC/compressed


def decode_compressed(msg: Any, topic: str = "") -> np.ndarray:
    """The image in ``msg.data``: ``uint8``/``uint16`` (H, W) for gray, ``uint8`` (H, W, 3|4) RGB(A)."""
    fmt = msg.format if isinstance(msg.format, str) else None
    if fmt is None or not any(codec in fmt.lower() for codec in CODECS):
        raise MalformedImage(topic, "format", f"expected a jpeg or png CompressedImage, got {msg.format!r}")
    try:
        data = np.frombuffer(msg.data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise MalformedImage(topic, "data", f"must be bytes-like, got {type(msg.data).__name__}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise MalformedImage(topic, "data", f"not a decodable {fmt} image ({data.size} bytes)")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def visible_from_compressed(msg: Any, topic: str = "") -> np.ndarray:
    """Visible camera frame -> ``uint8`` (H, W, 3) RGB (gray replicated, alpha dropped)."""
    image = decode_compressed(msg, topic)
    if image.dtype != np.uint8:
        raise MalformedImage(topic, "format", f"a visible image must be 8-bit, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB) if image.shape[2] == 4 else image


def thermal_from_compressed(msg: Any, topic: str = "") -> np.ndarray:
    """Thermal camera frame -> ``uint8`` or ``uint16`` (H, W); colour is refused (not radiometric)."""
    image = decode_compressed(msg, topic)
    if image.ndim != 2:
        raise MalformedImage(
            topic,
            "format",
            "a thermal image must be single-channel (colour-mapped thermal is not radiometric)",
        )
    return image


# message type -> (visible decoder, thermal decoder), each ``(msg, topic) -> array``
INPUT_DECODERS: dict[str, tuple[Callable[[Any, str], np.ndarray], Callable[[Any, str], np.ndarray]]] = {
    IMAGE_TYPE: (to_rgb8, to_thermal),
    COMPRESSED_IMAGE_TYPE: (visible_from_compressed, thermal_from_compressed),
}


def encode_compressed(array: np.ndarray, codec: str, jpeg_quality: int = 90) -> tuple[str, bytes]:
    """``(format, data)`` of a CompressedImage holding ``array`` as image_transport writes it: RGB
    ``uint8 (H, W, 3)`` or gray ``uint8|uint16 (H, W)``; ``codec`` jpeg or png (16-bit needs png)."""
    if codec not in ("jpeg", "png"):
        raise ValueError(f"codec must be jpeg or png, got {codec!r}")
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        encoding, pixels = "rgb8", cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 2 and array.dtype in (np.uint8, np.uint16):
        encoding, pixels = ("mono8" if array.dtype == np.uint8 else "mono16"), array
    else:
        raise ValueError(f"cannot compress a {array.dtype} {array.shape} image (RGB uint8 or gray only)")
    if codec == "jpeg" and pixels.dtype != np.uint8:
        raise ValueError("JPEG is 8-bit: compress 16-bit thermal counts as png")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if codec == "jpeg" else []
    ok, data = cv2.imencode(".jpg" if codec == "jpeg" else ".png", pixels, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {array.shape} image as {codec}")
    stored = "bgr8" if encoding == "rgb8" else encoding
    return f"{encoding}; {codec} compressed {stored}", data.tobytes()
