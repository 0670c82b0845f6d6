"""Time lightunet's closed-form guide rules alone in ONNX Runtime, with ONNX Runtime's per-operator profile.

Prints one JSON document per guide on stdout: the p50 of ``--repeats`` timed runs at ``--size`` on one
thread, the largest difference from eager torch, and milliseconds per run by operator type (the top 12),
from ``SessionOptions.enable_profiling``. This is how the saliency rule's cost was split up (BENCHMARKS.md,
"Inference backends"):

    python bench/guide_profile.py                 # every guide rule at 480x640
    python bench/guide_profile.py --guides saliency --size 240x320
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssvif_ros.models.guides import GUIDES, guide_image


class GuideOnly(torch.nn.Module):
    def __init__(self, guide: str) -> None:
        super().__init__()
        self.guide = guide

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return guide_image(self.guide, vis, ir)


def profile(guide: str, height: int, width: int, repeats: int) -> dict:
    import onnxruntime as ort

    vis, ir = torch.rand(1, 3, height, width), torch.rand(1, 1, height, width)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "guide.onnx")
        torch.onnx.export(
            GuideOnly(guide), (vis, ir), path, input_names=["vis", "ir"], opset_version=17, dynamo=False
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {"vis": vis.numpy(), "ir": ir.numpy()}
        times = []
        for _ in range(repeats + 3):
            start = time.perf_counter()
            out = session.run(None, feed)[0]
            times.append(time.perf_counter() - start)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    runs = repeats + 3
    return {
        "guide": guide,
        "size": f"{height}x{width}",
        "p50_ms": round(1e3 * float(np.median(times[3:])), 2),
        "max_abs_vs_torch": float(np.abs(out - guide_image(guide, vis, ir).numpy()).max()),
        "ms_per_run_by_op": {k: round(v / 1e3 / runs, 2) for k, v in by_op.most_common(12)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--guides", default=",".join(GUIDES))
    p.add_argument("--size", default="480x640")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    height, width = (int(v) for v in args.size.split("x"))
    for guide in args.guides.split(","):
        print(json.dumps(profile(guide, height, width, args.repeats)))


if __name__ == "__main__":
    main()
