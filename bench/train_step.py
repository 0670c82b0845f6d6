"""Training-step throughput of the SSVIF recipe on this machine: Stage I vs Stage II, per fusion model.

Prints one JSON document to stdout (progress on stderr):
``{"meta": {...}, "records": [{"model", "params", "stage1", "stage2_plain", "stage2_measure",
"stage2_amortised", "stage2_over_stage1"}, ...]}``; each timing holds the median seconds per step and
images/s.

What a step is (the operations of ``training/train.py``, on random tensors, batch ``--batch`` of
``--crop``×``--crop`` crops, Adam, float32):

- Stage I: fusion forward, fusion loss, backward, optimizer step.
- Stage II plain: + SegHead on the fused features, SegFormer (``--segformer`` preset) on the fused image,
  CSC loss, ``L_fusion + w·L_CSC``, backward through all three, optimizer step.
- Stage II measure: + the GDWA gradient norms (``task_grad_norms``: two extra backward passes to the
  fusion model's parameters) before the backward.
- Stage II amortised: ``((k−1)·plain + measure) / k`` with ``k = --measure-every`` (the trainer's
  ``weighting.gdwa_measure_every``).

    python bench/train_step.py                                   # all models, 128x128, batch 10
    python bench/train_step.py --models lightunet --steps 5 --segformer b3
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssvif_ros.models import SegHead, create_model, list_models
from ssvif_ros.models.segformer import build_segformer
from ssvif_ros.train.losses import FusionLoss, csc_loss
from ssvif_ros.train.weighting import create_weighting, task_grad_norms


def timed(step: Callable[[], None], steps: int, warmup: int) -> dict[str, float]:
    """Median and min seconds of ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "n": steps}


def bench_model(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = create_model(name)
    seg_head = SegHead(model.feature_channels, args.num_classes, 64)
    segformer = build_segformer(args.segformer, args.num_classes)
    weighting = create_weighting("gdwa")
    params = [*model.parameters(), *seg_head.parameters(), *segformer.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    fusion_loss = FusionLoss()
    shared = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    vis = torch.rand(args.batch, 3, args.crop, args.crop, generator=g)
    ir = torch.rand(args.batch, 1, args.crop, args.crop, generator=g)

    def stage1() -> None:
        fused, _ = model(vis, ir)
        loss, _ = fusion_loss(fused, vis, ir)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def stage2(measure: bool) -> Callable[[], None]:
        def step() -> None:
            fused, features = model(vis, ir)
            l_fusion, _ = fusion_loss(fused, vis, ir)
            l_csc, _ = csc_loss(seg_head(features, tuple(fused.shape[-2:])), segformer(fused))
            total = weighting.combine({"fusion": l_fusion, "csc": l_csc})
            if measure:
                task_grad_norms({"fusion": l_fusion, "csc": l_csc}, shared)
            total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    record: dict = {
        "model": name,
        "params": {
            "fusion": sum(p.numel() for p in model.parameters()),
            "seg_head": sum(p.numel() for p in seg_head.parameters()),
            "segformer": sum(p.numel() for p in segformer.parameters()),
        },
    }
    print(f"{name}: stage I", file=sys.stderr)
    record["stage1"] = timed(stage1, args.steps, args.warmup)
    print(f"{name}: stage II", file=sys.stderr)
    record["stage2_plain"] = timed(stage2(False), args.steps, args.warmup)
    record["stage2_measure"] = timed(stage2(True), args.steps, args.warmup)
    k = args.measure_every
    amortised = ((k - 1) * record["stage2_plain"]["median_s"] + record["stage2_measure"]["median_s"]) / k
    record["stage2_amortised"] = {"median_s": amortised}
    for key in ("stage1", "stage2_plain", "stage2_measure", "stage2_amortised"):
        record[key]["images_per_s"] = args.batch / record[key]["median_s"]
    record["stage2_over_stage1"] = amortised / record["stage1"]["median_s"]
    record["measure_overhead"] = record["stage2_measure"]["median_s"] / record["stage2_plain"]["median_s"]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(list_models()), help="comma-separated model names")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--segformer", default="b0", help="SegFormer preset (b0, b3, tiny)")
    parser.add_argument("--num-classes", type=int, default=9)
    parser.add_argument("--measure-every", type=int, default=10, help="weighting.gdwa_measure_every")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    records = [bench_model(name.strip(), args) for name in args.models.split(",") if name.strip()]
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.platform(),
        "device": "cpu",
        "crop": args.crop,
        "batch": args.batch,
        "segformer": args.segformer,
        "num_classes": args.num_classes,
        "measure_every": args.measure_every,
        "steps": args.steps,
        "warmup": args.warmup,
        "dtype": "float32",
    }
    print(json.dumps({"meta": meta, "records": records}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
