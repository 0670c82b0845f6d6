"""Time the thermal registration step of the node (resize + homography warp) beside baselines; print JSON.

One 640×512 thermal frame (uint8 and uint16, smooth seeded content) registered to 640×480 visible, as a
typical 640×512 thermal + VGA visible rig: :class:`~ssvif_ros.fusion.registration.Registration` with the
identity (a resize) and with a mild perspective homography (a warp over cached maps), next to what would do
the same without it in the same run: Pillow's antialiased bilinear resize, ``cv2.warpPerspective`` (maps
computed every frame) and Pillow's ``Image.transform(PERSPECTIVE)``. Medians over ``--repeats`` after one
warm-up, ``--threads`` OpenCV threads (1: the node shares the CPU with inference). Also a visible message
to RGB (``to_rgb8``) per encoding, beside the per-channel numpy copies it replaced.

    python bench/registration.py [--repeats 200] [--threads 1] [--out runs/bench_registration.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

from ssvif_ros.fusion.registration import Registration  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "bench"))
from train_step import timed  # noqa: E402  (bench/train_step.py)

THERMAL_SIZE, VISIBLE_SIZE = (512, 640), (480, 640)
HOMOGRAPHY = np.array([[1.02, 0.01, -8.0], [0.005, 0.99, 4.0], [1e-5, 0.0, 1.0]])


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one warm-up (bench/train_step.py's ``timed``)."""
    return round(timed(fn, repeats, warmup=1)["median_s"] * 1e3, 3)


def frames() -> dict[str, np.ndarray]:
    """Smooth seeded thermal content at the thermal size, as uint16 counts and as 8-bit."""
    rng = np.random.default_rng(0)
    coarse = rng.normal(30000, 3000, (THERMAL_SIZE[0] // 16, THERMAL_SIZE[1] // 16)).astype(np.float32)
    counts = cv2.resize(coarse, THERMAL_SIZE[::-1], interpolation=cv2.INTER_CUBIC)
    u16 = np.clip(counts, 0, 65535).astype(np.uint16)
    return {"uint8": (u16 >> 8).astype(np.uint8), "uint16": u16}


def timings(repeats: int) -> dict[str, dict[str, float]]:
    out_h, out_w = VISIBLE_SIZE
    resize = Registration(np.eye(3), VISIBLE_SIZE)
    warp = Registration(HOMOGRAPHY, VISIBLE_SIZE)
    scale = np.diag([out_w / THERMAL_SIZE[1], out_h / THERMAL_SIZE[0], 1.0])
    native = HOMOGRAPHY @ scale  # the same warp applied to the unresized frame, for the baselines
    pillow_coeffs = tuple((np.linalg.inv(native) / np.linalg.inv(native)[2, 2]).reshape(-1)[:8])
    results: dict[str, dict[str, float]] = {}
    size, bilinear = (out_w, out_h), Image.Resampling.BILINEAR
    for dtype, frame in frames().items():
        results[dtype] = {
            "registration_resize_ms": median_ms(lambda f=frame: resize(f), repeats),
            "pillow_resize_ms": median_ms(
                lambda f=frame: np.array(Image.fromarray(f).resize(size, bilinear)), repeats
            ),
            "registration_warp_ms": median_ms(lambda f=frame: warp(f), repeats),
            "cv2_warp_perspective_ms": median_ms(
                lambda f=frame: cv2.warpPerspective(f, native, size, flags=cv2.INTER_LINEAR), repeats
            ),
        }
        if dtype == "uint8":  # Pillow's PERSPECTIVE transform has no 16-bit mode
            results[dtype]["pillow_transform_ms"] = median_ms(
                lambda f=frame: np.array(
                    Image.fromarray(f).transform(size, Image.Transform.PERSPECTIVE, pillow_coeffs, bilinear)
                ),
                repeats,
            )
    return results


def colour_timings(repeats: int) -> dict[str, dict[str, float]]:
    """A 640×480 visible message to RGB (``to_rgb8``, OpenCV) beside the per-channel numpy copies it
    replaced, per encoding."""
    from ssvif_ros.io.image_msg import numpy_to_image, to_rgb8

    rng = np.random.default_rng(1)
    results = {}
    for encoding, channels in (("bgr8", 3), ("bgra8", 4), ("rgba8", 4), ("mono8", 1)):
        pixels = rng.integers(0, 256, (*VISIBLE_SIZE, channels), dtype=np.uint8)
        msg = numpy_to_image(pixels if channels > 1 else pixels[..., 0], encoding)

        def numpy_copies(p: np.ndarray = pixels, enc: str = encoding) -> np.ndarray:
            out = np.empty((*VISIBLE_SIZE, 3), dtype=np.uint8)
            if enc.startswith("bgr"):
                out[..., 0], out[..., 1], out[..., 2] = p[..., 2], p[..., 1], p[..., 0]
            else:
                out[...] = p[..., :3] if p.shape[2] > 1 else p
            return out

        results[encoding] = {
            "to_rgb8_ms": median_ms(lambda m=msg: to_rgb8(m), repeats),
            "numpy_copies_ms": median_ms(numpy_copies, repeats),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    report = {
        "thermal": list(THERMAL_SIZE),
        "visible": list(VISIBLE_SIZE),
        "threads": args.threads,
        "opencv": cv2.__version__,
        "machine": platform.processor() or platform.machine(),
        "median_ms": timings(args.repeats),
        "visible_to_rgb_median_ms": colour_timings(args.repeats),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
