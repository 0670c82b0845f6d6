"""The fusion node on a real rclpy graph (loopback, this run's domain): pixels, headers, outputs, bad input,
thermal loss, clock jumps, parameters; in process and as a separate process started like the product.

Expected outputs are computed independently of the node: the same arrays through ThermalToU8 (no temporal
smoothing), Registration and a separately loaded FusionEngine.
"""

from __future__ import annotations

import array
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from ssvif_ros.checkpoint import save_checkpoint  # noqa: E402
from ssvif_ros.fusion.engine import FusionEngine, default_weights  # noqa: E402
from ssvif_ros.fusion.overlay import MaskOverlay, class_palette, legend_names  # noqa: E402
from ssvif_ros.fusion.registration import Registration  # noqa: E402
from ssvif_ros.fusion.thermal import ThermalToU8  # noqa: E402
from ssvif_ros.io.image_msg import image_to_numpy  # noqa: E402
from ssvif_ros.models import SegHead, create_model  # noqa: E402
from ssvif_ros.node.diagnostics import values_from_status  # noqa: E402
from ssvif_ros.node.fuse_node import (  # noqa: E402
    PARAMETERS,
    ConfigError,
    FuseNode,
    other_transport_topic,
    parse_config,
)
from ssvif_ros.node.lifecycle_node import LifecycleFuseNode  # noqa: E402
from ssvif_ros.tools.live import stop_process  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
H, W = 48, 64
NUM_CLASSES = 5
SHIFT = [1.0, 0.0, -3.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0]  # a non-identity registration
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
FUSED, SEG, OVERLAY = "/fuse_node/fused/image", "/fuse_node/fused/segmentation", "/fuse_node/fused/overlay"


# --- fixtures and helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init lightunet with a segmentation head (cheap; the node only needs *a* checkpoint)."""
    torch.manual_seed(3)
    model = create_model("lightunet").eval()
    head = SegHead(model.feature_channels, num_classes=NUM_CLASSES, hidden_channels=8).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, head)


@pytest.fixture(scope="module")
def reference(checkpoint) -> FusionEngine:
    return FusionEngine(weights=checkpoint, device="cpu")


def node_params(checkpoint: Path, **extra) -> dict:
    params = {
        "weights": str(checkpoint),
        "device": "cpu",
        "backend": "torch",  # the outputs are compared with the eager engine pixel for pixel
        "warmup.visible_size": [H, W],
        "warmup.thermal_size": [24, 32],
        "qos.reliability": "reliable",
        "thermal.smoothing": 0.0,
        "registration.homography": SHIFT,
        "diagnostics.period_s": 0.2,
        "log_throttle_s": 0.0,
    }
    params.update(extra)
    return params


class Graph:
    """One rclpy context: the node under test, a tester node with publishers/subscribers, one executor."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(args=["test"], context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list = []
        self.tester = self.add(rclpy.create_node("tester", context=self.context))
        self.pub_vis = self.tester.create_publisher(Image, "/visible/image_raw", RELIABLE)
        self.pub_th = self.tester.create_publisher(Image, "/thermal/image_raw", RELIABLE)
        self.received: dict[str, dict[int, list[Image]]] = defaultdict(lambda: defaultdict(list))
        self.subs: dict[str, object] = {}
        self.diagnostics: list = []

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def fuse_node(self, params: dict) -> FuseNode:
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        return self.add(FuseNode(context=self.context, parameter_overrides=overrides))

    def subscribe(self, topic: str) -> None:
        def store(msg: Image, topic=topic) -> None:
            self.received[topic][stamp_ns(msg)].append(msg)

        self.subs[topic] = self.tester.create_subscription(Image, topic, store, RELIABLE)

    def subscribe_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.tester.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def spin_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            self.executor.spin_once(timeout_sec=0.02)
        assert predicate(), f"timed out after {timeout} s waiting for {what}"

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def wait_matched(self, node: FuseNode | None = None, outputs: tuple[str, ...] = (), timeout=20.0) -> None:
        def matched() -> bool:
            ok = self.pub_vis.get_subscription_count() > 0 and self.pub_th.get_subscription_count() > 0
            return ok and all(self.subs[t].get_publisher_count() > 0 for t in outputs)

        self.spin_until(matched, timeout, "discovery (publishers and subscribers matched)")
        if node is not None:  # the node's side of each output must see the tester's subscription too
            pubs = {FUSED: node._pub_image, SEG: node._pub_seg, OVERLAY: node._pub_overlay}
            self.spin_until(
                lambda: all(pubs[t].get_subscription_count() > 0 for t in outputs), timeout, "output matching"
            )

    def close(self) -> None:
        for node in self.nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def graph() -> Iterator[Graph]:
    g = Graph()
    try:
        yield g
    finally:
        g.close()


def stamp_ns(msg: Image) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def make_image(
    pixels: np.ndarray, encoding: str, stamp: int, frame_id: str, bigendian: bool = False, pad: int = 0
) -> Image:
    """A message built by hand (not with the code under test): any byte order and row padding."""
    height, width = pixels.shape[:2]
    rows = (
        pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<")).reshape(height, -1).view(np.uint8)
    )
    rows = np.concatenate([rows, np.full((height, pad), 7, np.uint8)], axis=1)
    msg = Image(
        height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1]
    )
    msg.data = array.array("B", rows.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def pixels_of(msg: Image) -> np.ndarray:
    return np.array(image_to_numpy(msg))


class Scene:
    """Random visible RGB and raw thermal frames, and the outputs expected from them."""

    def __init__(self, reference: FusionEngine, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.reference = reference
        self.registration = Registration(SHIFT, (H, W))
        self.overlay = MaskOverlay(class_palette(NUM_CLASSES), 0.5, legend_names(None, NUM_CLASSES))

    def visible(self) -> np.ndarray:
        return self.rng.integers(0, 256, (H, W, 3), dtype=np.uint8)

    def thermal16(self, height: int = 24, width: int = 32) -> np.ndarray:
        return self.rng.integers(3000, 9000, (height, width), dtype=np.uint16)

    def expected(self, vis: np.ndarray, thermal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ir = self.registration(ThermalToU8("auto", 1.0, 99.0, smoothing=0.0, subsample=4)(thermal))
        result = self.reference.fuse(vis, ir, want_labels=True)
        return result.image, result.labels, self.overlay.blend(result.image, result.labels)


def visible_message(vis: np.ndarray, encoding: str, stamp: int, pad: int = 0) -> Image:
    layout = {
        "rgb8": vis,
        "bgr8": vis[..., ::-1],
        "rgba8": np.concatenate([vis, np.full((H, W, 1), 200, np.uint8)], axis=2),
        "bgra8": np.concatenate([vis[..., ::-1], np.full((H, W, 1), 9, np.uint8)], axis=2),
    }[encoding]
    return make_image(np.ascontiguousarray(layout), encoding, stamp, "vis_cam", pad=pad)


def record_fuse_calls(node: FuseNode) -> list[bool]:
    """Wrap the node's engine.fuse to record want_labels per call."""
    calls: list[bool] = []
    original = node.engine.fuse

    def fuse(vis, ir, want_labels=False):
        calls.append(want_labels)
        return original(vis, ir, want_labels=want_labels)

    node.engine.fuse = fuse
    return calls


# --- in-process tests -------------------------------------------------------------------------------------


@pytest.mark.ros
@pytest.mark.parametrize("inline_max_ms", [1000.0, 0.0], ids=["inline", "worker"])
def test_fused_outputs_match_the_engine_and_only_requested_work_is_done(
    graph, checkpoint, reference, inline_max_ms
):
    node = graph.fuse_node(node_params(checkpoint, inline_max_ms=inline_max_ms))
    calls = record_fuse_calls(node)
    scene = Scene(reference)
    graph.wait_matched()
    t0 = time.time_ns()

    # Nobody subscribes yet: the pair is counted, the engine is not run.
    graph.pub_th.publish(make_image(scene.thermal16(), "mono16", t0 + 3_000_000, "th_cam"))
    graph.pub_vis.publish(visible_message(scene.visible(), "rgb8", t0))
    graph.spin_until(
        lambda: node.diagnostics.totals()["no_subscribers"] == 1, 10, "a pair without subscribers"
    )
    assert calls == []

    graph.subscribe(FUSED)
    graph.wait_matched(node, (FUSED,))
    # visible encodings × thermal encodings/byte orders/padding, thermal at half resolution, stamp jitter
    cases = [
        ("rgb8", 0, "mono16", False, 0, +4),
        ("bgr8", 6, "16UC1", True, 4, -6),
        ("rgba8", 0, "mono8", False, 3, +1),
    ]
    for i, (vis_enc, vis_pad, th_enc, big, th_pad, jitter_ms) in enumerate(cases, start=1):
        stamp = t0 + i * 100_000_000
        vis = scene.visible()
        thermal = (
            scene.thermal16() if th_enc != "mono8" else scene.rng.integers(0, 256, (24, 32), dtype=np.uint8)
        )
        graph.pub_th.publish(
            make_image(thermal, th_enc, stamp + jitter_ms * 1_000_000, "th_cam", big, th_pad)
        )
        graph.pub_vis.publish(visible_message(vis, vis_enc, stamp, pad=vis_pad))
        graph.spin_until(
            lambda s=stamp: graph.received[FUSED][s], 10, f"fused frame {i} ({vis_enc}+{th_enc})"
        )
        (msg,) = graph.received[FUSED][stamp]
        image, _, _ = scene.expected(vis, thermal)
        assert msg.header.frame_id == "vis_cam" and (msg.height, msg.width, msg.encoding) == (H, W, "rgb8")
        np.testing.assert_array_equal(pixels_of(msg), image, err_msg=f"frame {i} ({vis_enc}+{th_enc})")
    assert calls == [False] * len(cases)  # no segmentation head work without seg/overlay subscribers

    graph.subscribe(SEG)
    graph.subscribe(OVERLAY)
    graph.wait_matched(node, (FUSED, SEG, OVERLAY))
    stamp = t0 + 10 * 100_000_000
    vis, thermal = scene.visible(), scene.thermal16()
    graph.pub_vis.publish(visible_message(vis, "rgb8", stamp))
    graph.pub_th.publish(make_image(thermal, "mono16", stamp - 2_000_000, "th_cam"))
    graph.spin_until(
        lambda: all(graph.received[t][stamp] for t in (FUSED, SEG, OVERLAY)),
        10,
        "fused + segmentation + overlay",
    )
    image, labels, overlay = scene.expected(vis, thermal)
    seg_msg, overlay_msg = graph.received[SEG][stamp][0], graph.received[OVERLAY][stamp][0]
    assert seg_msg.encoding == "mono8" and overlay_msg.encoding == "rgb8"
    assert seg_msg.header.frame_id == overlay_msg.header.frame_id == "vis_cam"
    np.testing.assert_array_equal(pixels_of(graph.received[FUSED][stamp][0]), image)
    np.testing.assert_array_equal(pixels_of(seg_msg), labels)
    np.testing.assert_array_equal(pixels_of(overlay_msg), overlay)
    assert calls[-1] is True
    totals = node.diagnostics.totals()
    assert (
        totals["published"] == len(cases) + 1
        and totals["errors"] == 0
        and totals["malformed"]["visible"] == 0
    )
    # Pairs handed over: the one without subscribers + the fused ones. The first goes to the worker (no
    # duration known yet), the rest run inline unless inline_max_ms is 0.
    dispatch = node._dispatch
    assert dispatch.inline_jobs + dispatch.worker_jobs == len(cases) + 2
    assert dispatch.inline_jobs == (len(cases) + 1 if inline_max_ms > 0 else 0)


@pytest.mark.ros
def test_bad_messages_are_dropped_counted_and_the_node_keeps_running(graph, checkpoint, reference):
    node = graph.fuse_node(
        node_params(checkpoint, **{"outputs.segmentation": False, "outputs.overlay": False})
    )
    scene = Scene(reference, seed=1)
    graph.subscribe(FUSED)
    graph.wait_matched(node, (FUSED,))
    t0 = time.time_ns()
    vis, th = scene.visible(), scene.thermal16()

    short = visible_message(vis, "rgb8", t0)
    short.data = short.data[:-10]
    yuv = visible_message(vis, "rgb8", t0 + 1)
    yuv.encoding = "yuv422"
    thermal_on_visible = make_image(th, "mono16", t0 + 2, "vis_cam")
    for msg in (short, yuv, thermal_on_visible):
        graph.pub_vis.publish(msg)
    zero = make_image(th, "mono16", t0, "th_cam")
    zero.width = 0
    narrow = make_image(th, "mono16", t0 + 1, "th_cam")
    narrow.step = 10
    colour = make_image(vis, "rgb8", t0 + 2, "th_cam")
    for msg in (zero, narrow, colour):
        graph.pub_th.publish(msg)
    # a valid pair whose thermal aspect (64×16 = 4.0) is far from the visible one (1.33)
    stamp = t0 + 100_000_000
    graph.pub_vis.publish(visible_message(vis, "rgb8", stamp))
    graph.pub_th.publish(make_image(scene.thermal16(16, 64), "mono16", stamp, "th_cam"))
    expected_fields = {
        "visible": {"data": 1, "encoding": 2},
        "thermal": {"width": 1, "step": 1, "encoding": 1, "aspect": 1},
    }
    graph.spin_until(
        lambda: node.diagnostics.totals()["malformed_fields"] == expected_fields,
        10,
        "every bad message counted",
    )
    assert node.diagnostics.totals()["malformed"] == {"visible": 3, "thermal": 4}
    assert not graph.received[FUSED]

    # still alive: a good pair is fused
    stamp = t0 + 200_000_000
    graph.pub_vis.publish(visible_message(vis, "rgb8", stamp))
    graph.pub_th.publish(make_image(th, "mono16", stamp + 1_000_000, "th_cam"))
    graph.spin_until(lambda: graph.received[FUSED][stamp], 10, "a fused frame after the bad ones")
    np.testing.assert_array_equal(pixels_of(graph.received[FUSED][stamp][0]), scene.expected(vis, th)[0])

    # a bag loop: stamps jump back 30 s; the synchroniser is reset and pairing goes on
    stamp = t0 - 30_000_000_000
    graph.pub_vis.publish(visible_message(vis, "rgb8", stamp))
    graph.pub_th.publish(make_image(th, "mono16", stamp, "th_cam"))
    graph.spin_until(lambda: graph.received[FUSED][stamp], 10, "a fused frame after a backwards stamp jump")
    assert node.diagnostics.totals()["sync_resets"] == 1
    assert node.diagnostics.totals()["errors"] == 0


class RecordingLogger:
    """Stands in for the node's logger: keeps the warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def info(self, text: str) -> None:
        pass


@pytest.mark.ros
def test_oversized_images_and_stamp_jumps_are_counted_and_warned_about_once(graph, checkpoint, reference):
    """Callbacks called directly (no transport): an image over max_input_pixels is dropped before decoding;
    stamp jumps reset pairing every time but warn once per log_throttle_s, as malformed messages do."""
    node = graph.fuse_node(node_params(checkpoint, max_input_pixels=H * W, log_throttle_s=60.0))
    logger = RecordingLogger()
    node.get_logger = lambda: logger
    scene = Scene(reference)
    t0 = time.time_ns()
    for k in range(3):
        node._on_thermal(make_image(np.zeros((H, W + 1), np.uint16), "mono16", t0 + k, "th_cam"))
    assert node.diagnostics.totals()["malformed_fields"]["thermal"] == {"max_input_pixels": 3}
    vis = scene.visible()
    for k in range(20):  # a bag looping every frame: 10 s ahead, then back
        node._on_visible(visible_message(vis, "rgb8", t0 + (k % 2 == 0) * 10_000_000_000 + k))
    assert node.diagnostics.totals()["sync_resets"] == 10
    jumps = [w for w in logger.warnings if "jumped back" in w]
    oversized = [w for w in logger.warnings if "max_input_pixels" in w]
    assert len(jumps) == 1 and len(oversized) == 1, logger.warnings
    assert f"{W + 1}x{H}" in oversized[0]
    assert "inference thread(s) (automatic: " in node.diagnostics.info["inference threads"]


@pytest.mark.ros
def test_thermal_loss_passes_visible_through_then_fusion_resumes(graph, checkpoint, reference):
    node = graph.fuse_node(
        node_params(
            checkpoint, **{"timeouts.thermal_s": 0.4, "timeouts.visible_s": 5.0, "outputs.overlay": False}
        )
    )
    scene = Scene(reference, seed=2)
    graph.subscribe(FUSED)
    graph.subscribe_diagnostics()
    graph.wait_matched(node, (FUSED,))
    t0 = time.time_ns()

    def send_pair(stamp: int) -> np.ndarray:
        vis, th = scene.visible(), scene.thermal16()
        graph.pub_th.publish(make_image(th, "mono16", stamp, "th_cam"))
        graph.pub_vis.publish(visible_message(vis, "rgb8", stamp))
        return scene.expected(vis, th)[0]

    fused = send_pair(t0)
    graph.spin_until(lambda: graph.received[FUSED][t0], 10, "the first fused frame")
    np.testing.assert_array_equal(pixels_of(graph.received[FUSED][t0][0]), fused)

    # thermal goes silent: after the timeout the visible image is republished unchanged
    passthrough: dict[int, np.ndarray] = {}
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline and not any(graph.received[FUSED][s] for s in passthrough):
        stamp = t0 + (len(passthrough) + 1) * 100_000_000
        passthrough[stamp] = scene.visible()
        graph.pub_vis.publish(visible_message(passthrough[stamp], "rgb8", stamp))
        graph.spin_for(0.1)
    got = [s for s in passthrough if graph.received[FUSED][s]]
    assert got, "no visible passthrough while thermal was silent"
    np.testing.assert_array_equal(pixels_of(graph.received[FUSED][got[0]][0]), passthrough[got[0]])
    assert graph.received[FUSED][got[0]][0].header.frame_id == "vis_cam"
    graph.spin_until(
        lambda: any(
            d.status[0].level == b"\x01"
            and "thermal" in d.status[0].message
            and "silent" in d.status[0].message
            for d in graph.diagnostics
        ),
        5,
        "a WARN diagnostic about the silent thermal topic",
    )
    assert node.diagnostics.totals()["passthrough"] >= 1

    # thermal returns, its first frame 1 ms from the last passthrough frame: that visible stamp was published
    # already and must not be published again, fused
    last_passthrough = max(passthrough)
    graph.pub_th.publish(make_image(scene.thermal16(), "mono16", last_passthrough + 1_000_000, "th_cam"))
    graph.spin_until(lambda: not node.diagnostics.is_lost("thermal", time.monotonic()), 5, "thermal recovery")
    graph.spin_for(0.2)  # (less than the thermal timeout)
    assert len(graph.received[FUSED][last_passthrough]) <= 1
    # then fusion again (the thermal message is sent first and received before the pair)
    stamp = t0 + 5_000_000_000
    fused = send_pair(stamp)
    graph.spin_until(lambda: graph.received[FUSED][stamp], 10, "a fused frame after thermal returned")
    np.testing.assert_array_equal(pixels_of(graph.received[FUSED][stamp][-1]), fused)
    graph.spin_until(
        lambda: values_from_status(graph.diagnostics[-1].status[0].values).get("mode") == "fusion",
        5,
        "diagnostics back in fusion mode",
    )
    twice = {(s - t0) // 1_000_000: len(m) for s, m in graph.received[FUSED].items() if len(m) > 1}
    assert not twice, f"stamps (ms after the first) published more than once: {twice}"


@pytest.mark.ros
def test_the_visible_camera_info_is_republished_with_each_fused_image(graph, checkpoint, reference):
    from sensor_msgs.msg import CameraInfo

    node = graph.fuse_node(node_params(checkpoint))
    pub_info = graph.tester.create_publisher(CameraInfo, "/visible/camera_info", RELIABLE)
    infos: list = []
    graph.tester.create_subscription(CameraInfo, "/fuse_node/fused/camera_info", infos.append, RELIABLE)
    graph.subscribe(FUSED)
    graph.wait_matched(node, (FUSED,))
    graph.spin_until(lambda: pub_info.get_subscription_count() > 0, 20, "camera_info matched")
    info = CameraInfo(height=H, width=W, distortion_model="plumb_bob")
    info.k = [300.0, 0.0, 32.0, 0.0, 300.0, 24.0, 0.0, 0.0, 1.0]
    info.header.frame_id = "vis_cam"
    pub_info.publish(info)
    graph.spin_until(lambda: node._camera_info is not None, 5, "the node to receive camera_info")
    scene = Scene(reference, seed=9)
    stamp = time.time_ns()
    graph.pub_th.publish(make_image(scene.thermal16(), "mono16", stamp, "th_cam"))
    graph.pub_vis.publish(visible_message(scene.visible(), "rgb8", stamp))
    graph.spin_until(lambda: graph.received[FUSED][stamp] and infos, 10, "a fused image and its camera_info")
    [out] = infos
    assert stamp_ns(out) == stamp and out.header.frame_id == "vis_cam"
    assert list(out.k) == list(info.k) and (out.height, out.width) == (H, W)


@pytest.mark.ros
def test_compressed_inputs_fuse_like_raw_ones(graph, checkpoint, reference):
    """inputs.transport=compressed: PNG visible (lossless) and 16-bit PNG thermal on the image_transport
    topics; the fused image equals the engine's on the same pixels."""
    import io

    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage

    pytest.importorskip("cv2")

    def png(array: np.ndarray, fmt: str, stamp: int, frame_id: str) -> CompressedImage:
        buffer = io.BytesIO()
        PILImage.fromarray(array).save(buffer, format="PNG")
        msg = CompressedImage(format=fmt)
        msg.data = buffer.getvalue()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.header.frame_id = frame_id
        return msg

    node = graph.fuse_node(node_params(checkpoint, **{"inputs.transport": "compressed"}))
    pub_vis = graph.tester.create_publisher(CompressedImage, "/visible/image_raw/compressed", RELIABLE)
    pub_th = graph.tester.create_publisher(CompressedImage, "/thermal/image_raw/compressed", RELIABLE)
    graph.subscribe(FUSED)
    graph.spin_until(
        lambda: pub_vis.get_subscription_count() > 0 and pub_th.get_subscription_count() > 0, 20, "matching"
    )
    graph.spin_until(lambda: node._pub_image.get_subscription_count() > 0, 20, "output matching")
    scene = Scene(reference, seed=11)
    vis, th = scene.visible(), scene.thermal16()
    stamp = time.time_ns()
    pub_th.publish(png(th, "mono16; png compressed mono16", stamp, "th_cam"))
    pub_vis.publish(png(vis, "rgb8; png compressed rgb8", stamp, "vis_cam"))
    graph.spin_until(lambda: graph.received[FUSED][stamp], 10, "a fused frame from compressed inputs")
    np.testing.assert_array_equal(pixels_of(graph.received[FUSED][stamp][0]), scene.expected(vis, th)[0])
    assert node.topics == ["/visible/image_raw/compressed", "/thermal/image_raw/compressed"]


def test_the_other_image_transport_of_a_topic():
    assert other_transport_topic("/cam/image_raw", "raw") == ("/cam/image_raw/compressed", "compressed")
    assert other_transport_topic("/cam/image_raw/compressed", "compressed") == ("/cam/image_raw", "raw")
    assert other_transport_topic("/cam/jpeg", "compressed") is None


@pytest.mark.ros
def test_a_silent_raw_input_whose_compressed_topic_is_published_names_the_transport_to_set(graph, checkpoint):
    """A compressed recording played to a node left on inputs.transport: raw: the raw topic stays silent,
    and the warning says which parameter to change instead of blaming the driver or the remapping."""
    from sensor_msgs.msg import CompressedImage

    params = node_params(checkpoint, **{"timeouts.visible_s": 0.2, "timeouts.thermal_s": 30.0})
    node = graph.add(
        FuseNode(
            context=graph.context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
            cli_args=["--ros-args", "-r", "visible/image_raw:=/rig_test/image_raw"],  # no raw publisher there
        )
    )
    logger = RecordingLogger()
    node.get_logger = lambda: logger
    publisher = graph.tester.create_publisher(CompressedImage, "/rig_test/image_raw/compressed", RELIABLE)
    graph.spin_until(lambda: node.count_publishers("/rig_test/image_raw/compressed") > 0, 20, "discovery")
    graph.spin_until(lambda: any("no message since start" in w for w in logger.warnings), 5, "the warning")
    warning = next(w for w in logger.warnings if "no message since start" in w)
    assert "/rig_test/image_raw " in warning and "set inputs.transport: compressed" in warning, warning
    assert "topic remapping" not in warning
    graph.tester.destroy_publisher(publisher)


@pytest.mark.ros
def test_with_compressed_inputs_the_warning_names_the_compressed_subscription_to_remap(graph, checkpoint):
    """Remapping only visible/image_raw does not move the compressed subscription: the warning says which
    name to remap."""
    timeouts = {"timeouts.visible_s": 0.2, "timeouts.thermal_s": 30.0}
    params = node_params(checkpoint, **{"inputs.transport": "compressed", **timeouts})
    node = graph.add(
        FuseNode(
            context=graph.context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
            cli_args=["--ros-args", "-r", "__ns:=/remap_test", "-r", "visible/image_raw:=/cam/image"],
        )
    )
    logger = RecordingLogger()
    node.get_logger = lambda: logger
    assert node.topics[0] == "/remap_test/visible/image_raw/compressed"
    graph.spin_until(lambda: any("no message since start" in w for w in logger.warnings), 5, "the warning")
    warning = next(w for w in logger.warnings if "no message since start" in w)
    assert "remapping of visible/image_raw/compressed (inputs.transport is compressed)" in warning, warning


@pytest.mark.ros
def test_latest_policy_pairs_a_visible_frame_with_the_closest_recent_thermal(graph, checkpoint, reference):
    params = {"sync.policy": "latest", "sync.slop_s": 0.06, "outputs.encoding": "bgr8"}
    node = graph.fuse_node(node_params(checkpoint, **params))
    scene = Scene(reference, seed=5)
    graph.subscribe(FUSED)
    graph.wait_matched(node, (FUSED,))
    t0 = time.time_ns()
    thermals = {t0 + dt * 1_000_000: scene.thermal16() for dt in (-50, -10, 30)}
    for stamp, th in thermals.items():
        graph.pub_th.publish(make_image(th, "mono16", stamp, "th_cam"))
    graph.spin_until(
        lambda: node.diagnostics.totals()["received"]["thermal"] == 3, 10, "three thermal frames"
    )
    vis = scene.visible()
    graph.pub_vis.publish(visible_message(vis, "rgb8", t0))
    graph.spin_until(lambda: graph.received[FUSED][t0], 10, "a fused frame (latest policy)")
    closest = thermals[t0 - 10_000_000]
    (msg,) = graph.received[FUSED][t0]
    assert msg.encoding == "bgr8"
    np.testing.assert_array_equal(pixels_of(msg)[..., ::-1], scene.expected(vis, closest)[0])
    assert node.diagnostics.info["sync"] == "ssvif_ros.fusion.pairing latest"


@pytest.mark.ros
@pytest.mark.parametrize(
    ("overrides", "parameter", "words"),
    [
        ({"thermal.mode": "bogus"}, "thermal.mode", "auto, fixed"),
        ({"sync.slop_s": -0.1}, "sync.slop_s", "> 0"),
        ({"sync.slop_s": 1}, None, None),  # an integer for a double is fine
        ({"registration.homography": [1.0, 2.0]}, "registration.homography", "9 finite numbers"),
        ({"weights": "/nonexistent/model.safetensors"}, "weights", "does not exist"),
        ({"weights": ""}, "weights", "allow_untrained"),
        ({"backend": "tensorrt"}, "backend", "needs a CUDA device"),  # device cpu: refused at start
        ({"backend": "tflite"}, "backend", "unknown backend"),
        ({"precision": "fp16", "device": "cpu"}, "precision", "CUDA"),
        (
            {"outputs.fused_image": False, "outputs.segmentation": False, "outputs.overlay": False},
            "outputs",
            "",
        ),
        ({"sync.queue_size": 2.5}, "sync.queue_size", "wrong type"),
        ({"sync.slop": 0.2}, "sync.slop", "did you mean 'sync.slop_s'?"),  # a typo is not ignored
        ({"sync.polcy": "latest"}, "sync.polcy", "did you mean 'sync.policy'?"),
        ({"sync.use_message_filters": True}, "sync.use_message_filters", "always pairs with"),  # removed
    ],
)
def test_invalid_parameters_stop_the_node_with_the_parameter_named(
    graph, checkpoint, overrides, parameter, words, monkeypatch
):
    # The "no weights" error is what a checkout without a shipped model sees.
    monkeypatch.setattr("ssvif_ros.fusion.engine.default_weights", lambda: None)
    params = node_params(checkpoint, **{"warmup.visible_size": [0, 0]}, **overrides)
    if parameter is None:
        graph.fuse_node(params)
        return
    with pytest.raises(ConfigError, match=f"parameter '{parameter}") as info:
        graph.fuse_node(params)
    assert words in str(info.value)


def test_empty_weights_parameter_loads_the_shipped_model(graph, checkpoint):
    shipped = default_weights()
    if shipped is None:
        pytest.skip("no trained model ships in ssvif_ros/weights")
    node = graph.fuse_node(node_params(checkpoint, weights="", **{"warmup.visible_size": [0, 0]}))
    assert node.engine.checkpoint.path == shipped


# --- ROS-free parts -----------------------------------------------------------------------------------------


def test_every_parameter_is_documented_in_config_fuse_yaml_with_its_default():
    text = (REPO / "config" / "fuse.yaml").read_text()
    document = yaml.safe_load(text)
    params = document["/**"]["ros__parameters"]
    declared = {spec.name: spec.default for spec in PARAMETERS}
    assert params == declared
    lines = text.splitlines()
    for spec in PARAMETERS:
        assert spec.description, f"{spec.name} has no description"
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{spec.name}:"))
        assert lines[at - 1].strip().startswith("#") or lines[at - 2].strip().startswith("#"), spec.name
    parse_config(dict(params, weights=""))  # the file itself validates


# --- as a separate process, started like the product ---------------------------------------------------


def _start_node(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ssvif_ros.node.fuse_node", "--ros-args", *args],
            cwd=REPO,
            env=os.environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _node_exit(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Start the node with ``--ros-args *args`` and wait for it to stop: (exit code, its output)."""
    log = tmp_path / "node.log"
    process = _start_node(args, log)
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    return code, log.read_text()


@pytest.mark.ros
def test_node_process_with_params_file_fuses_and_shuts_down_cleanly(graph, checkpoint, reference, tmp_path):
    overrides = tmp_path / "test_fuse.yaml"
    overrides.write_text(
        yaml.safe_dump(
            {
                "fuse_node": {
                    "ros__parameters": {
                        k: v for k, v in node_params(checkpoint).items() if k != "registration.homography"
                    }
                }
            }
        )
    )
    homography = "[" + ", ".join(str(v) for v in SHIFT) + "]"
    log = tmp_path / "node.log"
    process = _start_node(
        [
            "--params-file",
            str(REPO / "config" / "fuse.yaml"),
            "--params-file",
            str(overrides),
            "-p",
            f"registration.homography:={homography}",
        ],
        log,
    )
    try:
        scene = Scene(reference, seed=4)
        graph.subscribe(FUSED)
        graph.subscribe(SEG)
        graph.wait_matched(outputs=(FUSED, SEG), timeout=60.0)
        t0 = time.time_ns()
        for i in range(3):
            stamp = t0 + i * 100_000_000
            vis, th = scene.visible(), scene.thermal16()
            graph.pub_vis.publish(visible_message(vis, "rgb8", stamp))
            graph.pub_th.publish(make_image(th, "16UC1", stamp + 5_000_000, "th_cam", bigendian=True))
            graph.spin_until(
                lambda s=stamp: graph.received[FUSED][s] and graph.received[SEG][s], 20, f"process frame {i}"
            )
            image, labels, _ = scene.expected(vis, th)
            np.testing.assert_array_equal(pixels_of(graph.received[FUSED][stamp][0]), image)
            np.testing.assert_array_equal(pixels_of(graph.received[SEG][stamp][0]), labels)
            assert graph.received[FUSED][stamp][0].header.frame_id == "vis_cam"
        assert process.poll() is None, log.read_text()
    finally:
        code = stop_process(process)
    assert code == 0, log.read_text()
    # its own process on the shared-memory profile (written under the test's XDG_CONFIG_HOME), said so
    ready = [line for line in log.read_text().splitlines() if "ready in" in line]
    own = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")  # a developer's own profile is kept
    said = f"transport: the Fast DDS profile {own}" if own else "transport: Fast DDS shared memory for large"
    assert ready and said in ready[0], log.read_text()


@pytest.mark.ros
def test_node_process_exits_nonzero_naming_a_bad_parameter(tmp_path):
    code, text = _node_exit(
        ["--params-file", str(REPO / "config" / "fuse.yaml"), "-p", "thermal.mode:=hot"], tmp_path
    )
    assert code == 2, text
    assert "thermal.mode" in text and "hot" in text


def test_the_arguments_ros_would_refuse_are_refused_first(tmp_path):
    from ssvif_ros.node.fuse_node import ros_arguments
    from ssvif_ros.node.params import check_ros_arguments, read_params_file

    nested = tmp_path / "ns.yaml"  # a namespace level above the node, as rcl allows; 1e-05 is a double
    nested.write_text(
        "/robot:\n  fuse_node:\n    ros__parameters:\n      registration.homography: "
        "[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1e-05, 0.0, 1.0]\n"
    )
    assert read_params_file(nested, node="/robot/fuse_node")["registration.homography"][6] == 1e-05
    with pytest.raises(ConfigError, match=r"no parameters for /fuse_node \(sections: /robot/fuse_node\)"):
        read_params_file(nested)  # as rcl: a node in the root namespace does not read /robot's section
    shared = tmp_path / "shared.yaml"  # a launch file's params file: other nodes' sections are not ours
    shared.write_text(
        "camera_driver:\n  ros__parameters:\n    fps: 30\n"
        "/**:\n  ros__parameters:\n    device: cpu\n"
        "fuse_node:\n  ros__parameters:\n    backend: torch\n"
    )
    assert read_params_file(shared) == {"device": "cpu", "backend": "torch"}
    args = ["--own", "--ros-args", "--params-file", str(nested), "-p", "a:=[1, 2]", "--", "x", "--ros-args"]
    assert ros_arguments(args) == ["--params-file", str(nested), "-p", "a:=[1, 2]"]
    check_ros_arguments(ros_arguments(args))  # nothing ROS would refuse
    with pytest.raises(ConfigError, match=r"-p: registration.homography mixes float and int.*1 -> 1.0"):
        check_ros_arguments(["-p", "registration.homography:=[1.0, 0.0, 1]"])
    lists = tmp_path / "lists.yaml"
    lists.write_text("fuse_node:\n  ros__parameters:\n    warmup.visible_size: [[480, 640]]\n")
    with pytest.raises(ConfigError, match=r"params file .*lists.yaml: warmup.visible_size .*not lists"):
        check_ros_arguments(["--params-file", str(lists)])


def _refused_by_pre_check_and_by_rcl(ros_args: list[str]) -> tuple[bool, bool]:
    """(the node's pre-check refuses ``ros_args``, rcl's own parser does: rclpy.init on a context of its
    own)."""
    from rclpy.context import Context

    from ssvif_ros.node.params import check_ros_arguments

    context = Context()
    try:
        rclpy.init(args=["x", "--ros-args", *ros_args], context=context)
        rcl_refuses = False
    except Exception:  # rclpy raises its own RCL error types here
        rcl_refuses = True
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
    try:
        check_ros_arguments(ros_args)
        return False, rcl_refuses
    except ConfigError:
        return True, rcl_refuses


@pytest.mark.parametrize(
    "value",
    ["[1.0, 2.5e3]", "[1.0, inf]", "[1e-05, 1.0]", "[yes, y]", "[2024-01-01, foo]", "[1.0, 1]", "[true, 1]"],
)
def test_the_pre_check_refuses_a_list_only_where_rcl_does(value):
    """The same -p value through rcl's own parser (rclpy.init on a context of its own) and the pre-check:
    a refusal by the pre-check is never a list rcl would have taken, and int + double is caught."""
    refused, rcl_refuses = _refused_by_pre_check_and_by_rcl(["-p", f"p:={value}"])
    assert refused == rcl_refuses, f"{value}: pre-check {refused}, rcl {rcl_refuses}"


@pytest.mark.parametrize(
    "text",
    [
        "fuse_node:\n  ros__parameters:\n    device:\n",  # no value
        "fuse_node:\n  device: cpu\n",  # a value outside ros__parameters
        "fuse_node:\n  ros__parameters:\n    x: []\n    a: {b: [1.0, 2.5e3]}\n",
        "/**:\n  ros__parameters:\n    device: cpu\n"
        "/robot:\n  fuse_node:\n    ros__parameters:\n      n: 1\n",
    ],
)
def test_the_pre_check_refuses_a_params_file_only_where_rcl_does(text, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    refused, rcl_refuses = _refused_by_pre_check_and_by_rcl(["--params-file", str(path)])
    assert refused == rcl_refuses, f"{text!r}: pre-check {refused}, rcl {rcl_refuses}"


def test_a_params_file_ros_cannot_parse_is_refused_in_one_line(tmp_path):
    # ROS 2's parser refuses a list mixing doubles and integers with a traceback; the node says what to do
    bad = tmp_path / "mixed.yaml"
    text = (REPO / "config" / "fuse.yaml").read_text()
    bad.write_text(
        text.replace(
            "registration.homography: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]",
            "registration.homography: [1.02, 0.0, -12.0, 0.0, 1.02, 9.0, 0.0, 0.0, 1]",
        )
    )
    assert bad.read_text() != text, "config/fuse.yaml's homography line changed: update this test"
    code, out = _node_exit(["--params-file", str(bad)], tmp_path)
    assert code == 2, out
    assert "registration.homography" in out and "1 -> 1.0" in out and "Traceback" not in out


# --- the managed (lifecycle) variant: transitions driven in-process ----------------------------------------


def managed(graph: Graph, params: dict) -> LifecycleFuseNode:
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(LifecycleFuseNode(context=graph.context, parameter_overrides=overrides))


@pytest.mark.ros
def test_configure_activate_deactivate_cleanup(graph, checkpoint, reference):
    node = managed(graph, node_params(checkpoint))
    assert node.engine is None and graph.pub_vis.get_subscription_count() == 0
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.engine is not None  # loaded and warmed up, but not listening yet
    graph.spin_for(0.3)
    assert graph.pub_vis.get_subscription_count() == 0

    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    graph.subscribe(FUSED)
    graph.wait_matched(node, (FUSED,))
    scene = Scene(reference, seed=12)
    vis, th = scene.visible(), scene.thermal16()
    stamp = time.time_ns()
    graph.pub_th.publish(make_image(th, "mono16", stamp, "th_cam"))
    graph.pub_vis.publish(visible_message(vis, "rgb8", stamp))
    graph.spin_until(lambda: graph.received[FUSED][stamp], 10, "a fused frame while active")
    np.testing.assert_array_equal(pixels_of(graph.received[FUSED][stamp][0]), scene.expected(vis, th)[0])

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    graph.spin_until(lambda: graph.pub_vis.get_subscription_count() == 0, 5, "the inputs to be dropped")
    assert node.engine is not None  # the model stays loaded while inactive
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.engine is None
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS  # configured again: same parameters
    assert node.engine is not None


@pytest.mark.ros
def test_a_bad_parameter_fails_configure_and_the_node_lives_on(graph, checkpoint):
    node = managed(graph, node_params(checkpoint, **{"thermal.mode": "hot"}))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.engine is None
