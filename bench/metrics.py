"""Time each fusion metric and ``evaluate_fusion`` on one 640×480 RGB triple; print JSON.

The triple is the first MSRS pair in ``../shared/data/msrs_subset`` when that folder is present
(fused = the plain average of visible RGB and infrared), else a seeded synthetic textured scene.
Times are medians over ``--repeats`` runs after one warm-up. Goal: all seven metrics in ≤ 0.5 s.

    python bench/metrics.py [--repeats 7] [--out runs/bench_metrics.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

from ssvif_ros.eval import metrics  # noqa: E402

GOAL_MS = 500.0
MSRS_DIR = REPO_ROOT.parent / "shared" / "data" / "msrs_subset"


def load_triple() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(vis H×W×3, ir H×W, fused H×W×3) uint8 and a description of where they came from."""
    vis_dir, ir_dir = MSRS_DIR / "vi", MSRS_DIR / "ir"
    if vis_dir.is_dir() and ir_dir.is_dir():
        names = sorted(p.name for p in vis_dir.glob("*.png") if (ir_dir / p.name).is_file())
        if names:
            vis = metrics.read_image_u8(vis_dir / names[0])
            ir = metrics.to_gray(metrics.read_image_u8(ir_dir / names[0]))
            if vis.ndim == 2:
                vis = np.repeat(vis[..., None], 3, axis=2)
            fused = ((vis.astype(np.uint16) + ir[..., None]) // 2).astype(np.uint8)
            return vis, ir, fused, f"msrs_subset/{names[0]} (fused = average)"
    rng = np.random.default_rng(0)
    h, w = 480, 640

    def scene(channels: int, blur: float) -> np.ndarray:
        shape = (h, w, channels)
        img = ndimage.gaussian_filter(rng.normal(size=shape), (blur, blur, 0))
        img = 120 + 50 * img / img.std()
        for _ in range(6):
            y, x = rng.integers(0, h - 60), rng.integers(0, w - 80)
            img[y : y + rng.integers(20, 120), x : x + rng.integers(20, 160)] = rng.uniform(0, 255, channels)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    vis = scene(3, 2.0)
    ir = scene(1, 4.0)[..., 0]
    fused = ((vis.astype(np.uint16) + ir[..., None]) // 2).astype(np.uint8)
    return vis, ir, fused, "synthetic seeded scene (fused = average)"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per metric (median reported)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    args = parser.parse_args()

    vis, ir, fused, source = load_triple()
    individual: dict[str, Callable[[], object]] = {
        "EN": lambda: metrics.entropy(fused),
        "MI": lambda: metrics.mutual_information(vis, ir, fused),
        "VIF": lambda: metrics.vif(vis, ir, fused),
        "Qabf": lambda: metrics.qabf(vis, ir, fused),
        "SSIM": lambda: metrics.ssim(vis, ir, fused),
        "MS_SSIM": lambda: metrics.ms_ssim(vis, ir, fused),
        "DeltaE": lambda: metrics.delta_e(vis, fused),
    }
    per_metric_ms = {name: round(median_ms(fn, args.repeats), 2) for name, fn in individual.items()}
    total_ms = median_ms(lambda: metrics.evaluate_fusion(vis, ir, fused), args.repeats)
    result = {
        "benchmark": "fusion metrics, one triple",
        "input": source,
        "size_hw": list(vis.shape[:2]),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, numpy {np.__version__}",
        "repeats": args.repeats,
        "per_metric_ms": per_metric_ms,
        "sum_of_individual_ms": round(sum(per_metric_ms.values()), 2),
        "evaluate_fusion_ms": round(total_ms, 2),
        "goal_ms": GOAL_MS,
        "meets_goal": total_ms <= GOAL_MS,
        "values": {k: round(v, 6) for k, v in metrics.evaluate_fusion(vis, ir, fused).items()},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
