"""``ssvif-replay``: fuse a recorded rosbag2 bag offline, exactly as the node would, and report on it.

Reads the visible and thermal ``sensor_msgs/Image`` topics (or ``CompressedImage``: the type is read from
the bag, and a topic recorded only as image_transport's ``<topic>/compressed`` is found under its raw name)
in log-time order, pairs them by header stamp with the node's synchroniser
(:func:`ssvif_ros.fusion.pairing.create_sync`), converts and registers the thermal frame and fuses through
the node's own per-pair code (:class:`ssvif_ros.fusion.pipeline.PairProcessor`), with the same
:class:`~ssvif_ros.fusion.engine.FusionEngine`. No ROS needed; deterministic; as fast as the CPU allows
(no real-time pacing). Writes into ``--out``:

- ``report.md``: the summary, linking everything below;
- ``summary.json`` (all numbers) and ``frames.csv`` (one row per fused pair and model);
- ``fused_bag/``: a rosbag2 bag with ``NS/fused/image`` (rgb8), ``NS/fused/segmentation`` (mono8) and
  ``NS/fused/overlay`` (rgb8), each message carrying the visible frame's header and log time;
- ``contact_sheet.png`` (visible | thermal | fused | overlay for a few frames), ``metrics.png``,
  ``stamp_diff.png``, ``inference_time.png``.

Fusion metrics (:func:`ssvif_ros.eval.metrics.evaluate_fusion`, ~0.2 s a 640×480 frame) are computed every
``--metrics-every`` pairs; mIoU when the bag has a labels topic (labels pair with visible frames by equal
header stamp, else the nearest within the slop) and the model a segmentation head.

``--compare A.safetensors B.safetensors laplacian ...`` evaluates several fusers (checkpoints, registered
model names with random weights, or the classic baselines of :mod:`ssvif_ros.fusion.baselines`) on the same
pairs and the same registered thermal frames, into one table.

Node parameters can be taken from its params file (``--params-file config/fuse.yaml``: sync, thermal,
registration, overlay alpha, weights/backend/device); explicit options override it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import re
import shutil
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssvif_ros.eval.metrics import METRIC_NAMES, confusion_matrix, evaluate_fusion, iou_per_class, mean_iou
from ssvif_ros.fusion.fusers import FuserSpecError, OpenedFuser, open_fuser
from ssvif_ros.fusion.pairing import POLICIES, create_sync
from ssvif_ros.fusion.pipeline import PairDropped, PairProcessor, timed_fuse
from ssvif_ros.fusion.thermal import ThermalToU8
from ssvif_ros.fusion.threads import apply_threads
from ssvif_ros.io.bags import (
    BAG_FORMAT_HELP,
    BAG_FORMATS,
    IMAGE_TYPE,
    STORAGES,
    BagError,
    BagReader,
    make_image_msg,
    open_reader,
    open_writer,
    stamp_ns,
)
from ssvif_ros.io.compressed import INPUT_DECODERS
from ssvif_ros.io.image_msg import MalformedImage, image_to_numpy
from ssvif_ros.node.params import ConfigError, parse_config, read_params_file

__all__ = [
    "NODE",
    "Candidate",
    "ReplayError",
    "ReplayOptions",
    "load_candidate",
    "main",
    "replay",
]

NS_PER_S = 1_000_000_000
VISIBLE, THERMAL = 0, 1
DEFAULT_TOPICS = {"visible": "/camera/image_raw", "thermal": "/thermal/image_raw", "labels": "/camera/labels"}

NODE = parse_config({}, defaults=True)
"""The node's default settings (:mod:`ssvif_ros.node.params`): the defaults of what the replay shares."""

_LABEL_BUFFER = 256  # labels / predictions kept while waiting for their partner


class ReplayError(RuntimeError):
    """A bag or option the replay cannot work with; the message says which and what the bag holds."""


# --- fusers ----------------------------------------------------------------------------------------------


Candidate = OpenedFuser
"""One fuser under evaluation: ``name`` (unique, for tables and topics), ``kind`` and ``source``."""


def load_candidate(
    spec: str,
    *,
    backend: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    untrained_ok: bool = True,
) -> Candidate:
    """:func:`~ssvif_ros.fusion.fusers.open_fuser` of ``spec`` (a checkpoint path, a baseline name,
    ``passthrough``, or a registered model name: random weights, seeded, for cost measurements only),
    named by the checkpoint's stem; errors become :class:`ReplayError` naming the spec."""
    from ssvif_ros.models import list_models

    passthrough_model = spec if spec in list_models() else "lightunet"
    try:
        opened = open_fuser(
            spec,
            device=device,
            backend=backend,
            precision=precision,
            allow_untrained=untrained_ok,
            passthrough_model=passthrough_model,
        )
    except FuserSpecError as err:
        raise ReplayError(str(err)) from None
    except Exception as err:  # CheckpointError, BackendUnavailable, ...: say which file
        raise ReplayError(f"cannot load checkpoint {spec}: {err}") from err
    if opened.kind == "checkpoint":
        opened.name = Path(spec).stem
    return opened


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "model"


# --- options -------------------------------------------------------------------------------------------


@dataclass
class ReplayOptions:
    """Everything :func:`replay` needs besides the bag and the fusers (defaults: the node's)."""

    visible_topic: str = DEFAULT_TOPICS["visible"]
    thermal_topic: str = DEFAULT_TOPICS["thermal"]
    labels_topic: str | None = DEFAULT_TOPICS["labels"]  # None/"": no labels; used only if in the bag
    labels_required: bool = False  # True when the user named the labels topic explicitly
    sync_policy: str = NODE.sync_policy
    slop_s: float = NODE.sync_slop_s
    queue_size: int = NODE.sync_queue_size
    thermal: dict[str, Any] = field(default_factory=NODE.thermal_settings)  # ThermalToU8 arguments
    homography: Sequence[float] = NODE.homography
    max_aspect_mismatch: float = NODE.max_aspect_mismatch
    overlay_alpha: float = NODE.overlay_alpha
    max_frames: int | None = None
    metrics_every: int = 1  # 0: no fusion metrics
    output_bag: bool = True
    output_storage: str = "mcap"
    output_bag_format: str = "kilted"
    output_namespace: str = "/fuse_node"
    contact_frames: int = 4
    plots: bool = True
    frame_notes: dict[int, str] = field(default_factory=dict)  # visible stamp (ns) -> note, shaded in plots
    progress: bool | None = None  # None: a bar on a terminal for bags of >= 100 messages


# --- bag checks -----------------------------------------------------------------------------------------


def _camera_inputs(bag: BagReader, opts: ReplayOptions) -> tuple[ReplayOptions, dict[str, str]]:
    """``opts`` with the visible and thermal topics as recorded (a raw topic, or its image_transport
    ``/compressed`` sibling when only that is in the bag) and ``{topic: msgtype}`` of the two."""
    try:
        visible, visible_type = bag.camera_topic(opts.visible_topic, "--visible-topic")
        thermal, thermal_type = bag.camera_topic(opts.thermal_topic, "--thermal-topic")
    except BagError as err:
        raise ReplayError(str(err)) from None
    resolved = dataclasses.replace(opts, visible_topic=visible, thermal_topic=thermal)
    return resolved, {visible: visible_type, thermal: thermal_type}


def _check_topics(bag: BagReader, opts: ReplayOptions) -> str | None:
    """Raise :class:`ReplayError` naming a clashing input or a missing or mistyped labels topic; returns
    the labels topic."""
    topics = bag.topics()
    where = f"bag {bag.path} has these topics:\n{bag.describe()}"
    if opts.visible_topic == opts.thermal_topic:
        raise ReplayError(f"visible and thermal topic are the same ({opts.visible_topic}); {where}")
    labels = opts.labels_topic or None
    if labels is not None:
        if labels not in topics:
            if opts.labels_required:
                raise ReplayError(f"labels topic {labels} (--labels-topic) is not in the bag; {where}")
            return None
        if topics[labels] != IMAGE_TYPE:
            raise ReplayError(
                f"labels topic {labels} has type {topics[labels]}, expected {IMAGE_TYPE}; {where}"
            )
    return labels


# --- per-run state ----------------------------------------------------------------------------------------


@dataclass
class _Frame:
    array: np.ndarray
    stamp_ns: int
    log_ns: int
    frame_id: str


@dataclass
class _ModelRun:
    candidate: Candidate
    overlay: Any = None
    inference_s: list[float] = field(default_factory=list)
    metrics: list[dict[str, float] | None] = field(default_factory=list)
    confusion: np.ndarray | None = None
    labelled_frames: int = 0
    label_mismatch: str | None = None  # why mIoU is not computed (label ids outside the head's classes)
    topics: dict[str, str] = field(default_factory=dict)


class _PhaseTimer:
    """Accumulated wall time per phase (seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds


class _LabelMatcher:
    """Pairs ground-truth labels with predictions by visible header stamp (equal first, then nearest
    within ``slop_ns`` at the end); bounded buffers so a long bag does not keep every frame."""

    def __init__(self, slop_ns: int) -> None:
        self.slop_ns = slop_ns
        self.labels: OrderedDict[int, np.ndarray] = OrderedDict()
        self.waiting: OrderedDict[int, list[tuple[_ModelRun, np.ndarray]]] = OrderedDict()
        self.received = 0
        self.unmatched_predictions = 0

    def add_label(self, stamp: int, labels: np.ndarray) -> list[tuple[_ModelRun, np.ndarray, np.ndarray]]:
        self.received += 1
        if stamp in self.waiting:
            return [(run, pred, labels) for run, pred in self.waiting.pop(stamp)]
        self.labels[stamp] = labels
        while len(self.labels) > _LABEL_BUFFER:
            self.labels.popitem(last=False)
        return []

    def add_prediction(self, stamp: int, run: _ModelRun, pred: np.ndarray) -> np.ndarray | None:
        """The label for ``stamp`` if already here (kept for the other models of the frame), else None."""
        labels = self.labels.get(stamp)
        if labels is not None:
            return labels
        self.waiting.setdefault(stamp, []).append((run, pred))
        while len(self.waiting) > _LABEL_BUFFER:
            _, dropped = self.waiting.popitem(last=False)
            self.unmatched_predictions += len(dropped)
        return None

    def finish(self) -> list[tuple[_ModelRun, np.ndarray, np.ndarray]]:
        """Nearest label within the slop for predictions still waiting."""
        matches = []
        stamps = np.array(sorted(self.labels), dtype=np.int64)
        for stamp, preds in self.waiting.items():
            if stamps.size:
                nearest = int(stamps[np.argmin(np.abs(stamps - stamp))])
                if abs(nearest - stamp) <= self.slop_ns:
                    matches += [(run, pred, self.labels[nearest]) for run, pred in preds]
                    continue
            self.unmatched_predictions += len(preds)
        self.waiting.clear()
        return matches


def _score_labels(run: _ModelRun, pred: np.ndarray, labels: np.ndarray, topic: str) -> None:
    num_classes = run.candidate.num_classes
    if labels.shape != pred.shape:
        raise ReplayError(
            f"labels on {topic} are {labels.shape[1]}×{labels.shape[0]}, the visible frames "
            f"{pred.shape[1]}×{pred.shape[0]}: labels must be in the visible camera's pixels"
        )
    if run.label_mismatch is not None:
        return
    try:
        cm = confusion_matrix(pred, labels, num_classes)
    except ValueError as err:
        # Not an error of the bag: a head with other classes (e.g. a label-free one) cannot be scored.
        run.label_mismatch = f"labels on {topic} do not fit the head's {num_classes} classes ({err})"
        print(f"ssvif-replay: no mIoU for {run.candidate.name}: {run.label_mismatch}", file=sys.stderr)
        return
    run.confusion = cm if run.confusion is None else run.confusion + cm
    run.labelled_frames += 1


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def _mean_metrics(rows: Sequence[dict[str, float] | None]) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    for name in METRIC_NAMES:
        values = [r[name] for r in rows if r is not None and not math.isnan(r[name])]
        means[name] = float(np.mean(values)) if values else None
    return means


# --- the replay --------------------------------------------------------------------------------------------


class _Session:
    """One replay's state: the bag, the candidates' runs, the pairing, the outputs and what was counted.

    :meth:`read` goes through the bag in log-time order (decode, pair, :meth:`process` each pair);
    :func:`replay` opens and closes everything around it and writes the report from this state."""

    def __init__(
        self, bag: Any, candidates: Sequence[Candidate], opts: ReplayOptions, out_dir: Path, stack: Any
    ):
        opts, self.input_types = _camera_inputs(bag, opts)
        self.bag, self.opts, self.stack, self.timer = bag, opts, stack, _PhaseTimer()
        self.candidates = list(candidates)
        self.bag_out = out_dir / "fused_bag"
        self.labels_topic = _check_topics(bag, opts)
        self.counts, self.bag_topics = bag.message_counts(), bag.topics()
        self.sync = create_sync(
            opts.sync_policy,
            opts.queue_size,
            opts.slop_s,
            diff_window=max(1000, self.counts[opts.visible_topic]),
        )
        self.processor = PairProcessor(
            candidates[0].fuser, ThermalToU8(**opts.thermal), opts.homography, opts.max_aspect_mismatch
        )
        self.runs = [_ModelRun(c) for c in candidates]
        self._name_topics()
        self.writer = None
        self.matcher = _LabelMatcher(int(opts.slop_s * NS_PER_S))
        self.topics = [opts.visible_topic, opts.thermal_topic] + (
            [self.labels_topic] if self.labels_topic else []
        )
        self.index_of = {opts.visible_topic: VISIBLE, opts.thermal_topic: THERMAL}
        expected = self.counts[opts.visible_topic]
        self.expected_pairs = min(expected, opts.max_frames) if opts.max_frames is not None else expected
        spread = np.linspace(0, max(self.expected_pairs - 1, 0), max(1, opts.contact_frames))
        self.sheet_targets = set(np.unique(spread.round().astype(int)))
        self.sheet_rows: list[dict[str, Any]] = []
        self.last_sheet: dict[str, Any] | None = None
        self.frames: list[dict[str, Any]] = []
        self.malformed = {"visible": 0, "thermal": 0, "labels": 0}
        self.aspect_dropped = 0
        self.stamp_ranges: dict[str, list[int]] = {}
        self.received = {t: 0 for t in self.topics}
        self.bar = self._progress_bar()

    def _name_topics(self) -> None:
        """Output topics per run (one namespace per model when several), and the overlay of a head."""
        ns = "/" + self.opts.output_namespace.strip("/") if self.opts.output_namespace.strip("/") else ""
        for run in self.runs:
            base = f"{ns}/{_slug(run.candidate.name)}" if len(self.runs) > 1 else ns
            run.topics["image"] = f"{base}/fused/image"
            if run.candidate.has_segmentation:
                from ssvif_ros.fusion.overlay import class_overlay

                cand = run.candidate
                run.overlay = class_overlay(cand.class_names, cand.num_classes, self.opts.overlay_alpha)
                run.topics["segmentation"] = f"{base}/fused/segmentation"
                run.topics["overlay"] = f"{base}/fused/overlay"

    def _progress_bar(self) -> Any:
        total = sum(self.counts[t] for t in self.topics)
        show = self.opts.progress
        if show is None:
            show = total >= 100 and sys.stderr.isatty()
        if not show:
            return None
        from tqdm import tqdm

        return self.stack.enter_context(tqdm(total=self.expected_pairs, desc="replay", unit="pair"))

    # --- per pair ------------------------------------------------------------------------------------------

    def process(self, vis: _Frame, therm: _Frame, spread_ns: int) -> None:
        """Thermal gain and registration once, then every candidate on the pair (the node's per-pair code)."""
        index, opts = len(self.frames), self.opts
        try:
            self.processor.check_aspect(vis.array.shape, therm.array.shape)
        except PairDropped:
            self.aspect_dropped += 1
            return
        if not self.frames:  # first pair: settle the model at this size, as the node does at start
            self._warmup(vis.array.shape)
        with self.timer("thermal"):
            ir = self.processor.prepare(vis.array, therm.array)  # the node's per-pair path
        record: dict[str, Any] = {
            "frame": index,
            "visible_stamp_ns": vis.stamp_ns,
            "thermal_stamp_ns": therm.stamp_ns,
            "stamp_diff_ms": spread_ns / 1e6,
            "models": {},
        }
        want_metrics = opts.metrics_every > 0 and index % opts.metrics_every == 0
        sheet: dict[str, Any] = {"visible": vis.array, "thermal": ir, "fused": {}, "overlay": {}}
        for run in self.runs:
            record["models"][run.candidate.name] = self._fuse(run, vis, ir, want_metrics, sheet)
        self.frames.append(record)
        sheet["frame"], sheet["stamp_ns"] = index, vis.stamp_ns
        if index in self.sheet_targets:
            self.sheet_rows.append(sheet)
        self.last_sheet = sheet  # shown too when the bag had fewer pairs than expected
        if self.bar is not None:
            self.bar.update(1)

    def _warmup(self, shape: tuple[int, ...]) -> None:
        with self.timer("warmup"):
            for run in self.runs:
                warmup = getattr(run.candidate.fuser, "warmup", None)
                if warmup is not None:
                    warmup(shape[0], shape[1], run.candidate.has_segmentation)

    def _fuse(
        self, run: _ModelRun, vis: _Frame, ir: np.ndarray, want_metrics: bool, sheet: dict[str, Any]
    ) -> dict[str, Any]:
        """One candidate on one pair: fuse, metrics, overlay, label scores, outputs; its frame entry."""
        cand, timer = run.candidate, self.timer
        result, seconds = timed_fuse(cand.fuser, vis.array, ir, cand.has_segmentation)
        timer.add("inference", seconds)
        run.inference_s.append(seconds)
        entry: dict[str, Any] = {"inference_ms": seconds * 1e3}
        metrics = None
        if want_metrics:
            with timer("metrics"):
                metrics = evaluate_fusion(vis.array, ir, result.image)
            entry.update(metrics)
        run.metrics.append(metrics)
        overlay = None
        if result.labels is not None:
            with timer("overlay"):
                overlay = run.overlay.blend(result.image, result.labels)
            if self.labels_topic:
                with timer("labels"):
                    truth = self.matcher.add_prediction(vis.stamp_ns, run, result.labels)
                    if truth is not None:
                        _score_labels(run, result.labels, truth, self.labels_topic)
        if self.opts.output_bag:
            with timer("write"):
                self._write(run, result, overlay, vis)
        sheet["fused"][cand.name] = result.image
        if overlay is not None:
            sheet["overlay"][cand.name] = overlay
        return entry

    def _write(self, run: _ModelRun, result: Any, overlay: np.ndarray | None, vis: _Frame) -> None:
        if self.writer is None:
            self.writer = self.stack.enter_context(
                open_writer(self.bag_out, self.opts.output_storage, self.opts.output_bag_format)
            )
            for r in self.runs:
                for topic in r.topics.values():
                    self.writer.add_topic(topic, IMAGE_TYPE)
        outputs = [("image", result.image, "rgb8")]
        if result.labels is not None:
            outputs += [("segmentation", result.labels, "mono8"), ("overlay", overlay, "rgb8")]
        for key, array, encoding in outputs:
            msg = make_image_msg(array, encoding, vis.stamp_ns, vis.frame_id)
            self.writer.write(run.topics[key], vis.log_ns, msg)

    # --- the bag -------------------------------------------------------------------------------------------

    def read(self) -> None:
        """Every message in log-time order: decode, pair, process; stop after ``max_frames`` pairs (labels
        logged within the slop after the last pair are still read)."""
        opts, timer = self.opts, self.timer
        done, drain_until = False, None
        messages = iter(self.bag.messages(self.topics))
        while True:
            with timer("read"):
                item = next(messages, None)
            if item is None:
                break
            topic, _, log_ns, msg = item
            if done:
                if drain_until is None or log_ns > drain_until:
                    break
                if topic != self.labels_topic:
                    continue
            self.received[topic] += 1
            with timer("decode"):
                array = self._decode(topic, msg)
                if array is None:
                    continue
                stamp = stamp_ns(msg)
            span = self.stamp_ranges.setdefault(topic, [stamp, stamp])
            span[0], span[1] = min(span[0], stamp), max(span[1], stamp)
            if topic == self.labels_topic:
                with timer("labels"):
                    for run, pred, truth in self.matcher.add_label(stamp, np.array(array)):
                        _score_labels(run, pred, truth, self.labels_topic)
                continue
            with timer("sync"):
                pairs = self.sync.add(
                    self.index_of[topic], stamp, _Frame(array, stamp, log_ns, msg.header.frame_id)
                )
            for pair in pairs:
                self.process(pair.items[VISIBLE], pair.items[THERMAL], pair.spread_ns)
                if opts.max_frames is not None and len(self.frames) >= opts.max_frames:
                    done = True
                    drain_until = log_ns + int(opts.slop_s * NS_PER_S) if self.labels_topic else None
                    break
        if not done:
            self.sync.flush()

    def _decode(self, topic: str, msg: Any) -> np.ndarray | None:
        """The message's pixels, or None (counted as malformed) when it cannot be decoded."""
        try:
            if topic == self.labels_topic:
                array = image_to_numpy(msg, topic)
                if array.ndim != 2:
                    raise MalformedImage(topic, "encoding", f"labels must be mono8, got {msg.encoding!r}")
                return array
            role = self.index_of[topic]
            return INPUT_DECODERS[self.input_types[topic]][role](msg, topic)
        except MalformedImage:
            role = "labels" if topic == self.labels_topic else ("visible", "thermal")[self.index_of[topic]]
            self.malformed[role] += 1
            return None

    def finish(self) -> None:
        """The last contact-sheet row, the last label scores; a :class:`ReplayError` when nothing paired."""
        last = self.last_sheet
        if len(self.sheet_rows) < self.opts.contact_frames and last is not None:
            if all(r is not last for r in self.sheet_rows):
                self.sheet_rows.append(last)
        if self.labels_topic:
            for run, pred, truth in self.matcher.finish():
                _score_labels(run, pred, truth, self.labels_topic)
        if not self.frames:
            raise ReplayError(self._why_no_pairs())

    def _why_no_pairs(self) -> str:
        opts, detail = self.opts, []
        for role, topic in (("visible", opts.visible_topic), ("thermal", opts.thermal_topic)):
            span = self.stamp_ranges.get(topic)
            rng = f"stamps {span[0] / 1e9:.3f} .. {span[1] / 1e9:.3f} s" if span else "no decodable message"
            detail.append(
                f"{role} {topic}: {self.received[topic]} msgs, {self.malformed[role]} malformed, {rng}"
            )
        why = (
            f"{self.aspect_dropped} pair(s) dropped for an aspect-ratio mismatch above "
            f"{opts.max_aspect_mismatch:g} (--max-aspect-mismatch)"
            if self.aspect_dropped
            else f"no visible/thermal stamps within the slop {opts.slop_s:g} s "
            f"(--slop, policy {opts.sync_policy})"
        )
        return (
            f"no pairable frames in bag {self.bag.path}: {why}.\n  "
            + "\n  ".join(detail)
            + f"\nThe bag has:\n{self.bag.describe()}"
        )


def replay(
    bag_path: str | Path, candidates: Sequence[Candidate], opts: ReplayOptions, out_dir: str | Path
) -> dict:
    """Replay ``bag_path`` through every candidate; write the outputs into ``out_dir``; return the summary.

    Raises :class:`ReplayError` for missing/mistyped topics or a bag with no pairable frames (the message
    lists the bag's topics), :class:`~ssvif_ros.io.bags.BagError` for an unreadable bag.
    """
    if not candidates:
        raise ReplayError("no model to replay with")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ReplayError(f"model names must be unique in one replay, got {names}")
    if opts.metrics_every < 0:
        raise ReplayError(f"--metrics-every must be >= 0, got {opts.metrics_every}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bag_out = out_dir / "fused_bag"
    if bag_out.exists():
        if not (bag_out / "metadata.yaml").is_file():
            raise ReplayError(f"{bag_out} exists and is not a bag from an earlier replay; move it away")
        shutil.rmtree(bag_out)
    started = time.perf_counter()
    with open_reader(bag_path) as bag, contextlib.ExitStack() as stack:
        session = _Session(bag, candidates, opts, out_dir, stack)
        session.read()
        session.finish()
        loop_s = time.perf_counter() - started
    return _write_report(session, bag_path, out_dir, loop_s)


def _write_report(session: _Session, bag_path: str | Path, out_dir: Path, loop_s: float) -> dict:
    """summary.json, frames.csv, the contact sheet, the plots and report.md; returns the summary."""
    timer, runs = session.timer, session.runs
    with timer("report"):
        summary = _summarise(session, bag_path, loop_s)
        _write_frames_csv(out_dir / "frames.csv", session.frames, runs)
        files = {"summary": "summary.json", "frames": "frames.csv"}
        if session.sheet_rows:
            _write_contact_sheet(out_dir / "contact_sheet.png", session.sheet_rows, runs)
            files["contact_sheet"] = "contact_sheet.png"
        if session.opts.plots:
            files.update(_write_plots(out_dir, session.frames, runs, session.opts.frame_notes))
        if session.writer is not None:
            files["output_bag"] = "fused_bag"
        files["report"] = "report.md"
        summary["files"] = files
    summary["timing"]["phases_s"]["report"] = timer.seconds.get("report", 0.0)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default) + "\n")
    (out_dir / "report.md").write_text(_markdown(summary))
    return summary


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _summarise(session: _Session, bag_path: str | Path, loop_s: float) -> dict:
    """The summary of a finished session (see the module doc for its content)."""
    opts, runs, frames, timer = session.opts, session.runs, session.frames, session.timer
    labels_topic, matcher = session.labels_topic, session.matcher
    bag_out = session.bag_out if session.writer is not None else None
    stats = session.sync.stats.summary(["visible", "thermal"])
    diffs = [f["stamp_diff_ms"] for f in frames]
    phases = dict(timer.seconds)
    io_pairing = sum(phases.get(k, 0.0) for k in ("read", "decode", "sync", "write"))
    compute = sum(phases.get(k, 0.0) for k in ("thermal", "inference", "overlay", "labels"))
    models = []
    for run in runs:
        cand = run.candidate
        entry: dict[str, Any] = {
            "name": cand.name,
            "kind": cand.kind,
            "source": cand.source,
            "segmentation": cand.has_segmentation,
            "frames": len(run.inference_s),
            "inference_ms": {
                "mean": float(np.mean(run.inference_s)) * 1e3,
                "p50": _percentile(run.inference_s, 50) * 1e3,
                "p95": _percentile(run.inference_s, 95) * 1e3,
            },
            "metrics_frames": sum(1 for m in run.metrics if m is not None),
            "metrics_mean": _mean_metrics(run.metrics),
            "miou": None,
            "miou_note": run.label_mismatch,
            "labelled_frames": run.labelled_frames,
            "topics": run.topics if bag_out is not None else {},
        }
        if run.confusion is not None:
            entry["miou"] = mean_iou(run.confusion)
            entry["iou_per_class"] = [
                None if math.isnan(v) else float(v) for v in iou_per_class(run.confusion)
            ]
        models.append(entry)
    pairing = {
        "policy": opts.sync_policy,
        "slop_s": opts.slop_s,
        "queue_size": opts.queue_size,
        **stats,
        "fused_pairs": len(frames),
        "malformed": session.malformed,
        "aspect_dropped": session.aspect_dropped,
        "stamp_diff_ms": {
            "mean": float(np.mean(diffs)),
            "p50": _percentile(diffs, 50),
            "p95": _percentile(diffs, 95),
            "max": float(np.max(diffs)),
        },
    }
    return {
        "bag": str(bag_path),
        "topics": {
            t: {"type": session.bag_topics[t], "messages": session.counts.get(t, 0)}
            for t in session.bag_topics
        },
        "inputs": {"visible": opts.visible_topic, "thermal": opts.thermal_topic, "labels": labels_topic},
        "settings": {
            "thermal": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.thermal.items()},
            "homography": [float(v) for v in np.asarray(opts.homography, dtype=float).ravel()],
            "max_aspect_mismatch": opts.max_aspect_mismatch,
            "max_frames": opts.max_frames,
            "metrics_every": opts.metrics_every,
        },
        "pairing": pairing,
        "labels": {
            "topic": labels_topic,
            "received": matcher.received,
            "predictions_without_label": matcher.unmatched_predictions,
        },
        "models": models,
        "timing": {
            "wall_s": loop_s,
            "pairs_per_s": len(frames) / loop_s if loop_s > 0 else None,
            "phases_s": phases,
            "io_and_pairing_s": io_pairing,
            "compute_s": compute,
            "io_and_pairing_share": io_pairing / loop_s if loop_s > 0 else None,
            "io_and_pairing_share_without_metrics": (
                io_pairing / (io_pairing + compute) if io_pairing + compute > 0 else None
            ),
        },
        "output_bag": str(bag_out) if bag_out is not None else None,
    }


def _write_frames_csv(path: Path, frames: list[dict], runs: list[_ModelRun]) -> None:
    columns = [
        "frame",
        "model",
        "visible_stamp_ns",
        "thermal_stamp_ns",
        "stamp_diff_ms",
        "inference_ms",
        *METRIC_NAMES,
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for record in frames:
            for run in runs:
                entry = record["models"][run.candidate.name]
                row = [
                    record["frame"],
                    run.candidate.name,
                    record["visible_stamp_ns"],
                    record["thermal_stamp_ns"],
                ]
                row += [f"{record['stamp_diff_ms']:.3f}", f"{entry['inference_ms']:.3f}"]
                row += [f"{entry[m]:.6g}" if m in entry else "" for m in METRIC_NAMES]
                writer.writerow(row)


def _write_contact_sheet(path: Path, rows: list[dict], runs: list[_ModelRun]) -> None:
    from PIL import Image

    from ssvif_ros.eval.report import contact_sheet, labelled

    height, width = rows[0]["visible"].shape[:2]
    size = (320, max(1, round(height * 320 / width)))  # tiles 320 px wide: readable captions at any size

    def tile(image: np.ndarray, text: str):
        return labelled(np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)), text)

    tiles = []
    for row in rows:
        line = [
            tile(row["visible"], f"#{row['frame']} visible"),
            tile(row["thermal"], "thermal (registered)"),
        ]
        for run in runs:
            name = run.candidate.name
            line.append(tile(row["fused"][name], f"fused: {name}"))
            if name in row["overlay"]:
                line.append(tile(row["overlay"][name], f"overlay: {name}"))
        tiles.append(line)
    contact_sheet(tiles, scale=1.0).save(path)


def _shade_notes(axes: Sequence[Any], frames: list[dict], notes: dict[int, str]) -> None:
    """Shade the frames of each note (e.g. night / fog / day) in every axis, with one legend entry each."""
    import matplotlib.pyplot as plt

    spans: list[tuple[str, int, int]] = []  # (note, first frame, last frame) of consecutive runs
    for f in frames:
        note = notes.get(f["visible_stamp_ns"])
        if note is not None and spans and spans[-1][0] == note and spans[-1][2] == f["frame"] - 1:
            spans[-1] = (note, spans[-1][1], f["frame"])
        elif note is not None:
            spans.append((note, f["frame"], f["frame"]))
    colours = {n: plt.get_cmap("Pastel1")(i % 9) for i, n in enumerate(dict.fromkeys(n for n, _, _ in spans))}
    for ax in axes:
        for note, first, last in spans:
            ax.axvspan(first - 0.5, last + 0.5, color=colours[note], alpha=0.6, linewidth=0, zorder=0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in colours.values()]
    if handles:
        axes[-1].legend(handles, list(colours), fontsize=7, loc="lower right", title="frames", ncols=3)


def _write_plots(
    out_dir: Path, frames: list[dict], runs: list[_ModelRun], notes: dict[int, str] | None = None
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}

    def save(fig: Any, key: str, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=90)
        plt.close(fig)
        files[key] = name

    index = [f["frame"] for f in frames]
    fig, axes = plt.subplots(len(METRIC_NAMES), 1, figsize=(8, 1.8 * len(METRIC_NAMES)), sharex=True)
    for ax, name in zip(axes, METRIC_NAMES, strict=True):
        for run in runs:
            pts = [(i, m[name]) for i, m in zip(index, run.metrics, strict=True) if m is not None]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True), marker=".", markersize=3, linewidth=1, label=run.candidate.name
                )
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    if notes:
        _shade_notes(axes, frames, notes)
    axes[-1].set_xlabel("fused pair")
    fig.suptitle("fusion metrics over the bag")
    save(fig, "metrics_plot", "metrics.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([f["stamp_diff_ms"] for f in frames], bins=40, color="tab:blue")
    ax.set_xlabel("|visible − thermal| header stamp difference of a pair, ms")
    ax.set_ylabel("pairs")
    save(fig, "stamp_diff_plot", "stamp_diff.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for run in runs:
        ax.hist(np.asarray(run.inference_s) * 1e3, bins=40, alpha=0.6, label=run.candidate.name)
    ax.set_xlabel("inference time per pair (engine.fuse), ms")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=7)
    save(fig, "inference_time_plot", "inference_time.png")
    return files


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _markdown(s: dict) -> str:
    p, t = s["pairing"], s["timing"]
    lines = [f"# Replay of `{s['bag']}`", ""]
    lines += ["## Bag", "", "| topic | type | messages |", "|---|---|---|"]
    lines += [f"| `{k}` | {v['type']} | {v['messages']} |" for k, v in s["topics"].items()]
    inputs = s["inputs"]
    lines += [
        "",
        f"Inputs: visible `{inputs['visible']}`, thermal `{inputs['thermal']}`, labels "
        + (f"`{inputs['labels']}`" if inputs["labels"] else "none")
        + ".",
        "",
        "Registration (thermal → visible homography, row-major): `"
        + ", ".join(f"{v:.6g}" for v in s["settings"]["homography"])
        + "`.",
        "",
        "## Pairing",
        "",
        f"Policy **{p['policy']}**, slop {p['slop_s']:g} s, queue {p['queue_size']}: "
        f"**{p['fused_pairs']} fused pairs** ({p['pairs']} pairs formed; {p['aspect_dropped']} dropped for "
        "the aspect ratio).",
        "",
        "| input | received | paired | unmatched | malformed |",
        "|---|---|---|---|---|",
    ]
    for name, v in p["inputs"].items():
        lines.append(
            f"| {name} | {v['received']} | {v['paired']} | {v['unmatched']} | {p['malformed'][name]} |"
        )
    d = p["stamp_diff_ms"]
    lines += [
        "",
        f"Stamp difference within a pair: mean {_fmt(d['mean'], 2)} ms, p50 {_fmt(d['p50'], 2)} ms, "
        f"p95 {_fmt(d['p95'], 2)} ms, max {_fmt(d['max'], 2)} ms ([histogram](stamp_diff.png)).",
        "",
        "## Models",
        "",
        "| model | kind | pairs | inference p50 ms | p95 ms | " + " | ".join(METRIC_NAMES) + " | mIoU |",
        "|---|---|---|---|---|" + "---|" * len(METRIC_NAMES) + "---|",
    ]
    for m in s["models"]:
        mm = m["metrics_mean"]
        lines.append(
            f"| {m['name']} | {m['kind']} | {m['frames']} | {_fmt(m['inference_ms']['p50'], 1)} | "
            f"{_fmt(m['inference_ms']['p95'], 1)} | "
            + " | ".join(_fmt(mm[k]) for k in METRIC_NAMES)
            + f" | {_fmt(m['miou'])} |"
        )
    metric_frames = s["models"][0]["metrics_frames"]
    lines += [
        "",
        f"Metrics are means over {metric_frames} pair(s) "
        f"(--metrics-every {s['settings']['metrics_every']}), "
        "conventions in `ssvif_ros/eval/metrics.py`; mIoU over "
        f"{max(m['labelled_frames'] for m in s['models'])} labelled frame(s) "
        "(– : no labels topic, no segmentation head, or label ids outside the head's classes). mIoU "
        "compares class ids directly: it means something only for a head trained with these labels' classes "
        "(a label-free SSVIF head's ids are its own). Per pair: [frames.csv](frames.csv).",
        *[f"No mIoU for {m['name']}: {m['miou_note']}." for m in s["models"] if m.get("miou_note")],
        "",
        "## Time",
        "",
        f"{t['wall_s']:.2f} s for {p['fused_pairs']} pairs "
        f"({_fmt(t['pairs_per_s'], 2)} pairs/s, all models). "
        f"Bag I/O + decoding + pairing + output writing: {t['io_and_pairing_s']:.2f} s "
        f"({_fmt(100 * (t['io_and_pairing_share'] or 0), 1)} % of the wall time, "
        f"{_fmt(100 * (t['io_and_pairing_share_without_metrics'] or 0), 1)} % without the metrics).",
        "",
        "Phases (report: after the loop, not in the wall time above):",
        "",
        "| phase | s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} |" for k, v in t["phases_s"].items()]
    files = s.get("files", {})
    lines += ["", "## Files", ""]
    if "contact_sheet" in files:
        lines += ["![contact sheet](contact_sheet.png)", ""]
    for key, title in (
        ("metrics_plot", "metrics over frames"),
        ("stamp_diff_plot", "stamp-difference histogram"),
        ("inference_time_plot", "inference-time histogram"),
    ):
        if key in files:
            lines.append(f"- [{title}]({files[key]})")
    if s["output_bag"]:
        topics = sorted({tp for m in s["models"] for tp in m["topics"].values()})
        lines.append(f"- [output bag](fused_bag/) with {', '.join(f'`{x}`' for x in topics)}")
    lines += ["- [summary.json](summary.json), [frames.csv](frames.csv)", ""]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------------------


def read_frame_notes(path: Path) -> dict[int, str]:
    """``stamp_ns,note`` rows of a CSV (header line first) -> {stamp: note}; ReplayError naming the file."""
    import csv

    try:
        with open(path, newline="") as f:
            return {int(row["stamp_ns"]): row["note"] for row in csv.DictReader(f)}
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ReplayError(f"--frame-notes {path}: expected a CSV with columns stamp_ns,note ({err})") from err


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssvif-replay",
        description="Fuse a rosbag2 bag offline like the node; metrics, pairing statistics, timing, report.",
    )
    p.add_argument("bag", type=Path, help="rosbag2 directory (mcap or sqlite3)")
    p.add_argument("--out", type=Path, default=Path("out/replay"), help="output folder (default out/replay)")
    model = p.add_argument_group("model")
    model.add_argument("--weights", help="checkpoint .safetensors (default: the shipped model)")
    model.add_argument("--model", help="model name with random weights (cost only), or a baseline name")
    model.add_argument(
        "--compare", nargs="+", metavar="SPEC", help="several checkpoints / model / baseline names"
    )
    model.add_argument(
        "--backend",
        default=None,
        help="auto (the node's default: ONNX Runtime on CPU) | torch | onnxruntime | passthrough (benchmark)",
    )
    model.add_argument("--device", default=None, help="cpu | cuda[:N] | auto (default cpu)")
    model.add_argument("--precision", default=None, choices=("fp32", "fp16"))
    model.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="inference threads (0: automatic from the usable cores, printed; see "
        "ssvif_ros/fusion/threads.py)",
    )
    node = p.add_argument_group("node settings (default: the node's; --params-file reads its YAML)")
    node.add_argument("--params-file", type=Path, help="the node's ROS 2 params file, e.g. config/fuse.yaml")
    node.add_argument(
        "--node-name",
        default="/fuse_node",
        help="the node whose section of --params-file applies, fully qualified as ROS 2 matches it "
        "(default /fuse_node; e.g. /robot1/fuse_node for launch namespace:=robot1)",
    )
    node.add_argument("--visible-topic", default=DEFAULT_TOPICS["visible"])
    node.add_argument("--thermal-topic", default=DEFAULT_TOPICS["thermal"])
    node.add_argument(
        "--labels-topic",
        default=None,
        help=f"ground-truth mono8 topic (default {DEFAULT_TOPICS['labels']} if present; '' = none)",
    )
    node.add_argument("--sync-policy", choices=POLICIES, default=None)
    node.add_argument("--slop", type=float, default=None, help="largest stamp difference of a pair, s")
    node.add_argument("--queue-size", type=int, default=None)
    node.add_argument("--thermal-mode", choices=("auto", "fixed"), default=None)
    node.add_argument("--thermal-percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None)
    node.add_argument("--thermal-smoothing", type=float, default=None)
    node.add_argument("--thermal-range", type=float, nargs=2, metavar=("MIN", "MAX"), default=None)
    node.add_argument("--thermal-subsample", type=int, default=None)
    node.add_argument("--homography", type=float, nargs=9, default=None, help="9 numbers, row-major")
    node.add_argument("--max-aspect-mismatch", type=float, default=None)
    node.add_argument("--overlay-alpha", type=float, default=None)
    run = p.add_argument_group("run")
    run.add_argument("--max-frames", type=int, default=None, help="stop after this many fused pairs")
    run.add_argument("--metrics-every", type=int, default=1, help="fusion metrics every N pairs (0: none)")
    run.add_argument("--no-output-bag", action="store_true")
    run.add_argument("--output-storage", choices=STORAGES, default="mcap")
    run.add_argument(
        "--output-bag-format", choices=tuple(BAG_FORMATS), default="kilted", help=BAG_FORMAT_HELP
    )
    run.add_argument("--output-namespace", default="/fuse_node", help="prefix of the output topics")
    run.add_argument("--contact-frames", type=int, default=4)
    run.add_argument("--no-plots", action="store_true")
    run.add_argument(
        "--frame-notes",
        type=Path,
        help="CSV with columns stamp_ns,note (visible header stamps of the bag): frames shaded by note in "
        "metrics.png (e.g. night / fog / day)",
    )
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    return p


CLI_PARAMETERS = {
    "sync_policy": "sync.policy",
    "slop": "sync.slop_s",
    "queue_size": "sync.queue_size",
    "thermal_mode": "thermal.mode",
    "thermal_smoothing": "thermal.smoothing",
    "thermal_range": "thermal.fixed_range",
    "thermal_subsample": "thermal.subsample",
    "homography": "registration.homography",
    "max_aspect_mismatch": "registration.max_aspect_mismatch",
    "overlay_alpha": "outputs.overlay_alpha",
}
"""Replay option (argparse dest) -> the node parameter it overrides."""


def node_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(the node's validated settings, the params file's raw values): node default < params file <
    option, validated exactly as the node validates them (an unknown or bad name is a ReplayError)."""
    try:
        file_values = read_params_file(args.params_file, args.node_name) if args.params_file else {}
        values = dict(file_values)
        for dest, name in CLI_PARAMETERS.items():
            if getattr(args, dest) is not None:
                values[name] = getattr(args, dest)
        if args.thermal_percentiles:
            values["thermal.low_percentile"], values["thermal.high_percentile"] = args.thermal_percentiles
        return parse_config(values, defaults=True), file_values
    except ConfigError as err:
        where = f" (params file {args.params_file} or options)" if args.params_file else " (options)"
        raise ReplayError(f"{err}{where}") from None


def options_from_args(args: argparse.Namespace) -> tuple[ReplayOptions, dict[str, Any]]:
    """(:class:`ReplayOptions`, model settings) from parsed arguments: option > params file > node default."""
    node, file_values = node_settings(args)
    labels_topic = DEFAULT_TOPICS["labels"] if args.labels_topic is None else args.labels_topic
    opts = ReplayOptions(
        visible_topic=args.visible_topic,
        thermal_topic=args.thermal_topic,
        labels_topic=labels_topic or None,
        labels_required=bool(args.labels_topic),
        sync_policy=node.sync_policy,
        slop_s=node.sync_slop_s,
        queue_size=node.sync_queue_size,
        thermal=node.thermal_settings(),
        homography=node.homography,
        max_aspect_mismatch=node.max_aspect_mismatch,
        overlay_alpha=node.overlay_alpha,
        max_frames=args.max_frames,
        metrics_every=args.metrics_every,
        output_bag=not args.no_output_bag,
        output_storage=args.output_storage,
        output_bag_format=args.output_bag_format,
        output_namespace=args.output_namespace,
        contact_frames=args.contact_frames,
        frame_notes=read_frame_notes(args.frame_notes) if args.frame_notes else {},
        plots=not args.no_plots,
        progress=args.progress,
    )
    model = {
        "weights": args.weights or node.weights or None,
        "model": args.model,
        "backend": args.backend or file_values.get("backend") or NODE.backend,  # the node's: auto
        "device": args.device or file_values.get("device") or "cpu",  # the replay's default: the CPU
        "precision": args.precision or node.precision,
    }
    return opts, model


def candidates_from_args(args: argparse.Namespace, model: dict[str, Any]) -> list[Candidate]:
    """The fusers to run: ``--compare`` specs, else ``--weights``/``--model``, else the shipped model."""
    from ssvif_ros.fusion.engine import default_weights

    common = {"backend": model["backend"], "device": model["device"], "precision": model["precision"]}
    if args.compare:
        return [load_candidate(spec, **common) for spec in args.compare]
    if model["weights"]:
        return [load_candidate(str(model["weights"]), **common)]
    if model["model"]:
        return [load_candidate(model["model"], **common)]
    if model["backend"] == "passthrough":
        return [load_candidate("passthrough", **common)]
    shipped = default_weights()
    if shipped is None:
        raise ReplayError(
            "no --weights given and no trained model ships with this version "
            "(ssvif_ros/weights/lightunet_ssvif.safetensors): give --weights PATH, or --model lightunet "
            "for a random-init model (cost only), or --model laplacian for a classic baseline"
        )
    return [load_candidate(str(shipped), **common)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        opts, model = options_from_args(args)
        print(f"ssvif-replay: {apply_threads(args.torch_threads, model['device'])}", file=sys.stderr)
        candidates = candidates_from_args(args, model)
        for cand in candidates:
            if cand.kind == "untrained":
                print(
                    f"ssvif-replay: warning: {cand.name}: random weights, output is not a meaningful fusion",
                    file=sys.stderr,
                )
        summary = replay(args.bag, candidates, opts, args.out)
    except (ReplayError, BagError, ValueError) as err:
        print(f"ssvif-replay: error: {err}", file=sys.stderr)
        return 2
    p, t = summary["pairing"], summary["timing"]
    print(
        f"{p['fused_pairs']} pairs fused in {t['wall_s']:.1f} s ({t['pairs_per_s']:.2f}/s); "
        f"report: {Path(args.out) / 'report.md'}"
    )
    for m in summary["models"]:
        mm = m["metrics_mean"]
        shown = ", ".join(f"{k} {_fmt(mm[k])}" for k in ("EN", "MI", "VIF", "Qabf", "SSIM"))
        print(
            f"  {m['name']}: inference p50 {m['inference_ms']['p50']:.1f} ms; {shown}; mIoU {_fmt(m['miou'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
