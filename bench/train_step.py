"""Training-step throughput of the SSVIF recipe on this machine: Stage I vs Stage II, per fusion model.

Times :meth:`ssvif_ros.train.trainer.Trainer.train_step`, the step ``training/train.py`` runs (forward,
named losses, weighting, the GDWA gradient norms on measuring steps, backward, optimiser step, the
non-finite check), on batches of ``--batch`` synthetic ``--crop``×``--crop`` crops, float32, CPU.
Prints one JSON document to stdout (progress on stderr):
``{"meta": {...}, "records": [{"model", "params", "stage1", "stage2_plain", "stage2_measure",
"stage2_amortised", "stage2_over_stage1"}, ...]}``; each timing holds the median seconds per step and
images/s.

- Stage I: the fusion model on the fusion loss.
- Stage II plain: + SegHead and SegFormer (``--segformer`` preset) and the CSC loss, combined by GDWA.
- Stage II measure: + the GDWA gradient norms (two extra backward passes), every ``--measure-every``-th step.
- Stage II amortised: ``((k−1)·plain + measure) / k`` with ``k = --measure-every``.

    python bench/train_step.py                                   # all models, 128x128, batch 10
    python bench/train_step.py --models lightunet --steps 5 --segformer b3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ssvif_ros.config import load_config
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.models import list_models
from ssvif_ros.train.config import DEFAULTS, OPEN_KEYS, check_config
from ssvif_ros.train.trainer import Trainer


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


def make_trainer(name: str, data: Path, run_dir: Path, args: argparse.Namespace) -> Trainer:
    overrides = [
        f"model.name={name}",
        f"data.roots=[{data}]",
        f"data.crop={args.crop}",
        "data.val_fraction=0",
        "data.num_workers=0",
        f"training.batch_size={args.batch}",
        f"ssvif.segformer={args.segformer}",
        f"ssvif.num_classes={args.num_classes}",
        f"weighting.gdwa_measure_every={args.measure_every}",
        f"run.dir={run_dir}",
        "run.tensorboard=false",
        "run.progress=false",
        f"system.num_threads={args.threads}",
        "system.device=cpu",
    ]
    cfg = load_config(None, overrides, defaults=DEFAULTS, open_keys=OPEN_KEYS)
    check_config(cfg)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's log lines; stdout is the JSON
        trainer = Trainer(cfg)
    trainer.wrap_for_training()
    return trainer


def bench_model(name: str, data: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(name, data, Path(run_dir), args)
        keys = [(0, i) for i in range(args.batch)]
        loader = torch.utils.data.DataLoader(trainer.train_items, batch_size=args.batch, sampler=keys)
        batch = next(iter(loader))
        k = args.measure_every

        def step(joint: bool, index: int) -> Callable[[], None]:
            return lambda: trainer.train_step(batch, 0, index, joint)

        record: dict = {
            "model": name,
            "params": {key: sum(p.numel() for p in m.parameters()) for key, m in trainer.modules.items()},
        }
        print(f"{name}: stage I", file=sys.stderr)
        record["stage1"] = timed(step(False, 1), args.steps, args.warmup)
        print(f"{name}: stage II", file=sys.stderr)
        record["stage2_plain"] = timed(step(True, 1), args.steps, args.warmup)  # step % k != 0
        record["stage2_measure"] = timed(step(True, 0), args.steps, args.warmup)  # a measuring step
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
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "scenes"
        write_dataset(data, args.batch, seed=0, width=args.crop, height=args.crop, progress=False)
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        records = [bench_model(name, data, args) for name in names]
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
        "step": "ssvif_ros.train.trainer.Trainer.train_step",
    }
    print(json.dumps({"meta": meta, "records": records}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
