"""Time two ONNX exports of the same model against each other, interleaved, in one process.

For a code change that should only make the exported graph cheaper (same inputs, same outputs): export
the model before and after (``bench/inference.py --cache-dir DIR`` leaves ``*_fused.onnx`` there; run the
old checkout's own ``bench/inference.py`` for the "before" file), then

    python bench/onnx_ab.py BEFORE.onnx AFTER.onnx --rounds 100

Each round runs A then B on the same random inputs (shapes from the files; batch 1, the size given for
dynamic axes), one ONNX Runtime thread each, so load from other processes on a shared machine hits both
alike. Prints one JSON document: p50 per file, the median of the per-round ratios B/A and the largest
absolute difference between the two outputs.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def random_feed(session, height: int, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One float32 array in [0, 1) per input; dynamic dimensions: batch 1, then ``height``, ``width``."""
    feed = {}
    for given in session.get_inputs():
        dims = [d if isinstance(d, int) else None for d in given.shape]
        defaults = [1, None, height, width]
        shape = [d if d is not None else defaults[k] for k, d in enumerate(dims)]
        if None in shape:
            raise SystemExit(
                f"onnx_ab: input {given.name} has a dynamic dimension with no default: {given.shape}"
            )
        feed[given.name] = rng.random(shape, dtype=np.float32)
    return feed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="the reference export (before)")
    p.add_argument("b", help="the export compared with it (after)")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--size", default="480x640", help="HxW for dynamic spatial axes")
    args = p.parse_args()
    import onnxruntime as ort

    height, width = (int(v) for v in args.size.split("x"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = [
        ort.InferenceSession(f, options, providers=["CPUExecutionProvider"]) for f in (args.a, args.b)
    ]
    feed = random_feed(sessions[0], height, width, np.random.default_rng(0))
    outputs = [s.run(None, feed)[0] for s in sessions]
    times: list[list[float]] = [[], []]
    for r in range(args.warmup + args.rounds):
        for k, session in enumerate(sessions):
            start = time.perf_counter()
            session.run(None, feed)
            if r >= args.warmup:
                times[k].append(1e3 * (time.perf_counter() - start))
    a, b = (np.asarray(t) for t in times)
    print(
        json.dumps(
            {
                "a": args.a,
                "b": args.b,
                "rounds": args.rounds,
                "threads": 1,
                "p50_ms": {"a": round(float(np.median(a)), 2), "b": round(float(np.median(b)), 2)},
                "median_ratio_b_over_a": round(float(np.median(b / a)), 3),
                "max_abs_diff": float(np.abs(outputs[0] - outputs[1]).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
