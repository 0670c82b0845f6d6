"""Segmentation masks for people: class palette, mask colouring and an alpha blend over the fused image.

Labels are ``uint8 (H, W)`` class ids; ids without a palette colour (in particular 255, "ignore") are
not coloured: black in :func:`colorize`, the image unchanged in :func:`blend`. Both run through 256-entry
lookup tables built once per :class:`MaskOverlay` and integer arithmetic (alpha in steps of 1/256), a few
ms per 640×480 frame on one core.

The default palette continues the synthetic scenes' Cityscapes colours
(:func:`ssvif_ros.data.synthetic.palette`), so a model trained on them shows the same colours everywhere.
"""

from __future__ import annotations

import colorsys
import functools

import numpy as np
from numpy.typing import ArrayLike

IGNORE_INDEX = 255
"""Label id that is never coloured."""

MAX_CLASSES = 255
"""Most colours a palette may have (ids 0..254), so that :data:`IGNORE_INDEX` stays uncoloured."""

_EXTRA_CITYSCAPES = (
    (190, 153, 153),  # fence
    (250, 170, 30),  # traffic light
    (0, 60, 100),  # bus
    (0, 80, 100),  # train
    (0, 0, 230),  # motorcycle
)


@functools.cache
def _default_colours() -> np.ndarray:
    """(255, 3) uint8: the 15 native synthetic colours, 5 more Cityscapes ones, then golden-ratio hues."""
    from ssvif_ros.data.synthetic import PALETTE  # lazy: ssvif_ros.data imports torch

    colours = [tuple(int(v) for v in rgb) for rgb in PALETTE] + list(_EXTRA_CITYSCAPES)
    seen = set(colours)
    hue = 0.0
    step = 0
    while len(colours) < MAX_CLASSES:
        hue = (hue + 0.618033988749895) % 1.0
        saturation = (0.95, 0.6, 0.8)[step % 3]
        value = (0.95, 0.75, 0.55)[(step // 3) % 3]
        step += 1
        rgb = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue, saturation, value))
        if rgb not in seen:
            seen.add(rgb)
            colours.append(rgb)
    table = np.array(colours, dtype=np.uint8)
    table.flags.writeable = False
    return table


DEFAULT_NUM_COLOURS = 20
"""Size of :func:`class_palette`'s default: 15 synthetic-scene classes + 5 more Cityscapes colours."""


def class_palette(num_classes: int | None = None) -> np.ndarray:
    """``(K, 3)`` uint8 RGB colours for K classes (None: the 20 default colours).

    K in 2..15 gives :func:`ssvif_ros.data.synthetic.palette` (the colours of the synthetic classes merged
    to K); other K up to 255 take the first K default colours (all distinct).
    """
    if num_classes is None:
        return _default_colours()[:DEFAULT_NUM_COLOURS].copy()
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be an integer in 1..{MAX_CLASSES}, got {num_classes!r}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    if 2 <= num_classes <= 15:
        from ssvif_ros.data.synthetic import palette  # lazy: ssvif_ros.data imports torch

        return palette(int(num_classes))
    return _default_colours()[: int(num_classes)].copy()


def _validated_palette(palette: ArrayLike) -> np.ndarray:
    table = np.asarray(palette)
    if table.ndim != 2 or table.shape[1] != 3 or not 1 <= table.shape[0] <= MAX_CLASSES:
        raise ValueError(f"palette must have shape (K, 3) with 1 <= K <= {MAX_CLASSES}, got {table.shape}")
    if table.dtype != np.uint8:
        if table.dtype.kind not in "iu" or table.min() < 0 or table.max() > 255:
            raise ValueError(f"palette must hold integers in 0..255, got {table.dtype}")
        table = table.astype(np.uint8)
    return table


def _as_label_ids(labels: np.ndarray, num_colours: int) -> np.ndarray:
    """``uint8 (H, W)`` ids; other integer dtypes are mapped, ids without a colour becoming 255."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or labels.dtype.kind not in "iu":
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"labels must be an integer (H, W) array of class ids, got {got}")
    if labels.dtype == np.uint8:
        return labels
    inside = (labels >= 0) & (labels < num_colours)
    return np.where(inside, labels, IGNORE_INDEX).astype(np.uint8)


class MaskOverlay:
    """Precomputed lookup tables for one palette and alpha: :meth:`colorize` and :meth:`blend`.

    ``palette``: ``(K, 3)`` uint8 RGB, K <= 255; ``alpha``: weight of the class colour in [0, 1] (used in
    steps of 1/256); ``names``: one name (or None: shown as ``id k``) per class id to draw a legend of the
    classes in each frame (no legend when None).
    """

    def __init__(
        self, palette: ArrayLike | None = None, alpha: float = 0.5, names: list[str | None] | None = None
    ) -> None:
        table = _validated_palette(class_palette() if palette is None else palette)
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.palette = table
        self.alpha = alpha
        count = table.shape[0]
        self._colour_lut = np.zeros((256, 3), dtype=np.uint8)  # ids without a colour: black
        self._colour_lut[:count] = table
        weight = round(alpha * 256)
        # blend: out = (image · keep[id] + add[id] + 128) >> 8, per channel, in uint16 (≤ 255·256 + 128)
        self._keep_lut = np.full(256, 256, dtype=np.uint16)
        self._keep_lut[:count] = 256 - weight
        self._add_lut = np.zeros((3, 256), dtype=np.uint16)  # planar: one row per channel
        self._add_lut[:, :count] = table.T.astype(np.uint16) * weight
        self._legend = None if names is None else legend_tiles(names, table)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """``(H, W)`` class ids → ``uint8 (H, W, 3)`` colours (black where the id has no colour)."""
        ids = _as_label_ids(labels, self.palette.shape[0])
        return np.take(self._colour_lut, ids, axis=0)

    def blend(self, image_rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``uint8 (H, W, 3)`` image with class colours blended in → new ``uint8 (H, W, 3)``."""
        if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 or image_rgb.ndim != 3:
            got = (
                f"{image_rgb.dtype} {image_rgb.shape}"
                if isinstance(image_rgb, np.ndarray)
                else type(image_rgb).__name__
            )
            raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {got}")
        if image_rgb.shape[2] != 3 or image_rgb.shape[:2] != getattr(labels, "shape", None):
            raise ValueError(
                f"image (H, W, 3) and labels (H, W) must match, got {image_rgb.shape} and "
                f"{getattr(labels, 'shape', type(labels).__name__)}"
            )
        ids = _as_label_ids(labels, self.palette.shape[0])
        # Channel-planar arithmetic: broadcasting a per-pixel weight over a length-3 last axis is ~5×
        # slower in numpy than running the inner loops along image rows.
        acc = np.multiply(image_rgb.transpose(2, 0, 1), np.take(self._keep_lut, ids), dtype=np.uint16)
        acc += np.take(self._add_lut, ids, axis=1)
        acc += 128
        acc >>= 8
        out = np.empty(image_rgb.shape, dtype=np.uint8)
        out.transpose(2, 0, 1)[...] = acc
        if self._legend is not None:
            draw_legend(out, self._legend, ids)
        return out


LEGEND_ROW = 14  # pixels per legend entry


def legend_tiles(names: list[str | None], palette: np.ndarray) -> list[np.ndarray]:
    """One small RGB tile per class id: its colour swatch and its name (``id k`` when the id is unnamed),
    drawn once so the per-frame legend is a few array copies."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=11)
    tiles = []
    for k, name in enumerate(names[: palette.shape[0]]):
        text = name if name else f"id {k}"
        width = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font)) + 20
        tile = Image.new("RGB", (width, LEGEND_ROW), (0, 0, 0))
        draw = ImageDraw.Draw(tile)
        draw.rectangle((2, 2, 11, LEGEND_ROW - 3), fill=tuple(int(c) for c in palette[k]))
        draw.text((15, 0), text, fill=(255, 255, 255), font=font)
        tiles.append(np.asarray(tile))
    return tiles


def draw_legend(image: np.ndarray, tiles: list[np.ndarray], ids: np.ndarray) -> None:
    """Paste the tiles of the class ids present in ``ids`` down the top-left corner of ``image``, in place."""
    present = np.flatnonzero(np.bincount(ids.ravel(), minlength=len(tiles))[: len(tiles)])
    y = 2
    for k in present:
        tile = tiles[k]
        h, w = min(tile.shape[0], image.shape[0] - y), min(tile.shape[1], image.shape[1] - 2)
        if h <= 0:
            break
        image[y : y + h, 2 : 2 + w] = tile[:h, :w]
        y += LEGEND_ROW


def colorize(labels: np.ndarray, palette: ArrayLike) -> np.ndarray:
    """``(H, W)`` class ids → ``uint8 (H, W, 3)`` with ``palette`` ``(K, 3)`` colours (others black)."""
    return MaskOverlay(palette).colorize(labels)


def blend(image_rgb: np.ndarray, labels: np.ndarray, palette: ArrayLike, alpha: float = 0.5) -> np.ndarray:
    """``round((1 - alpha) · image + alpha · palette[label])`` where the label has a colour, else the
    image unchanged; ``uint8 (H, W, 3)``. For a video stream build one :class:`MaskOverlay` instead."""
    return MaskOverlay(palette, alpha).blend(image_rgb, labels)


def named_palette(class_names: list[str | None] | None, num_classes: int) -> np.ndarray:
    """:func:`class_palette` with each named id in its class's colour when the name is one of the synthetic
    scenes' classes (a head whose id 7 is named "sky" is drawn sky blue, not in class 7's colour); an unnamed
    id keeps a colour no named id uses."""
    table = class_palette(num_classes)
    if not class_names:
        return table
    from ssvif_ros.data.synthetic import CLASS_NAMES, PALETTE  # lazy: ssvif_ros.data imports torch

    named = {k: CLASS_NAMES.index(n) for k, n in enumerate(class_names[:num_classes]) if n in CLASS_NAMES}
    for k, native in named.items():
        table[k] = PALETTE[native]
    used = {tuple(table[k]) for k in named}
    spare = [c for c in _default_colours() if tuple(c) not in {tuple(t) for t in table}]
    for k in range(num_classes):
        if k not in named and tuple(table[k]) in used:
            table[k] = spare.pop(0)
    return table


def class_overlay(class_names: list[str | None] | None, num_classes: int, alpha: float) -> MaskOverlay:
    """The overlay of a segmentation head with ``num_classes`` ids: named ids in their class's colour, and a
    legend (names, or ``id k`` for an anonymous id). Build one per stream (it renders the legend once)."""
    return MaskOverlay(named_palette(class_names, num_classes), alpha, legend_names(class_names, num_classes))


def legend_names(class_names: list[str | None] | None, num_classes: int) -> list[str | None]:
    """The legend's names: the checkpoint's, or all None (anonymous ids, shown as ``id k``)."""
    return list(class_names) if class_names else [None] * num_classes
