"""``ssvif-play``: publish a bag's image topics on ROS 2 in real time, so the fusion node runs end to end.

    ssvif-play BAG [--topics T ...] [--rate 1.0] [--loop | --loops N] [--start S] [--stamps restamp|keep]
               [--qos reliable|best_effort] [--depth 10] [--wait-subscribers 10] [--summary play.json]
               [--ros-args -r /camera/image_raw:=/my/camera ...]

Messages are published at their bag (log) times scaled by ``--rate``, from ``--start`` seconds into the
bag, ``--loops`` times (0 or ``--loop``: until Ctrl-C). Default topics: every ``sensor_msgs/Image`` and
``CompressedImage`` topic of the bag.

Header stamps (``--stamps``):

- ``restamp`` (default): shifted consistently onto the wall clock, ``new = wall_start + (stamp −
  first_stamp + loop · loop_period) / rate``, so a message is stamped with the time it is due to be
  published, stamps that were equal stay equal (pairs stay pairs), loops keep stamps increasing, and the
  node's latency (arrival − stamp) measures transport and processing;
- ``keep``: the recorded stamps (e.g. to match outputs against the bag offline; the node's latency then
  reads as the bag's age, and a loop jumps the stamps back, which resets the node's synchroniser).

The mapping is written to ``--summary`` (JSON) so a tool can turn a restamped stamp back into the bag's.
Before the first message, the player waits up to ``--wait-subscribers`` seconds until every topic has a
subscriber (a node still loading its model would miss the first frames otherwise). Remap output topics
with the usual ``--ros-args -r FROM:=TO``. Bags are read through :mod:`ssvif_ros.io.bags`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssvif_ros.tools.dds import choose_transport
from ssvif_ros.tools.live import RELIABILITIES, StopFlag, log, message_class, network_note, qos_profile

__all__ = ["IMAGE_TYPES", "PlaySchedule", "main", "select_topics"]

TOOL = "ssvif-play"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
NS = 1_000_000_000
STAMP_MODES = ("restamp", "keep")
LEAD_S = 0.05  # the first message is due this long after the clock is read (imports, first reads)


@dataclass(frozen=True)
class PlaySchedule:
    """When each bag message is published and which stamp it gets; pure arithmetic, no ROS.

    All times are integer ns. ``start_ns``: the first bag log time played (bag start + start offset);
    ``end_ns``: the bag's last log time; ``loop_period_ns``: bag time from one loop's first message to the
    next loop's (the played span plus one nominal frame period, so a loop does not publish two frames at
    once); ``rate``: playback speed factor (2.0: twice as fast).
    """

    start_ns: int
    end_ns: int
    loop_period_ns: int
    rate: float = 1.0

    @classmethod
    def for_bag(
        cls, bag_start_ns: int, bag_end_ns: int, frames: int, rate: float = 1.0, start_offset_s: float = 0.0
    ) -> PlaySchedule:
        """The schedule of a bag spanning ``bag_start_ns..bag_end_ns`` whose busiest played topic has
        ``frames`` messages. Raises ValueError for a rate <= 0 or an offset outside the bag."""
        if not rate > 0:
            raise ValueError(f"--rate must be > 0, got {rate}")
        if bag_end_ns < bag_start_ns:
            raise ValueError(f"bag end {bag_end_ns} ns is before its start {bag_start_ns} ns")
        duration_ns = bag_end_ns - bag_start_ns
        offset_ns = round(start_offset_s * NS)
        if offset_ns < 0 or offset_ns > duration_ns:
            raise ValueError(
                f"--start must be in [0, {duration_ns / NS:.3f}] s (the bag's duration), got {start_offset_s}"
            )
        frame_ns = duration_ns // (frames - 1) if frames > 1 and duration_ns > 0 else NS // 10
        start_ns = bag_start_ns + offset_ns
        return cls(start_ns, bag_end_ns, (bag_end_ns - start_ns) + frame_ns, float(rate))

    def plays(self, log_ns: int) -> bool:
        """Whether a message logged at ``log_ns`` is played (not before the start offset)."""
        return log_ns >= self.start_ns

    def due_s(self, log_ns: int, loop: int = 0) -> float:
        """Seconds after the playback start at which the message logged at ``log_ns`` is published."""
        return ((log_ns - self.start_ns) + loop * self.loop_period_ns) / self.rate / NS

    def restamp_ns(self, stamp_ns: int, first_stamp_ns: int, wall_start_ns: int, loop: int = 0) -> int:
        """The wall-clock stamp of a header stamp ``stamp_ns``; ``first_stamp_ns`` is the header stamp of
        the first played message, ``wall_start_ns`` the wall time of the playback start."""
        return wall_start_ns + round(((stamp_ns - first_stamp_ns) + loop * self.loop_period_ns) / self.rate)

    def original_stamp_ns(self, new_ns: int, first_stamp_ns: int, wall_start_ns: int, loop: int = 0) -> int:
        """Inverse of :meth:`restamp_ns` (exact up to 1 ns rounding per rate step)."""
        return first_stamp_ns + round((new_ns - wall_start_ns) * self.rate) - loop * self.loop_period_ns


def select_topics(bag_topics: dict[str, str], requested: Sequence[str] | None) -> list[str]:
    """The topics to play: ``requested`` (each must be in the bag), else every image topic of the bag."""
    if requested:
        missing = [t for t in requested if t not in bag_topics]
        if missing:
            have = "\n".join(f"  {t} ({m})" for t, m in bag_topics.items()) or "  (no topics)"
            raise ValueError(f"the bag has no topic {', '.join(missing)}; it has:\n{have}")
        return list(dict.fromkeys(requested))
    topics = [t for t, msgtype in bag_topics.items() if msgtype in IMAGE_TYPES]
    if not topics:
        have = "\n".join(f"  {t} ({m})" for t, m in bag_topics.items()) or "  (no topics)"
        raise ValueError(
            f"the bag has no image topic ({', '.join(IMAGE_TYPES)}); it has:\n{have}\nuse --topics"
        )
    return topics


def _with_stamp(msg: Any, stamp_ns: int) -> Any:
    """A copy of rosbags message ``msg`` with ``header.stamp`` set to ``stamp_ns`` (the pixels are shared)."""
    from ssvif_ros.io.bags import typestore

    stamp = typestore().types["builtin_interfaces/msg/Time"](sec=stamp_ns // NS, nanosec=stamp_ns % NS)
    return dataclasses.replace(msg, header=dataclasses.replace(msg.header, stamp=stamp))


def _has_header(msg: Any) -> bool:
    return hasattr(msg, "header") and hasattr(getattr(msg, "header", None), "stamp")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=TOOL, description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="rosbag2 directory (mcap or sqlite3)")
    parser.add_argument(
        "--topics", nargs="+", default=None, help="topics to play (default: all image topics)"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0: real time)")
    parser.add_argument("--start", type=float, default=0.0, help="seconds into the bag to start at")
    loops = parser.add_mutually_exclusive_group()
    loops.add_argument("--loops", type=int, default=1, help="times to play the bag (0: until Ctrl-C)")
    loops.add_argument("--loop", action="store_true", help="play until Ctrl-C (same as --loops 0)")
    parser.add_argument(
        "--stamps",
        choices=STAMP_MODES,
        default="restamp",
        help="restamp: shift header stamps onto the wall clock (default); keep: the recorded stamps",
    )
    parser.add_argument("--qos", choices=RELIABILITIES, default="reliable", help="publisher reliability")
    parser.add_argument("--depth", type=int, default=10, help="publisher history depth (default 10)")
    parser.add_argument(
        "--wait-subscribers",
        type=float,
        default=10.0,
        metavar="S",
        help="wait up to S seconds for a subscriber on every topic before playing (0: do not wait)",
    )
    parser.add_argument(
        "--summary", type=Path, default=None, help="write counts and the stamp mapping (JSON)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.loop:
        args.loops = 0
    if args.loops < 0:
        parser.error(f"--loops must be >= 0, got {args.loops}")
    if args.depth < 1:
        parser.error(f"--depth must be >= 1, got {args.depth}")
    return args


def _wait_for_subscribers(publishers: dict[str, Any], timeout_s: float, stop: StopFlag) -> list[str]:
    """Wait until every publisher has a subscriber; returns the topics still without one."""
    deadline = time.monotonic() + timeout_s
    while True:
        lonely = [t for t, pub in publishers.items() if pub.get_subscription_count() == 0]
        if not lonely or time.monotonic() >= deadline or stop.is_set():
            return lonely
        stop.wait(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 when played (or stopped by a signal), 1 on a bag or topic error."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    from ssvif_ros.io.bags import BagError, open_reader, typestore

    full_argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(remove_ros_args([TOOL, *full_argv])[1:])
    stop = StopFlag().install()
    try:
        with open_reader(args.bag) as bag:
            bag_topics = bag.topics()
            topics = select_topics(bag_topics, args.topics)
            counts = bag.message_counts()
            schedule = PlaySchedule.for_bag(
                bag.start_ns, bag.end_ns, max(counts.get(t, 0) for t in topics), args.rate, args.start
            )
    except (BagError, ValueError) as err:
        print(f"{TOOL}: {err}", file=sys.stderr)
        return 1

    choose_transport()  # before rclpy.init: Fast DDS reads its profile when the first participant is made
    rclpy.init(args=[TOOL, *full_argv], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("ssvif_play")
    published = dict.fromkeys(topics, 0)
    late_max_s = 0.0
    loops_done = 0
    first_stamp_ns: int | None = None
    wall_start_ns = 0
    try:
        qos = qos_profile(args.qos, args.depth)
        try:
            publishers = {t: node.create_publisher(message_class(bag_topics[t]), t, qos) for t in topics}
        except ValueError as err:
            print(f"{TOOL}: {err}", file=sys.stderr)
            return 1
        names = {t: pub.topic_name for t, pub in publishers.items()}
        if not args.quiet:
            log(
                TOOL, f"{network_note()}; topics {', '.join(names.values())} ({args.qos}, depth {args.depth})"
            )
        if args.wait_subscribers > 0:
            lonely = _wait_for_subscribers(publishers, args.wait_subscribers, stop)
            if lonely and not stop.is_set():
                log(
                    TOOL,
                    f"no subscriber after {args.wait_subscribers:g} s on {', '.join(lonely)}: playing anyway",
                )
            elif not lonely:
                stop.wait(0.3)  # both sides of a new match have seen each other (reliable readers too)
        mono_start = time.monotonic() + LEAD_S
        wall_start_ns = node.get_clock().now().nanoseconds + round(LEAD_S * NS)
        loop = 0
        while not stop.is_set() and (args.loops == 0 or loop < args.loops):
            with open_reader(args.bag) as bag:
                for topic, msgtype, log_ns, msg in bag.messages(topics):
                    if not schedule.plays(log_ns):
                        continue
                    late_s = time.monotonic() - (mono_start + schedule.due_s(log_ns, loop))
                    if late_s < 0 and stop.wait(-late_s):
                        break
                    late_max_s = max(late_max_s, late_s)
                    if args.stamps == "restamp" and _has_header(msg):
                        stamp = int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)
                        if first_stamp_ns is None:
                            first_stamp_ns = stamp
                        msg = _with_stamp(
                            msg, schedule.restamp_ns(stamp, first_stamp_ns, wall_start_ns, loop)
                        )
                    publishers[topic].publish(bytes(typestore().serialize_cdr(msg, msgtype)))
                    published[topic] += 1
            if not stop.is_set():
                loop += 1
                loops_done = loop
                if not args.quiet and args.loops != 1:
                    log(TOOL, f"loop {loop} done")
        if args.qos == "reliable":  # let the last frames reach reliable subscribers before leaving
            from rclpy.duration import Duration

            for pub in publishers.values():
                pub.wait_for_all_acked(Duration(seconds=2.0))
    except BagError as err:
        print(f"{TOOL}: {err}", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()

    summary = {
        "bag": str(args.bag),
        "published": {names[t]: n for t, n in published.items()},
        "loops_done": loops_done,
        "stopped_by": stop.signal_name,
        "rate": args.rate,
        "start_offset_s": args.start,
        "late_max_ms": round(late_max_s * 1e3, 2),
        "stamps": args.stamps,
        # restamped = wall_start_ns + (stamp - first_stamp_ns + loop * loop_period_ns) / rate
        "stamp_mapping": {
            "wall_start_ns": wall_start_ns,
            "first_stamp_ns": first_stamp_ns,
            "loop_period_ns": schedule.loop_period_ns,
            "rate": args.rate,
        }
        if args.stamps == "restamp"
        else None,
    }
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    total = sum(published.values())
    counts_text = ", ".join(f"{names[t]} {n}" for t, n in published.items())
    print(
        f"{TOOL}: published {total} messages ({counts_text}) in {loops_done} loop(s), stamps {args.stamps}, "
        f"max lateness {late_max_s * 1e3:.1f} ms"
        + (f"; stopped by {stop.signal_name}" if stop.signal_name else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
