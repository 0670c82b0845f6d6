"""rosbag2 helpers (ssvif_ros.io.bags) and ssvif-make-bag: round trips in both storages, the rig timeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssvif_ros.data.image_files import read_infrared_raw, read_label, read_visible
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.io.bags import (
    IMAGE_TYPE,
    BagError,
    image_fields,
    is_bag,
    make_image_msg,
    open_reader,
    open_writer,
    stamp_ns,
)
from ssvif_ros.io.image_msg import image_to_numpy, to_rgb8, to_thermal
from ssvif_ros.tools.make_bag import RigOptions, main, make_bag, plan_stamps

W, H = 80, 64


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    write_dataset(root, 4, seed=5, width=W, height=H)
    return root


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_every_encoding(tmp_path, storage):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (H, W), dtype=np.uint8)
    counts = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    written = [
        ("/vis", 1_000, "rgb8", rgb),
        ("/vis", 2_000, "bgr8", rgb[..., ::-1]),
        ("/th", 1_500, "mono16", counts),
        ("/th", 2_500, "16UC1", counts[::-1]),
        ("/th", 3_500, "mono8", gray),
    ]
    with open_writer(tmp_path / "bag", storage) as bag:
        bag.add_topic("/vis", IMAGE_TYPE)
        bag.add_topic("/th", IMAGE_TYPE)
        for topic, t, encoding, array in written:
            bag.write(topic, t, make_image_msg(array, encoding, 10**9 * 7 + t, f"frame{t}"))
    with open_reader(tmp_path / "bag") as bag:
        assert bag.topics() == {"/vis": IMAGE_TYPE, "/th": IMAGE_TYPE}
        assert bag.message_counts() == {"/vis": 2, "/th": 3}
        read = list(bag.messages())
        only_vis = [m for _, _, _, m in bag.messages(["/vis"])]
    assert [t for _, _, t, _ in read] == sorted(t for _, t, _, _ in written)  # log-time order
    by_time = {t: (topic, enc, arr) for topic, t, enc, arr in written}
    for topic, msgtype, t, msg in read:
        want_topic, encoding, array = by_time[t]
        assert (topic, msgtype, msg.encoding) == (want_topic, IMAGE_TYPE, encoding)
        assert stamp_ns(msg) == 10**9 * 7 + t and msg.header.frame_id == f"frame{t}"
        decoded = to_rgb8(msg) if topic == "/vis" else to_thermal(msg)
        expected = rgb if topic == "/vis" else array
        np.testing.assert_array_equal(decoded, expected)
    assert len(only_vis) == 2
    fields = image_fields(only_vis[0])
    assert (fields["height"], fields["width"], fields["step"]) == (H, W, 3 * W)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_humble_format_is_metadata_version_5_and_reads_back(tmp_path, storage):
    """``bag_format="humble"``: metadata.yaml in the version Humble parses, without the fields it does not
    know, read back by the rosbags reader (which picks its parser from the version) message for message."""
    import yaml
    from rosbags.rosbag2 import Reader

    counts = np.arange(H * W, dtype=np.uint16).reshape(H, W)
    with open_writer(tmp_path / "bag", storage, bag_format="humble") as bag:
        bag.add_topic("/th", IMAGE_TYPE)
        for t in (1_000, 2_000):
            bag.write("/th", t, make_image_msg(counts + t, "mono16", t, "thermal"))
    info = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 5 and "ros_distro" not in info and "custom_data" not in info
    topic = info["topics_with_message_count"][0]["topic_metadata"]
    assert "type_description_hash" not in topic and isinstance(topic["offered_qos_profiles"], str)
    with Reader(tmp_path / "bag") as reader:
        assert reader.message_count == 2 and reader.topics["/th"].msgtype == IMAGE_TYPE
    with open_reader(tmp_path / "bag") as bag:
        arrays = [to_thermal(msg) for _, _, _, msg in bag.messages()]
    np.testing.assert_array_equal(arrays[1], counts + 2_000)
    with pytest.raises(ValueError, match="bag format must be one of kilted, humble"):
        with open_writer(tmp_path / "other", bag_format="foxy"):
            pass


def test_reader_and_writer_errors(tmp_path):
    with open_writer(tmp_path / "bag") as bag:
        bag.add_topic("/a", IMAGE_TYPE)
        with pytest.raises(BagError, match="added twice"):
            bag.add_topic("/a", IMAGE_TYPE)
        with pytest.raises(BagError, match="before add_topic"):
            bag.write("/b", 0, make_image_msg(np.zeros((2, 2), np.uint8), "mono8", 0))
        bag.write("/a", 5, make_image_msg(np.zeros((2, 2), np.uint8), "mono8", 5))
    with pytest.raises(BagError, match="exists already"):
        with open_writer(tmp_path / "bag"):
            pass
    with pytest.raises(ValueError, match="storage"):
        with open_writer(tmp_path / "other", storage="rosbag1"):
            pass
    with pytest.raises(BagError, match="does not exist"):
        with open_reader(tmp_path / "missing"):
            pass
    with open_reader(tmp_path / "bag") as bag:
        with pytest.raises(
            BagError, match=r"no topic /nope; it has:\n  /a \(sensor_msgs/msg/Image, 1 msgs\)"
        ):
            list(bag.messages(["/nope"]))


def test_plan_rates_jitter_and_drops_are_deterministic():
    opts = RigOptions(rate_hz=10, thermal_rate_hz=4, frames=20, jitter_ms=5, drop_thermal=0.0, seed=3)
    plan = plan_stamps(5, opts)
    # 20 visible frames span 1.9 s; a 4 Hz thermal camera captures at 0, 0.25, ..., 1.75 s: 8 frames.
    assert len(plan.visible) == 20 and len(plan.thermal) == 8
    start = int(opts.start_s * 1e9)
    for i, (index, stamp, log) in enumerate(plan.visible):
        assert index == i % 5 and log == stamp
        assert abs(stamp - (start + i * 100_000_000)) <= 5_000_000
    # thermal frame j (capture j·0.25 s) shows the pair of the nearest visible frame round(j·2.5)
    assert [index for index, _, _ in plan.thermal] == [int(np.floor(j * 2.5 + 0.5)) % 5 for j in range(8)]
    assert plan_stamps(5, opts) == plan
    other = plan_stamps(5, RigOptions(rate_hz=10, thermal_rate_hz=4, frames=20, jitter_ms=5, seed=4))
    assert [s for _, s, _ in other.visible] != [s for _, s, _ in plan.visible]
    dropped = plan_stamps(5, RigOptions(rate_hz=10, frames=200, drop_visible=0.3, drop_thermal=0.1, seed=1))
    assert len(dropped.visible) == 200 - dropped.dropped["visible"]
    assert 30 < dropped.dropped["visible"] < 90 and 5 < dropped.dropped["thermal"] < 40
    with pytest.raises(ValueError, match="drop-visible"):
        plan_stamps(5, RigOptions(drop_visible=1.0))


def test_make_bag_rig_imitation(tmp_path, scenes):
    opts = RigOptions(
        rate_hz=10,
        thermal_rate_hz=5,
        thermal_size=(40, 32),
        thermal_encoding="mono16",
        visible_encoding="bgr8",
        counts=(1000.0, 10.0),
        frames=8,
        seed=2,
    )
    summary = make_bag(scenes, tmp_path / "bag", opts, storage="sqlite3")
    assert summary["messages"] == {"visible": 8, "thermal": 4, "labels": 8}
    with open_reader(tmp_path / "bag") as bag:
        assert set(bag.topics()) == {"/camera/image_raw", "/thermal/image_raw", "/camera/labels"}
        messages = list(bag.messages())
    vis = [m for t, _, _, m in messages if t == "/camera/image_raw"]
    th = [m for t, _, _, m in messages if t == "/thermal/image_raw"]
    labels = [m for t, _, _, m in messages if t == "/camera/labels"]
    files = sorted((scenes / "vi").glob("*.png"))
    for i, msg in enumerate(vis):
        assert msg.encoding == "bgr8" and msg.header.frame_id == "camera"
        np.testing.assert_array_equal(to_rgb8(msg), read_visible(files[i % 4]))
        assert stamp_ns(labels[i]) == stamp_ns(msg) and labels[i].encoding == "mono8"
        np.testing.assert_array_equal(
            image_to_numpy(labels[i]), read_label(scenes / "label" / files[i % 4].name)
        )
    for j, msg in enumerate(th):  # 5 Hz: frame j is captured with visible frame 2j
        assert (msg.encoding, msg.width, msg.height) == ("mono16", 40, 32)
        assert stamp_ns(msg) == stamp_ns(vis[2 * j])
        raw8 = read_infrared_raw(scenes / "ir" / files[(2 * j) % 4].name)
        assert raw8.dtype == np.uint8
        counts = to_thermal(msg)
        assert counts.dtype == np.uint16
        # 8-bit → 16-bit as 1000 + 10·v; bilinear resizing keeps the counts inside that range
        assert counts.min() >= 1000 + 10 * int(raw8.min()) and counts.max() <= 1000 + 10 * int(raw8.max())


def test_make_bag_cli_deterministic(tmp_path, scenes, capsys):
    args = ["--rate", "20", "--jitter-ms", "4", "--drop-thermal", "0.3", "--frames", "10", "--seed", "9"]
    assert main([str(scenes), "--out", str(tmp_path / "a"), *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main([str(scenes), "--out", str(tmp_path / "b"), *args, "--no-labels"]) == 0
    capsys.readouterr()

    def content(path):
        with open_reader(path) as bag:
            return [
                (topic, t, stamp_ns(m), bytes(m.data))
                for topic, _, t, m in bag.messages(["/camera/image_raw", "/thermal/image_raw"])
            ]

    assert content(tmp_path / "a") == content(tmp_path / "b")
    assert summary["messages"]["thermal"] == 10 - summary["dropped"]["thermal"]
    assert main([str(scenes), "--out", str(tmp_path / "a")]) == 2  # exists already
    assert "exists already" in capsys.readouterr().err


@pytest.mark.parametrize(("storage", "name"), [("mcap", "pairs.mcap"), ("sqlite3", "pairs.db3")])
def test_an_out_path_named_like_the_storage_file_is_the_bag_folder(tmp_path, scenes, capsys, storage, name):
    """``--out pairs.mcap`` writes the bag folder ``pairs`` (holding pairs.mcap), not
    pairs.mcap/pairs.mcap.mcap."""
    assert main([str(scenes), "--out", str(tmp_path / name), "--frames", "3", "--storage", storage]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bag"] == str(tmp_path / "pairs")
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == [
        "metadata.yaml",
        f"pairs{Path(name).suffix}",
    ]
    assert not (tmp_path / name).exists()
    with open_reader(tmp_path / "pairs") as bag:
        assert sum(1 for _ in bag.messages(["/camera/image_raw"])) == 3
    # the name it was written under opens the same bag in every reader (replay, play, calibrate)
    assert is_bag(tmp_path / name) and not is_bag(tmp_path / "other.mcap")
    with open_reader(tmp_path / name) as bag:
        assert sum(1 for _ in bag.messages(["/camera/image_raw"])) == 3


def test_make_bag_writes_image_transport_compressed_topics(tmp_path, scenes):
    """``--visible-codec jpeg --thermal-codec png``: CompressedImage on TOPIC/compressed, the 16-bit
    thermal counts exact, the visible close to the folder's; the reader finds them under the raw names."""
    from ssvif_ros.io.compressed import thermal_from_compressed, visible_from_compressed

    opts = RigOptions(thermal_encoding="mono16", codecs={"visible": "jpeg", "thermal": "png"}, labels=False)
    summary = make_bag(scenes, tmp_path / "bag", opts)
    assert summary["topics"] == {
        "visible": "/camera/image_raw/compressed",
        "thermal": "/thermal/image_raw/compressed",
    }
    with open_reader(tmp_path / "bag") as bag:
        assert set(bag.topics().values()) == {"sensor_msgs/msg/CompressedImage"}
        topic, msgtype = bag.camera_topic("/thermal/image_raw", "--thermal-topic")
        assert (topic, msgtype) == ("/thermal/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
        messages = {t: m for t, _, _, m in bag.messages()}
    thermal = thermal_from_compressed(messages["/thermal/image_raw/compressed"])
    raw = read_infrared_raw(sorted((scenes / "ir").iterdir())[-1])
    expected = raw if raw.dtype == np.uint16 else np.rint(8000 + 32 * raw.astype(float)).astype(np.uint16)
    np.testing.assert_array_equal(thermal, expected)
    visible = visible_from_compressed(messages["/camera/image_raw/compressed"])
    assert np.abs(visible.astype(int) - read_visible(sorted((scenes / "vi").iterdir())[-1])).mean() < 6
    with open_reader(tmp_path / "bag") as bag, pytest.raises(BagError, match=r"--visible-topic /cam is not"):
        bag.camera_topic("/cam", "--visible-topic")
