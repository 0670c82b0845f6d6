"""The live tools: ssvif-play's schedule (pure), and play → fuse_node → ssvif-record on loopback.

ROS tests run every process with ``env=os.environ``: conftest.py has set ROS_AUTOMATIC_DISCOVERY_RANGE to
LOCALHOST and a per-run ROS_DOMAIN_ID, so nothing here talks to another run or beyond this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.io.bags import (
    COMPRESSED_IMAGE_TYPE,
    IMAGE_TYPE,
    make_compressed_msg,
    make_image_msg,
    open_reader,
    open_writer,
    stamp_ns,
)
from ssvif_ros.models import create_model
from ssvif_ros.tools.live import stop_process
from ssvif_ros.tools.play import PlaySchedule, select_topics

REPO = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
MS = 1_000_000
FRAMES = 10
BAG_START_NS = 1_700_000_000 * NS
VISIBLE, THERMAL = "/camera/image_raw", "/thermal/image_raw"


# --- the schedule (no ROS) ------------------------------------------------------------------------------


def test_schedule_scales_by_rate_skips_the_start_offset_and_loops_after_one_frame_period():
    # 10 frames at 10 Hz: the bag spans 0.9 s
    schedule = PlaySchedule.for_bag(
        BAG_START_NS, BAG_START_NS + 900 * MS, FRAMES, rate=2.0, start_offset_s=0.3
    )
    assert not schedule.plays(BAG_START_NS + 200 * MS)
    assert schedule.plays(BAG_START_NS + 300 * MS)
    assert schedule.due_s(BAG_START_NS + 300 * MS) == pytest.approx(0.0)
    assert schedule.due_s(BAG_START_NS + 900 * MS) == pytest.approx(0.3)  # 0.6 s of bag at 2×
    # a loop replays 0.3..0.9 s plus one 0.1 s frame period: 0.7 s of bag, 0.35 s at 2×
    assert schedule.loop_period_ns == 700 * MS
    assert schedule.due_s(BAG_START_NS + 300 * MS, loop=1) == pytest.approx(0.35)
    assert schedule.due_s(BAG_START_NS + 900 * MS, loop=1) == pytest.approx(0.65)


def test_restamping_keeps_equal_stamps_equal_increases_across_loops_and_inverts():
    schedule = PlaySchedule.for_bag(BAG_START_NS, BAG_START_NS + 900 * MS, FRAMES, rate=0.5)
    first = BAG_START_NS + 7 * MS  # header stamps need not equal log times
    wall = 1_800_000_000 * NS
    stamps = [first + i * 100 * MS for i in range(FRAMES)]
    loop0 = [schedule.restamp_ns(s, first, wall) for s in stamps]
    loop1 = [schedule.restamp_ns(s, first, wall, loop=1) for s in stamps]
    assert loop0[0] == wall
    assert np.all(np.diff(loop0) == 200 * MS)  # half speed: stamps spread like the publish times
    assert loop1[0] > loop0[-1]  # a loop never jumps the stamps back (the node's sync keeps going)
    assert schedule.restamp_ns(stamps[3], first, wall) == schedule.restamp_ns(stamps[3], first, wall)
    back = [schedule.original_stamp_ns(n, first, wall, loop=1) for n in loop1]
    assert back == stamps


def test_schedule_rejects_bad_rate_and_offsets_beyond_the_bag():
    with pytest.raises(ValueError, match="--rate"):
        PlaySchedule.for_bag(0, NS, 10, rate=0.0)
    with pytest.raises(ValueError, match="--start"):
        PlaySchedule.for_bag(0, NS, 10, start_offset_s=1.5)
    with pytest.raises(ValueError, match="--start"):
        PlaySchedule.for_bag(0, NS, 10, start_offset_s=-0.1)


def test_topic_selection_defaults_to_image_topics_and_names_missing_ones():
    topics = {VISIBLE: IMAGE_TYPE, "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray", THERMAL: IMAGE_TYPE}
    assert select_topics(topics, None) == [VISIBLE, THERMAL]
    assert select_topics(topics, ["/diagnostics"]) == ["/diagnostics"]
    with pytest.raises(ValueError, match="/nope"):
        select_topics(topics, [VISIBLE, "/nope"])
    with pytest.raises(ValueError, match="no image topic"):
        select_topics({"/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}, None)


# --- live: play → node → record -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_bag(tmp_path_factory) -> Path:
    """10 pairs of 64×48 frames at 10 Hz (visible rgb8, thermal mono8), log time = header stamp."""
    path = tmp_path_factory.mktemp("bag") / "short"
    rng = np.random.default_rng(0)
    with open_writer(path) as bag:
        bag.add_topic(VISIBLE, IMAGE_TYPE)
        bag.add_topic(THERMAL, IMAGE_TYPE)
        for i in range(FRAMES):
            t = BAG_START_NS + i * 100 * MS
            vis = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            th = rng.integers(0, 256, (48, 64), dtype=np.uint8)
            bag.write(VISIBLE, t, make_image_msg(vis, "rgb8", t, "camera"))
            bag.write(THERMAL, t + 2 * MS, make_image_msg(th, "mono8", t + 2 * MS, "thermal"))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init lightunet: the node needs *a* checkpoint, not a good one."""
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.safetensors", create_model("lightunet"))


def _spawn(module: str, args: list[str], log: Path) -> subprocess.Popen:
    """A tool or the node in its own process, choosing its own transport (no profile inherited)."""
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for(
    predicate, timeout: float, what: str, processes: list[subprocess.Popen], logs: list[Path]
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [(p, log) for p, log in zip(processes, logs, strict=True) if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}:\n{log.read_text()[-2000:]}" for log in logs if log.exists())
            pytest.fail(f"{'a process exited' if dead else 'timed out'} waiting for {what}\n{tails}")
        time.sleep(0.1)


def _play(bag: Path, tmp_path: Path, name: str, *extra: str) -> dict:
    summary = tmp_path / f"{name}.json"
    config_home = tmp_path / f"{name}_config"  # the player writes its transport profile here itself
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    result = subprocess.run(
        [sys.executable, "-m", "ssvif_ros.tools.play", str(bag), "--summary", str(summary), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    profile = config_home / "ssvif_ros" / "fastdds_shm.xml"
    assert f"Fast DDS profile {profile}" in result.stderr, "ssvif-play should use the shared-memory profile"
    assert profile.is_file()
    return json.loads(summary.read_text())


@pytest.mark.ros
def test_play_node_record_round_trip_keeps_or_maps_stamps_and_record_stops_on_sigint(
    short_bag, checkpoint, tmp_path
):
    node_name = f"fuse_live_{os.getpid()}"
    fused_topic = f"/{node_name}/fused/image"
    out_bag = tmp_path / "out"
    ready = tmp_path / "record.ready"
    logs = [tmp_path / "node.log", tmp_path / "record.log"]
    node = _spawn(
        "ssvif_ros.node.fuse_node",
        [
            "--ros-args",
            "--params-file", str(REPO / "config" / "fuse.yaml"),
            "-r", f"__node:={node_name}",
            "-r", f"visible/image_raw:={VISIBLE}",
            "-r", f"thermal/image_raw:={THERMAL}",
            "-p", f"weights:={checkpoint}",
            "-p", "device:=cpu",
            "-p", "torch_threads:=1",
            "-p", "qos.reliability:=reliable",
            "-p", "warmup.visible_size:=[48, 64]",
            "-p", "diagnostics.period_s:=0.5",
            "-p", "timeouts.thermal_s:=30.0",  # no passthrough frames between the two plays
            "-p", "timeouts.visible_s:=30.0",
        ],
        logs[0],
    )  # fmt: skip
    record = None
    try:
        record = _spawn(
            "ssvif_ros.tools.record",
            [str(out_bag), fused_topic, "/diagnostics", "--ready-file", str(ready)],
            logs[1],
        )
        _wait_for(ready.exists, 90, "ssvif-record to match the node's outputs", [node, record], logs)
        kept = _play(short_bag, tmp_path, "keep", "--stamps", "keep", "--wait-subscribers", "30")
        time.sleep(1.0)  # the last frames through the node and into the recorder
        restamped = _play(short_bag, tmp_path, "restamp", "--wait-subscribers", "30")
        time.sleep(1.5)  # ... and a /diagnostics report after them
        assert stop_process(record) == 0, logs[1].read_text()[-2000:]
    finally:
        if record is not None:
            stop_process(record)
        stop_process(node)

    own_profile = Path(os.environ["XDG_CONFIG_HOME"]) / "ssvif_ros" / "fastdds_shm.xml"  # conftest's folder
    assert f"Fast DDS profile {own_profile}" in logs[1].read_text(), "ssvif-record should use its own profile"
    assert kept["published"] == {VISIBLE: FRAMES, THERMAL: FRAMES}
    assert restamped["published"] == {VISIBLE: FRAMES, THERMAL: FRAMES}
    with open_reader(short_bag) as bag:
        played = [stamp_ns(msg) for _, _, _, msg in bag.messages([VISIBLE])]
    with open_reader(out_bag) as bag:  # closed cleanly on SIGINT: readable
        assert bag.topics() == {
            fused_topic: IMAGE_TYPE,
            "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
        }
        fused = [(t, stamp_ns(msg)) for _, _, t, msg in bag.messages([fused_topic])]
        diagnostics = list(bag.messages(["/diagnostics"]))
    assert diagnostics, "no /diagnostics recorded"

    old = [(t, s) for t, s in fused if s < BAG_START_NS + 3600 * NS]  # the kept (2023) stamps
    new = [(t, s) for t, s in fused if s >= BAG_START_NS + 3600 * NS]
    assert len(old) >= FRAMES - 2 and len(new) >= FRAMES - 2, (len(old), len(new))
    assert set(s for _, s in old) <= set(played)  # the node copies the visible header: stamps match
    mapping = restamped["stamp_mapping"]
    schedule = PlaySchedule(0, 0, mapping["loop_period_ns"], mapping["rate"])
    back = [
        schedule.original_stamp_ns(s, mapping["first_stamp_ns"], mapping["wall_start_ns"]) for _, s in new
    ]
    assert set(back) <= set(played)
    # restamped stamps are wall-clock times shortly before the fused frame was received
    ages_s = [(t - s) / NS for t, s in new]
    assert 0.0 <= min(ages_s) and max(ages_s) < 5.0, ages_s


@pytest.mark.ros
def test_record_stops_after_its_duration_and_writes_a_readable_bag_without_publishers(tmp_path):
    out_bag = tmp_path / "empty"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssvif_ros.tools.record",
            str(out_bag),
            "/nobody/publishes",
            "--duration",
            "1",
        ],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    assert "never published: /nobody/publishes" in result.stdout
    with open_reader(out_bag) as bag:
        assert bag.topics() == {}
    again = subprocess.run(
        [sys.executable, "-m", "ssvif_ros.tools.record", str(out_bag), "/x", "--duration", "1"],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "exists already" in again.stderr


@pytest.mark.ros
def test_play_publishes_compressed_topics_that_record_keeps_byte_for_byte(tmp_path):
    """image_transport's compressed topics (JPEG visible, 16-bit PNG thermal) go through ssvif-play and
    ssvif-record unchanged; the recording is written in the Humble metadata format and reads back."""
    rng = np.random.default_rng(1)
    topics = {VISIBLE + "/compressed": "jpeg", THERMAL + "/compressed": "png"}
    with open_writer(tmp_path / "in") as bag:
        for topic in topics:
            bag.add_topic(topic, COMPRESSED_IMAGE_TYPE)
        for i in range(4):
            t = BAG_START_NS + i * 100 * MS
            bag.write(
                VISIBLE + "/compressed",
                t,
                make_compressed_msg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "jpeg", t),
            )
            bag.write(
                THERMAL + "/compressed",
                t,
                make_compressed_msg(rng.integers(0, 65536, (48, 64), dtype=np.uint16), "png", t),
            )
    ready = tmp_path / "record.ready"
    log = tmp_path / "record.log"
    record = _spawn(
        "ssvif_ros.tools.record",
        [str(tmp_path / "out"), *topics, "--ready-file", str(ready), "--bag-format", "humble"],
        log,
    )
    try:  # the recorder subscribes once it sees the player's publishers; the player waits for it
        played = _play(tmp_path / "in", tmp_path, "play", "--wait-subscribers", "45", "--qos", "reliable")
        assert ready.exists()
        time.sleep(1.0)
        assert stop_process(record) == 0, log.read_text()[-2000:]
    finally:
        stop_process(record)
    assert played["published"] == {topic: 4 for topic in topics}
    with open_reader(tmp_path / "in") as bag:
        sent = {(t, bytes(m.data), m.format) for t, _, _, m in bag.messages()}
    with open_reader(tmp_path / "out") as bag:
        assert set(bag.topics().values()) == {COMPRESSED_IMAGE_TYPE}
        received = {(t, bytes(m.data), m.format) for t, _, _, m in bag.messages()}
    assert received == sent
    assert "version: 5" in (tmp_path / "out" / "metadata.yaml").read_text()


# --- the demo, once, small ------------------------------------------------------------------------------


def _run_demo(command: list[str]) -> subprocess.CompletedProcess:
    """``ssvif-demo *command`` in its own process; fails the test with its output unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "ssvif_ros.tools.demo", *command],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.ros
@pytest.mark.slow
def test_demo_smoke_run_fuses_live_reports_and_leaves_readable_outputs(tmp_path):
    out = tmp_path / "demo"
    # a calibrated copy of config/fuse.yaml, as a user with a rig passes it (make demo PARAMS=...)
    params = tmp_path / "my_fuse.yaml"
    identity = "registration.homography: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]"
    shifted = "registration.homography: [1.0, 0.0, 2.0, 0.0, 1.0, -1.0, 0.0, 0.0, 1.0]"
    params.write_text((REPO / "config" / "fuse.yaml").read_text().replace(identity, shifted))
    command = ["--out", str(out), "--frames", "6", "--size", "160x120", "--params-file", str(params)]
    result = _run_demo(command)
    summary = json.loads((out / "summary.json").read_text())
    live = summary["live"]
    assert live["played_visible"] == 6
    assert 3 <= live["fused_frames"] <= 6  # the first frames may go out as passthrough or be skipped
    assert live["node"]["latency_ms"]["p50"] is not None and live["node"]["latency_ms"]["p50"] > 0
    assert (
        live["live_vs_offline"]["frames"] >= 1 and live["live_vs_offline"]["max_abs_diff"] <= 1
    )  # float order
    assert summary["offline"]["pairing"]["fused_pairs"] == 6
    # the node and the replay both used the given registration (the live frames equal the offline ones)
    assert "`1, 0, 2, 0, 1, -1, 0, 0, 1`" in (out / "report" / "report.md").read_text()
    for path in (
        "report/report.md",
        "report/contact_sheet.png",
        "live_frames.png",
        "output_bag/metadata.yaml",
    ):
        assert (out / path).is_file(), path
    printed = result.stdout
    assert f"frames fused live   {live['fused_frames']} of 6 played" in printed
    assert str(out / "output_bag") in printed and str(out / "report" / "report.md") in printed


@pytest.mark.ros
@pytest.mark.slow
def test_demo_on_a_compressed_recording_with_a_calibrated_params_file(tmp_path):
    """The README's path for a rig: a bag with only image_transport compressed topics, opened by the name
    ``ssvif-make-bag --out rig.mcap`` was given (it writes the folder ``rig``), and a params file of the
    user's (compressed inputs); the demo reads the inputs as the bag recorded them."""
    from ssvif_ros.data.synthetic import write_dataset
    from ssvif_ros.tools.make_bag import main as make_bag

    write_dataset(tmp_path / "scenes", 4, seed=3, width=160, height=120, progress=False)
    args = ["--out", str(tmp_path / "rig.mcap"), "--visible-codec", "jpeg", "--thermal-codec", "png"]
    assert make_bag([str(tmp_path / "scenes"), *args, "--thermal-topic", "/flir/image_raw"]) == 0
    params = tmp_path / "my_fuse.yaml"
    text = (REPO / "config" / "fuse.yaml").read_text()
    params.write_text(text.replace("inputs.transport: raw", "inputs.transport: compressed"))
    assert params.read_text() != text
    out = tmp_path / "demo"
    command = ["--out", str(out), "--bag", str(tmp_path / "rig.mcap"), "--params-file", str(params)]
    command += ["--visible-topic", "/camera/image_raw", "--thermal-topic", "/flir/image_raw"]
    _run_demo(command)
    live = json.loads((out / "summary.json").read_text())["live"]
    assert live["played_visible"] == 4 and 2 <= live["fused_frames"] <= 4
    assert live["live_vs_offline"]["frames"] >= 1 and live["live_vs_offline"]["max_abs_diff"] <= 1


def test_demo_refuses_a_params_file_without_the_nodes_section_before_starting_anything(tmp_path):
    """A params file for a namespaced node (rcl gives /fuse_node none of it): one line, nothing started."""
    from ssvif_ros.tools import demo

    params = tmp_path / "robot.yaml"
    params.write_text("/robot/fuse_node:\n  ros__parameters:\n    device: cpu\n")
    with pytest.raises(SystemExit, match=r"ssvif-demo: params file .*no parameters for /fuse_node"):
        demo.main(["--params-file", str(params), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
