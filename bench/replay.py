"""Throughput of ``ssvif-replay`` on a 640×480 bag, and the share of bag I/O + pairing in it; print JSON.

The bag (``--frames`` visible frames at 10 Hz, 16-bit thermal at 320×240 and the same rate with ±2 ms
stamp jitter, labels) is made from synthetic scenes by ``ssvif-make-bag`` and cached under ``--cache``
(default /tmp/ssvif_bench_replay). Three runs on the same bag, each with the output bag written:

- ``passthrough``: the engine's benchmark backend (no model): pure read + decode + pairing + thermal +
  write cost, i.e. the ceiling of the replay;
- ``model``: the shipped model (ssvif_ros/weights), or a random-init lightunet when none ships (said in
  the JSON), fusion metrics off: the replay's own overhead next to real inference;
- ``metrics``: the model again with fusion metrics every ``--metrics-every`` pairs, to price them per frame.

"io_and_pairing" = bag reading/deserialising + image decoding + synchroniser + output-bag writing. Its
share is reported against the loop's wall time (target < 10 % with the model).

    python bench/replay.py [--frames 300] [--metrics-every 10] [--threads 0] [--out runs/bench_replay.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from ssvif_ros.data.synthetic import write_dataset  # noqa: E402
from ssvif_ros.fusion.engine import default_weights  # noqa: E402
from ssvif_ros.tools.make_bag import RigOptions, make_bag  # noqa: E402
from ssvif_ros.tools.replay import ReplayOptions, load_candidate, replay  # noqa: E402

SCENES = 30  # distinct scenes, cycled through the bag's frames


def cached_bag(cache: Path, frames: int) -> tuple[Path, float]:
    """The benchmark bag for ``frames`` frames (built once), and the seconds it took to build now."""
    started = time.perf_counter()
    scenes = cache / "scenes_640x480"
    if not (scenes / "meta.json").is_file():
        write_dataset(scenes, SCENES, seed=21, width=640, height=480)
    bag = cache / f"bag_{frames}"
    if not (bag / "metadata.yaml").is_file():
        opts = RigOptions(
            rate_hz=10, thermal_size=(320, 240), thermal_encoding="mono16", jitter_ms=2, frames=frames, seed=0
        )
        make_bag(scenes, bag, opts)
    return bag, time.perf_counter() - started


def run(bag: Path, spec: str, backend: str, metrics_every: int, out: Path) -> dict:
    candidate = load_candidate(spec, backend=backend, device="cpu")
    opts = ReplayOptions(metrics_every=metrics_every, plots=False, contact_frames=2, progress=False)
    summary = replay(bag, [candidate], opts, out)
    timing, model = summary["timing"], summary["models"][0]
    phases = {k: round(v, 3) for k, v in timing["phases_s"].items()}
    result = {
        "model": candidate.name,
        "kind": candidate.kind,
        "pairs": summary["pairing"]["fused_pairs"],
        "wall_s": round(timing["wall_s"], 2),
        "pairs_per_s": round(timing["pairs_per_s"], 2),
        "phases_s": phases,
        "io_and_pairing_s": round(timing["io_and_pairing_s"], 3),
        "io_and_pairing_share": round(timing["io_and_pairing_share"], 4),
        "inference_ms_p50": round(model["inference_ms"]["p50"], 2),
        "inference_ms_p95": round(model["inference_ms"]["p95"], 2),
    }
    if metrics_every > 0:
        n = model["metrics_frames"]
        result["metrics_frames"] = n
        result["metrics_s_per_frame"] = round(phases.get("metrics", 0.0) / max(n, 1), 4)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--metrics-every", type=int, default=10, help="metrics subsampling of the third run")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ssvif_bench_replay")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    bag, build_s = cached_bag(args.cache, args.frames)
    shipped = default_weights()
    spec = str(shipped) if shipped is not None else "lightunet"
    work = args.cache / "runs"
    runs = {
        "passthrough": run(bag, "passthrough", "passthrough", 0, work / "passthrough"),
        "model": run(bag, spec, "torch", 0, work / "model"),
        "metrics": run(bag, spec, "torch", args.metrics_every, work / "metrics"),
    }
    model = runs["model"]
    metrics_cost = runs["metrics"]["metrics_s_per_frame"]
    per_pair_model = model["wall_s"] / model["pairs"]
    result = {
        "bench": "replay",
        "bag": {"path": str(bag), "frames": args.frames, "size": "640x480", "thermal": "mono16 320x240"},
        "bag_build_s": round(build_s, 1),
        "model": "shipped" if shipped is not None else "lightunet random init (no shipped model yet)",
        "runs": runs,
        "io_and_pairing_share_with_model": model["io_and_pairing_share"],
        "target_share": 0.10,
        "metrics_every_frame_pairs_per_s": round(1.0 / (per_pair_model + metrics_cost), 2),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
