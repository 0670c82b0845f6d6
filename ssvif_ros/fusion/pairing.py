"""Pair visible and thermal frames by timestamp, without ROS types, so the node and the replay tool agree.

Two policies share one small interface (:class:`Synchronizer`):

- :class:`ApproximateTimeSync` reproduces the observable behaviour of the Python
  ``message_filters.ApproximateTimeSynchronizer`` (ros2/message_filters, ``src/message_filters/__init__.py``):
  one queue per input keyed by stamp, trimmed to ``queue_size`` by dropping the *oldest stamp*; a set is
  only looked for when a message arrives, the new message is always part of it, and the first set in the
  reference's search order whose spread (max − min stamp) is *strictly* below the slop is emitted and removed.
  (The C++ ``ApproximateTime`` policy is a different, more elaborate algorithm; it is not what an rclpy node
  gets, so it is not the reference here.)
- :class:`LatestSync` is for a thermal camera much faster than the visible one: each visible frame (input 0,
  the driving stream) is paired with a thermal frame (input 1) from a short history that lies within the
  slop, with no waiting for a better one; a visible frame with no partner yet waits, at most one at a time.

Time is integer nanoseconds everywhere; ROS ``Time`` appears only at the message boundary
(:func:`header_stamp_ns`). Every ``add`` takes a lock: the node calls it from subscription callbacks that
a multi-threaded executor may run concurrently. The node, the replay and the tests all pair with this
module (the node no longer switches to the real ``message_filters`` where it is importable: one pairing
behaviour, with statistics); ``test/test_sync.py`` checks it against ``message_filters`` where that is
importable and against a reference model everywhere.
"""

from __future__ import annotations

import bisect
import itertools
import math
import numbers
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "POLICIES",
    "ApproximateTimeSync",
    "LatestSync",
    "Pair",
    "SyncStats",
    "Synchronizer",
    "create_sync",
    "header_stamp_ns",
    "slop_to_ns",
]

NS_PER_S = 1_000_000_000
POLICIES = ("approximate", "latest")
DEFAULT_DIFF_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class Pair:
    """One synchronised set: ``items[i]`` and ``stamps_ns[i]`` are input i's; ``spread_ns`` = max − min."""

    items: tuple[Any, ...]
    stamps_ns: tuple[int, ...]
    spread_ns: int


@dataclass(slots=True)
class SyncStats:
    """Counters per input, kept so that ``received == paired + unmatched + pending`` holds for every input.

    ``paired[i]``: distinct items of input ``i`` that went into at least one pair. ``unmatched[i]``: items
    that left the synchroniser without ever being paired (evicted by the queue bound, superseded by an item
    with the same stamp or by a newer waiting frame, or flushed). ``spreads_ns``: the spread of the most
    recent pairs (bounded window) for p50/p95 reporting.
    """

    received: list[int]
    paired: list[int]
    unmatched: list[int]
    pairs: int = 0
    spreads_ns: deque[int] = field(default_factory=lambda: deque(maxlen=DEFAULT_DIFF_WINDOW))

    @classmethod
    def empty(cls, num_inputs: int, diff_window: int) -> SyncStats:
        return cls([0] * num_inputs, [0] * num_inputs, [0] * num_inputs, 0, deque(maxlen=diff_window))

    def copy(self) -> SyncStats:
        return SyncStats(
            list(self.received),
            list(self.paired),
            list(self.unmatched),
            self.pairs,
            deque(self.spreads_ns, maxlen=self.spreads_ns.maxlen),
        )

    def spread_percentile_ns(self, q: float) -> float | None:
        """Percentile ``q`` in [0, 100] of the recorded spreads (linear interpolation); None if no pair."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        values = sorted(self.spreads_ns)
        if not values:
            return None
        pos = (len(values) - 1) * q / 100.0
        low = math.floor(pos)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (pos - low)

    def summary(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready report: pairs, per-input received/paired/unmatched, spread p50/p95/max in ms."""
        names = list(names) if names is not None else [str(i) for i in range(len(self.received))]
        if len(names) != len(self.received):
            raise ValueError(f"summary: got {len(names)} names for {len(self.received)} inputs")

        def ms(value: float | None) -> float | None:
            return None if value is None else value / 1e6

        return {
            "pairs": self.pairs,
            "inputs": {
                name: {"received": r, "paired": p, "unmatched": u}
                for name, r, p, u in zip(names, self.received, self.paired, self.unmatched, strict=True)
            },
            "spread_ms": {
                "p50": ms(self.spread_percentile_ns(50)),
                "p95": ms(self.spread_percentile_ns(95)),
                "max": ms(max(self.spreads_ns)) if self.spreads_ns else None,
                "window": len(self.spreads_ns),
            },
        }


@runtime_checkable
class Synchronizer(Protocol):
    """What the node and the replay tool rely on; both policies implement it."""

    num_inputs: int

    def add(self, index: int, stamp_ns: int, item: Any) -> list[Pair]: ...

    def reset(self) -> None: ...

    def flush(self) -> list[int]: ...

    def pending(self) -> list[int]: ...

    @property
    def stats(self) -> SyncStats: ...


def slop_to_ns(slop_s: float, *, allow_zero: bool = True) -> int:
    """Seconds → integer ns, truncating like ``rclpy.duration.Duration(seconds=...)`` so boundaries agree."""
    if isinstance(slop_s, bool) or not isinstance(slop_s, numbers.Real):
        raise TypeError(f"slop_s must be a number of seconds, got {type(slop_s).__name__} {slop_s!r}")
    if not math.isfinite(slop_s) or slop_s < 0:
        raise ValueError(f"slop_s must be a finite number of seconds >= 0, got {slop_s!r}")
    slop_ns = int(float(slop_s) * NS_PER_S)
    if slop_ns == 0 and not allow_zero:
        raise ValueError(
            f"slop_s={slop_s!r} is 0 ns: the approximate policy pairs only when spread < slop, so it would "
            "never pair; use a positive slop (e.g. 0.05)"
        )
    return slop_ns


def _check_queue_size(queue_size: int) -> int:
    if isinstance(queue_size, bool) or not isinstance(queue_size, numbers.Integral):
        raise TypeError(f"queue_size must be an integer, got {type(queue_size).__name__} {queue_size!r}")
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    return int(queue_size)


def _check_diff_window(diff_window: int) -> int:
    if isinstance(diff_window, bool) or not isinstance(diff_window, numbers.Integral) or diff_window < 1:
        raise ValueError(f"diff_window must be an integer >= 1, got {diff_window!r}")
    return int(diff_window)


def _check_stamp(stamp_ns: int) -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, numbers.Integral):
        raise TypeError(
            f"stamp_ns must be an integer number of nanoseconds, got {type(stamp_ns).__name__} {stamp_ns!r} "
            "(convert ROS stamps with header_stamp_ns)"
        )
    return int(stamp_ns)


def _check_index(index: int, num_inputs: int) -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"input index must be an integer, got {type(index).__name__} {index!r}")
    if not 0 <= index < num_inputs:
        raise IndexError(f"input index {index} out of range: this synchroniser has {num_inputs} inputs")
    return int(index)


class ApproximateTimeSync:
    """``message_filters.ApproximateTimeSynchronizer`` semantics on plain (index, stamp_ns, item) triples.

    Behaviour, as in the reference (ros2/message_filters, Python):

    - each input keeps ``{stamp_ns: item}`` in insertion order; an item with a stamp already queued on the
      same input replaces the earlier one (which keeps its place in the order, and counts as unmatched);
    - after inserting, a queue longer than ``queue_size`` drops its *smallest stamp*, which may be the item
      just added (a late, out-of-order message into a full queue is lost at once);
    - then, for every other input, the queued stamps within ``slop`` (``|Δ| <= slop``) of the new stamp are
      ordered by ``|Δ|`` (ties: queue insertion order); if any input has none, nothing is emitted;
    - the candidate combinations are tried in ``itertools.product`` order (last input varies fastest), with
      the new stamp in its own slot; the first one whose spread is **strictly** below ``slop`` is emitted and
      its items removed from their queues. At most one set per ``add``; unpaired items stay queued until the
      bound evicts them, so after a clock jump backwards call :meth:`reset` (a full queue of future stamps
      would otherwise evict every new message).

    Guarantee (message_filters' Python synchroniser's, no more): every set's spread is below ``slop``. It is
    not the closest set: a set is emitted as soon as one exists when a message arrives, so a visible frame
    arriving before the thermal frame stamped next to it pairs with an older thermal frame still within
    slop. (message_filters' C++ ApproximateTime policy waits until a set is known to be optimal; that one
    is not reproduced here.) The ``latest`` policy (:class:`LatestSync`) waits for the closer frame.

    Cost per ``add``: O(queue_size) for two inputs, O(queue_size^(num_inputs−1)) at worst in general.
    """

    def __init__(
        self,
        num_inputs: int = 2,
        queue_size: int = 10,
        slop_s: float = 0.05,
        *,
        diff_window: int = DEFAULT_DIFF_WINDOW,
    ) -> None:
        if isinstance(num_inputs, bool) or not isinstance(num_inputs, numbers.Integral) or num_inputs < 2:
            raise ValueError(f"num_inputs must be an integer >= 2, got {num_inputs!r}")
        self.num_inputs = int(num_inputs)
        self.queue_size = _check_queue_size(queue_size)
        self.slop_ns = slop_to_ns(slop_s, allow_zero=False)
        self.slop_s = float(slop_s)
        self._diff_window = _check_diff_window(diff_window)
        self._lock = threading.Lock()
        self._queues: list[dict[int, Any]] = [{} for _ in range(self.num_inputs)]
        self._stats = SyncStats.empty(self.num_inputs, self._diff_window)

    def add(self, index: int, stamp_ns: int, item: Any) -> list[Pair]:
        """Queue ``item`` of input ``index`` at ``stamp_ns``; return the set it completes ([] or one Pair)."""
        index = _check_index(index, self.num_inputs)
        stamp = _check_stamp(stamp_ns)
        with self._lock:
            stats = self._stats
            stats.received[index] += 1
            queue = self._queues[index]
            if stamp in queue:
                stats.unmatched[index] += 1  # superseded by an item with the same stamp
            queue[stamp] = item
            if len(queue) > self.queue_size:
                oldest = min(queue)
                del queue[oldest]
                stats.unmatched[index] += 1
                if oldest == stamp:
                    return []
            chosen = self._search(index, stamp)
            if chosen is None:
                return []
            items = tuple(self._queues[i].pop(s) for i, s in enumerate(chosen))
            spread = max(chosen) - min(chosen)
            for i in range(self.num_inputs):
                stats.paired[i] += 1
            stats.pairs += 1
            stats.spreads_ns.append(spread)
            return [Pair(items, chosen, spread)]

    def _search(self, index: int, stamp: int) -> tuple[int, ...] | None:
        """The stamps of the first admissible set containing ``stamp`` in the reference's order, or None."""
        slop = self.slop_ns
        if self.num_inputs == 2:
            # Product of one sorted candidate list: its first entry is the smallest |Δ| (first inserted on a
            # tie); it is admissible iff |Δ| < slop.
            best_stamp = 0
            best_delta = slop
            for s in self._queues[1 - index]:
                delta = abs(s - stamp)
                if delta < best_delta:
                    best_stamp, best_delta = s, delta
            if best_delta >= slop:
                return None
            return (stamp, best_stamp) if index == 0 else (best_stamp, stamp)
        candidates: list[list[int]] = []
        for i, queue in enumerate(self._queues):
            if i == index:
                candidates.append([stamp])
                continue
            near = [s for s in queue if abs(s - stamp) <= slop]
            if not near:
                return None
            near.sort(key=lambda s: abs(s - stamp))  # stable: ties keep insertion order
            candidates.append(near)
        for combo in itertools.product(*candidates):
            if max(combo) - min(combo) < slop:
                return combo
        return None

    def pending(self) -> list[int]:
        """Items queued per input, not yet paired."""
        with self._lock:
            return [len(q) for q in self._queues]

    def flush(self) -> list[int]:
        """Drop everything queued, counting it as unmatched (end of a replay); returns counts per input."""
        with self._lock:
            counts = [len(q) for q in self._queues]
            for i, queue in enumerate(self._queues):
                self._stats.unmatched[i] += len(queue)
                queue.clear()
            return counts

    def reset(self) -> None:
        """Forget queued items (e.g. after the clock jumped backwards or a bag looped), counted as unmatched:
        the statistics are cumulative, so frames dropped at a reset stay counted."""
        self.flush()

    @property
    def stats(self) -> SyncStats:
        """A consistent snapshot (copy) of the counters."""
        with self._lock:
            return self._stats.copy()


class LatestSync:
    """Pair each visible frame (input 0) with a thermal frame (input 1) from a short history, within slop.

    Choices where the spec was open:

    - "within slop" is inclusive here: ``|t_vis − t_thermal| <= slop``.
    - ``prefer="closest"`` (default) picks, among the thermal frames within slop, the one closest in time to
      the visible stamp (ties: the newer one); ``prefer="newest"`` picks the most recent stamp within slop,
      the spec's literal wording. They agree in the usual live case where thermal stamps do not run ahead of
      the visible one; "closest" avoids choosing a frame up to ``slop`` in the future over a near-exact one.
    - Thermal frames are reused by several visible frames when ``reuse_thermal`` (default True: a 9 Hz thermal
      camera then still yields one output per visible frame); with False a thermal frame pairs at most once.
    - The thermal history keeps the ``queue_size`` newest stamps (an equal stamp replaces the earlier frame).
    - A visible frame waits when it has no partner within slop, or (``closest``) when the next thermal frame,
      expected one thermal period (the median gap of the history) after the newest, should be closer than
      the best one held: thermal frames usually arrive later than visible ones (slower driver, larger
      messages), and pairing at once took the previous frame, up to a period old (issue 15: 4 of 10 pairs
      31-33 ms apart at 10/30 Hz while a frame 0.5-5 ms away was on its way). It waits at most until a
      thermal frame stamped at or after it arrives, or the next visible frame arrives; then it takes the
      closest frame held (none within slop: unmatched). Only one frame waits; a late visible frame older
      than the waiting one pairs at once or never.
    - Guarantee: each pair is within slop, and is the closest within slop of the thermal frames received
      before the decision (the closest of the whole stream when thermal stamps arrive in order and
      periodically). The ``approximate`` policy, like message_filters' Python ApproximateTimeSynchronizer,
      only guarantees a spread below slop: it emits the first set within slop when a message arrives and
      does not wait for a better one.
    """

    VISIBLE = 0
    THERMAL = 1
    num_inputs = 2

    def __init__(
        self,
        slop_s: float = 0.05,
        queue_size: int = 10,
        *,
        prefer: Literal["closest", "newest"] = "closest",
        reuse_thermal: bool = True,
        diff_window: int = DEFAULT_DIFF_WINDOW,
    ) -> None:
        if prefer not in ("closest", "newest"):
            raise ValueError(f"prefer must be 'closest' or 'newest', got {prefer!r}")
        self.slop_ns = slop_to_ns(slop_s)
        self.slop_s = float(slop_s)
        self.queue_size = _check_queue_size(queue_size)
        self.prefer = prefer
        self.reuse_thermal = bool(reuse_thermal)
        self._diff_window = _check_diff_window(diff_window)
        self._lock = threading.Lock()
        # Thermal history sorted by stamp: parallel lists (stamps for bisect, [item, used] entries).
        self._thermal_stamps: list[int] = []
        self._thermal_entries: list[list[Any]] = []
        self._waiting: tuple[int, Any] | None = None
        self._stats = SyncStats.empty(2, self._diff_window)

    def add(self, index: int, stamp_ns: int, item: Any) -> list[Pair]:
        """Add a visible (0) or thermal (1) frame; return the pair it completes ([] or one Pair)."""
        index = _check_index(index, 2)
        stamp = _check_stamp(stamp_ns)
        with self._lock:
            self._stats.received[index] += 1
            if index == self.VISIBLE:
                return self._add_visible(stamp, item)
            return self._add_thermal(stamp, item)

    def _emit(self, vis_stamp: int, vis_item: Any, th_stamp: int, entry: list[Any]) -> list[Pair]:
        stats = self._stats
        stats.paired[self.VISIBLE] += 1
        if not entry[1]:
            entry[1] = True
            stats.paired[self.THERMAL] += 1
        spread = abs(vis_stamp - th_stamp)
        stats.pairs += 1
        stats.spreads_ns.append(spread)
        return [Pair((vis_item, entry[0]), (vis_stamp, th_stamp), spread)]

    def _closest(self, stamp: int) -> int:
        """Index in the thermal history of the partner for a visible ``stamp`` within slop, else -1."""
        stamps = self._thermal_stamps
        lo = bisect.bisect_left(stamps, stamp - self.slop_ns)
        hi = bisect.bisect_right(stamps, stamp + self.slop_ns)
        if hi <= lo:
            return -1
        if self.prefer == "newest":
            return hi - 1
        # Sorted stamps: the closest is beside the insertion point; on a tie the newer one wins.
        right = bisect.bisect_left(stamps, stamp, lo, hi)
        if right > lo and (right >= hi or stamp - stamps[right - 1] < stamps[right] - stamp):
            return right - 1
        return right if right < hi else hi - 1

    def _thermal_period_ns(self) -> float | None:
        """Median gap of the thermal history's stamps (None with fewer than three frames)."""
        stamps = self._thermal_stamps
        if len(stamps) < 3:
            return None
        gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
        return float(gaps[len(gaps) // 2])

    def _closer_expected(self, stamp: int, chosen: int) -> bool:
        """Whether the next thermal frame, one period after the newest, should be closer to ``stamp`` than
        the frame ``chosen`` now: it arrives later than the visible frame (driver and transport latency
        differ), so pairing at once would take a frame up to one period old."""
        stamps = self._thermal_stamps
        period = self._thermal_period_ns()
        if self.prefer != "closest" or period is None or stamps[-1] >= stamp:
            return False
        expected = abs(stamps[-1] + period - stamp)
        return expected < abs(stamp - stamps[chosen]) and expected <= self.slop_ns

    def _settle_waiting(self) -> list[Pair]:
        """Emit the waiting visible frame with its closest partner when no closer one is expected."""
        stamp, item = self._waiting  # type: ignore[misc]
        chosen = self._closest(stamp)
        if chosen < 0 or self._closer_expected(stamp, chosen):
            return []
        self._waiting = None
        return self._emit_with(stamp, item, chosen)

    def _emit_with(self, stamp: int, item: Any, chosen: int) -> list[Pair]:
        pairs = self._emit(stamp, item, self._thermal_stamps[chosen], self._thermal_entries[chosen])
        if not self.reuse_thermal:
            del self._thermal_stamps[chosen], self._thermal_entries[chosen]
        return pairs

    def _add_visible(self, stamp: int, item: Any) -> list[Pair]:
        pairs: list[Pair] = []
        waiting = self._waiting
        if waiting is not None and stamp < waiting[0]:  # late, out of order: now or never
            chosen = self._closest(stamp)
            if chosen < 0:
                self._stats.unmatched[self.VISIBLE] += 1
                return []
            return self._emit_with(stamp, item, chosen)
        if waiting is not None:  # a newer frame: the waiting one takes its closest partner, if any
            self._waiting = None
            chosen = self._closest(waiting[0])
            if chosen >= 0:
                pairs = self._emit_with(waiting[0], waiting[1], chosen)
            else:
                self._stats.unmatched[self.VISIBLE] += 1
        self._waiting = (stamp, item)
        return pairs + self._settle_waiting()

    def _add_thermal(self, stamp: int, item: Any) -> list[Pair]:
        stats = self._stats
        entry: list[Any] = [item, False]
        stamps, entries = self._thermal_stamps, self._thermal_entries
        pos = bisect.bisect_left(stamps, stamp)
        if pos < len(stamps) and stamps[pos] == stamp:
            if not entries[pos][1]:
                stats.unmatched[self.THERMAL] += 1  # superseded by a frame with the same stamp
            entries[pos] = entry
        else:
            stamps.insert(pos, stamp)
            entries.insert(pos, entry)
            if len(stamps) > self.queue_size:
                del stamps[0]
                evicted = entries.pop(0)
                if not evicted[1]:
                    stats.unmatched[self.THERMAL] += 1
        return self._settle_waiting() if self._waiting is not None else []

    def pending(self) -> list[int]:
        """[waiting visible frames (0 or 1), held thermal frames never paired]."""
        with self._lock:
            return [int(self._waiting is not None), sum(1 for e in self._thermal_entries if not e[1])]

    def flush(self) -> list[int]:
        """Drop the waiting frame and the thermal history, counting never-paired ones as unmatched."""
        with self._lock:
            counts = [int(self._waiting is not None), sum(1 for e in self._thermal_entries if not e[1])]
            self._stats.unmatched[0] += counts[0]
            self._stats.unmatched[1] += counts[1]
            self._waiting = None
            self._thermal_stamps.clear()
            self._thermal_entries.clear()
            return counts

    def reset(self) -> None:
        """Forget the history and the waiting frame, never-paired ones counted as unmatched (the statistics
        are cumulative)."""
        self.flush()

    @property
    def stats(self) -> SyncStats:
        """A consistent snapshot (copy) of the counters."""
        with self._lock:
            return self._stats.copy()


def create_sync(
    policy: str = "approximate",
    queue_size: int = 10,
    slop_s: float = 0.05,
    **options: Any,
) -> ApproximateTimeSync | LatestSync:
    """Build the ``policy`` ("approximate" or "latest") synchroniser for two inputs (visible, thermal).

    ``options`` go to the class (e.g. ``prefer``/``reuse_thermal`` for "latest", ``num_inputs`` for
    "approximate", ``diff_window`` for both).
    """
    if policy == "approximate":
        return ApproximateTimeSync(queue_size=queue_size, slop_s=slop_s, **options)
    if policy == "latest":
        return LatestSync(slop_s=slop_s, queue_size=queue_size, **options)
    raise ValueError(f"unknown sync policy {policy!r}: expected one of {', '.join(POLICIES)}")


# --- ROS boundary ----------------------------------------------------------------------------------------


def header_stamp_ns(msg: Any) -> int | None:
    """``msg.header.stamp`` (builtin_interfaces/Time or rclpy Time) as integer ns; None if headerless."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    if hasattr(stamp, "nanoseconds"):  # rclpy.time.Time
        return int(stamp.nanoseconds)
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)
