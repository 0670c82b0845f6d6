"""bench/fuzz_messages.py and bench/soak_node.py, tiny: they run, print their JSON, and the invariants hold.

Each script runs as a subprocess with LOCALHOST discovery and a ROS domain of its own (not the one this
pytest run's in-process tests use), as the scripts set up for themselves and their children.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")  # the fuzzer builds real sensor_msgs/Image messages

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, timeout: float) -> dict:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    current = env.get("ROS_DOMAIN_ID")
    env["ROS_DOMAIN_ID"] = str(random.choice([d for d in range(1, 101) if str(d) != current]))
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["meta"]["ros_domain_id"] == env["ROS_DOMAIN_ID"]
    return data


@pytest.fixture(scope="module")
def decoders() -> dict:
    return run_bench("fuzz_messages.py", "--count", "600", "--no-node", timeout=60)["decoders"]


def test_fuzzed_image_messages_decode_exactly_or_are_refused_naming_the_field(decoders):
    assert decoders["messages"] == 600
    assert set(decoders["valid_by_encoding"]) == {
        "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1"
    }  # fmt: skip
    assert decoders["decoded_correctly"] > 300 and decoders["malformed_refused"] > 300
    assert decoders["wrong_decodes"] == 0
    assert decoders["valid_refused"] == 0
    assert decoders["malformed_refused_other_field"] == 0
    # every field of a malformed message is exercised
    fields = {"encoding", "height", "width", "is_bigendian", "step", "data"}
    assert fields <= set(decoders["refused_by_field"])
    # what the node can receive (real sensor_msgs/Image objects): no failure of any kind
    assert decoders["ok_sensor_msgs_image"], decoders["failures_by_object"]
    assert all("sensor_msgs_image" not in v for v in decoders["failures_by_object"].values())


def test_fuzzed_other_objects_with_image_fields_raise_only_malformed_image(decoders):
    assert decoders["other_exceptions"] == 0 and decoders["malformed_accepted"] == 0, decoders["examples"]


@pytest.mark.ros
@pytest.mark.slow
def test_fuzzed_messages_leave_the_node_running_and_counted_by_field():
    data = run_bench("fuzz_messages.py", "--count", "600", "--node-seconds", "5", timeout=120)
    node = data["node"]
    assert node is not None and sum(node["sent"].values()) > 200
    assert node["node_alive_after_fuzz"] and node["node_exit_code"] == 0
    assert node["received"] == node["sent"]
    assert node["malformed_counts_match_expected"] == {"visible": True, "thermal": True}
    assert node["malformed_reported"]["visible"] > 0 and node["malformed_reported"]["thermal"] > 0
    assert node["node_log_tracebacks"] == 0
    assert node["ok"]
    assert data["decoders"]["wrong_decodes"] == 0


@pytest.mark.ros
@pytest.mark.slow
def test_soak_samples_memory_and_every_pair_is_accounted_for():
    data = run_bench(
        "soak_node.py",
        "--minutes", "0.12", "--warmup-s", "3", "--rate", "10", "--sample-s", "1",
        "--size", "120x160", "--thermal-size", "128x160",
        timeout=150,
    )  # fmt: skip
    soak = data["soak"]
    assert not soak["hard_stopped"]
    assert soak["node_alive_at_end"] and soak["node_exit_code"] == 0
    assert len(soak["samples"]) >= 5 and soak["samples_after_warmup"] >= 3
    assert all(s["rss_mb"] > 50 for s in soak["samples"])
    rss = soak["rss_mb"]
    assert rss["warmup_end"] and rss["end"] and rss["max_sampled"] >= rss["end"]
    assert soak["rss_slope_after_warmup_mb_per_min"] is not None
    assert soak["pairs_sent"] > 0 and soak["published"] > 0
    assert soak["errors"] == 0
    assert soak["backlog_after_stream"] == 0 and not soak["queue_grew"]
