"""Read one visible, infrared or label image file into numpy, with errors that name the file.

Everything that decodes a dataset file goes through here, so the dataset (which raises on the first bad
file) and the scanner (``python -m ssvif_ros.data.check``, which reports all of them) cannot disagree.

Returned arrays follow the project convention:

- visible: ``uint8 (H, W, 3)`` RGB. Gray (``L``, ``LA``, ``1``) is replicated to three channels, alpha is
  dropped, palette images are expanded. 16-bit or float visible images are rejected.
- infrared: ``uint8 (H, W)``. 8-bit gray is used as is; RGB/palette IR is converted to gray with the
  ITU-R 601 luma weights (PIL ``convert("L")``); 16-bit gray (``I;16*`` or ``I`` with values in
  0..65535) is mapped to 8 bit by :func:`thermal16_to_uint8` (default: per-image 1–99 % percentile
  window). :func:`read_infrared_raw` gives the undecided ``uint8``/``uint16`` array.
- label: class ids ``(H, W)`` ``uint8`` (or ``uint16`` for a 16-bit label file); 255 means "ignore".
  ``L`` and ``P`` (the palette *index* is the class id, as in VOC-style labels) are accepted; colour
  (RGB) label images are rejected because they are visualisations, not class ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from ssvif_ros.fusion.thermal import apply_window, percentile_window

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
"""File extensions (lower case) taken as images; matched case-insensitively. TIFF is accepted because raw
16-bit thermal frames are often stored that way."""

Ir16Method = Literal["percentile", "minmax", "linear"]
IR16_METHODS: tuple[str, ...] = ("percentile", "minmax", "linear")

_EIGHT_BIT_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class DatasetError(ValueError):
    """Base class of every data problem raised by ``ssvif_ros.data``."""


class DataFileError(DatasetError):
    """One file (or one pair of files) cannot be used; ``path`` names it and ``reason`` says why.

    ``DataFileError(message)`` with a single argument (how a torch DataLoader re-raises a worker's
    exception in the main process, with the worker's traceback as message) keeps the type, with
    ``path = None``.
    """

    def __init__(self, path: Path | str, reason: str | None = None) -> None:
        if reason is None:
            self.path: Path | None = None
            self.reason = str(path)
            super().__init__(self.reason)
            return
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[DataFileError], tuple[Path | str, str | None]]:
        # Keeps the exception picklable (path and reason intact) for multiprocessing.
        return (type(self), (self.path, self.reason) if self.path is not None else (self.reason, None))


def is_image_file(path: Path) -> bool:
    """True for a visible (non-hidden) file whose extension is one of :data:`IMAGE_EXTENSIONS`."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _open_loaded(path: Path) -> Image.Image:
    """Open and fully load ``path``; any decoder failure becomes a :class:`DataFileError` naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            # load() keeps the pixel data in memory; copy() detaches it from the (closing) file handle.
            return img.copy()
    except FileNotFoundError as exc:
        raise DataFileError(path, "file not found") from exc
    except Image.DecompressionBombError as exc:
        raise DataFileError(path, f"image too large to decode safely ({exc})") from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError… for bad files
        if isinstance(exc, Image.UnidentifiedImageError):
            reason = "not a readable image (unknown or corrupt format)"
        elif "truncated" in str(exc).lower():
            reason = f"truncated image file ({exc})"
        else:
            reason = f"cannot decode image ({type(exc).__name__}: {exc})"
        raise DataFileError(path, reason) from exc


def _sixteen_bit_gray(img: Image.Image, path: Path) -> np.ndarray:
    """``I;16*`` or ``I`` image → ``uint16 (H, W)``; ``I`` values outside 0..65535 are rejected."""
    if img.mode == "I":
        raw = np.asarray(img)
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 65535):
            raise DataFileError(
                path, f"unsupported mode 'I' with values {int(raw.min())}..{int(raw.max())} (not 16-bit)"
            )
        return raw.astype(np.uint16)
    return np.asarray(img).astype(np.uint16)  # also turns big-endian I;16B into native uint16


def _unsupported(img: Image.Image, path: Path, role: str) -> DataFileError:
    return DataFileError(
        path,
        f"unsupported image mode {img.mode!r} for {role} images "
        f"(supported: 8-bit gray/RGB/palette{', 16-bit gray' if role == 'infrared' else ''})",
    )


def read_visible(path: Path | str) -> np.ndarray:
    """Visible image file → ``uint8 (H, W, 3)`` RGB (gray replicated, alpha dropped)."""
    path = Path(path)
    img = _open_loaded(path)
    if img.mode in _SIXTEEN_BIT_MODES:
        raise DataFileError(
            path, f"unsupported image mode {img.mode!r}: visible images must be 8-bit gray or RGB, not 16-bit"
        )
    if img.mode not in _EIGHT_BIT_MODES:
        raise _unsupported(img, path, "visible")
    if img.mode in ("1", "L", "LA", "La"):
        gray = np.asarray(img.convert("L"))
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def read_infrared_raw(path: Path | str) -> np.ndarray:
    """Infrared image file → gray ``uint8 (H, W)`` or ``uint16 (H, W)`` (raw 16-bit kept as is)."""
    path = Path(path)
    img = _open_loaded(path)
    if img.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_gray(img, path)
    if img.mode not in _EIGHT_BIT_MODES:
        raise _unsupported(img, path, "infrared")
    if img.mode == "L":
        return np.asarray(img)
    if img.mode in ("P", "PA", "RGBA", "RGBa", "CMYK", "YCbCr", "RGBX"):
        img = img.convert("RGB")
    return np.asarray(img.convert("L"))


def thermal16_to_uint8(
    raw: np.ndarray, method: Ir16Method = "percentile", window: Sequence[float] = (1.0, 99.0)
) -> np.ndarray:
    """Map a 16-bit thermal frame ``uint16 (H, W)`` to ``uint8 (H, W)``.

    Why per image: raw radiometric counts depend on the camera and scene temperature, so a fixed window
    clips or flattens most frames; a robust window keeps the scene's contrast.

    - ``"percentile"`` (default): linear stretch of the ``window`` percentiles (default 1 % and 99 %) to
      0 and 255, values outside clipped. Robust to a few hot/dead pixels.
    - ``"minmax"``: the same with the image minimum and maximum.
    - ``"linear"``: fixed full-range scale ``round(v / 257)`` (0..65535 → 0..255), no per-image adaptation.

    A flat frame (window of zero width) maps to 0. ``uint8`` input is returned unchanged.
    """
    if raw.dtype == np.uint8:
        return raw
    if method not in IR16_METHODS:
        raise ValueError(f"unknown 16-bit infrared method {method!r}; choose one of {IR16_METHODS}")
    if method == "linear":
        return np.clip(raw.astype(np.float32) / 257.0 + 0.5, 0, 255).astype(np.uint8)
    if method == "minmax":
        low, high = float(raw.min()), float(raw.max())
    else:
        low_pct, high_pct = float(window[0]), float(window[1])
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise ValueError(f"percentile window must satisfy 0 <= low < high <= 100, got {tuple(window)}")
        low, high = percentile_window(raw, low_pct, high_pct)
    # The same mapping as the node's thermal gain control (one implementation, so offline data and the
    # live node agree pixel for pixel).
    return apply_window(raw.astype(np.uint16, copy=False), low, high)


def read_infrared(
    path: Path | str, ir16: Ir16Method = "percentile", ir16_window: Sequence[float] = (1.0, 99.0)
) -> np.ndarray:
    """Infrared image file → ``uint8 (H, W)``; 16-bit frames go through :func:`thermal16_to_uint8`."""
    return thermal16_to_uint8(read_infrared_raw(path), ir16, ir16_window)


def read_label(path: Path | str) -> np.ndarray:
    """Label image file → class ids ``(H, W)`` ``uint8`` (``uint16`` for 16-bit files); 255 = ignore."""
    path = Path(path)
    img = _open_loaded(path)
    if img.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_gray(img, path)
    if img.mode in ("L", "P"):
        return np.asarray(img)  # for "P" the palette index is the class id
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode in ("RGB", "RGBA", "RGBX"):
        raise DataFileError(
            path,
            f"unsupported image mode {img.mode!r} for a label image: labels must be single-channel class "
            "ids (L or P), not a colour visualisation",
        )
    raise _unsupported(img, path, "label")
