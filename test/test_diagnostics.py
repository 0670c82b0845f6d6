"""FusionDiagnostics: rates over a period, latency percentiles, status and reason, DiagnosticArray."""

from __future__ import annotations

import numpy as np
import pytest

from ssvif_ros.node.diagnostics import (
    ERROR,
    OK,
    WARN,
    FusionDiagnostics,
    estimated_loss,
    percentile,
    to_diagnostic_array,
    values_from_status,
)

TOPICS = {"visible": "/cam/image_raw", "thermal": "/flir/image_raw"}


def make(now: float = 100.0, window: int = 300) -> FusionDiagnostics:
    return FusionDiagnostics(
        TOPICS, {"visible": 0.5, "thermal": 1.0}, window=window, info={"backend": "torch"}, now=now
    )


def test_percentile_matches_numpy():
    values = list(np.random.default_rng(0).random(37))
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_rates_counts_and_latency_percentiles():
    diag = make()
    for i in range(20):  # 20 Hz visible, 10 Hz thermal over one second
        diag.arrived("visible", 100.0 + i * 0.05)
        if i % 2 == 0:
            diag.arrived("thermal", 100.0 + i * 0.05)
    for latency, inference in ((0.030, 0.020), (0.040, 0.025), (0.050, 0.045)):
        diag.frame_done(latency, inference)
    diag.paired(3)
    diag.add_skipped(2)
    diag.set_unmatched(1, 4)
    diag.set_dispatch(5, 7)
    snap = diag.snapshot(101.0)
    v = snap.values
    assert snap.level == OK, snap.message
    assert v["backend"] == "torch" and v["visible topic"] == TOPICS["visible"]
    assert float(v["visible rate (Hz)"]) == pytest.approx(20.0)
    assert float(v["thermal rate (Hz)"]) == pytest.approx(10.0)
    assert float(v["paired rate (Hz)"]) == pytest.approx(3.0)
    assert v["skipped (model busy)"] == "2" and v["unmatched thermal"] == "4"
    assert v["fused inline"] == "5" and v["fused on worker"] == "7"
    assert float(v["latency p50 (ms)"]) == pytest.approx(40.0)
    assert float(v["inference p50 (ms)"]) == pytest.approx(25.0)
    assert float(v["overhead p50 (ms)"]) == pytest.approx(10.0)  # per frame: 10, 15, 5 ms
    assert float(v["overhead p95 (ms)"]) == pytest.approx(np.percentile([10, 15, 5], 95), abs=0.01)
    # rates are per period: nothing arrived in the next second
    assert float(diag.snapshot(102.0).values["visible rate (Hz)"]) == 0.0


def test_latency_window_is_bounded():
    diag = make(window=4)
    for ms in range(10):
        diag.frame_done(ms / 1000, 0.0)
    values = diag.snapshot(100.5).values
    assert values["latency window (frames)"] == "4"
    assert float(values["latency p50 (ms)"]) == pytest.approx(7.5)  # of 6, 7, 8, 9


def test_status_warns_on_silence_and_malformed_and_errors_on_failures():
    diag = make()
    diag.arrived("visible", 100.0)
    diag.arrived("thermal", 100.0)
    assert diag.snapshot(100.4).level == OK
    snap = diag.snapshot(100.8)  # visible timeout 0.5 s passed
    assert snap.level == WARN
    assert "visible topic /cam/image_raw silent for 0.8 s (timeout 0.5 s)" in snap.message
    assert "thermal" not in snap.message
    diag.arrived("visible", 100.9)
    diag.arrived("thermal", 100.9)
    diag.malformed("thermal", "step")
    diag.malformed("thermal", "step")
    snap = diag.snapshot(101.0)
    assert snap.level == WARN and "2 malformed thermal message(s)" in snap.message
    assert snap.values["thermal malformed by field"] == "step: 2"
    assert diag.snapshot(101.1).level == OK  # malformed counts only for the period they happened in
    diag.error("RuntimeError: boom")
    snap = diag.snapshot(101.2)
    assert snap.level == ERROR and "boom" in snap.message
    diag.passthrough_on_thermal_loss = True
    diag.mark_lost(102.5)
    snap = diag.snapshot(102.5)
    assert snap.level == WARN and "thermal topic /flir/image_raw silent" in snap.message
    assert "passthrough" in snap.message and snap.values["mode"] == "passthrough"


def test_lost_state_is_declared_once_and_ends_with_the_next_message():
    diag = make(now=0.0)
    diag.passthrough_on_thermal_loss = True
    diag.arrived("visible", 1.0)
    diag.arrived("thermal", 1.0)
    assert diag.mark_lost(1.4) == []  # within both timeouts
    assert diag.mark_lost(1.6) == [("visible", pytest.approx(0.6), False)]
    assert diag.arrived("visible", 1.7) == pytest.approx(0.7)  # back: how long it had been silent
    assert diag.arrived("visible", 1.9) is None  # no longer lost
    assert diag.mark_lost(2.1) == [("thermal", pytest.approx(1.1), False)]
    assert diag.mark_lost(2.2) == []  # each loss reported once
    assert diag.is_lost("thermal", 2.2) and diag.mode(2.2) == "passthrough"
    diag.arrived("visible", 2.3)
    assert diag.arrived("thermal", 2.4) == pytest.approx(1.4)
    assert not diag.is_lost("thermal", 2.5) and diag.mode(2.5) == "fusion"
    diag.passthrough_on_thermal_loss = False
    diag.mark_lost(9.0)
    assert diag.is_lost("thermal", 9.0) and diag.mode(9.0) == "fusion"  # no passthrough configured


def test_inputs_lost_before_the_cameras_start_are_not_lost_once_the_streams_begin():
    diag = make(now=0.0)
    assert [name for name, _, never in diag.mark_lost(5.0) if never] == ["visible", "thermal"]
    diag.arrived("visible", 5.0)  # silence of a never-seen input now counts from the streams' start
    assert not diag.is_lost("thermal", 5.1)
    assert diag.is_lost("thermal", 6.5)  # and it is lost again once silent beyond its timeout


def test_silence_counts_from_start_until_the_first_message():
    diag = make(now=50.0)
    assert diag.silent_for("thermal", 50.6) == pytest.approx(0.6)
    assert not diag.is_silent("thermal", 50.6) and diag.is_silent("visible", 50.6)


def test_an_input_that_never_arrived_is_silent_from_the_streams_start_not_the_nodes():
    diag = make(now=0.0)
    assert diag.is_silent("thermal", 30.0)  # nothing at all for 30 s: both inputs silent
    diag.arrived("visible", 30.0)  # the cameras start 30 s after the node
    assert diag.silent_for("thermal", 30.002) == pytest.approx(0.002)
    assert not diag.is_silent("thermal", 30.5)
    assert diag.is_silent("thermal", 31.5)  # thermal still missing after its 1 s timeout


def test_totals_and_diagnostic_array():
    from builtin_interfaces.msg import Time

    diag = make()
    diag.arrived("visible", 100.0)
    diag.malformed("visible", "encoding")
    diag.frame_done(0.01, 0.0, passthrough=True)
    diag.sync_reset()
    totals = diag.totals()
    assert totals["malformed_fields"]["visible"] == {"encoding": 1}
    assert totals["passthrough"] == 1 and totals["published"] == 1 and totals["sync_resets"] == 1
    snap = diag.snapshot(100.1)
    array = to_diagnostic_array(snap, Time(sec=5, nanosec=7), "fuse_node: fusion", "cpu")
    (status,) = array.status
    assert array.header.stamp.sec == 5 and status.name == "fuse_node: fusion" and status.hardware_id == "cpu"
    assert status.level == bytes([snap.level]) and status.message == snap.message
    assert values_from_status(status.values) == snap.values


def test_estimated_loss_from_the_stamps_of_a_periodic_stream():
    period = 33_333_333
    stamps = [k * period for k in range(100)]
    assert estimated_loss(stamps) == 0.0
    kept = [s for k, s in enumerate(stamps) if k % 4 != 3]  # every fourth frame lost on the way
    assert estimated_loss(kept) == pytest.approx(24 / 99, abs=0.01)
    assert estimated_loss(stamps[:10]) is None  # too few to judge
    looped = stamps + [s + 60 * 10**9 for s in stamps]  # a bag loop or an outage is not a loss rate
    assert estimated_loss(looped) == 0.0


def test_lost_frames_turn_the_status_to_warn_and_name_the_fix():
    """The issue's hand run: 58 of 200 visible frames received; thermal complete (3 ms stamp jitter)."""
    rng = np.random.default_rng(0)
    diag = make(now=0.0)
    period = 33_333_333
    received = rng.random(200) < 0.29
    for k in range(200):
        t, stamp = k / 30, 5 * 10**9 + k * period + int(rng.normal(0, 3e6))
        diag.arrived("thermal", t, stamp)
        if received[k]:
            diag.arrived("visible", t, stamp)
    snap = diag.snapshot(200 / 30)
    assert snap.level == WARN and "ssvif_ros.tools.dds" in snap.message
    lost = 100 * (1 - received[received.nonzero()[0][0] : received.nonzero()[0][-1] + 1].mean())
    assert float(snap.values["visible lost by stamps (%)"]) == pytest.approx(lost, abs=1.0)
    assert "visible frames are being lost: ~" in snap.message
    assert "thermal frames are being lost" not in snap.message
    assert snap.values["thermal lost by stamps (%)"] == "0.0"
