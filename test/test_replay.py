"""ssvif-replay: folder → bag → replay reproduces the engine; pairing stats; clear errors; compare mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssvif_ros.checkpoint import save_checkpoint
from ssvif_ros.data.synthetic import write_dataset
from ssvif_ros.eval.metrics import confusion_matrix, evaluate_fusion, mean_iou
from ssvif_ros.fusion.engine import FusionEngine
from ssvif_ros.fusion.registration import Registration
from ssvif_ros.fusion.thermal import ThermalToU8
from ssvif_ros.io.bags import IMAGE_TYPE, make_image_msg, open_reader, open_writer, stamp_ns, typestore
from ssvif_ros.io.image_msg import image_to_numpy, to_rgb8, to_thermal
from ssvif_ros.models import create_model
from ssvif_ros.models.heads import SegHead
from ssvif_ros.tools.make_bag import RigOptions, make_bag
from ssvif_ros.tools.replay import (
    ReplayError,
    ReplayOptions,
    build_parser,
    load_candidate,
    main,
    options_from_args,
    replay,
)

W, H = 80, 64
VIS, TH, LAB = "/camera/image_raw", "/thermal/image_raw", "/camera/labels"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    write_dataset(root, 5, seed=11, width=W, height=H)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, scenes) -> Path:
    """Random-init lightunet + SegHead with as many classes as the scenes' labels."""
    classes = json.loads((scenes / "classes.json").read_text())["num_classes"]
    torch.manual_seed(4)
    model = create_model("lightunet").eval()
    head = SegHead(model.feature_channels, num_classes=classes, hidden_channels=8).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, head)


def read_topics(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with open_reader(path) as bag:
        for topic, _, log_ns, msg in bag.messages():
            out.setdefault(topic, []).append((log_ns, msg))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_reproduces_the_engine(tmp_path, scenes, checkpoint, storage):
    opts = RigOptions(
        rate_hz=10, thermal_size=(40, 32), thermal_encoding="16UC1", visible_encoding="bgr8", frames=6, seed=1
    )
    make_bag(scenes, tmp_path / "in", opts, storage=storage)
    engine = FusionEngine(weights=checkpoint, device="cpu")
    replay_opts = ReplayOptions(output_storage=storage, metrics_every=2, contact_frames=2, plots=False)
    summary = replay(tmp_path / "in", [load_candidate(str(checkpoint))], replay_opts, tmp_path / "out")

    inputs = read_topics(tmp_path / "in")
    outputs = read_topics(tmp_path / "out" / "fused_bag")
    assert set(outputs) == {
        "/fuse_node/fused/image",
        "/fuse_node/fused/segmentation",
        "/fuse_node/fused/overlay",
    }
    # Independent reference: the node's default gain (auto, 1–99 %, EMA 0.9, subsample 4) run over the
    # thermal frames in order, an identity registration to the visible size, the engine on each pair.
    gain = ThermalToU8("auto", 1.0, 99.0, smoothing=0.9, subsample=4)
    register = Registration(np.eye(3), (H, W))
    cm = None
    assert len(outputs["/fuse_node/fused/image"]) == 6
    for i, ((vis_log, vis_msg), (_, th_msg), (_, lab_msg)) in enumerate(
        zip(inputs[VIS], inputs[TH], inputs[LAB], strict=True)
    ):
        vis = to_rgb8(vis_msg)
        ir = register(gain(to_thermal(th_msg)))
        expected = engine.fuse(vis, ir, want_labels=True)
        (log_ns, fused_msg), (_, seg_msg) = (
            outputs["/fuse_node/fused/image"][i],
            outputs["/fuse_node/fused/segmentation"][i],
        )
        assert log_ns == vis_log and stamp_ns(fused_msg) == stamp_ns(vis_msg)
        assert fused_msg.header.frame_id == "camera" and fused_msg.encoding == "rgb8"
        np.testing.assert_array_equal(to_rgb8(fused_msg), expected.image)
        np.testing.assert_array_equal(image_to_numpy(seg_msg), expected.labels)
        frame_cm = confusion_matrix(expected.labels, image_to_numpy(lab_msg), engine.num_classes)
        cm = frame_cm if cm is None else cm + frame_cm
        if i == 4:  # metrics every 2nd pair: pair 4 has them
            row = json.loads((tmp_path / "out" / "summary.json").read_text())
            assert row["models"][0]["metrics_frames"] == 3
            ref = evaluate_fusion(vis, ir, expected.image)
    model = summary["models"][0]
    assert model["labelled_frames"] == 6
    assert model["miou"] == pytest.approx(mean_iou(cm))
    csv_rows = (tmp_path / "out" / "frames.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 6
    en = float(csv_rows[1 + 4].split(",")[6])
    assert en == pytest.approx(ref["EN"], rel=1e-5)
    assert csv_rows[1 + 1].split(",")[6] == ""  # no metrics on odd pairs
    for name in ("report.md", "summary.json", "contact_sheet.png"):
        assert (tmp_path / "out" / name).is_file()
    assert "contact_sheet.png" in (tmp_path / "out" / "report.md").read_text()


def test_pairing_statistics_with_jitter_and_drops(tmp_path, scenes):
    opts = RigOptions(rate_hz=10, jitter_ms=8, drop_visible=0.2, drop_thermal=0.25, frames=20, seed=7)
    make_bag(scenes, tmp_path / "in", opts)
    inputs = read_topics(tmp_path / "in")
    vis_stamps = [stamp_ns(m) for _, m in inputs[VIS]]
    th_stamps = [stamp_ns(m) for _, m in inputs[TH]]
    # Frames are 100 ms apart and jitter is ±8 ms, so with a 30 ms slop a visible frame can only pair with
    # the thermal frame of the same capture instant: pairs = captures that survived on both topics.
    slop_ns = 30_000_000
    expected = [(v, t) for v in vis_stamps for t in th_stamps if abs(v - t) < slop_ns]
    assert 0 < len(expected) < min(len(vis_stamps), len(th_stamps))  # the drops do make a difference
    replay_opts = ReplayOptions(slop_s=0.03, metrics_every=0, output_bag=False, plots=False)
    summary = replay(tmp_path / "in", [load_candidate("average")], replay_opts, tmp_path / "out")
    pairing = summary["pairing"]
    assert pairing["fused_pairs"] == pairing["pairs"] == len(expected)
    assert pairing["inputs"]["visible"] == {
        "received": len(vis_stamps),
        "paired": len(expected),
        "unmatched": len(vis_stamps) - len(expected),
    }
    assert pairing["inputs"]["thermal"]["unmatched"] == len(th_stamps) - len(expected)
    assert pairing["stamp_diff_ms"]["max"] == pytest.approx(max(abs(v - t) for v, t in expected) / 1e6)
    assert summary["output_bag"] is None and not (tmp_path / "out" / "fused_bag").exists()

    # latest policy with a 3× faster thermal camera: every visible frame finds a partner
    make_bag(scenes, tmp_path / "fast", RigOptions(rate_hz=10, thermal_rate_hz=30, frames=10, seed=1))
    latest = ReplayOptions(sync_policy="latest", slop_s=0.02, metrics_every=0, output_bag=False, plots=False)
    summary = replay(tmp_path / "fast", [load_candidate("max")], latest, tmp_path / "out2")
    assert summary["pairing"]["fused_pairs"] == 10 and summary["pairing"]["stamp_diff_ms"]["max"] == 0.0


def _bag_with(path: Path, topics: dict[str, str], thermal_offset_ns: int = 0) -> Path:
    store = typestore()
    with open_writer(path) as bag:
        for topic, msgtype in topics.items():
            bag.add_topic(topic, msgtype)
        for i in range(3):
            t = 10**9 + i * 100_000_000
            bag.write(VIS, t, make_image_msg(np.zeros((H, W, 3), np.uint8), "rgb8", t))
            if topics.get(TH) == IMAGE_TYPE:
                bag.write(TH, t, make_image_msg(np.zeros((H, W), np.uint8), "mono8", t + thermal_offset_ns))
            elif TH in topics:
                bag.write(TH, t, store.types[topics[TH]](data="not an image"))
    return path


def test_clear_errors(tmp_path, capsys):
    quick = ReplayOptions(metrics_every=0, output_bag=False, plots=False)
    average = [load_candidate("average")]
    missing = _bag_with(tmp_path / "missing", {VIS: IMAGE_TYPE})
    with pytest.raises(
        ReplayError,
        match=r"--thermal-topic /thermal/image_raw is not in the bag \(expected sensor_msgs/msg/Image or",
    ):
        replay(missing, average, quick, tmp_path / "o1")
    wrong = _bag_with(tmp_path / "wrong", {VIS: IMAGE_TYPE, TH: "std_msgs/msg/String"})
    with pytest.raises(
        ReplayError,
        match=r"has type std_msgs/msg/String \(expected sensor_msgs/msg/Image or sensor_msgs/msg/Compressed",
    ) as err:
        replay(wrong, average, quick, tmp_path / "o2")
    assert f"  {VIS} (sensor_msgs/msg/Image, 3 msgs)" in str(err.value)  # the bag's topics are listed
    apart = _bag_with(tmp_path / "apart", {VIS: IMAGE_TYPE, TH: IMAGE_TYPE}, thermal_offset_ns=50_000_000)
    with pytest.raises(ReplayError, match=r"no pairable frames .* within the slop 0.05 s") as err:
        replay(apart, average, quick, tmp_path / "o3")
    assert "visible /camera/image_raw: 3 msgs" in str(err.value) and f"  {TH} (sensor_msgs" in str(err.value)
    # the command line says the same and exits with 2
    assert main([str(apart), "--model", "average", "--out", str(tmp_path / "o4"), "--no-plots"]) == 2
    assert "no pairable frames" in capsys.readouterr().err
    assert main([str(apart), "--labels-topic", "/gt", "--model", "max", "--out", str(tmp_path / "o5")]) == 2
    assert "labels topic /gt (--labels-topic) is not in the bag" in capsys.readouterr().err
    # a larger slop pairs them
    summary = replay(
        apart, average, ReplayOptions(slop_s=0.07, metrics_every=0, plots=False), tmp_path / "o6"
    )
    assert summary["pairing"]["fused_pairs"] == 3


def test_compare_mode_table(tmp_path, scenes, checkpoint, capsys):
    make_bag(scenes, tmp_path / "in", RigOptions(rate_hz=10, frames=4, seed=3), storage="mcap")
    argv = [
        str(tmp_path / "in"),
        "--compare",
        str(checkpoint),
        "laplacian",
        "average",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*argv, "--max-frames", "3", "--contact-frames", "2"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    names = [m["name"] for m in summary["models"]]
    assert names == ["tiny", "laplacian", "average"]
    assert summary["pairing"]["fused_pairs"] == 3 and all(m["frames"] == 3 for m in summary["models"])
    means = [m["metrics_mean"]["SSIM"] for m in summary["models"]]
    assert len(set(means)) == 3  # three different fusers, three different results
    assert summary["models"][0]["miou"] is not None and summary["models"][1]["miou"] is None
    assert summary["models"][0]["labelled_frames"] == 3  # the 3rd pair's label comes after --max-frames
    report = (tmp_path / "out" / "report.md").read_text()
    for name, kind in (("tiny", "checkpoint"), ("laplacian", "baseline"), ("average", "baseline")):
        assert f"| {name} | {kind} | 3 |" in report
    outputs = read_topics(tmp_path / "out" / "fused_bag")
    assert {"/fuse_node/tiny/fused/overlay", "/fuse_node/laplacian/fused/image"} <= set(outputs)
    assert len(outputs["/fuse_node/average/fused/image"]) == 3
    assert len((tmp_path / "out" / "frames.csv").read_text().splitlines()) == 1 + 3 * 3
    assert "3 pairs fused" in capsys.readouterr().out


def test_defaults_follow_the_node_and_its_params_file(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    assert rclpy is not None
    from ssvif_ros.node.fuse_node import PARAMETERS

    defaults = ReplayOptions()
    node = {spec.name: spec.default for spec in PARAMETERS}
    assert (defaults.sync_policy, defaults.slop_s) == (node["sync.policy"], node["sync.slop_s"])
    assert defaults.thermal["low_percentile"] == node["thermal.low_percentile"]
    params = tmp_path / "fuse.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    sync.slop_s: 0.02\n    sync:\n      policy: latest\n"
        "    thermal.smoothing: 0.0\n"
    )
    opts, model = options_from_args(
        build_parser().parse_args(["bag", "--params-file", str(params), "--slop", "0.04"])
    )
    assert (opts.sync_policy, opts.slop_s, opts.thermal["smoothing"]) == ("latest", 0.04, 0.0)
    assert opts.queue_size == node["sync.queue_size"] and model["device"] == "cpu"
    typo = tmp_path / "typo.yaml"
    typo.write_text("/**:\n  ros__parameters:\n    sync.slop: 0.2\n")
    with pytest.raises(ReplayError, match=r"unknown parameter 'sync\.slop'; did you mean 'sync\.slop_s'"):
        options_from_args(build_parser().parse_args(["bag", "--params-file", str(typo)]))
    with pytest.raises(ReplayError, match=r"parameter 'thermal\.smoothing': must be < 1"):
        options_from_args(build_parser().parse_args(["bag", "--thermal-smoothing", "1.5"]))
    robot = tmp_path / "robot.yaml"  # a node launched with namespace:=robot1 reads only its own section
    robot.write_text("/robot1/fuse_node:\n  ros__parameters:\n    sync.slop_s: 0.03\n")
    opts, _ = options_from_args(
        build_parser().parse_args(["bag", "--params-file", str(robot), "--node-name", "/robot1/fuse_node"])
    )
    assert opts.slop_s == 0.03
    with pytest.raises(ReplayError, match=r"no parameters for /fuse_node.*sections: /robot1/fuse_node"):
        options_from_args(build_parser().parse_args(["bag", "--params-file", str(robot)]))


def test_labels_outside_the_heads_classes_skip_miou_with_a_note(tmp_path, scenes):
    torch.manual_seed(5)
    model = create_model("lightunet").eval()
    head = SegHead(model.feature_channels, num_classes=3, hidden_channels=8).eval()  # scenes use 15
    weights = save_checkpoint(tmp_path / "three.safetensors", model, head)
    make_bag(scenes, tmp_path / "in", RigOptions(rate_hz=10, frames=3, seed=2))
    opts = ReplayOptions(metrics_every=0, contact_frames=1, plots=False)
    summary = replay(tmp_path / "in", [load_candidate(str(weights))], opts, tmp_path / "out")
    entry = summary["models"][0]
    assert entry["miou"] is None
    assert "do not fit the head's 3 classes" in entry["miou_note"]
    assert f"No mIoU for {entry['name']}: labels on" in (tmp_path / "out" / "report.md").read_text()


def test_frame_notes_shade_the_metrics_plot(tmp_path, scenes, monkeypatch, capsys):
    """The demo's night / fog / day marking: notes by visible stamp become shaded spans in metrics.png."""
    from ssvif_ros.tools import demo
    from ssvif_ros.tools import replay as replay_module

    make_bag(scenes, tmp_path / "in", RigOptions(rate_hz=10, frames=4, seed=2))
    (tmp_path / "scenes").symlink_to(scenes)
    notes = demo.write_condition_notes(tmp_path, 4, RigOptions(rate_hz=10, frames=4, seed=2))
    conditions = json.loads((scenes / "meta.json").read_text())["scenes"]
    expected = [conditions[name]["condition"] for name in sorted(conditions)][:4]
    assert [line.split(",")[1] for line in notes.read_text().splitlines()[1:]] == expected
    shaded: list[tuple[str, int, int]] = []
    original = replay_module._shade_notes

    def spy(axes, frames, by_stamp):
        shaded.extend((by_stamp[f["visible_stamp_ns"]], f["frame"], f["frame"]) for f in frames)
        return original(axes, frames, by_stamp)

    monkeypatch.setattr(replay_module, "_shade_notes", spy)
    argv = [
        str(tmp_path / "in"),
        "--model",
        "max",
        "--out",
        str(tmp_path / "out"),
        "--frame-notes",
        str(notes),
    ]
    assert main(argv) == 0
    assert [note for note, _, _ in shaded] == expected and (tmp_path / "out" / "metrics.png").is_file()
    (tmp_path / "bad.csv").write_text("stamp,condition\n1,night\n")
    assert main([*argv[:4], str(tmp_path / "o2"), "--frame-notes", str(tmp_path / "bad.csv")]) == 2
    assert "expected a CSV with columns stamp_ns,note" in capsys.readouterr().err


def test_a_compressed_bag_replays_like_the_raw_one(tmp_path, scenes, checkpoint):
    """A bag recorded with image_transport's compressed topics (PNG, lossless) is found under the raw topic
    names, decoded by type, and gives the same fused images as the same frames recorded raw."""
    common = {"thermal_encoding": "mono16", "frames": 4, "seed": 2, "labels": False}
    make_bag(scenes, tmp_path / "raw", RigOptions(**common))
    make_bag(scenes, tmp_path / "png", RigOptions(**common, codecs={"visible": "png", "thermal": "png"}))
    opts = ReplayOptions(metrics_every=0, contact_frames=1, plots=False)
    fused = {}
    for name in ("raw", "png"):
        summary = replay(tmp_path / name, [load_candidate(str(checkpoint))], opts, tmp_path / f"out_{name}")
        fused[name] = [
            to_rgb8(m)
            for _, m in read_topics(tmp_path / f"out_{name}" / "fused_bag")["/fuse_node/fused/image"]
        ]
        assert len(fused[name]) == 4
    assert summary["inputs"]["visible"] == "/camera/image_raw/compressed"
    for raw, png in zip(fused["raw"], fused["png"], strict=True):
        np.testing.assert_array_equal(raw, png)
