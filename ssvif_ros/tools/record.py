"""``ssvif-record``: write chosen ROS 2 topics to a bag (mcap by default), e.g. the fusion node's outputs.

    ssvif-record OUT_BAG TOPIC [TOPIC ...] [--storage mcap|sqlite3] [--duration S] [--count N]
                 [--qos reliable|best_effort] [--depth 100] [--ready-file PATH] [--overwrite]

Each topic is subscribed as soon as it appears in the ROS graph (its type is read from the graph; any type
of the ROS 2 Kilted typestore works: ``sensor_msgs/Image``, ``diagnostic_msgs/DiagnosticArray``, …).
Messages are written with their receive time as the bag's log time. Recording stops on SIGINT / SIGTERM,
after ``--duration`` seconds, or after ``--count`` messages on the FIRST topic given; the bag is closed
cleanly in every case (readable by ``ros2 bag``, ``ssvif-replay`` and ``rosbags``).

Once every topic is subscribed and has a publisher, one line ``ssvif-record: ready ...`` is printed on
stderr (and ``--ready-file`` is created), so a script can start its publishers only then.
Bags are written through :mod:`ssvif_ros.io.bags`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssvif_ros.io.bags import BAG_FORMAT_HELP, BAG_FORMATS
from ssvif_ros.tools.dds import choose_transport
from ssvif_ros.tools.live import RELIABILITIES, StopFlag, log, message_class, network_note, qos_profile

__all__ = ["main"]

TOOL = "ssvif-record"
GRAPH_POLL_S = 0.2


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="bag directory to create")
    parser.add_argument("topics", nargs="+", help="topics to record")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="default mcap")
    parser.add_argument(
        "--bag-format",
        choices=tuple(BAG_FORMATS),
        default="kilted",
        help=BAG_FORMAT_HELP,
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--count", type=int, default=None, help="stop after N messages on the first topic")
    parser.add_argument("--qos", choices=RELIABILITIES, default="reliable", help="subscription reliability")
    parser.add_argument("--depth", type=int, default=100, help="subscription history depth (default 100)")
    parser.add_argument("--ready-file", type=Path, default=None, help="created once every topic is matched")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag at the path")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.duration is not None and not args.duration > 0:
        parser.error(f"--duration must be > 0, got {args.duration}")
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.depth < 1:
        parser.error(f"--depth must be >= 1, got {args.depth}")
    return args


def _remove_old_bag(path: Path) -> None:
    """Delete ``path`` only if it is a rosbag2 directory (metadata.yaml) or an empty folder."""
    if not path.exists():
        return
    if path.is_dir() and ((path / "metadata.yaml").is_file() or not any(path.iterdir())):
        shutil.rmtree(path)
    else:
        raise ValueError(f"{path} exists and is not a rosbag2 directory: refusing to overwrite it")


class Recorder:
    """Subscribes to the topics as they appear and writes every message to an open bag writer."""

    def __init__(self, node: Any, writer: Any, topics: Sequence[str], qos: Any, quiet: bool) -> None:
        self.node = node
        self.writer = writer
        self.qos = qos
        self.quiet = quiet
        self.topics = list(dict.fromkeys(node.resolve_topic_name(t) for t in topics))
        self.pending = list(self.topics)
        self.counts = dict.fromkeys(self.topics, 0)
        self.types: dict[str, str] = {}
        self.subscriptions: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}

    def poll_graph(self) -> None:
        """Subscribe to pending topics that now have a publisher (and hence a known type)."""
        if not self.pending:
            return
        from ssvif_ros.io.bags import typestore

        graph = dict(self.node.get_topic_names_and_types())
        for topic in list(self.pending):
            types = graph.get(topic)
            if not types:
                continue
            self.pending.remove(topic)
            msgtype = types[0]
            if len(types) > 1:
                log(TOOL, f"{topic} is published with several types {types}: recording {msgtype}")
            if msgtype not in typestore().types:
                self.skipped[topic] = f"type {msgtype} is not in the bag typestore"
                log(TOOL, f"not recording {topic}: {self.skipped[topic]}")
                continue
            self.writer.add_topic(topic, msgtype)
            self.types[topic] = msgtype
            self.subscriptions[topic] = self.node.create_subscription(
                message_class(msgtype),
                topic,
                lambda raw, topic=topic: self._on_message(topic, raw),
                self.qos,
                raw=True,
            )
            if not self.quiet:
                log(TOOL, f"recording {topic} ({msgtype})")

    def _on_message(self, topic: str, raw: bytes) -> None:
        from ssvif_ros.io.bags import typestore

        received_ns = self.node.get_clock().now().nanoseconds
        msgtype = self.types[topic]
        self.writer.write(topic, received_ns, typestore().deserialize_cdr(raw, msgtype))
        self.counts[topic] += 1

    def ready(self) -> bool:
        """Every topic subscribed (or skipped) and every subscription matched to a publisher."""
        return not self.pending and all(s.get_publisher_count() > 0 for s in self.subscriptions.values())


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 after a clean stop, 1 when the bag cannot be created."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    from ssvif_ros.io.bags import BagError, bag_directory, open_writer

    full_argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(remove_ros_args([TOOL, *full_argv])[1:])
    args.bag = bag_directory(args.bag, args.storage)  # out.mcap is the bag folder out/
    stop = StopFlag().install()
    try:
        if args.overwrite:
            _remove_old_bag(args.bag)
        if args.bag.exists():
            raise ValueError(f"bag {args.bag} exists already (use --overwrite or another path)")
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    except ValueError as err:
        print(f"{TOOL}: {err}", file=sys.stderr)
        return 1

    choose_transport()  # before rclpy.init: Fast DDS reads its profile when the first participant is made
    rclpy.init(args=[TOOL, *full_argv], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("ssvif_record")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    started = time.monotonic()
    stopped_by = "SIGINT/SIGTERM"
    try:
        with open_writer(args.bag, args.storage, args.bag_format) as writer:
            recorder = Recorder(node, writer, args.topics, qos_profile(args.qos, args.depth), args.quiet)
            if not args.quiet:
                log(TOOL, f"{network_note()}; waiting for {', '.join(recorder.topics)}")
            announced = False
            next_poll = 0.0
            first = recorder.topics[0]
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_poll:
                    recorder.poll_graph()
                    next_poll = now + GRAPH_POLL_S
                    if not announced and recorder.ready():
                        announced = True
                        log(TOOL, f"ready: recording {len(recorder.subscriptions)} topic(s) to {args.bag}")
                        if args.ready_file is not None:
                            args.ready_file.parent.mkdir(parents=True, exist_ok=True)
                            args.ready_file.touch()
                if args.duration is not None and now - started >= args.duration:
                    stopped_by = f"--duration {args.duration:g} s"
                    break
                if args.count is not None and recorder.counts[first] >= args.count:
                    stopped_by = f"--count {args.count} on {first}"
                    break
                executor.spin_once(timeout_sec=0.05)
            if stop.is_set():
                stopped_by = stop.signal_name or "a stop request"
    except BagError as err:
        print(f"{TOOL}: {err}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()

    counts_text = ", ".join(f"{t} {n}" for t, n in recorder.counts.items())
    never = [t for t in recorder.pending]
    print(
        f"{TOOL}: wrote {sum(recorder.counts.values())} messages ({counts_text}) to {args.bag} "
        f"[{args.storage}] in {time.monotonic() - started:.1f} s; stopped by {stopped_by}"
        + (f"; never published: {', '.join(never)}" if never else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
