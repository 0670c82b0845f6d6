"""Ablation of the colour weight λ_color of the fusion loss: train, evaluate, tabulate.

For each λ in ``--weights-list`` a fresh ``lightunet`` is trained from the same seed (same initial
weights, same crops in the same order: only λ differs) with
``FusionLoss(w_int=20, w_grad=20, w_ssim=10, w_color=λ)``, Adam, for ``--steps`` steps on random
crops; it is saved with :func:`ssvif_ros.checkpoint.save_checkpoint` and evaluated at full resolution
through :class:`ssvif_ros.fusion.engine.FusionEngine` (the path the node uses) with
:func:`ssvif_ros.eval.metrics.evaluate_fusion`. One JSON record per λ is printed (metric means over the
evaluation pairs, training seconds); ``--out x.json`` also keeps per-image scores, ``--out x.md`` writes
a Markdown table.

Data: every root in ``--train-roots`` whose ``manifest.csv`` has a ``split`` column contributes only its
``--train-split`` rows (a root without one, such as RoadScene, contributes all pairs); the evaluation
root is filtered the same way by ``--eval-split``. The defaults train on RoadScene + the 12 MSRS train
pairs and evaluate on the 23 MSRS test pairs of ``../shared/data``::

    python training/color_weight_ablation.py --weights-list 0,1,3,10,30 --steps 400 --out /tmp/color.md
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ssvif_ros.train.color_weight_ablation import run

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the repo


def parse_weights(text: str) -> list[float]:
    """``"0,1,3"`` -> ``[0.0, 1.0, 3.0]``; each weight must be a finite number >= 0."""
    try:
        weights = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"--weights-list: not a comma-separated list of numbers: {text!r}"
        ) from error
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
        raise argparse.ArgumentTypeError(f"--weights-list needs finite weights >= 0, got {text!r}")
    return weights


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-list", type=parse_weights, default=parse_weights("0,1,3,10,30"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared machine)")
    parser.add_argument(
        "--train-roots",
        type=Path,
        nargs="+",
        default=[SHARED_DATA / "roadscene", SHARED_DATA / "msrs_subset"],
    )
    parser.add_argument("--train-split", default="train", help="manifest split kept from the train roots")
    parser.add_argument("--eval-root", type=Path, default=SHARED_DATA / "msrs_subset")
    parser.add_argument("--eval-split", default="test", help="manifest split kept from the eval root")
    parser.add_argument("--out", type=Path, help="write the results: .json (with per-image scores) or .md")
    parser.add_argument("--checkpoint-dir", type=Path, help="keep the checkpoints here (default: discard)")
    parser.add_argument("--save-fused", type=Path, help="write fused images of --save-names here, per λ")
    parser.add_argument("--save-names", nargs="*", default=[], help="evaluation pair names to save")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.crop < 11 or args.threads < 1:
        parser.error("--steps, --batch-size and --threads must be >= 1, --crop >= 11 (the SSIM window)")
    if args.out is not None and args.out.suffix not in (".json", ".md"):
        parser.error(f"--out must end in .json or .md, got {args.out}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
