"""Tests for ssvif_ros.fusion.pairing: hand-made sequences with known pairs, seeded jittery streams checked
against an independent brute-force reference, accounting, errors, thread-safety and the message_filters
guard."""

from __future__ import annotations

import itertools
import random
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ssvif_ros.fusion.pairing import (
    ApproximateTimeSync,
    LatestSync,
    Pair,
    Synchronizer,
    create_sync,
    header_stamp_ns,
    slop_to_ns,
)

MS = 1_000_000


def feed(sync: Synchronizer, events: list[tuple[int, int, Any]]) -> list[Pair]:
    pairs: list[Pair] = []
    for index, stamp, item in events:
        pairs.extend(sync.add(index, stamp, item))
    return pairs


def stamps_of(pairs: list[Pair]) -> list[tuple[int, ...]]:
    return [p.stamps_ns for p in pairs]


def assert_accounting(sync: Synchronizer) -> None:
    """Every received item is paired, unmatched or still pending, for every input."""
    stats, pending = sync.stats, sync.pending()
    for i in range(sync.num_inputs):
        assert stats.received[i] == stats.paired[i] + stats.unmatched[i] + pending[i], (i, stats, pending)


# --- approximate policy: hand-made sequences encoding the message_filters (Python) semantics ---------------


def test_approx_pairs_close_stamps_and_reports_spread():
    sync = ApproximateTimeSync(queue_size=10, slop_s=0.01)
    assert sync.add(0, 100 * MS, "v") == []
    [pair] = sync.add(1, 103 * MS, "t")
    assert pair.items == ("v", "t")
    assert pair.stamps_ns == (100 * MS, 103 * MS)
    assert pair.spread_ns == 3 * MS
    assert sync.pending() == [0, 0]


def test_approx_equal_stamps_pair_with_zero_spread():
    sync = ApproximateTimeSync(slop_s=0.01)
    sync.add(1, 5 * MS, "t")
    [pair] = sync.add(0, 5 * MS, "v")
    assert pair.items == ("v", "t") and pair.spread_ns == 0


def test_approx_spread_equal_to_slop_is_not_paired():
    # The reference keeps |Δ| <= slop as a candidate but emits only when max − min < slop (strict).
    sync = ApproximateTimeSync(slop_s=0.01)
    sync.add(0, 0, "v")
    assert sync.add(1, 10 * MS, "t_at_slop") == []
    [pair] = sync.add(1, 10 * MS - 1, "t_inside")
    assert pair.items == ("v", "t_inside")
    assert sync.pending() == [0, 1]


@pytest.mark.parametrize(("order", "expected"), [((12, 8), 12), ((8, 12), 8)])
def test_approx_equidistant_candidates_tie_break_on_insertion_order(order, expected):
    sync = ApproximateTimeSync(slop_s=0.01)
    for stamp in (0, *order, 20):
        assert sync.add(1, stamp * MS, f"t{stamp}") == []
    [pair] = sync.add(0, 10 * MS, "v")
    assert pair.items == ("v", f"t{expected}")


def test_approx_picks_closest_of_several_candidates_arriving_out_of_order():
    sync = ApproximateTimeSync(slop_s=0.02)
    feed(sync, [(1, s * MS, f"t{s}") for s in (30, 10, 17, 21)])
    [pair] = sync.add(0, 20 * MS, "v")
    assert pair.items == ("v", "t21")
    [pair] = sync.add(0, 12 * MS, "v2")  # t21 is gone: t10 (|Δ| 2) beats t17 (|Δ| 5)
    assert pair.items == ("v2", "t10")


def test_approx_is_greedy_on_arrival_and_never_revisits_queued_items():
    # t9 pairs with v0 on arrival; the better t1 arriving later finds no visible frame and just waits.
    sync = ApproximateTimeSync(slop_s=0.01)
    pairs = feed(sync, [(0, 0, "v0"), (1, 9 * MS, "t9"), (1, 1 * MS, "t1")])
    assert [p.items for p in pairs] == [("v0", "t9")]
    assert sync.pending() == [0, 1]


def test_approx_queue_overflow_drops_oldest_stamp():
    sync = ApproximateTimeSync(queue_size=2, slop_s=0.005)
    feed(sync, [(1, 0, "t0"), (1, 10 * MS, "t10"), (1, 20 * MS, "t20")])
    assert sync.stats.unmatched == [0, 1]
    assert sync.add(0, 1 * MS, "v1") == []  # its partner t0 was evicted
    [pair] = sync.add(0, 11 * MS, "v11")
    assert pair.items == ("v11", "t10")
    assert_accounting(sync)


def test_approx_late_message_into_full_queue_is_evicted_at_once():
    sync = ApproximateTimeSync(queue_size=2, slop_s=0.005)
    feed(sync, [(0, 100 * MS, "v100"), (0, 200 * MS, "v200")])
    assert sync.add(0, 50 * MS, "v50") == []  # smallest stamp: dropped by the bound immediately
    assert sync.stats.unmatched == [1, 0]
    assert sync.add(1, 50 * MS, "t50") == []
    assert sync.pending() == [2, 1]
    assert_accounting(sync)


def test_approx_same_stamp_on_one_input_replaces_earlier_item():
    sync = ApproximateTimeSync(slop_s=0.01)
    feed(sync, [(0, 0, "a"), (0, 0, "b")])
    [pair] = sync.add(1, 0, "t")
    assert pair.items == ("b", "t")
    assert sync.stats.unmatched == [1, 0]
    assert_accounting(sync)


def test_approx_three_inputs_emit_first_admissible_set_in_product_order():
    sync = ApproximateTimeSync(num_inputs=3, slop_s=0.01)
    # Candidates for a new input-0 stamp 100 (|Δ| order): input 1 → 99, 104; input 2 → 108, 91.
    feed(sync, [(1, 104 * MS, "a104"), (1, 99 * MS, "a99"), (2, 91 * MS, "b91"), (2, 108 * MS, "b108")])
    [pair] = sync.add(0, 100 * MS, "v")
    # (99, 108) comes first and has spread 9 < 10; (104, 108) has the smaller spread 8 but comes later.
    assert pair.items == ("v", "a99", "b108")
    assert pair.spread_ns == 9 * MS


def test_approx_three_inputs_skip_inadmissible_combinations_and_place_new_item_in_its_slot():
    sync = ApproximateTimeSync(num_inputs=3, slop_s=0.01)
    feed(sync, [(0, 107 * MS, "v107"), (0, 92 * MS, "v92"), (2, 93 * MS, "b93")])
    [pair] = sync.add(1, 100 * MS, "a")  # (107, 93) spreads 14: skipped; (92, 93) spreads 8
    assert pair.items == ("v92", "a", "b93")
    assert pair.stamps_ns == (92 * MS, 100 * MS, 93 * MS)


def test_approx_three_inputs_spread_equal_to_slop_is_not_paired():
    sync = ApproximateTimeSync(num_inputs=3, slop_s=0.01)
    feed(sync, [(1, 95 * MS, "a95"), (2, 105 * MS, "b105")])
    assert sync.add(0, 100 * MS, "v") == []  # every |Δ| is 5 ms, but the spread is exactly 10 ms
    [pair] = sync.add(2, 104 * MS, "b104")
    assert pair.items == ("v", "a95", "b104") and pair.spread_ns == 9 * MS


def test_approx_three_inputs_need_a_candidate_on_every_other_input():
    sync = ApproximateTimeSync(num_inputs=3, slop_s=0.01)
    feed(sync, [(1, 0, "a")])
    assert sync.add(0, 0, "v") == []
    [pair] = sync.add(2, 1 * MS, "b")
    assert pair.items == ("v", "a", "b")


# --- approximate policy: an independent brute-force reference on seeded jittery streams --------------------


class BruteForceApproximate:
    """Reference model of message_filters' Python ApproximateTimeSynchronizer, written differently:

    queues are lists of [stamp, item] in insertion order; the chosen set is the minimum, over *all*
    combinations of queued items with spread < slop, of the key ((|Δ_j|, insertion position_j) for each
    other input j in order), which is the first admissible combination in the reference's product order.
    """

    def __init__(self, num_inputs: int, queue_size: int, slop_ns: int) -> None:
        self.queues: list[list[list[Any]]] = [[] for _ in range(num_inputs)]
        self.queue_size, self.slop_ns = queue_size, slop_ns

    def add(self, index: int, stamp: int, item: Any) -> list[tuple[Any, ...]]:
        queue = self.queues[index]
        for entry in queue:
            if entry[0] == stamp:
                entry[1] = item
                break
        else:
            queue.append([stamp, item])
        if len(queue) > self.queue_size:
            oldest = min(queue, key=lambda e: e[0])
            queue.remove(oldest)
            if oldest[0] == stamp:
                return []
        others = [i for i in range(len(self.queues)) if i != index]
        best_key, best = None, None
        for combo in itertools.product(*(list(enumerate(self.queues[i])) for i in others)):
            all_stamps = [stamp] + [entry[0] for _, entry in combo]
            if max(all_stamps) - min(all_stamps) >= self.slop_ns:
                continue
            key = tuple((abs(entry[0] - stamp), pos) for pos, entry in combo)
            if best_key is None or key < best_key:
                best_key, best = key, combo
        if best is None:
            return []
        chosen = dict(zip(others, (entry for _, entry in best), strict=True))
        chosen[index] = next(e for e in queue if e[0] == stamp)
        for i, entry in chosen.items():
            self.queues[i].remove(entry)
        return [tuple(chosen[i][1] for i in range(len(self.queues)))]


def jittery_streams(
    rng: random.Random,
    rates_hz: tuple[float, ...],
    duration_s: float,
    jitter_ms: float = 3.0,
    drop: float = 0.1,
    latency_ms: float = 8.0,
) -> list[tuple[int, int, str]]:
    """Events (index, stamp_ns, item) from periodic streams with gaussian stamp jitter and random drops,
    ordered by a random arrival time (so stamps arrive out of order now and then)."""
    events = []
    for index, rate in enumerate(rates_hz):
        offset = rng.uniform(0, 1 / rate)
        for k in range(int(duration_s * rate)):
            if rng.random() < drop:
                continue
            stamp = round((offset + k / rate + rng.gauss(0, jitter_ms / 1000)) * 1e9) + 5 * 10**9
            arrival = stamp + round(rng.expovariate(1 / latency_ms) * MS)
            events.append((arrival, index, stamp, f"{index}:{k}"))
    events.sort()
    return [(index, stamp, item) for _, index, stamp, item in events]


@pytest.mark.parametrize(
    ("rates", "queue_size", "slop_s", "seed"),
    [
        ((30.0, 60.0), 10, 0.010, 0),
        ((30.0, 9.0), 10, 0.030, 1),
        ((30.0, 60.0), 3, 0.008, 2),
        ((30.0, 9.0), 2, 0.050, 3),
    ],
)
def test_approx_matches_brute_force_reference_on_jittery_streams(rates, queue_size, slop_s, seed):
    rng = random.Random(seed)
    events = jittery_streams(rng, rates, duration_s=20.0)
    sync = ApproximateTimeSync(queue_size=queue_size, slop_s=slop_s)
    reference = BruteForceApproximate(2, queue_size, slop_to_ns(slop_s))
    emitted: set[str] = set()
    n_pairs = 0
    for index, stamp, item in events:
        got = sync.add(index, stamp, item)
        assert [p.items for p in got] == reference.add(index, stamp, item), (index, stamp, item)
        for pair in got:
            assert 0 <= pair.spread_ns < sync.slop_ns
            assert pair.spread_ns == max(pair.stamps_ns) - min(pair.stamps_ns)
            assert not emitted.intersection(pair.items), "an item was emitted twice"
            emitted.update(pair.items)
            n_pairs += 1
        assert_accounting(sync)
    assert n_pairs > 0.2 * len(events) / 2  # the streams do pair (not a vacuous comparison)
    stats = sync.stats
    assert stats.pairs == n_pairs and stats.paired == [n_pairs, n_pairs]
    assert sum(stats.received) == len(events)
    assert sync.flush() == [len(q) for q in reference.queues]
    assert sync.pending() == [0, 0]
    assert_accounting(sync)


def test_approx_three_inputs_match_brute_force_reference():
    rng = random.Random(7)
    events = jittery_streams(rng, (30.0, 60.0, 20.0), duration_s=6.0)
    sync = ApproximateTimeSync(num_inputs=3, queue_size=4, slop_s=0.02)
    reference = BruteForceApproximate(3, 4, slop_to_ns(0.02))
    n_pairs = 0
    for index, stamp, item in events:
        got = [p.items for p in sync.add(index, stamp, item)]
        assert got == reference.add(index, stamp, item)
        n_pairs += len(got)
    assert n_pairs > 20
    assert_accounting(sync)


def test_approx_matches_real_message_filters_when_importable():
    message_filters = pytest.importorskip(
        "message_filters",
        reason="message_filters is not importable here (no ROS 2 install): parity with it is checked "
        "against the brute-force reference instead",
    )
    from rclpy.time import Time

    events = jittery_streams(random.Random(11), (30.0, 60.0), duration_s=10.0)
    events += [(1, 10**9, "dup_a"), (1, 10**9, "dup_b"), (0, 10**9 + 5 * MS, "edge")]
    for queue_size, slop_s in [(10, 0.010), (3, 0.008), (1, 0.05)]:
        inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
        real = message_filters.ApproximateTimeSynchronizer(inputs, queue_size, slop_s)
        real_pairs: list[tuple[Any, ...]] = []
        real.registerCallback(lambda *msgs, out=real_pairs: out.append(tuple(m.data for m in msgs)))
        ours = ApproximateTimeSync(queue_size=queue_size, slop_s=slop_s)
        our_pairs: list[tuple[Any, ...]] = []
        for index, stamp, item in events:
            msg = SimpleNamespace(header=SimpleNamespace(stamp=Time(nanoseconds=stamp)), data=item)
            inputs[index].signalMessage(msg)
            our_pairs.extend(p.items for p in ours.add(index, stamp, item))
            assert our_pairs == real_pairs, (queue_size, slop_s, index, stamp, item)
        assert real_pairs


# --- latest policy --------------------------------------------------------------------------------


def test_latest_closest_versus_newest_within_slop():
    events = [(1, s * MS, f"t{s}") for s in (0, 16, 33)]
    closest = LatestSync(slop_s=0.02)
    newest = LatestSync(slop_s=0.02, prefer="newest")
    assert feed(closest, events) == [] and feed(newest, events) == []
    [pair] = closest.add(0, 20 * MS, "v")
    assert pair.items == ("v", "t16") and pair.spread_ns == 4 * MS
    [pair] = newest.add(0, 20 * MS, "v")
    assert pair.items == ("v", "t33") and pair.spread_ns == 13 * MS


def test_latest_tie_prefers_newer_and_slop_is_inclusive():
    sync = LatestSync(slop_s=0.01)
    feed(sync, [(1, 10 * MS, "t10"), (1, 30 * MS, "t30")])
    assert sync.add(0, 20 * MS, "v20")[0].items == ("v20", "t30")
    assert sync.add(0, 40 * MS, "v40")[0].items == ("v40", "t30")  # |Δ| == slop pairs here
    assert sync.add(0, 40 * MS + 1, "v_out") == []  # t30 is now 10 ms + 1 ns away: it waits
    assert sync.pending() == [1, 1]


def test_latest_waiting_visible_pairs_with_first_thermal_within_slop():
    sync = LatestSync(slop_s=0.01)
    assert sync.add(0, 100 * MS, "v") == []
    assert sync.add(1, 80 * MS, "t80") == []  # too old
    [pair] = sync.add(1, 95 * MS, "t95")
    assert pair.items == ("v", "t95") and pair.stamps_ns == (100 * MS, 95 * MS)
    assert sync.add(1, 99 * MS, "t99") == []  # no visible frame waits any more
    assert sync.pending() == [0, 2]
    assert_accounting(sync)


def test_latest_keeps_only_newest_waiting_visible_frame():
    sync = LatestSync(slop_s=0.01)
    feed(sync, [(0, 100 * MS, "v100"), (0, 133 * MS, "v133")])
    assert sync.stats.unmatched == [1, 0]
    assert sync.add(0, 90 * MS, "v90_late") == []  # older than the waiting frame: unmatched at once
    assert sync.stats.unmatched == [2, 0]
    assert sync.add(1, 100 * MS, "t100") == []  # would have suited v100, which is gone
    [pair] = sync.add(1, 130 * MS, "t130")
    assert pair.items == ("v133", "t130")
    assert_accounting(sync)


def test_latest_paired_newer_visible_supersedes_waiting_one():
    sync = LatestSync(slop_s=0.01)
    feed(sync, [(0, 100 * MS, "v100"), (1, 150 * MS, "t150")])
    [pair] = sync.add(0, 155 * MS, "v155")
    assert pair.items == ("v155", "t150")
    assert sync.pending() == [0, 0]
    assert sync.stats.unmatched == [1, 0]


def test_latest_reuses_thermal_frames_unless_told_not_to():
    events = [(1, 100 * MS, "t"), (0, 90 * MS, "v90"), (0, 110 * MS, "v110")]
    reuse = LatestSync(slop_s=0.015)
    assert [p.items for p in feed(reuse, events)] == [("v90", "t"), ("v110", "t")]
    assert reuse.stats.paired == [2, 1]
    once = LatestSync(slop_s=0.015, reuse_thermal=False)
    assert [p.items for p in feed(once, events)] == [("v90", "t")]
    assert once.pending() == [1, 0]
    assert_accounting(reuse)
    assert_accounting(once)


def test_latest_thermal_history_is_bounded_and_equal_stamp_replaces():
    sync = LatestSync(slop_s=0.005, queue_size=3)
    feed(sync, [(1, s * MS, f"t{s}") for s in (0, 10, 20, 30)])
    assert sync.stats.unmatched == [0, 1]
    assert sync.add(0, 0, "v0") == []  # t0 was evicted
    sync.add(1, 20 * MS, "t20_b")
    assert sync.stats.unmatched == [0, 2]
    [pair] = sync.add(0, 21 * MS, "v21")
    assert pair.items == ("v21", "t20_b")
    assert_accounting(sync)


def test_latest_zero_slop_pairs_exact_stamps_only():
    sync = LatestSync(slop_s=0.0)
    feed(sync, [(1, 5, "t5")])
    assert sync.add(0, 6, "v6") == []
    assert sync.add(0, 5, "v5")[0].spread_ns == 0


def closest_in_stream(events, vis_stamp: int, slop_ns: int) -> int | None:
    """The smallest |Δ| from ``vis_stamp`` to any thermal stamp of the whole stream within slop."""
    spreads = [abs(stamp - vis_stamp) for index, stamp, _ in events if index == 1]
    near = [d for d in spreads if d <= slop_ns]
    return min(near) if near else None


def test_latest_waits_for_the_closer_thermal_frame_that_arrives_after_the_visible_one():
    """Issue 15 item 8: visible 10 Hz, thermal 30 Hz, 3 ms jitter, thermal arriving ~8 ms after its stamp
    and visible ~1 ms after: pairing at once took the previous thermal frame (31-33 ms apart) in 4 of 10
    pairs. Every pair must now be the closest thermal frame of the whole stream within slop."""
    rng = random.Random(4)
    events = []
    for k in range(40):
        stamp = 5 * 10**9 + k * 100 * MS + round(rng.gauss(0, 3) * MS)
        events.append((stamp + 1 * MS, 0, stamp, f"v{k}"))
    for k in range(120):
        stamp = 5 * 10**9 + 2 * MS + k * 33_333_333 + round(rng.gauss(0, 3) * MS)
        events.append((stamp + 8 * MS, 1, stamp, f"t{k}"))
    events = [(index, stamp, item) for _, index, stamp, item in sorted(events)]
    sync = LatestSync(slop_s=0.05, queue_size=6)
    pairs = feed(sync, events)
    assert len(pairs) == 40
    for pair in pairs:
        assert pair.spread_ns == closest_in_stream(events, pair.stamps_ns[0], sync.slop_ns)
    assert max(p.spread_ns for p in pairs) < 15 * MS
    assert_accounting(sync)


def test_latest_waits_at_most_until_a_thermal_frame_at_or_after_the_visible_stamp():
    sync = LatestSync(slop_s=0.05)
    feed(sync, [(1, s * MS, f"t{s}") for s in (0, 33, 67)])
    assert sync.add(0, 95 * MS, "v95") == []  # t67 is 28 ms away, the next (~100) should be 5 ms
    [pair] = sync.add(1, 100 * MS, "t100")
    assert pair.items == ("v95", "t100")
    [pair] = sync.add(0, 101 * MS, "v101")  # t100 is 1 ms away: no closer frame expected
    assert pair.items == ("v101", "t100")
    assert sync.add(0, 125 * MS, "v125") == []  # t100 is 25 ms away, ~133 expected at 8 ms: waits
    [late] = sync.add(0, 160 * MS, "v160")  # the next visible frame settles the waiting one
    assert late.items == ("v125", "t100")  # no closer frame arrived; v160 (t100 60 ms away) waits
    assert sync.pending()[0] == 1
    assert_accounting(sync)


@pytest.mark.parametrize(
    ("thermal_hz", "slop_s", "seed"), [(60.0, 0.02, 0), (9.0, 0.06, 1), (60.0, 0.005, 2)]
)
def test_latest_on_jittery_streams(thermal_hz, slop_s, seed):
    events = jittery_streams(random.Random(seed), (30.0, thermal_hz), duration_s=20.0)
    sync = LatestSync(slop_s=slop_s, queue_size=6)
    pairs = feed(sync, events)
    visible_used = [p.items[0] for p in pairs]
    assert len(visible_used) == len(set(visible_used)), "a visible frame was emitted twice"
    assert all(p.spread_ns == abs(p.stamps_ns[0] - p.stamps_ns[1]) <= sync.slop_ns for p in pairs)
    n_visible = sum(1 for e in events if e[0] == 0)
    assert len(pairs) > 0.3 * n_visible
    closest = [p.spread_ns == closest_in_stream(events, p.stamps_ns[0], sync.slop_ns) for p in pairs]
    assert sum(closest) > 0.9 * len(pairs)  # out-of-order arrivals and drops may cost a few
    assert_accounting(sync)
    sync.flush()
    assert sync.pending() == [0, 0]
    assert_accounting(sync)


# --- shared interface: stats, reset, factory, errors, threads -----------------------------------------------


def test_stats_percentiles_summary_and_bounded_window():
    sync = ApproximateTimeSync(slop_s=0.05, diff_window=4)
    spreads_ms = [1, 2, 3, 4, 5, 6]
    for k, d in enumerate(spreads_ms):
        sync.add(0, k * 10**9, k)
        sync.add(1, k * 10**9 + d * MS, k)
    stats = sync.stats
    assert list(stats.spreads_ns) == [d * MS for d in spreads_ms[-4:]]
    assert stats.spread_percentile_ns(95) == pytest.approx(np.percentile([3, 4, 5, 6], 95) * MS)
    summary = stats.summary(["visible", "thermal"])
    assert summary["pairs"] == 6
    assert summary["inputs"]["thermal"] == {"received": 6, "paired": 6, "unmatched": 0}
    assert summary["spread_ms"]["p50"] == pytest.approx(4.5)
    assert summary["spread_ms"]["max"] == pytest.approx(6.0)
    assert ApproximateTimeSync().stats.summary()["spread_ms"]["p50"] is None
    with pytest.raises(ValueError, match="2 inputs"):
        stats.summary(["only_one"])


@pytest.mark.parametrize("policy", ["approximate", "latest"])
def test_reset_forgets_queues_and_keeps_counting(policy):
    """A reset (bag loop, clock jump) drops what is queued but the counts stay cumulative: the dropped
    frames are unmatched, not forgotten (received == paired + unmatched + pending still holds)."""
    sync = create_sync(policy, queue_size=5, slop_s=0.01)
    feed(sync, [(0, 0, "v"), (1, 1 * MS, "t"), (0, 50 * MS, "v2")])
    before = sync.stats
    sync.reset()
    assert sync.pending() == [0, 0]
    stats = sync.stats
    assert stats.received == before.received and stats.pairs == before.pairs == 1
    assert stats.unmatched[0] == before.unmatched[0] + 1  # v2 was waiting
    for i in (0, 1):
        assert stats.received[i] == stats.paired[i] + stats.unmatched[i]
    assert sync.add(1, 50 * MS, "t2") == []  # v2 is gone


def test_create_sync_builds_each_policy_with_options():
    approx = create_sync("approximate", queue_size=4, slop_s=0.02)
    assert isinstance(approx, ApproximateTimeSync) and isinstance(approx, Synchronizer)
    assert (approx.queue_size, approx.slop_ns, approx.num_inputs) == (4, 20 * MS, 2)
    latest = create_sync("latest", queue_size=3, slop_s=0.1, prefer="newest", reuse_thermal=False)
    assert isinstance(latest, LatestSync) and isinstance(latest, Synchronizer)
    assert (latest.queue_size, latest.slop_ns, latest.prefer, latest.reuse_thermal) == (
        3,
        100 * MS,
        "newest",
        False,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"policy": "nearest"}, ValueError, "unknown sync policy 'nearest'"),
        ({"slop_s": -0.01}, ValueError, "slop_s must be"),
        ({"slop_s": float("nan")}, ValueError, "slop_s must be"),
        ({"slop_s": "0.05"}, TypeError, "slop_s must be a number"),
        ({"slop_s": 0.0}, ValueError, "never pair"),
        ({"queue_size": 0}, ValueError, "queue_size must be >= 1"),
        ({"queue_size": 2.5}, TypeError, "queue_size must be an integer"),
        ({"policy": "latest", "queue_size": 0}, ValueError, "queue_size must be >= 1"),
        ({"policy": "latest", "slop_s": -1}, ValueError, "slop_s must be"),
        ({"policy": "latest", "prefer": "oldest"}, ValueError, "prefer must be"),
        ({"num_inputs": 1}, ValueError, "num_inputs must be"),
    ],
)
def test_create_sync_rejects_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        create_sync(**kwargs)


@pytest.mark.parametrize("policy", ["approximate", "latest"])
def test_add_rejects_bad_index_and_stamp(policy):
    sync = create_sync(policy)
    with pytest.raises(IndexError, match="index 2 out of range"):
        sync.add(2, 0, "x")
    with pytest.raises(IndexError, match="index -1 out of range"):
        sync.add(-1, 0, "x")
    for bad in (1.5, "10", True, None):
        with pytest.raises(TypeError, match="stamp_ns must be an integer"):
            sync.add(0, bad, "x")
    assert sync.stats.received == [0, 0]
    sync.add(0, np.int64(7), "x")  # numpy integers are fine
    assert sync.pending()[0] == 1


@pytest.mark.parametrize("policy", ["approximate", "latest"])
def test_concurrent_adds_keep_accounting_consistent(policy):
    sync = create_sync(policy, queue_size=10, slop_s=0.01)
    emitted: list[Pair] = []
    emitted_lock = threading.Lock()

    def worker(index: int, offset_ms: int) -> None:
        for k in range(1500):
            got = sync.add(index, (k * 33 + offset_ms) * MS, (index, offset_ms, k))
            with emitted_lock:
                emitted.extend(got)

    threads = [threading.Thread(target=worker, args=(i % 2, i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sync.stats.received == [3000, 3000]
    assert sync.stats.pairs == len(emitted) > 0
    visible = [p.items[0] for p in emitted]
    assert len(visible) == len(set(visible))
    assert_accounting(sync)


# --- ROS boundary --------------------------------------------------------------------------------


def test_header_stamp_ns_reads_message_and_rclpy_stamps():
    msg = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=12, nanosec=345)))
    assert header_stamp_ns(msg) == 12_000_000_345
    rclpy_like = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(nanoseconds=99)))
    assert header_stamp_ns(rclpy_like) == 99
    assert header_stamp_ns(SimpleNamespace(data=1)) is None
