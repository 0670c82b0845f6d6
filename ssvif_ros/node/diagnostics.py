"""Counters of the fusion node, ROS-free, and their conversion to ``diagnostic_msgs/DiagnosticArray``.

The node calls the recording methods from two threads (subscription callbacks and the inference worker),
so every one takes a lock. :meth:`FusionDiagnostics.snapshot` is called once per diagnostics period: it
turns counts into rates over that period and latencies into percentiles over the last ``window`` frames,
and decides the status:

- ERROR: processing failed since the previous snapshot (the last error is quoted);
- WARN: an input silent for longer than its timeout, malformed messages since the previous snapshot, or
  frames of an input being lost on the way (:func:`estimated_loss` of its header stamps over the window
  above :data:`LOSS_WARN`: usually the middleware dropping large images between processes);
- OK otherwise.

It is also the one owner of the inputs' lost state (:meth:`mark_lost`, :meth:`arrived`, :meth:`is_lost`):
the node asks it whether to publish visible passthrough and logs the transitions it reports, and the
reported ``mode`` follows from the same state.

Times are ``time.monotonic()`` seconds (so a sim-time clock or a bag loop cannot fake silence);
latencies are durations in seconds. :func:`to_diagnostic_array` is the only place ``diagnostic_msgs``
is imported.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ERROR",
    "INPUTS",
    "OK",
    "WARN",
    "DiagnosticsSnapshot",
    "FusionDiagnostics",
    "estimated_loss",
    "percentile",
    "to_diagnostic_array",
    "values_from_status",
]

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}
INPUTS = ("visible", "thermal")
PERCENTILES = (50, 95, 99)
LOSS_WARN = 0.05  # share of an input's frames missing by their stamps that turns the status to WARN
LOSS_MIN_GAPS = 20  # stamps needed before the loss estimate is trusted
LOSS_MAX_GAP_PERIODS = 30  # longer gaps are outages or bag loops (reported as silence / sync resets)


def estimated_loss(stamps_ns: Iterable[int]) -> float | None:
    """Share of frames missing from a periodic stream, judged by its header stamps: the period is the median
    of the gaps near the 10th percentile (under heavy loss most gaps are several periods, so not the
    median of all), and a gap of k periods means k − 1 frames lost. A stream that loses exactly every
    other frame looks like one at half the rate: no stamp-based estimate can tell. None with too few
    stamps; gaps over :data:`LOSS_MAX_GAP_PERIODS` periods are not counted (an outage, not a loss rate)."""
    ordered = sorted(set(stamps_ns))
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    if len(gaps) < LOSS_MIN_GAPS:
        return None
    low = sorted(gaps)[len(gaps) // 10]
    single = sorted(g for g in gaps if g < 1.5 * low)  # the gaps of one period, jitter included
    period = single[len(single) // 2]
    if period <= 0:
        return None
    missing = sum(max(0, round(g / period) - 1) for g in gaps if g <= LOSS_MAX_GAP_PERIODS * period)
    return missing / (len(gaps) + missing)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Percentile ``q`` in [0, 100] with linear interpolation (numpy's default); None when empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class _InputCounters:
    topic: str
    timeout_s: float
    received: int = 0
    malformed: int = 0
    malformed_fields: Counter = field(default_factory=Counter)
    last_arrival: float | None = None
    stamps_ns: deque = field(default_factory=deque)  # header stamps of the last `window` messages
    lost: bool = False  # declared silent beyond the timeout (once, by mark_lost) until a message returns


@dataclass(frozen=True)
class DiagnosticsSnapshot:
    """One report: ``level`` (OK/WARN/ERROR), a one-line ``message`` and ``values`` (ordered key → str)."""

    level: int
    message: str
    values: dict[str, str]

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


class FusionDiagnostics:
    """Rates, counts and latency windows of one fusion node; thread-safe.

    ``topics``/``timeouts_s``: per input name in :data:`INPUTS` (the resolved topic, the silence
    timeout). ``window``: frames kept for the latency percentiles. ``info``: fixed key/values reported
    as is (backend, device, model …). ``now``: start time (silence is counted from it until the first
    message arrives). ``passthrough_on_thermal_loss``: the node republishes visible frames while thermal is
    lost (the reported ``mode`` is then ``passthrough``).
    """

    def __init__(
        self,
        topics: dict[str, str],
        timeouts_s: dict[str, float],
        window: int = 300,
        info: dict[str, str] | None = None,
        now: float = 0.0,
        passthrough_on_thermal_loss: bool = False,
    ) -> None:
        if window < 1:
            raise ValueError(f"diagnostics window must be >= 1 frame, got {window}")
        self._lock = threading.Lock()
        self.inputs = {
            name: _InputCounters(topics[name], float(timeouts_s[name]), stamps_ns=deque(maxlen=window))
            for name in INPUTS
        }
        self.info = dict(info or {})
        self.started = now
        self.first_arrival: float | None = None  # the first message of any input
        self.pairs = 0
        self.unmatched = [0, 0]  # set from the synchroniser's own statistics
        self.skipped = 0
        self.fused_inline = 0  # set from the dispatcher's counts (ssvif_ros/node/dispatch.py)
        self.fused_on_worker = 0
        self.no_subscribers = 0
        self.published = 0
        self.passthrough = 0
        self.errors = 0
        self.last_error = ""
        self.sync_resets = 0
        self.latency_s: deque[float] = deque(maxlen=window)
        self.inference_s: deque[float] = deque(maxlen=window)
        self.overhead_s: deque[float] = deque(maxlen=window)
        self.in_node_s: deque[float] = deque(maxlen=window)
        self._last_snapshot_time = now
        self._last_counts: dict[str, int] = {}
        self.passthrough_on_thermal_loss = passthrough_on_thermal_loss

    # --- recording (any thread) ---------------------------------------------------------------------

    def arrived(self, name: str, now: float, stamp_ns: int | None = None) -> float | None:
        """A message of input ``name`` arrived at ``now`` (valid or not), with header ``stamp_ns`` if known.

        Returns the seconds the input had been silent when this message ends its lost state, else None.
        """
        with self._lock:
            counters = self.inputs[name]
            back_after = self._silent_for(counters, now) if counters.lost else None
            counters.lost = False
            counters.received += 1
            if stamp_ns:
                counters.stamps_ns.append(int(stamp_ns))
            counters.last_arrival = now
            if self.first_arrival is None:
                self.first_arrival = now
        return back_after

    def mark_lost(self, now: float) -> list[tuple[str, float, bool]]:
        """Declare lost the inputs silent beyond their timeout, each once until a message returns.

        Returns the newly lost ones as (name, seconds silent, whether it never delivered a message).
        """
        newly_lost = []
        with self._lock:
            for name, counters in self.inputs.items():
                silent = self._silent_for(counters, now)
                if not counters.lost and silent > counters.timeout_s:
                    counters.lost = True
                    newly_lost.append((name, silent, counters.last_arrival is None))
        return newly_lost

    def malformed(self, name: str, field_name: str) -> None:
        """A message of input ``name`` was dropped because of ``field_name`` (or a pair check)."""
        with self._lock:
            counters = self.inputs[name]
            counters.malformed += 1
            counters.malformed_fields[field_name] += 1

    def paired(self, count: int = 1) -> None:
        with self._lock:
            self.pairs += count

    def set_unmatched(self, visible: int, thermal: int) -> None:
        """Frames the synchroniser dropped without pairing (its cumulative counts)."""
        with self._lock:
            self.unmatched = [int(visible), int(thermal)]

    def set_dispatch(self, inline: int, on_worker: int) -> None:
        """Pairs run in the subscription callback vs on the worker thread (the dispatcher's counts)."""
        with self._lock:
            self.fused_inline, self.fused_on_worker = int(inline), int(on_worker)

    def add_skipped(self, count: int = 1) -> None:
        """Pairs replaced by a newer one before the worker got to them (the model is slower than input)."""
        with self._lock:
            self.skipped += count

    def add_no_subscribers(self) -> None:
        """A pair that was not processed because no output had a subscriber."""
        with self._lock:
            self.no_subscribers += 1

    def frame_done(
        self, latency_s: float, inference_s: float, in_node_s: float | None = None, passthrough: bool = False
    ) -> None:
        """A frame was published: ``latency_s`` from its header stamp to its first output published (the
        fused image when it has subscribers), ``inference_s`` in the engine (0 for a visible passthrough
        frame), ``in_node_s`` from the arrival of the message that completed the pair to that publish
        (transport excluded). Overhead = latency − inference; in-node overhead = in_node − inference."""
        with self._lock:
            self.published += 1
            if passthrough:
                self.passthrough += 1
            self.latency_s.append(latency_s)
            self.inference_s.append(inference_s)
            self.overhead_s.append(latency_s - inference_s)
            if in_node_s is not None:
                self.in_node_s.append(in_node_s - inference_s)

    def error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message

    def sync_reset(self) -> None:
        with self._lock:
            self.sync_resets += 1

    # --- queries ----------------------------------------------------------------------------------------

    def silent_for(self, name: str, now: float) -> float:
        """Seconds since input ``name`` last delivered a message.

        An input that never delivered is counted from the first message of any input (the streams'
        start), or from the node's start while nothing has arrived: a node started long before the
        cameras must not call the thermal stream lost the instant the first visible frame arrives.
        """
        with self._lock:
            return self._silent_for(self.inputs[name], now)

    def _silent_for(self, counters: _InputCounters, now: float) -> float:  # caller holds the lock
        since = self.first_arrival if self.first_arrival is not None else self.started
        return now - (since if counters.last_arrival is None else counters.last_arrival)

    def is_silent(self, name: str, now: float) -> bool:
        return self.silent_for(name, now) > self.inputs[name].timeout_s

    def is_lost(self, name: str, now: float) -> bool:
        """Declared lost by :meth:`mark_lost` and still silent: a node started before its cameras marks
        both inputs lost, and the first visible frame must not then be taken for a thermal loss."""
        with self._lock:
            counters = self.inputs[name]
            return counters.lost and self._silent_for(counters, now) > counters.timeout_s

    def mode(self, now: float) -> str:
        """``passthrough`` while visible frames are republished for a lost thermal input, else ``fusion``."""
        thermal_lost = self.is_lost("thermal", now)
        return "passthrough" if self.passthrough_on_thermal_loss and thermal_lost else "fusion"

    def totals(self) -> dict[str, Any]:
        """Cumulative counters (for tests and the end-of-run log)."""
        with self._lock:
            return {
                "received": {n: c.received for n, c in self.inputs.items()},
                "malformed": {n: c.malformed for n, c in self.inputs.items()},
                "malformed_fields": {n: dict(c.malformed_fields) for n, c in self.inputs.items()},
                "pairs": self.pairs,
                "unmatched": dict(zip(INPUTS, self.unmatched, strict=True)),
                "skipped": self.skipped,
                "no_subscribers": self.no_subscribers,
                "published": self.published,
                "passthrough": self.passthrough,
                "errors": self.errors,
                "sync_resets": self.sync_resets,
            }

    def snapshot(self, now: float) -> DiagnosticsSnapshot:
        """Rates since the previous snapshot, latency percentiles, and the status with its reason."""
        silent = {name: self.silent_for(name, now) for name in INPUTS}
        mode = self.mode(now)
        with self._lock:
            elapsed = max(now - self._last_snapshot_time, 1e-9)
            counts = {f"{n}_received": c.received for n, c in self.inputs.items()}
            counts |= {f"{n}_malformed": c.malformed for n, c in self.inputs.items()}
            counts |= {"pairs": self.pairs, "published": self.published, "errors": self.errors}
            delta = {k: v - self._last_counts.get(k, 0) for k, v in counts.items()}
            self._last_counts = counts
            self._last_snapshot_time = now
            windows = {
                "latency": list(self.latency_s),
                "inference": list(self.inference_s),
                "overhead": list(self.overhead_s),
                "in-node overhead": list(self.in_node_s),
            }
            values: dict[str, str] = dict(self.info)
            loss: dict[str, float | None] = {}
            values["mode"] = mode
            for name, c in self.inputs.items():
                values[f"{name} topic"] = c.topic
                values[f"{name} rate (Hz)"] = _fmt(delta[f"{name}_received"] / elapsed)
                values[f"{name} received"] = str(c.received)
                values[f"{name} malformed"] = str(c.malformed)
                if c.malformed_fields:
                    values[f"{name} malformed by field"] = ", ".join(
                        f"{k}: {v}" for k, v in sorted(c.malformed_fields.items())
                    )
                values[f"{name} silent (s)"] = _fmt(silent[name])
                loss[name] = estimated_loss(c.stamps_ns)
                values[f"{name} lost by stamps (%)"] = _fmt(
                    None if loss[name] is None else 100 * loss[name], 1
                )
            values["paired rate (Hz)"] = _fmt(delta["pairs"] / elapsed)
            values["published rate (Hz)"] = _fmt(delta["published"] / elapsed)
            values["pairs"] = str(self.pairs)
            values["published"] = str(self.published)
            values["unmatched visible"] = str(self.unmatched[0])
            values["unmatched thermal"] = str(self.unmatched[1])
            values["skipped (model busy)"] = str(self.skipped)
            values["skipped (no subscribers)"] = str(self.no_subscribers)
            values["fused inline"] = str(self.fused_inline)
            values["fused on worker"] = str(self.fused_on_worker)
            values["passthrough frames"] = str(self.passthrough)
            values["errors"] = str(self.errors)
            values["sync resets"] = str(self.sync_resets)
            values["latency window (frames)"] = str(len(windows["latency"]))
            for key, samples in windows.items():
                for q in PERCENTILES:
                    value = percentile(samples, q)
                    values[f"{key} p{q} (ms)"] = _fmt(None if value is None else value * 1e3)
            reasons: list[str] = []
            level = OK
            if delta["errors"]:
                level = ERROR
                reasons.append(f"processing failed {delta['errors']}× since last report: {self.last_error}")
            for name, c in self.inputs.items():
                if silent[name] > c.timeout_s:
                    level = max(level, WARN)
                    reasons.append(
                        f"{name} topic {c.topic} silent for {silent[name]:.1f} s (timeout {c.timeout_s:g} s)"
                    )
                if loss[name] is not None and loss[name] > LOSS_WARN:
                    level = max(level, WARN)
                    reasons.append(
                        f"{name} frames are being lost: ~{100 * loss[name]:.0f} % missing by their stamps "
                        "(large images between processes need the shared-memory transport in the camera "
                        "driver's process too: python -m ssvif_ros.tools.dds)"
                    )
                if delta[f"{name}_malformed"]:
                    level = max(level, WARN)
                    reasons.append(f"{delta[f'{name}_malformed']} malformed {name} message(s) dropped")
            if not reasons:
                reasons.append(f"{mode}: {values['published rate (Hz)']} Hz published")
            elif mode == "passthrough":
                reasons.append("publishing visible passthrough")
        return DiagnosticsSnapshot(level=level, message="; ".join(reasons), values=values)


def to_diagnostic_array(snapshot: DiagnosticsSnapshot, stamp: Any, name: str, hardware_id: str = "") -> Any:
    """``diagnostic_msgs/DiagnosticArray`` with one status (``name``) built from ``snapshot``.

    ``stamp``: a ``builtin_interfaces/Time`` (e.g. ``node.get_clock().now().to_msg()``).
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus()
    status.level = bytes([snapshot.level])
    status.name = name
    status.message = snapshot.message
    status.hardware_id = hardware_id
    status.values = [KeyValue(key=k, value=v) for k, v in snapshot.values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array


def values_from_status(values: Iterable[Any]) -> dict[str, str]:
    """``KeyValue`` list (from a received ``DiagnosticStatus``) → dict, for tools and tests."""
    return {kv.key: kv.value for kv in values}
