"""``make demo``: fuse generated night / fog / day road scenes and show the result.

Writes ``OUT/contact_sheet.png`` (one row per scene: visible | thermal | fused by each method), one fused
PNG per scene and method, and ``OUT/metrics.json``; prints a one-screen summary. Methods: the shipped
model when it exists (``ssvif_ros/weights``), plus the classic Laplacian-pyramid baseline for reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..baselines import fuse_baseline
from ..data.synthetic import generate_scene
from ..metrics import evaluate_fusion

CONDITIONS = ("night", "fog", "day")
SHOWN_METRICS = ("EN", "MI", "VIF", "Qabf", "SSIM", "DeltaE")


def labelled(image: np.ndarray, text: str) -> Image.Image:
    """The image (H×W or H×W×3 uint8) as RGB with ``text`` on a dark band at the top-left."""
    pil = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=max(12, pil.height // 20))
    box = draw.textbbox((8, 6), text, font=font)
    draw.rectangle((box[0] - 5, box[1] - 4, box[2] + 5, box[3] + 4), fill=(0, 0, 0))
    draw.text((8, 6), text, fill=(255, 255, 0), font=font)
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ssvif-demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--seed", type=int, default=7, help="scene seed (the same street under each condition)")
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the generated scenes")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)

    from ..engine import FusionEngine, default_weights

    methods: dict[str, object] = {}
    weights = default_weights()
    if weights is not None:
        engine = FusionEngine(weights=weights)
        methods[f"model {engine.name}"] = lambda vis, ir: engine.fuse(vis, ir).image
    else:
        print("note: no trained model ships yet (ssvif_ros/weights is empty): showing the classic baseline")
    methods["laplacian (classic)"] = lambda vis, ir: fuse_baseline("laplacian", vis, ir)

    rows, results = [], {}
    for condition in CONDITIONS:
        scene = generate_scene(args.seed, width, height, condition)
        row = [labelled(scene.vis, f"visible ({condition})"), labelled(scene.ir, "thermal")]
        for method, fuse in methods.items():
            t0 = time.perf_counter()
            fused = fuse(scene.vis, scene.ir)
            ms = (time.perf_counter() - t0) * 1e3
            slug = method.split()[0] if method.startswith("laplacian") else method.split()[1]
            Image.fromarray(fused).save(args.out / f"{condition}_{slug}.png")
            metrics = evaluate_fusion(scene.vis, scene.ir, fused)
            results.setdefault(condition, {})[method] = {"fuse_ms": round(ms, 1), **metrics}
            row.append(labelled(fused, method))
        rows.append(row)

    sheet_path = args.out / "contact_sheet.png"
    contact_sheet(rows).save(sheet_path)
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"\nfused {len(CONDITIONS)} generated scenes ({width}x{height}, seed {args.seed})")
    header = f"{'scene':<7}{'method':<28}{'ms':>7}" + "".join(f"{m:>8}" for m in SHOWN_METRICS)
    print(header)
    for condition, per_method in results.items():
        for method, r in per_method.items():
            values = "".join(f"{r[m]:>8.3f}" for m in SHOWN_METRICS)
            print(f"{condition:<7}{method:<28}{r['fuse_ms']:>7.1f}{values}")
    print(f"\ncontact sheet: {sheet_path}\nmetrics:       {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
