"""Pictures for reports: a labelled tile and a contact sheet (demo, evaluations, replay)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def labelled(image: np.ndarray, text: str) -> Image.Image:
    """The image (H×W or H×W×3 uint8) as RGB with ``text`` on a dark band at the bottom-left (the top-left
    corner of an overlay holds its class legend)."""
    pil = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=max(12, pil.height // 20))
    height = draw.textbbox((0, 0), text, font=font)[3]
    origin = (8, pil.height - height - 8)
    box = draw.textbbox(origin, text, font=font)
    draw.rectangle((box[0] - 5, box[1] - 4, box[2] + 5, box[3] + 4), fill=(0, 0, 0))
    draw.text(origin, text, fill=(255, 255, 0), font=font)
    return pil


def contact_sheet(rows: list[list[Image.Image]], scale: float = 0.5) -> Image.Image:
    """Tile equally sized images row by row, scaled by ``scale``."""
    w, h = rows[0][0].size
    tw, th = int(w * scale), int(h * scale)
    sheet = Image.new("RGB", (tw * max(len(r) for r in rows), th * len(rows)))
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            sheet.paste(tile.resize((tw, th), Image.Resampling.BILINEAR), (j * tw, i * th))
    return sheet
