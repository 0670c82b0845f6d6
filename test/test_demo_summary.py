"""The demo's summary lines say what they measure and give a verdict (issue 15 item 7)."""

from __future__ import annotations

from ssvif_ros.tools.demo import _live_offline_verdict


def test_live_versus_offline_gives_a_verdict_and_what_a_difference_means():
    same = _live_offline_verdict({"frames": 42, "differing": 0, "max_abs_diff": 0})
    assert same.startswith("identical on all 42 fused frame(s)") and "thermal-gain history" in same
    different = _live_offline_verdict({"frames": 42, "differing": 3, "max_abs_diff": 193})
    assert different.startswith("DIFFERENT on 3 of 42 frame(s), up to 193 grey levels: expected identical")
    assert "report it" in different
