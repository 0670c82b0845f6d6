"""``sensor_msgs/CompressedImage`` (image_transport's ``compressed`` topics) -> numpy, without cv_bridge.

Recorded bags usually carry the visible camera as JPEG and sometimes the thermal one as PNG (16-bit PNG
keeps the radiometric counts). The ``format`` field is image_transport's: ``"jpeg"``/``"png"``, or
``"<encoding>; <codec> compressed <fmt>"`` (e.g. ``"mono16; png compressed mono16"``); the pixels' own
layout is read from the decoded image, so the field is only checked for a known codec. OpenCV decodes
(``IMREAD_UNCHANGED``: 16-bit stays 16-bit, gray stays gray); colour comes out BGR and is turned to RGB.
Errors are :class:`~ssvif_ros.io.image_msg.MalformedImage` naming the topic and field, as for raw images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssvif_ros.io.image_msg import MalformedImage

__all__ = ["CODECS", "decode_compressed", "thermal_from_compressed", "visible_from_compressed"]

CODECS = ("jpeg", "jpg", "png")


def decode_compressed(msg: Any, topic: str = "") -> np.ndarray:
    """The image in ``msg.data``: ``uint8``/``uint16`` (H, W) for gray, ``uint8`` (H, W, 3|4) RGB(A)."""
    import cv2

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
        return np.ascontiguousarray(image[..., ::-1])
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[..., [2, 1, 0, 3]])
    return image


def visible_from_compressed(msg: Any, topic: str = "") -> np.ndarray:
    """Visible camera frame -> ``uint8`` (H, W, 3) RGB (gray replicated, alpha dropped)."""
    image = decode_compressed(msg, topic)
    if image.dtype != np.uint8:
        raise MalformedImage(topic, "format", f"a visible image must be 8-bit, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


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
