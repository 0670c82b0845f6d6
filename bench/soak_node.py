"""Soak test of the fusion node: memory (RSS) and queueing over minutes of a steady camera stream; print JSON.

Started like ``bench/node_latency.py`` does (same processes, in a random ROS domain of this run's own,
loopback only, the Fast DDS shared-memory profile): the node as the product runs it (``python -m
ssvif_ros.node.fuse_node --ros-args --params-file config/fuse.yaml -p ...``; the shipped model, or
``--backend passthrough``), node_latency's publisher (``bench/node_latency.py --role publisher``: visible
rgb8 640×480 and thermal mono16 512×640 by default, at ``--rate`` Hz for ``--minutes``) and, in this
process, a subscriber of the fused image (so the node does its work) and of ``/diagnostics``.

Every ``--sample-s`` seconds: the node process's resident memory (``VmRSS`` in /proc/<pid>/status) and its
latest ``/diagnostics`` (published, skipped (model busy), pairs, latency p50). Reported:

- RSS: before the stream (idle), at the end of the warm-up (``--warmup-s`` after the publisher started),
  at the end of the stream, the maximum of the samples and the kernel's peak (VmHWM); the growth after
  warm-up (end / warm-up end − 1; single samples swing by tens of MB with the frame in flight, so also the
  medians of the first and last minute after warm-up) and the slope of a least-squares line through the
  samples after warm-up (MB per minute);
- pairs sent by the publisher vs received, paired, published, skipped because the model was busy,
  unmatched, errors, and the node CPU time in % of one core;
- queueing: "backlog" = pairs − fused − skipped − dropped − errors − no subscribers (pairs handed over
  and not yet done) at every sample and after the stream (must end at 0; the node's dispatcher holds at
  most one pair being fused and one waiting), and the latency p50 at warm-up end vs at the end.

Bounded: the run is stopped after ``--minutes`` + 2 minutes whatever happens (the node is then stopped,
the publisher killed). Prints one JSON document on stdout; progress on stderr.

    python bench/soak_node.py                                  # 8 minutes at 30 Hz, shipped model
    python bench/soak_node.py --minutes 0.3 --warmup-s 5 --rate 10 --sample-s 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

# Network safety before rclpy is imported (children inherit): loopback only, a domain of this run's own.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))

import numpy as np  # noqa: E402


def log(text: str) -> None:
    print(f"[soak_node] {text}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB (10^6 bytes), from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6  # kB (KiB) -> MB
    return values["VmRSS"], values["VmHWM"]


class HardStop(Exception):
    """The run's time bound (``--minutes`` + 2 min) is over."""


def _alarm(signum, frame) -> None:
    raise HardStop("hard time limit reached")


def backlog(values: dict[str, str]) -> int:
    """Pairs handed over and not done yet (fused, skipped, dropped as malformed, failed, no subscribers)."""

    def n(key: str) -> int:
        return int(values.get(key, "0"))

    fused = n("published") - n("passthrough frames")
    done = fused + n("skipped (model busy)") + n("skipped (no subscribers)") + n("errors")
    return n("pairs") - done - dropped_pairs(values)


def dropped_pairs(values: dict[str, str]) -> int:
    """Pairs the pipeline refused (registration "aspect"): counted as thermal malformed, by that field."""
    text = values.get("thermal malformed by field", "")
    fields = dict(item.rsplit(":", 1) for item in text.split(", ") if ":" in item)
    return int(fields.get("aspect", "0"))


def run(args: argparse.Namespace, weights: str | None) -> dict:
    import rclpy  # noqa: F401  (initialised by main)
    from node_latency import (  # bench/node_latency.py
        Listener,
        cpu_seconds,
        model_arguments,
        ms_triplet,
        node_arguments,
        start_node,
        wait_for,
    )

    from ssvif_ros.tools.live import stop_process

    tag = f"s{os.getpid()}"
    namespace = f"/ssvif_soak_{tag}"
    node_name = f"fuse_node_{tag}"
    node_args = node_arguments(namespace, node_name, args.device, args.threads, args.size, args.thermal_size)
    model_args, model_note = model_arguments(args.backend == "passthrough", weights)
    log(f"starting the node ({model_note})")
    command = ["-m", "ssvif_ros.node.fuse_node", "--ros-args", *node_args, *model_args]
    node, node_log = start_node(command, Path(args.log_dir) / "node_soak.log")
    listener = Listener(f"/{node_name}/fused/image", node_name)
    publisher = None
    samples: list[dict] = []
    code: int | None = None
    alive = False
    sent = None
    hard_stopped = False
    rss_idle = stream_s = cpu_percent = rss_final = hwm = None
    final: dict[str, str] = {}
    try:
        wait_for(lambda: listener.sub.get_publisher_count() > 0 or node.poll() is not None, 120, "the node")
        if node.poll() is not None:
            raise RuntimeError(f"the node exited with {node.returncode} at start; see {node_log.name}")
        time.sleep(0.5)
        rss_idle, _ = rss_mb(node.pid)
        duration_s = args.minutes * 60
        publisher = subprocess.Popen(
            [
                sys.executable, str(BENCH / "node_latency.py"), "--role", "publisher",
                "--namespace", namespace, "--rate", str(args.rate), "--duration", str(duration_s),
                "--warmup-s", "0", "--size", args.size, "--thermal-size", args.thermal_size,
            ],
            cwd=REPO,
            env=os.environ,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        t0 = time.monotonic()
        cpu0 = cpu_seconds(node.pid)
        log(f"node up, idle RSS {rss_idle:.1f} MB; streaming for {duration_s:.0f} s at {args.rate:g} Hz")
        next_sample = t0
        next_log = t0 + 60
        while True:
            now = time.monotonic()
            if now >= next_sample:
                rss, _ = rss_mb(node.pid)
                latest = listener.latest_diagnostics()
                values = latest[1] if latest else {}
                samples.append(
                    {
                        "t_s": round(now - t0, 1),
                        "rss_mb": round(rss, 2),
                        "visible_received": int(values.get("visible received", "0")),
                        "pairs": int(values.get("pairs", "0")),
                        "published": int(values.get("published", "0")),
                        "skipped": int(values.get("skipped (model busy)", "0")),
                        "backlog": backlog(values),
                        "latency_p50_ms": ms_triplet(values, "latency")["p50"],
                    }
                )
                next_sample += args.sample_s
            if now >= next_log:
                s = samples[-1]
                line = f"{s['t_s']:.0f} s: RSS {s['rss_mb']:.1f} MB, published {s['published']}, "
                log(line + f"skipped {s['skipped']}, backlog {s['backlog']}")
                next_log += 60
            if publisher.poll() is not None or node.poll() is not None:
                break
            time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
        stream_s = time.monotonic() - t0
        cpu_percent = 100.0 * (cpu_seconds(node.pid) - cpu0) / stream_s if node.poll() is None else None
        out, _ = publisher.communicate(timeout=30)
        sent = json.loads(out.strip().splitlines()[-1])["published_pairs"] if out.strip() else None
        end_mono = time.monotonic()
        try:  # a diagnostics report from after the last pair was done
            wait_for(
                lambda: (listener.latest_diagnostics() or (0,))[0] > end_mono + 1.5, 10, "final diagnostics"
            )
        except TimeoutError as err:
            log(str(err))
        alive = node.poll() is None
        rss_final, hwm = rss_mb(node.pid) if alive else (None, None)
        latest = listener.latest_diagnostics()
        final = latest[1] if latest else {}
    except HardStop:
        hard_stopped = True
        log("hard time limit reached: stopping")
        alive = node.poll() is None
    finally:
        signal.alarm(0)
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
            publisher.wait(timeout=10)
        listener.close()
        code = stop_process(node)
        node_log.close()

    during = [s for s in samples if s["t_s"] <= args.minutes * 60 + args.sample_s]
    after_warmup = [s for s in during if s["t_s"] >= args.warmup_s]
    warm = after_warmup[0] if after_warmup else None
    end = during[-1] if during else None
    slope = None
    if len(after_warmup) >= 3:
        t_min = np.array([s["t_s"] for s in after_warmup]) / 60.0
        slope = float(np.polyfit(t_min, np.array([s["rss_mb"] for s in after_warmup]), 1)[0])

    def n(key: str) -> int:
        return int(final.get(key, "0"))

    # single samples swing with the allocator and the frame being fused (tens of MB): also compare the
    # medians of the first and the last minute after warm-up (a quarter of it when shorter)
    span = (after_warmup[-1]["t_s"] - after_warmup[0]["t_s"]) if after_warmup else 0.0
    window = min(60.0, span / 4)
    first_win = [s["rss_mb"] for s in after_warmup if s["t_s"] <= after_warmup[0]["t_s"] + window]
    last_win = [s["rss_mb"] for s in after_warmup if s["t_s"] >= after_warmup[-1]["t_s"] - window]
    median_growth = None
    if after_warmup:
        median_growth = round(100.0 * (float(np.median(last_win)) / float(np.median(first_win)) - 1.0), 2)
    final_backlog = backlog(final) if final else None
    latency_warm = warm["latency_p50_ms"] if warm else None
    latency_end = ms_triplet(final, "latency")["p50"] if final else None
    received = {"visible": n("visible received"), "thermal": n("thermal received")}
    result = {
        "model": model_note,
        "model_name": final.get("model"),
        "weights": final.get("weights"),
        "backend": final.get("backend"),
        "device": final.get("device"),
        "stream_s": None if stream_s is None else round(stream_s, 1),
        "hard_stopped": hard_stopped,
        "rss_mb": {
            "idle_before_stream": None if rss_idle is None else round(rss_idle, 2),
            "warmup_end": warm["rss_mb"] if warm else None,
            "warmup_end_t_s": warm["t_s"] if warm else None,
            "end": end["rss_mb"] if end else None,
            "end_t_s": end["t_s"] if end else None,
            "after_stream": None if rss_final is None else round(rss_final, 2),
            "max_sampled": max((s["rss_mb"] for s in samples), default=None),
            "peak_vmhwm": None if hwm is None else round(hwm, 2),
        },
        "rss_growth_after_warmup_percent": (
            round(100.0 * (end["rss_mb"] / warm["rss_mb"] - 1.0), 2) if warm and end else None
        ),
        "rss_growth_median_first_vs_last_window_percent": median_growth,
        "rss_median_window_s": round(window, 1),
        "rss_min_after_warmup_mb": min((s["rss_mb"] for s in after_warmup), default=None),
        "rss_slope_after_warmup_mb_per_min": None if slope is None else round(slope, 3),
        "samples_after_warmup": len(after_warmup),
        "pairs_sent": sent,
        "received": received,
        "lost_in_transport": None if sent is None else {k: sent - v for k, v in received.items()},
        "pairs": n("pairs"),
        "published": n("published"),
        "published_share_of_sent": None if not sent else round(n("published") / sent, 4),
        "skipped_model_busy": n("skipped (model busy)"),
        "skipped_no_subscribers": n("skipped (no subscribers)"),
        "unmatched": {"visible": n("unmatched visible"), "thermal": n("unmatched thermal")},
        "malformed": {"visible": n("visible malformed"), "thermal": n("thermal malformed")},
        "pairs_dropped_aspect": dropped_pairs(final),
        "passthrough_frames": n("passthrough frames"),
        "errors": n("errors"),
        "fused_inline": n("fused inline"),
        "fused_on_worker": n("fused on worker"),
        "backlog_max_sampled": max((s["backlog"] for s in samples), default=None),
        "backlog_after_stream": final_backlog,
        "pairs_plus_unmatched_vs_received": {
            "visible": n("pairs") + n("unmatched visible") - received["visible"],
            "thermal": n("pairs") + n("unmatched thermal") - received["thermal"],
        },
        "latency_p50_ms": {"warmup_end": latency_warm, "end": latency_end},
        "inference_ms": ms_triplet(final, "inference"),
        "node_cpu_percent": None if cpu_percent is None else round(cpu_percent, 1),
        "node_alive_at_end": alive,
        "node_exit_code": code,
        "node_log": node_log.name,
        "samples": samples,
    }
    result["queue_grew"] = (
        final_backlog is None or final_backlog != 0 or (result["backlog_max_sampled"] or 0) > 2
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="stream duration, minutes")
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate, Hz")
    parser.add_argument(
        "--warmup-s", type=float, default=60.0, help="seconds of stream before the RSS reference"
    )
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--size", default="480x640", help="visible HEIGHTxWIDTH (rgb8)")
    parser.add_argument("--thermal-size", default="512x640", help="thermal HEIGHTxWIDTH (mono16)")
    parser.add_argument("--backend", default="model", choices=("model", "passthrough"), help="node engine")
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped model, if any)")
    parser.add_argument("--device", default="cpu", help="node device (auto, cpu, cuda:N)")
    parser.add_argument("--threads", type=int, default=1, help="node torch threads (0: torch default)")
    parser.add_argument("--log-dir", default=None, help="folder for the node log (default: a temp folder)")
    args = parser.parse_args(argv)

    import rclpy

    from ssvif_ros.tools.dds import use_shm_transport

    started = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.minutes * 60 + 120))  # the hard bound, start-up included
    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="soak_node_")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    use_shm_transport(args.log_dir)  # as node_latency.py: this process and its children
    rclpy.init()
    try:
        result = run(args, args.weights)
    finally:
        signal.alarm(0)
        rclpy.try_shutdown()
    rss = result["rss_mb"]
    log(
        f"RSS warm-up end {rss['warmup_end']} MB -> end {rss['end']} MB "
        f"({result['rss_growth_after_warmup_percent']} %), "
        f"slope {result['rss_slope_after_warmup_mb_per_min']} MB/min; published {result['published']}"
        f"/{result['pairs_sent']} pairs sent, skipped {result['skipped_model_busy']}"
    )
    meta = {
        "minutes": args.minutes,
        "rate_hz": args.rate,
        "warmup_s": args.warmup_s,
        "sample_s": args.sample_s,
        "visible": f"{args.size} rgb8",
        "thermal": f"{args.thermal_size} mono16",
        "node_torch_threads": args.threads,
        "ros_domain_id": os.environ["ROS_DOMAIN_ID"],
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "rmw_implementation": os.environ.get("RMW_IMPLEMENTATION", "default (rmw_fastrtps_cpp)"),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps({"meta": meta, "soak": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
