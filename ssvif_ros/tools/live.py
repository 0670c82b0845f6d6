"""What the live tools (``ssvif-play``, ``ssvif-record``) share: QoS choices, message classes by type name,
a stop flag set by SIGINT/SIGTERM, and the ROS network-safety check.

rclpy is imported inside the functions, so the pure parts of the tools stay importable (and unit-testable)
without a ROS graph.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
from typing import Any

__all__ = [
    "RELIABILITIES",
    "StopFlag",
    "log",
    "message_class",
    "network_note",
    "qos_profile",
    "stop_process",
]

RELIABILITIES = ("reliable", "best_effort")


def qos_profile(reliability: str, depth: int) -> Any:
    """A KEEP_LAST, volatile ``QoSProfile`` with ``reliability`` (reliable | best_effort) and ``depth``.

    Reliable is the live tools' default: between processes, best-effort drops big image frames that
    arrive in UDP fragments (see :mod:`ssvif_ros.tools.dds`).
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if reliability not in RELIABILITIES:
        raise ValueError(f"QoS reliability must be one of {', '.join(RELIABILITIES)}, got {reliability!r}")
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy, durability=DurabilityPolicy.VOLATILE
    )


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``msgtype`` ("sensor_msgs/msg/Image" or "sensor_msgs/Image")."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"message type must look like package/msg/Name, got {msgtype!r}")
    package, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError):
        raise ValueError(
            f"message type {msgtype} is not available to this Python (no module {package}.{kind} with "
            f"{name}): install its ROS 2 message package"
        ) from None


class StopFlag:
    """Set by SIGINT / SIGTERM (installed by :meth:`install`) or by :meth:`set`; tools poll or wait on it.

    Why not rclpy's handlers: they shut the context down from inside the signal, mid-write; a flag lets the
    tool finish the message at hand and close its bag cleanly.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> StopFlag:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as the flag is set."""
        return self._event.wait(max(0.0, timeout))


def network_note() -> str:
    """One line on where this process's ROS traffic goes (domain id, discovery range, DDS profile)."""
    domain = os.environ.get("ROS_DOMAIN_ID", "0 (default)")
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET (default)")
    profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    note = f"ROS_DOMAIN_ID {domain}, discovery {scope}"
    return note + (f", Fast DDS profile {profile}" if profile else "")


def log(tool: str, text: str) -> None:
    """Progress on stderr (stdout stays for the final summary)."""
    print(f"[{tool}] {text}", file=sys.stderr, flush=True)


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """SIGINT (the tools close their bags and the node shuts down cleanly on it), SIGKILL after
    ``timeout`` seconds; the exit code, or None when the process had to be killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            return None
    return process.returncode
