"""The fusion node: visible + thermal ``sensor_msgs/Image`` in, fused image (+ class ids, overlay) out.

Run it with ``ros2 launch ssvif_ros fuse.launch.py`` (or ``ros2 run ssvif_ros fuse_node --ros-args
--params-file config/fuse.yaml``; without a ROS install: ``python -m ssvif_ros.node.fuse_node --ros-args
...``).

Data flow, per frame::

    visible/image_raw ──┐ decode, pair                 thermal 8 bit ─► register ─► engine ─► publish
                        ├───────────────► dispatch ──► (inline, or on the worker thread)    │
    thermal/image_raw ──┘ (approximate | latest)        ~/fused/image, ~/fused/segmentation, ◄┘
                                                        ~/fused/overlay (visible header)

Threads: subscription callbacks (the executor) decode (a view of the message for rgb8/mono*; a reorder
for bgr/rgba), pair, and hand the pair to :class:`~ssvif_ros.node.dispatch.NewestDispatcher`. A fast model
(the last pair and the recent ones on average under ``inline_max_ms``) is run right there, saving the
hand-off to another thread; otherwise a worker thread takes the newest pair from a one-slot mailbox, so
the executor keeps receiving and a pair replaced before the worker took it is counted as skipped: a model
slower than the cameras never builds a queue. Either way pairs are fused one at a time and never out of
order. No work is done for an output without subscribers; the segmentation head runs only when
``~/fused/segmentation`` or ``~/fused/overlay`` has one.

Robustness: malformed messages are dropped with a throttled warning naming the topic and field and are
counted; a silent thermal stream switches to visible passthrough (``passthrough_on_thermal_loss``) until
it returns; a backwards jump of the stamps (a bag loop) resets the synchroniser. ``/diagnostics`` carries
rates, counts, latency percentiles and an OK/WARN/ERROR status at ``diagnostics.period_s``.

Parameters are all declared at start (read-only, with descriptions; see :data:`PARAMETERS` and
``config/fuse.yaml``) and validated: an invalid one stops the node with a message naming it (exit code 2).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ssvif_ros.fusion.pairing import (
    create_sync,
    header_stamp_ns,
)
from ssvif_ros.fusion.pipeline import PairDropped, PairProcessor
from ssvif_ros.fusion.registration import Registration
from ssvif_ros.fusion.threads import apply_threads
from ssvif_ros.io.compressed import COMPRESSED_TOPIC_SUFFIX, INPUT_DECODERS
from ssvif_ros.io.image_msg import COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, MalformedImage, fill_image
from ssvif_ros.node.diagnostics import INPUTS, FusionDiagnostics, to_diagnostic_array
from ssvif_ros.node.dispatch import NewestDispatcher
from ssvif_ros.node.params import (
    PARAMETERS,
    ConfigError,
    FuseConfig,
    ParamSpec,
    check_names,
    check_ros_arguments,
    param_error,
    parse_config,
)
from ssvif_ros.tools.dds import choose_transport, describe_transport

__all__ = ["PARAMETERS", "ConfigError", "FuseConfig", "FuseNode", "main", "parse_config"]

NODE_NAME = "fuse_node"
VISIBLE_TOPIC = "visible/image_raw"
CAMERA_INFO_TOPIC = "visible/camera_info"
THERMAL_TOPIC = "thermal/image_raw"
VISIBLE, THERMAL = 0, 1
RELIABILITIES = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


@dataclass(slots=True)
class Frame:
    """One decoded input: the message header (copied to outputs), its stamp in ns, and the pixels."""

    header: Any
    stamp_ns: int
    array: np.ndarray  # visible (H, W, 3) uint8 RGB; thermal (h, w) uint8 or uint16
    arrival: float  # time.monotonic() when the callback received it


@dataclass(slots=True)
class Job:
    """Work for the inference worker: a pair, or a visible frame alone (passthrough while thermal is lost)."""

    visible: Frame
    thermal: Frame | None


def other_transport_topic(topic: str, transport: str) -> tuple[str, str] | None:
    """The topic and ``inputs.transport`` value of the other image transport for a subscribed ``topic``:
    image_transport's compressed images of ``/cam/image`` are on ``/cam/image/compressed``. None when a
    compressed subscription's name does not end that way (its raw topic is then unknown)."""
    if transport != "compressed":
        return topic + COMPRESSED_TOPIC_SUFFIX, "compressed"
    if topic.endswith(COMPRESSED_TOPIC_SUFFIX):
        return topic.removesuffix(COMPRESSED_TOPIC_SUFFIX), "raw"
    return None


def _qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=RELIABILITIES[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def load_engine(cfg: FuseConfig, logger: Any) -> Any:
    """The :class:`~ssvif_ros.fusion.engine.FusionEngine` the parameters ask for (through
    :func:`~ssvif_ros.fusion.fusers.open_fuser`), or a :class:`ConfigError` naming the parameter at fault."""
    from ssvif_ros.checkpoint import CheckpointError
    from ssvif_ros.fusion.backends import BackendUnavailable
    from ssvif_ros.fusion.engine import default_weights, resolve_device
    from ssvif_ros.fusion.fusers import FuserSpecError, open_fuser

    try:
        resolve_device(cfg.device)
    except (ValueError, RuntimeError) as err:
        raise param_error("device", f"{err} (use auto or cpu)") from None
    if cfg.backend == "passthrough":
        spec = "passthrough"
        logger.warning(
            "backend 'passthrough' is for BENCHMARKING ONLY: no model runs and ~/fused/image republishes "
            "the visible image; use backend torch for fusion"
        )
    elif cfg.weights or default_weights() is not None:
        spec = cfg.weights  # "": the shipped model
    elif cfg.allow_untrained:
        spec = cfg.model
        logger.warning(
            f"UNTRAINED model {cfg.model!r} with random weights (allow_untrained is true): the output is NOT "
            "a meaningful fusion; use this for tests and benchmarks only, and set weights for real use"
        )
    else:
        raise param_error(
            "weights",
            "is empty and no trained model ships with this version of ssvif_ros "
            "(ssvif_ros/weights/lightunet_ssvif.safetensors): set weights:=/path/to/model.safetensors; "
            "for tests and benchmarks only, allow_untrained:=true runs a random-init model:=lightunet",
        )
    try:
        opened = open_fuser(
            spec,
            device=cfg.device,
            backend=cfg.backend,
            precision=cfg.precision,
            allow_untrained=cfg.allow_untrained,
            passthrough_model=cfg.model,
        )
    except CheckpointError as err:
        raise param_error("weights", str(err)) from None
    except FuserSpecError as err:
        raise param_error("model" if spec == cfg.model else "weights", str(err)) from None
    except KeyError as err:
        raise param_error("model", str(err.args[0] if err.args else err)) from None
    except BackendUnavailable as err:
        name = "precision" if "precision" in str(err) else "backend"
        raise param_error(name, str(err)) from None
    return opened.fuser


class FusionNodeCore:
    """The fusion node's work, whatever manages its life: :meth:`_configure` (parameters, model, outputs,
    warm-up), :meth:`_activate` (inputs, diagnostics, the worker), :meth:`_deactivate` and :meth:`_cleanup`
    undo them. :class:`FuseNode` runs the first two at construction; the managed variant
    (:mod:`ssvif_ros.node.lifecycle_node`) runs each on its lifecycle transition. Mixed into an rclpy node.
    """

    def _configure(self) -> None:
        """Raises :class:`ConfigError` naming the parameter at fault."""
        self.config = cfg = parse_config({spec.name: self._declare(spec) for spec in PARAMETERS})
        log = self.get_logger()
        self._threads = apply_threads(cfg.torch_threads, cfg.device)
        log.info(self._threads)
        started = time.perf_counter()
        self.engine = load_engine(cfg, log)
        # Thermal gain → registration → engine, shared with ssvif-replay (ssvif_ros/fusion/pipeline.py).
        self._pairs = PairProcessor(
            self.engine, cfg.thermal_converter(), cfg.homography, cfg.max_aspect_mismatch
        )
        self._overlay = None
        self._open_outputs(cfg, log)
        self._warm_up(cfg)
        self._startup_s = time.perf_counter() - started

    def _activate(self) -> None:
        cfg = self.config
        sync_name = self._open_inputs(cfg)
        info = {
            "model": self.engine.name,
            "weights": str(getattr(self.engine.checkpoint, "path", None) or "untrained"),
            "backend": self.engine.backend.name,
            "device": str(self.engine.device),
            "precision": cfg.precision,
            "inference threads": self._threads,
            "sync": sync_name,
        }
        self.diagnostics = FusionDiagnostics(
            {"visible": self.topics[VISIBLE], "thermal": self.topics[THERMAL]},
            {"visible": cfg.visible_timeout_s, "thermal": cfg.thermal_timeout_s},
            window=cfg.diagnostics_window,
            info=info,
            now=time.monotonic(),
            passthrough_on_thermal_loss=cfg.passthrough_on_thermal_loss,
        )
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        watch_period = min(0.25, max(0.02, min(cfg.visible_timeout_s, cfg.thermal_timeout_s) / 4))
        self._watch_timer = self.create_timer(watch_period, self._watch_inputs)
        # Fusing: inline in the callback for fast models, else on the worker thread (newest pair first).
        self._dispatch = NewestDispatcher(
            self._process, cfg.inline_max_ms / 1000.0, self._on_process_error, name="fuse_node.worker"
        )
        self._log_ready(cfg, self.get_logger(), self._startup_s, sync_name, info)

    def _deactivate(self) -> None:
        """Stop taking input and fusing: subscriptions, timers and the worker go (the model stays)."""
        for sub in [*self._subs, getattr(self, "_info_sub", None)]:
            if sub is not None:
                self.destroy_subscription(sub)
        self._subs, self._info_sub = [], None
        for timer in (self._diag_timer, self._watch_timer):
            self.destroy_timer(timer)
        self.destroy_publisher(self._pub_diag)
        self._dispatch.close()
        self._dispatch = None

    def _cleanup(self) -> None:
        """Unload: the publishers and the model go, and the GPU memory it held is freed."""
        for pub in (self._pub_image, self._pub_seg, self._pub_overlay, self._pub_info):
            if pub is not None:
                self.destroy_publisher(pub)
        self._pub_image = self._pub_seg = self._pub_overlay = self._pub_info = None
        device = self.engine.device
        self.engine = self._pairs = None
        if getattr(device, "type", "cpu") == "cuda":
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def _open_outputs(self, cfg: FuseConfig, log: Any) -> None:
        """The publishers the parameters and the model allow (the overlay with its class legend)."""
        out_qos = _qos(cfg.qos_output_reliability, cfg.qos_output_depth)
        self._pub_image = (
            self.create_publisher(Image, "~/fused/image", out_qos) if cfg.output_fused_image else None
        )
        self._pub_seg = self._pub_overlay = None
        if (cfg.output_segmentation or cfg.output_overlay) and not self.engine.has_segmentation:
            log.warning(
                f"model {self.engine.name} (backend {self.engine.backend.name}) has no segmentation head: "
                "~/fused/segmentation and ~/fused/overlay are not published (use a checkpoint trained with "
                "the SSVIF recipe, or set outputs.segmentation/outputs.overlay to false)"
            )
        elif self.engine.has_segmentation:
            if cfg.output_segmentation:
                self._pub_seg = self.create_publisher(Image, "~/fused/segmentation", out_qos)
            if cfg.output_overlay:
                from ssvif_ros.fusion.overlay import class_overlay

                engine = self.engine
                self._overlay = class_overlay(engine.class_names, engine.num_classes, cfg.overlay_alpha)
                self._pub_overlay = self.create_publisher(Image, "~/fused/overlay", out_qos)
        if self._pub_image is None and self._pub_seg is None and self._pub_overlay is None:
            raise param_error(
                "outputs.fused_image", "is false and the model has no segmentation head: nothing to publish"
            )
        self._out_msgs = {"image": Image(), "segmentation": Image(), "overlay": Image()}
        self._camera_info: CameraInfo | None = None  # the newest visible camera_info
        self._pub_info = None
        if cfg.output_camera_info and self._pub_image is not None:
            self._pub_info = self.create_publisher(CameraInfo, "~/fused/camera_info", out_qos)

    def _warm_up(self, cfg: FuseConfig) -> None:
        """Run the model (and build the registration maps) once at the expected sizes, before any
        subscription exists, so no message waits behind it."""
        if cfg.warmup_visible_size[0] > 0:
            height, width = cfg.warmup_visible_size
            self.engine.warmup(height, width, with_labels=self.engine.has_segmentation)
            thermal_size = cfg.warmup_thermal_size if cfg.warmup_thermal_size[0] > 0 else (height, width)
            self._registration_for((height, width)).valid_mask(thermal_size)

    def _open_inputs(self, cfg: FuseConfig) -> str:
        """The subscriptions and the pairing (:mod:`ssvif_ros.fusion.pairing`, the replay's too); its name."""
        in_qos = _qos(cfg.qos_reliability, cfg.qos_depth)
        self._last_stamp: int | None = None
        self._throttle: dict[tuple[str, str], list[float]] = {}
        self._sync = create_sync(cfg.sync_policy, cfg.sync_queue_size, cfg.sync_slop_s)
        # raw sensor_msgs/Image, or image_transport's compressed topics (JPEG/PNG, decoded with OpenCV)
        compressed = cfg.input_transport == "compressed"
        kind, suffix = (CompressedImage, COMPRESSED_TOPIC_SUFFIX) if compressed else (Image, "")
        self._decoders = INPUT_DECODERS[COMPRESSED_IMAGE_TYPE if compressed else IMAGE_TYPE]
        self._subs = [
            self.create_subscription(kind, VISIBLE_TOPIC + suffix, self._on_visible, in_qos),
            self.create_subscription(kind, THERMAL_TOPIC + suffix, self._on_thermal, in_qos),
        ]
        if self._pub_info is not None:
            self._info_sub = self.create_subscription(
                CameraInfo, CAMERA_INFO_TOPIC, self._on_camera_info, in_qos
            )
        self.topics = [sub.topic_name for sub in self._subs]
        sync_name = f"ssvif_ros.fusion.pairing {cfg.sync_policy}"
        return sync_name

    def _log_ready(self, cfg: FuseConfig, log: Any, startup_s: float, sync_name: str, info: dict) -> None:
        outputs = [
            pub.topic_name
            for pub in (self._pub_image, self._pub_info, self._pub_seg, self._pub_overlay)
            if pub is not None
        ]
        log.info(
            f"ready in {startup_s:.1f} s: model {self.engine.name} ({info['weights']}), backend "
            f"{info['backend']} on {info['device']} {cfg.precision}; inputs {self.topics[VISIBLE]} + "
            f"{self.topics[THERMAL]} ({sync_name}, slop {cfg.sync_slop_s:g} s, QoS {cfg.qos_reliability} "
            f"depth {cfg.qos_depth}); outputs {', '.join(outputs)}; transport: {describe_transport()}"
        )
        if self._pub_seg is not None or self._pub_overlay is not None:
            names = getattr(self.engine, "class_names", None)
            log.info(
                "segmentation classes: " + ", ".join(f"{k}={n or '?'}" for k, n in enumerate(names))
                if names
                else "segmentation ids are anonymous (label-free head, no class names in the checkpoint's "
                "sidecar; name them with training/name_classes.py)"
            )

    # --- parameters -----------------------------------------------------------------------------------

    def _refuse_unknown_overrides(self) -> None:
        """A params-file or ``-p`` name that is not a parameter (a typo: ``sync.slop``) stops the node with
        the closest valid name, instead of silently leaving the default in force. rclpy keeps the overrides
        for this node in ``_parameter_overrides`` (no public accessor); its own parameters (use_sim_time...)
        are allowed."""
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        own = set(getattr(self, "_parameters", {}) or {})
        check_names(name for name in overrides if name not in own)

    def _declare(self, spec: ParamSpec) -> Any:
        if self.has_parameter(spec.name):  # configured again after a cleanup (managed node)
            return self.get_parameter(spec.name).value
        # Doubles accept integers too (a YAML `slop_s: 1` is meant as 1.0): they are typed dynamically and
        # checked by parse_config. Everything else is strictly typed by rclpy.
        is_double = isinstance(spec.default, float) or (
            isinstance(spec.default, list) and spec.default and isinstance(spec.default[0], float)
        )
        descriptor = ParameterDescriptor(
            name=spec.name,
            description=spec.description,
            additional_constraints=spec.constraints,
            read_only=True,  # read once at start; restart the node to change one
            dynamic_typing=bool(is_double),
        )
        try:
            return self.declare_parameter(spec.name, spec.default, descriptor).value
        except InvalidParameterTypeException as err:
            raise param_error(spec.name, f"wrong type ({err}); default is {spec.default!r}") from None

    # --- input callbacks (executor thread: keep them cheap) -----------------------------------------------

    def _on_visible(self, msg: Image) -> None:
        stamp = self._arrival(VISIBLE, msg)
        frame = self._decode(VISIBLE, msg, stamp)
        if frame is None:
            return
        if self._passthrough_active():
            # published as it is, and kept out of the pairing: a thermal frame returning with a nearby
            # stamp must not publish the same visible stamp a second time, fused
            self._submit(Job(frame, None))
            return
        self._pair(VISIBLE, stamp, frame)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg  # one reference swap: the worker reads whichever is newest

    def _on_thermal(self, msg: Image) -> None:
        stamp = self._arrival(THERMAL, msg)
        frame = self._decode(THERMAL, msg, stamp)
        if frame is not None:
            self._pair(THERMAL, stamp, frame)

    def _arrival(self, index: int, msg: Image) -> int:
        """Count the message, note a returning input, reset pairing on a backwards stamp jump."""
        stamp = header_stamp_ns(msg) or 0
        back_after = self.diagnostics.arrived(INPUTS[index], time.monotonic(), stamp)
        if back_after is not None:
            what = "fusion resumed" if index == THERMAL else "fused output resumes"
            self.get_logger().info(
                f"{INPUTS[index]} topic {self.topics[index]} back after {back_after:.1f} s: {what}"
            )
        newest = self._last_stamp
        if newest is not None and stamp < newest - int(self.config.sync_clock_jump_reset_s * 1e9):
            self._reset_pairing(index, (newest - stamp) / 1e9)
            newest = None
        self._last_stamp = stamp if newest is None else max(newest, stamp)
        return stamp

    def _reset_pairing(self, index: int, jump_s: float) -> None:
        self._sync.reset()
        self._pairs.reset()
        self.diagnostics.sync_reset()
        self._warn_throttled(
            (self.topics[index], "stamp jump"),
            f"{INPUTS[index]} stamps on {self.topics[index]} jumped back {jump_s:.1f} s (bag loop or clock "
            "reset?): synchroniser and thermal gain reset; pairing restarts with the new stamps (counted in "
            "/diagnostics as sync resets)",
        )

    def _decode(self, index: int, msg: Any, stamp: int) -> Frame | None:
        topic = self.topics[index]
        compressed = self.config.input_transport == "compressed"
        if not compressed and self._too_large(index, msg.height, msg.width):
            return None
        try:
            array = self._decoders[index](msg, topic)
        except MalformedImage as err:
            self.diagnostics.malformed(INPUTS[index], err.field)
            self._warn_throttled(
                (topic, err.field),
                f"dropped a malformed {INPUTS[index]} message: {err}; fix the publisher "
                "(counted in /diagnostics)",
            )
            return None
        if compressed and self._too_large(index, *array.shape[:2]):  # sizes are known once decoded
            return None
        return Frame(msg.header, stamp, array, time.monotonic())

    def _too_large(self, index: int, height: Any, width: Any) -> bool:
        """Drop (count, warn) an image over ``max_input_pixels`` (raw images: before decoding them)."""
        try:
            pixels = int(height) * int(width)
        except (TypeError, ValueError):
            return False  # the decoder reports the bad field
        limit = self.config.max_input_pixels
        if pixels <= limit:
            return False
        self.diagnostics.malformed(INPUTS[index], "max_input_pixels")
        self._warn_throttled(
            (self.topics[index], "max_input_pixels"),
            f"dropped a {width}x{height} {INPUTS[index]} image on {self.topics[index]}: over "
            f"max_input_pixels ({limit}); raise the parameter or publish a smaller image",
        )
        return True

    def _pair(self, index: int, stamp: int, frame: Frame) -> None:
        for pair in self._sync.add(index, stamp, frame):
            self.diagnostics.paired()
            self._submit(Job(*pair.items))

    def _submit(self, job: Job) -> None:
        if self._dispatch.submit(job):
            self.diagnostics.add_skipped()

    def _passthrough_active(self) -> bool:
        if not self.config.passthrough_on_thermal_loss:
            return False
        self._watch_inputs()  # the state may have changed since the last timer tick
        return self.diagnostics.is_lost(INPUTS[THERMAL], time.monotonic())

    def _warn_throttled(self, key: tuple[str, str], text: str) -> None:
        now = time.monotonic()
        entry = self._throttle.setdefault(key, [-math.inf, 0])
        if now - entry[0] >= self.config.log_throttle_s:
            suppressed = f" ({int(entry[1])} similar since the last warning)" if entry[1] else ""
            self.get_logger().warning(text + suppressed)
            entry[0], entry[1] = now, 0
        else:
            entry[1] += 1

    # --- timers ------------------------------------------------------------------------------------------

    def _watch_inputs(self) -> None:
        """Turn an input silent beyond its timeout into the 'lost' state (once, with a log line)."""
        for name, silent, never in self.diagnostics.mark_lost(time.monotonic()):
            index = INPUTS.index(name)
            timeout = self.diagnostics.inputs[name].timeout_s
            if index == THERMAL and self.config.passthrough_on_thermal_loss:
                action = "publishing visible passthrough"
            elif index == THERMAL:
                action = "no fused output until it returns (passthrough_on_thermal_loss is false)"
            else:
                action = "no fused output until it returns"
            what = "no message since start" if never else "silent"
            advice = self._transport_hint(index) or self._remap_advice(index)
            self.get_logger().warning(
                f"{name} topic {self.topics[index]} {what} for {silent:.1f} s (timeout {timeout:g} s): "
                f"{action}; {advice}"
            )

    def _remap_advice(self, index: int) -> str:
        """The generic advice; with compressed inputs the name to remap is the compressed one (remapping
        only ``visible/image_raw`` leaves the subscription where it was)."""
        if self.config.input_transport != "compressed":
            return "check the camera driver and the topic remapping"
        own = (VISIBLE_TOPIC, THERMAL_TOPIC)[index] + COMPRESSED_TOPIC_SUFFIX
        return f"check the camera driver and the remapping of {own} (inputs.transport is compressed)"

    def _transport_hint(self, index: int) -> str | None:
        """What to change when the input's other image transport has publishers (a compressed recording
        played to a node that reads raw images, or the reverse); None when it has none."""
        other = other_transport_topic(self.topics[index], self.config.input_transport)
        if other is None or self.count_publishers(self.topics[index]) > 0:
            return None  # (with publishers on our own topic, the transport is not what is wrong)
        topic, transport = other
        count = self.count_publishers(topic)
        if count == 0:
            return None
        return (
            f"{topic} has {count} publisher(s): set inputs.transport: {transport} in the params file "
            f"(or -p inputs.transport:={transport})"
        )

    def _publish_diagnostics(self) -> None:
        if self._sync is not None:
            unmatched = self._sync.stats.unmatched
            self.diagnostics.set_unmatched(unmatched[VISIBLE], unmatched[THERMAL])
        self.diagnostics.set_dispatch(self._dispatch.inline_jobs, self._dispatch.worker_jobs)
        snapshot = self.diagnostics.snapshot(time.monotonic())
        array = to_diagnostic_array(
            snapshot, self.get_clock().now().to_msg(), f"{self.get_name()}: fusion", str(self.engine.device)
        )
        self._pub_diag.publish(array)

    # --- fusing a pair (inline or on the worker thread, see ssvif_ros/node/dispatch.py) -------------------

    def _on_process_error(self, err: BaseException) -> None:
        """A pair failed in :meth:`_process`: counted and logged; the node keeps running."""
        self.diagnostics.error(f"{type(err).__name__}: {err}")
        self._warn_throttled(("worker", type(err).__name__), f"processing a frame failed: {err!r}")

    def _registration_for(self, size: tuple[int, int]) -> Registration:
        return self._pairs.registration_for(size)

    def _process(self, job: Job) -> None:
        """Thermal gain → registration → engine → publish, for the outputs someone listens to."""
        want_image = self._pub_image is not None and self._pub_image.get_subscription_count() > 0
        want_seg = self._pub_seg is not None and self._pub_seg.get_subscription_count() > 0
        want_overlay = self._pub_overlay is not None and self._pub_overlay.get_subscription_count() > 0
        vis = job.visible
        if job.thermal is None:  # visible passthrough while thermal is lost
            if not want_image:
                self.diagnostics.add_no_subscribers()
                return
            self._publish("image", self._pub_image, vis.array, self.config.output_encoding, vis.header)
            in_node = time.monotonic() - vis.arrival
            self.diagnostics.frame_done(self._age_s(vis.stamp_ns), 0.0, in_node, passthrough=True)
            return
        if not (want_image or want_seg or want_overlay):
            self.diagnostics.add_no_subscribers()
            return
        try:
            out = self._pairs.process(vis.array, job.thermal.array, want_labels=want_seg or want_overlay)
        except PairDropped as dropped:
            self._on_dropped(dropped)
            return
        result, inference_s = out.result, out.inference_s
        encoding = self.config.output_encoding
        arrival = max(vis.arrival, job.thermal.arrival)
        # Latency is taken when the first output is out (the fused image when it has subscribers): a
        # consumer of the image must not see a latency that includes the overlay drawn after it.
        timing: tuple[float, float] | None = None
        if want_image:
            self._publish("image", self._pub_image, result.image, encoding, vis.header)
            timing = (self._age_s(vis.stamp_ns), time.monotonic() - arrival)
        if want_seg:
            self._publish("segmentation", self._pub_seg, result.labels, "mono8", vis.header)
            timing = timing or (self._age_s(vis.stamp_ns), time.monotonic() - arrival)
        if want_overlay:
            overlay = self._overlay.blend(result.image, result.labels)
            self._publish("overlay", self._pub_overlay, overlay, encoding, vis.header)
            timing = timing or (self._age_s(vis.stamp_ns), time.monotonic() - arrival)
        self.diagnostics.frame_done(timing[0], inference_s, timing[1])

    def _on_dropped(self, dropped: PairDropped) -> None:
        """A pair the per-pair pipeline refused: count it against the thermal input and say why."""
        self.diagnostics.malformed("thermal", dropped.reason)
        self._warn_throttled(
            (self.topics[THERMAL], dropped.reason),
            f"dropped a pair of {self.topics[VISIBLE]} + {self.topics[THERMAL]}: {dropped} "
            "(registration.max_aspect_mismatch); check the remapped topics, or raise the tolerance if the "
            "homography corrects it",
        )

    def _publish(self, key: str, publisher: Any, array: np.ndarray, encoding: str, header: Any) -> None:
        if encoding == "bgr8":
            array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
        msg = self._out_msgs[key]  # reused: publish() serialises before returning
        fill_image(msg, array, encoding, header)
        publisher.publish(msg)
        if key == "image":
            self._publish_camera_info(header, array.shape)

    def _publish_camera_info(self, header: Any, shape: tuple[int, ...]) -> None:
        """The visible camera's calibration with the fused image's header (no-op before one arrived)."""
        info = self._camera_info
        if self._pub_info is None or info is None:
            return
        if (info.height, info.width) != tuple(shape[:2]):
            self._warn_throttled(
                (CAMERA_INFO_TOPIC, "size"),
                f"camera_info on {self._info_sub.topic_name} is {info.width}x{info.height} but the visible "
                f"images are {shape[1]}x{shape[0]}: republished as is; check the topic remapping",
            )
        out = CameraInfo()
        for field in (
            "height",
            "width",
            "distortion_model",
            "d",
            "k",
            "r",
            "p",
            "binning_x",
            "binning_y",
            "roi",
        ):
            setattr(out, field, getattr(info, field))
        out.header = header
        self._pub_info.publish(out)

    def _age_s(self, stamp_ns: int) -> float:
        return (self.get_clock().now().nanoseconds - stamp_ns) / 1e9

    def destroy_node(self) -> None:
        dispatch = getattr(self, "_dispatch", None)
        if dispatch is not None:
            dispatch.close()
        super().destroy_node()


class FuseNode(FusionNodeCore, Node):
    """The fusion node; ``kwargs`` go to :class:`rclpy.node.Node` (e.g. ``context``, ``parameter_overrides``).

    Raises :class:`ConfigError` from the constructor when a parameter is invalid.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._refuse_unknown_overrides()
        self._configure()
        self._activate()


def usage() -> str:
    """``--help``: how to run the node and every parameter with its default and constraints."""
    lines = [
        "usage: fuse_node --ros-args [-p NAME:=VALUE ...] [--params-file config/fuse.yaml] "
        "[-r visible/image_raw:=TOPIC -r thermal/image_raw:=TOPIC]",
        "",
        "Fuses a visible and a thermal camera topic; parameters (default; constraints):",
    ]
    for spec in PARAMETERS:
        limits = f"; {spec.constraints}" if spec.constraints else ""
        lines.append(f"  {spec.name} ({spec.default!r}{limits})\n      {spec.description}")
    return "\n".join(lines)


def own_arguments(args: list[str] | None) -> list[str]:
    """The command-line arguments before ``--ros-args`` (the program's own)."""
    own = list(sys.argv[1:] if args is None else args)
    return own[: own.index("--ros-args")] if "--ros-args" in own else own


def ros_arguments(args: list[str] | None) -> list[str]:
    """The tokens of every ``--ros-args ... [--]`` block, in order (what ``rclpy.init`` parses)."""
    tokens, inside, ros = list(sys.argv[1:] if args is None else args), False, []
    for token in tokens:
        if token == "--ros-args":
            inside = True
        elif token == "--" and inside:
            inside = False
        elif inside:
            ros.append(token)
    return ros


def spin_node(make_node: Callable[[], Node], args: list[str] | None) -> int:
    """Choose the transport, init rclpy, build the node with ``make_node`` and spin it until shutdown: 0,
    or 2 when the node refuses its parameters (the reason logged in one line)."""
    try:  # rclpy.init stops on lists ROS 2 cannot type with a traceback that says nothing of what to do
        check_ros_arguments(ros_arguments(args))
    except ConfigError as err:
        print(f"{NODE_NAME}: cannot start: {err}", file=sys.stderr)
        return 2
    choose_transport()  # before rclpy.init: Fast DDS reads its profile when the first participant is made
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except ConfigError as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {err}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """Console entry point (``ros2 run ssvif_ros fuse_node``): 0 on a clean shutdown, 2 on a bad parameter."""
    if {"-h", "--help"} & set(own_arguments(args)):
        print(usage())
        return 0
    return spin_node(FuseNode, args)


if __name__ == "__main__":
    sys.exit(main())
