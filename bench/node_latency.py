"""End-to-end latency and overhead of the fusion node across processes: publisher → node → subscriber.

Three processes on loopback, in a random ROS domain of their own (set here, inherited by the children):

- a publisher (this script with ``--role publisher``) sends visible rgb8 (640×480 by default) and 16-bit
  thermal (512×640, a FLIR Boson-like size, so thermal gain and the resize to the visible size run)
  frames at ``--rate`` Hz, stamped with the wall clock just before ``publish``;
- the node, started like the product: ``python -m ssvif_ros.node.fuse_node --ros-args --params-file
  config/fuse.yaml -p ...`` (topics remapped into a private namespace);
- this process subscribes to ``~/fused/image`` and ``/diagnostics``.

Two configurations by default (``--configs``):

- ``model``: the shipped model, or while none ships a random-init ``lightunet`` via ``allow_untrained``
  (same cost as a trained one; the JSON says which);
- ``passthrough``: the benchmark-only ``passthrough`` backend (the engine returns the visible image), which
  isolates the node's own overhead from the model.

A third configuration, ``relay`` (``--configs passthrough,relay``), measures the transport floor: instead of
the node, a minimal rclpy relay (this script with ``--role relay``; same input QoS, one executor thread)
pairs the two inputs by identical stamp and republishes the received visible message unchanged (no
decoding, no copy), recording per pair (publish time − stamp) like the node does. Its "overhead" is what any
Python node pays here for receiving the two images and publishing one, before doing any work; the node's
overhead minus it is what the node itself adds. ``relay_work`` adds to the relay the least per-pair work any
fusion node has to do, at numpy speed: the 16 → 8-bit table look-up of the thermal frame (no window, no
resize) and a new output message filled from the visible pixels: a lower bound for a Python node.

Reported per configuration (after ``--warmup-s`` seconds, for ``--duration`` seconds):

- ``node_overhead_ms``: per frame, (publish time − header stamp) − inference time, measured in the node
  (so it includes publisher → node transport, pairing, waiting for the worker, thermal gain,
  registration, encoding and publishing), p50/p95/p99 from the node's diagnostics window;
- ``node_latency_ms``, ``inference_ms`` (engine time per frame, pre/post-processing included) likewise;
- ``e2e_latency_ms``: stamp → arrival at the subscriber, measured here per frame (adds node → subscriber);
- published pairs, delivered frames, frames skipped because the model was busy, unmatched frames;
- ``node_cpu_percent``: CPU time of the node process over the window (/proc), in % of one core.

Prints one JSON document on stdout; progress on stderr.

    python bench/node_latency.py                        # 30 s per configuration at 30 Hz
    python bench/node_latency.py --duration 10 --rate 15 --configs passthrough
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
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Network safety before rclpy is imported (children inherit): loopback only, a domain of this run's own.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))

import numpy as np  # noqa: E402

GOAL_MS = {"p50": 3.0, "p99": 10.0}

from ssvif_ros.cli import size_pair as parse_size  # noqa: E402
from ssvif_ros.fusion.thermal import window_lut  # noqa: E402
from ssvif_ros.node.diagnostics import PERCENTILES, percentile  # noqa: E402
from ssvif_ros.tools.dds import use_shm_transport  # noqa: E402  (the Fast DDS shared-memory profile)
from ssvif_ros.tools.live import stop_process  # noqa: E402


def log(text: str) -> None:
    print(f"[node_latency] {text}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 as the node's diagnostics compute them, rounded to µs (None when empty)."""
    return {f"p{q}": None if not values else round(percentile(values, q), 3) for q in PERCENTILES}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- publisher role -----------------------------------------------------------------------------------------


def run_publisher(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from ssvif_ros.io.image_msg import numpy_to_image

    rclpy.init()
    node = rclpy.create_node("bench_publisher")
    pub_vis = node.create_publisher(Image, f"{args.namespace}/visible", qos_profile_sensor_data)
    pub_th = node.create_publisher(Image, f"{args.namespace}/thermal", qos_profile_sensor_data)
    height, width = parse_size(args.size)
    th_height, th_width = parse_size(args.thermal_size)
    rng = np.random.default_rng(0)
    # A few distinct frames (moving gradient + noise), built once; only the stamp changes per publish.
    frames = []
    for k in range(8):
        ramp = (np.arange(width)[None, :] + 8 * k + np.arange(height)[:, None]) % 256
        vis = np.stack([ramp, ramp[::-1], np.full_like(ramp, 40 * k % 256)], axis=2).astype(np.uint8)
        vis = (vis + rng.integers(0, 8, vis.shape)).astype(np.uint8)
        th = (
            3000 + 20 * ((np.arange(th_width)[None, :] + np.arange(th_height)[:, None] + 5 * k) % 256)
        ).astype(np.uint16)
        frames.append((numpy_to_image(vis, "rgb8"), numpy_to_image(th, "mono16")))
    for vis_msg, th_msg in frames:
        vis_msg.header.frame_id, th_msg.header.frame_id = "bench_visible", "bench_thermal"
    deadline = time.monotonic() + 60
    while (pub_vis.get_subscription_count() == 0 or pub_th.get_subscription_count() == 0) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    period = 1.0 / args.rate
    total = round((args.warmup_s + args.duration) * args.rate)
    start = time.monotonic() + 0.1
    sent = 0
    for i in range(total):
        target = start + i * period
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        vis_msg, th_msg = frames[i % len(frames)]
        now = time.time_ns()
        for msg in (vis_msg, th_msg):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        pub_vis.publish(vis_msg)
        pub_th.publish(th_msg)
        sent += 1
    print(
        json.dumps({"published_pairs": sent, "late_start_s": round(time.monotonic() - start, 3)}), flush=True
    )
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def run_relay(args: argparse.Namespace) -> int:
    """The transport floor: pair visible/thermal by identical stamp, republish the visible message as is.

    Prints one JSON line on exit (SIGINT): ``[stamp ns, publish time − stamp in ms]`` per relayed
    pair."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(args.node_name)
    out = node.create_publisher(
        Image, f"/{args.node_name}/fused/image", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    )
    pending: dict[str, dict[tuple[int, int], object]] = {"visible": {}, "thermal": {}}
    from ssvif_ros.io.image_msg import fill_image

    lut = window_lut(3000.0, 8000.0)
    result = Image()
    latencies_ms: list[tuple[int, float]] = []

    def on_message(kind: str, other: str, msg) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        match = pending[other].pop(key, None)
        if match is None:
            pending[kind][key] = msg
            if len(pending[kind]) > 10:
                pending[kind].pop(next(iter(pending[kind])))
            return
        visible = msg if kind == "visible" else match
        if args.relay_work:  # the least a fusion node must do with the pair, at numpy speed
            thermal = msg if kind == "thermal" else match
            counts = np.frombuffer(thermal.data, dtype=np.uint16)
            np.take(lut, counts)  # 16 -> 8 bit (the node also computes the window and resizes)
            pixels = np.frombuffer(visible.data, dtype=np.uint8).reshape(visible.height, visible.width, 3)
            out.publish(fill_image(result, pixels, "rgb8", visible.header))  # a new message, as the node
        else:
            out.publish(visible)
        stamp_ns = key[0] * 1_000_000_000 + key[1]
        latencies_ms.append((stamp_ns, (time.time_ns() - stamp_ns) / 1e6))

    for kind, other in (("visible", "thermal"), ("thermal", "visible")):
        node.create_subscription(
            Image,
            f"{args.namespace}/{kind}",
            lambda msg, kind=kind, other=other: on_message(kind, other, msg),
            qos_profile_sensor_data,
        )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(json.dumps({"relay_latency_ms": latencies_ms}), flush=True)
    rclpy.try_shutdown()
    return 0


# --- orchestrator + subscriber ------------------------------------------------------------------------------


class Listener:
    """Subscriber of the fused image and /diagnostics, spun in a background thread."""

    def __init__(self, fused_topic: str, node_name: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.node = rclpy.create_node(f"bench_listener_{os.getpid()}")
        self.lock = threading.Lock()
        self.arrivals: list[tuple[int, int]] = []  # (stamp ns, arrival ns)
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        self.status_name = f"{node_name}: fusion"
        self.sub = self.node.create_subscription(
            Image, fused_topic, self._on_image, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_image(self, msg) -> None:
        arrival = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.arrivals.append((stamp, arrival))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name == self.status_name:
                with self.lock:
                    self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def latest_diagnostics(self) -> tuple[float, dict[str, str]] | None:
        with self.lock:
            return self.diagnostics[-1] if self.diagnostics else None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def counter(values: dict[str, str], key: str) -> int:
    return int(values.get(key, "0"))


def ms_triplet(values: dict[str, str], key: str) -> dict[str, float | None]:
    out = {}
    for q in ("p50", "p95", "p99"):
        text = values.get(f"{key} {q} (ms)", "n/a")
        out[q] = None if text == "n/a" else float(text)
    return out


def node_arguments(
    namespace: str, node_name: str, device: str, threads: int, visible: str, thermal: str
) -> list[str]:
    """The fusion node's ``--ros-args`` shared by the node benches: the params file, the inputs remapped
    under ``namespace``, ``device``/``threads``, warm-up at the ``HxW`` sizes, no segmentation outputs."""
    height, width = parse_size(visible)
    th_height, th_width = parse_size(thermal)
    return [
        "--params-file", str(REPO / "config" / "fuse.yaml"),
        "-r", f"__node:={node_name}",
        "-r", f"visible/image_raw:={namespace}/visible",
        "-r", f"thermal/image_raw:={namespace}/thermal",
        "-p", f"device:={device}",
        "-p", f"torch_threads:={threads}",
        "-p", f"warmup.visible_size:=[{height}, {width}]",
        "-p", f"warmup.thermal_size:=[{th_height}, {th_width}]",
        "-p", "outputs.segmentation:=false",
        "-p", "outputs.overlay:=false",
    ]  # fmt: skip


def model_arguments(
    passthrough: bool, weights: str | None, model: str = "lightunet"
) -> tuple[list[str], str]:
    """The node parameters choosing what it runs, and a note saying what that is."""
    if passthrough:
        note = "passthrough backend (engine returns the visible image; benchmark only)"
        return ["-p", "backend:=passthrough"], note
    if weights:
        return ["-p", f"weights:={weights}"], f"trained model {weights}"
    return (
        ["-p", "allow_untrained:=true", "-p", f"model:={model}"],
        f"no weights given: the node's default (the shipped model; a random-init {model} if none ships)",
    )


def start_node(command: list[str], log_path: Path, relay: bool = False) -> tuple[subprocess.Popen, Any]:
    """``python COMMAND`` in the repository, output to ``log_path`` (a relay's stdout stays a pipe: it
    reports its figures there); returns the process and the open log."""
    node_log = open(log_path, "w+b")
    node = subprocess.Popen(
        [sys.executable, *command],
        cwd=REPO,
        env=os.environ,
        stdout=subprocess.PIPE if relay else node_log,
        stderr=node_log if relay else subprocess.STDOUT,
    )
    return node, node_log


def run_config(config: str, args: argparse.Namespace, weights: str | None) -> dict:
    import rclpy  # noqa: F401  (initialised by main)

    tag = f"b{os.getpid()}_{config}"
    namespace = f"/ssvif_bench_{tag}"
    node_name = f"fuse_node_{tag}"
    expected_frames = round((args.warmup_s + args.duration) * args.rate)
    node_args = node_arguments(namespace, node_name, args.device, args.threads, args.size, args.thermal_size)
    node_args += ["-p", f"diagnostics.window:={expected_frames}"]
    model_args, model_note = model_arguments(config == "passthrough", weights, args.model)
    node_args += model_args
    for assignment in args.node_param:
        node_args += ["-p", assignment]
    relay = config in ("relay", "relay_work")
    if relay:
        model_note = "minimal rclpy relay (pairs by stamp, republishes the visible message; no node)"
        command = [str(Path(__file__).resolve()), "--role", "relay", "--namespace", namespace]
        command += ["--node-name", node_name]
        if config == "relay_work":
            model_note = (
                "minimal rclpy relay + the least per-frame work of a fusion node (thermal 16 -> 8 bit "
                "through a fixed table, a new output message from the visible pixels; no resize, no model)"
            )
            command += ["--relay-work"]
    else:
        command = ["-m", "ssvif_ros.node.fuse_node", "--ros-args", *node_args]
    log(f"{config}: starting the node ({model_note})")
    node, node_log = start_node(command, Path(args.log_dir) / f"node_{config}.log", relay)
    listener = Listener(f"/{node_name}/fused/image", node_name)
    publisher = None
    try:
        wait_for(lambda: listener.sub.get_publisher_count() > 0 or node.poll() is not None, 120, "the node")
        if node.poll() is not None:
            raise RuntimeError(f"the node exited with {node.returncode}; see {node_log.name}")
        publisher = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                "publisher",
                "--namespace",
                namespace,
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--warmup-s",
                str(args.warmup_s),
                "--size",
                args.size,
                "--thermal-size",
                args.thermal_size,
            ],
            cwd=REPO,
            env=os.environ,
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: listener.arrivals or publisher.poll() is not None, 60, "the first fused frame")
        first = time.monotonic()
        time.sleep(max(0.0, args.warmup_s - 0.5))
        start_wall = time.time_ns()
        start_mono = time.monotonic()
        cpu_start = cpu_seconds(node.pid)
        diag_start = listener.latest_diagnostics()
        log(f"{config}: first frame after {first - start_mono + args.warmup_s:.1f} s; measuring")
        out, _ = publisher.communicate(timeout=args.duration + args.warmup_s + 60)
        end_mono = time.monotonic()
        cpu_end = cpu_seconds(node.pid)
        time.sleep(0.5)  # let the last frames arrive
        if relay:
            diag_end = {}
        else:  # a diagnostics report that covers the end of the run
            wait_for(
                lambda: (listener.latest_diagnostics() or (0,))[0] > end_mono + 0.3, 10, "final diagnostics"
            )
            diag_end = listener.latest_diagnostics()[1]
        published = json.loads(out.strip().splitlines()[-1])["published_pairs"]
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
        listener.close()
        if relay:
            node.send_signal(signal.SIGINT)  # rclpy's handler ends the spin; the relay then prints
            relay_out, _ = node.communicate(timeout=30)
            code = node.returncode
        else:
            code = stop_process(node)
        node_log.close()
    if relay:  # the relay's own record stands in for the node's diagnostics
        record = json.loads(relay_out.splitlines()[-1])["relay_latency_ms"]
        in_window = [ms for stamp, ms in record if stamp >= start_wall]
        floor = percentiles(in_window)
        diag_end = {f"overhead {q} (ms)": str(v) for q, v in floor.items() if v is not None}
        diag_end.update({"pairs": str(len(in_window)), "published": str(len(in_window))})
        diag_end["backend"] = "none (relay)"
    with listener.lock:
        arrivals = [(s, a) for s, a in listener.arrivals if s >= start_wall]
    e2e = [(a - s) / 1e6 for s, a in arrivals]
    start_values = diag_start[1] if diag_start else {}
    window_s = end_mono - start_mono
    counted = (
        "pairs",
        "published",
        "skipped (model busy)",
        "unmatched visible",
        "unmatched thermal",
        "fused inline",
        "fused on worker",
    )
    delta = {k: counter(diag_end, k) - counter(start_values, k) for k in (*counted, "visible received")}
    overhead = ms_triplet(diag_end, "overhead")
    result = {
        "config": config,
        "model": model_note,
        "backend": diag_end.get("backend"),
        "device": diag_end.get("device"),
        "window_s": round(window_s, 2),
        "published_pairs_total": published,
        "visible_received_in_window": delta["visible received"],
        "paired_in_window": delta["pairs"],
        "delivered_in_window": len(arrivals),
        "delivered_rate_hz": round(len(arrivals) / window_s, 2),
        "skipped_model_busy_in_window": delta["skipped (model busy)"],
        "fused_inline_in_window": delta["fused inline"],
        "fused_on_worker_in_window": delta["fused on worker"],
        "unmatched_in_window": {"visible": delta["unmatched visible"], "thermal": delta["unmatched thermal"]},
        "node_overhead_ms": overhead,
        "in_node_overhead_ms": ms_triplet(diag_end, "in-node overhead"),
        "node_latency_ms": ms_triplet(diag_end, "latency"),
        "inference_ms": ms_triplet(diag_end, "inference"),
        "node_window_frames": int(diag_end.get("latency window (frames)", "0")),
        "e2e_latency_ms": percentiles(e2e),
        "node_cpu_percent": round(100.0 * (cpu_end - cpu_start) / window_s, 1),
        "node_exit_code": code,
        "goal_overhead_ms": GOAL_MS,
        "goal_met": overhead["p50"] is not None
        and overhead["p50"] <= GOAL_MS["p50"]
        and overhead["p99"] <= GOAL_MS["p99"],
    }
    log(
        f"{config}: delivered {result['delivered_in_window']}/{result['visible_received_in_window']}, "
        f"overhead p50/p95/p99 {overhead['p50']}/{overhead['p95']}/{overhead['p99']} ms, "
        f"cpu {result['node_cpu_percent']} %"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per configuration")
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate, Hz")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="seconds published before measuring")
    parser.add_argument("--size", default="480x640", help="visible HEIGHTxWIDTH")
    parser.add_argument("--thermal-size", default="512x640", help="thermal HEIGHTxWIDTH (mono16)")
    parser.add_argument("--configs", default="model,passthrough", help="comma list of model, passthrough")
    parser.add_argument("--weights", default=None, help="checkpoint (default: the shipped model, if any)")
    parser.add_argument("--model", default="lightunet", help="random-init model when no weights exist")
    parser.add_argument("--device", default="cpu", help="node device (auto, cpu, cuda:N)")
    parser.add_argument("--threads", type=int, default=1, help="node torch threads (0: torch default)")
    parser.add_argument(
        "--transport",
        default="shm",
        choices=("shm", "default"),
        help="shm: a Fast DDS profile with a shared-memory transport sized for images (written to the log "
        "folder, passed via FASTDDS_DEFAULT_PROFILES_FILE); default: the middleware's defaults",
    )
    parser.add_argument(
        "--node-param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="extra node parameter, repeatable (e.g. inline_max_ms:=0 to force the worker thread)",
    )
    parser.add_argument("--log-dir", default=None, help="folder for the node logs (default: a temp folder)")
    parser.add_argument(
        "--role", default="bench", choices=("bench", "publisher", "relay"), help=argparse.SUPPRESS
    )
    parser.add_argument("--node-name", default="relay", help=argparse.SUPPRESS)
    parser.add_argument("--relay-work", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="/ssvif_bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "publisher":
        return run_publisher(args)
    if args.role == "relay":
        return run_relay(args)

    import tempfile

    import rclpy

    from ssvif_ros.fusion.engine import default_weights

    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="node_latency_")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    if args.transport == "shm":
        use_shm_transport(args.log_dir)
    shipped = default_weights()
    weights = args.weights or (str(shipped) if shipped is not None else None)
    rclpy.init()
    runs = []
    try:
        for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
            if config not in ("model", "passthrough", "relay", "relay_work"):
                parser.error(f"unknown config {config!r}: use model, passthrough and/or relay")
            runs.append(run_config(config, args, weights))
    finally:
        rclpy.try_shutdown()
    meta = {
        "rate_hz": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup_s,
        "visible": f"{args.size} rgb8",
        "thermal": f"{args.thermal_size} mono16",
        "node_torch_threads": args.threads,
        "extra_node_params": args.node_param,
        "ros_domain_id": os.environ["ROS_DOMAIN_ID"],
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "node_logs": args.log_dir,
        "transport": args.transport,
        "rmw_implementation": os.environ.get("RMW_IMPLEMENTATION", "default (rmw_fastrtps_cpp)"),
        "overhead_definition": "per frame (publish time - header stamp) - engine time, measured in the node",
    }
    print(json.dumps({"meta": meta, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
