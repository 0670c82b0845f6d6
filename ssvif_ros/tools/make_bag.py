"""``ssvif-make-bag``: a rosbag2 bag (mcap or sqlite3) of visible + thermal ``sensor_msgs/Image`` topics
from a paired folder (real or synthetic), imitating a real camera rig.

Timeline (all integer ns): visible frame ``i`` is captured at ``start + i / rate``; thermal frame ``j`` at
``start + thermal_offset + j / thermal_rate`` (its own clock, e.g. a 9 Hz camera beside a 30 Hz one) and
shows the folder pair nearest in time. Each header stamp gets an independent uniform jitter in
``±jitter`` (capture-time noise of the driver), and each frame is dropped with its topic's probability.
The bag's log (receive) time is the header stamp plus ``latency``. Everything is drawn from one
``numpy`` generator seeded with ``--seed``: the same arguments give the same bag, byte for byte in the
messages.

Folder pairs are used in name order and repeated cyclically when ``--frames`` asks for more. Ground-truth
labels (when the folder has them) go to a third topic as ``mono8`` with the visible frame's header, only
for visible frames that were not dropped. 8-bit thermal written as ``mono16``/``16UC1`` becomes
``counts = offset + gain · value`` (``--counts``; a radiometric-looking range), 16-bit thermal is kept.

Compression as recorded bags usually have it (``--visible-codec jpeg``, ``--thermal-codec png``): the
camera topic becomes image_transport's ``<topic>/compressed`` with ``sensor_msgs/CompressedImage``
messages (16-bit PNG keeps the counts). ``--bag-format humble`` writes metadata Humble's readers accept.

Example::

    ssvif-synthetic --out /tmp/scenes --n 20
    ssvif-make-bag /tmp/scenes --out /tmp/rig.mcap.d --rate 30 --thermal-rate 9 --thermal-size 320x256 \
        --thermal-encoding mono16 --visible-encoding bgr8 --jitter-ms 3 --drop-thermal 0.05 --seed 1
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ssvif_ros.cli import size_arg
from ssvif_ros.data.image_files import DatasetError, read_infrared_raw, read_label, read_visible
from ssvif_ros.data.pairs import PairFiles, match_pairs, resolve_layout
from ssvif_ros.io.bags import (
    BAG_FORMAT_HELP,
    BAG_FORMATS,
    COMPRESSED_IMAGE_TYPE,
    IMAGE_TYPE,
    STORAGES,
    BagError,
    make_compressed_msg,
    make_image_msg,
    open_writer,
)
from ssvif_ros.io.compressed import COMPRESSED_TOPIC_SUFFIX

__all__ = ["BagPlan", "RigOptions", "main", "make_bag", "plan_stamps"]

NS_PER_S = 1_000_000_000
DEFAULT_TOPICS = {"visible": "/camera/image_raw", "thermal": "/thermal/image_raw", "labels": "/camera/labels"}
THERMAL_ENCODINGS = ("auto", "mono8", "mono16", "16UC1")
VISIBLE_ENCODINGS = ("rgb8", "bgr8")
CODECS = {"visible": ("raw", "jpeg", "png"), "thermal": ("raw", "png")}  # raw: sensor_msgs/Image


@dataclass
class RigOptions:
    """How the simulated rig records (see the module docstring for the timeline)."""

    rate_hz: float = 10.0
    thermal_rate_hz: float | None = None  # None: same as rate_hz
    thermal_size: tuple[int, int] | None = None  # (width, height); None: the folder's size
    thermal_offset_ms: float = 0.0
    jitter_ms: float = 0.0
    latency_ms: float = 0.0
    drop_visible: float = 0.0
    drop_thermal: float = 0.0
    thermal_encoding: str = "auto"  # auto: mono8 for 8-bit files, mono16 for 16-bit ones
    visible_encoding: str = "rgb8"
    counts: tuple[float, float] = (8000.0, 32.0)  # 8-bit → 16-bit: offset, gain
    frames: int | None = None  # visible frames; None: one per folder pair
    start_s: float = 1_700_000_000.0
    seed: int = 0
    topics: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    frame_ids: dict[str, str] = field(default_factory=lambda: {"visible": "camera", "thermal": "thermal"})
    labels: bool = True  # write labels when the folder has them
    codecs: dict[str, str] = field(default_factory=lambda: {"visible": "raw", "thermal": "raw"})

    def validate(self) -> None:
        if not self.rate_hz > 0 or not (self.thermal_rate_hz is None or self.thermal_rate_hz > 0):
            raise ValueError(f"rates must be > 0, got {self.rate_hz} and {self.thermal_rate_hz}")
        for name in ("drop_visible", "drop_thermal"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be a probability in [0, 1), got {value}")
        if self.jitter_ms < 0 or self.latency_ms < 0:
            raise ValueError("jitter-ms and latency-ms must be >= 0")
        for role, codec in self.codecs.items():
            if codec not in CODECS[role]:
                raise ValueError(f"{role}-codec must be one of {', '.join(CODECS[role])}, got {codec!r}")
        if self.thermal_encoding not in THERMAL_ENCODINGS:
            raise ValueError(f"thermal encoding must be one of {', '.join(THERMAL_ENCODINGS)}")
        if self.visible_encoding not in VISIBLE_ENCODINGS:
            raise ValueError(f"visible encoding must be one of {', '.join(VISIBLE_ENCODINGS)}")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.start_s < 0:
            raise ValueError(f"start must be >= 0 s, got {self.start_s}")


@dataclass
class BagPlan:
    """Which frames go into the bag: per topic the source pair index, header stamp and log time (ns)."""

    visible: list[tuple[int, int, int]]  # (pair index, stamp_ns, log_ns), dropped frames left out
    thermal: list[tuple[int, int, int]]
    dropped: dict[str, int]


def plan_stamps(num_pairs: int, opts: RigOptions) -> BagPlan:
    """The frame schedule of :class:`RigOptions` for a folder of ``num_pairs`` pairs (deterministic)."""
    opts.validate()
    rng = np.random.default_rng(opts.seed)
    n_vis = opts.frames or num_pairs
    period = NS_PER_S / opts.rate_hz
    th_rate = opts.thermal_rate_hz or opts.rate_hz
    th_period = NS_PER_S / th_rate
    start = round(opts.start_s * NS_PER_S)
    offset = round(opts.thermal_offset_ms * 1e6)
    duration = (n_vis - 1) * period
    n_th = int(np.floor((duration - offset) / th_period + 1e-9)) + 1 if offset <= duration else 0
    jitter = opts.jitter_ms * 1e6
    latency = round(opts.latency_ms * 1e6)

    # One stream of draws in a fixed order: jitters, then drops; so a change of drop rate keeps the stamps.
    vis_jitter = rng.uniform(-jitter, jitter, n_vis) if jitter > 0 else np.zeros(n_vis)
    th_jitter = rng.uniform(-jitter, jitter, n_th) if jitter > 0 else np.zeros(n_th)
    vis_drop = rng.random(n_vis) < opts.drop_visible
    th_drop = rng.random(n_th) < opts.drop_thermal

    visible = []
    for i in range(n_vis):
        if not vis_drop[i]:
            stamp = max(0, start + round(i * period + vis_jitter[i]))
            visible.append((i % num_pairs, stamp, stamp + latency))
    thermal = []
    for j in range(n_th):
        t_rel = offset + j * th_period  # capture time relative to the first visible frame
        if th_drop[j]:
            continue
        nearest_visible = int(np.clip(np.floor(t_rel / period + 0.5), 0, n_vis - 1))
        stamp = max(0, start + round(t_rel + th_jitter[j]))
        thermal.append((nearest_visible % num_pairs, stamp, stamp + latency))
    return BagPlan(visible, thermal, {"visible": int(vis_drop.sum()), "thermal": int(th_drop.sum())})


def _folder_pairs(folder: Path, want_labels: bool) -> list[PairFiles]:
    folders = resolve_layout(folder)
    with_labels = want_labels and folders.label_dir is not None
    pairs, problems = match_pairs(folders, with_labels=with_labels)
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:10])
        raise DatasetError(f"folder {folder}: {len(problems)} pairing problem(s):\n{listed}")
    if not pairs:
        raise DatasetError(f"folder {folder} ({folders.layout} layout) has no visible/infrared pairs")
    return pairs


def _resize_thermal(raw: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Thermal (h, w) uint8/uint16 → ``size`` (width, height), bilinear in float (keeps 16-bit counts)."""
    if size is None or (raw.shape[1], raw.shape[0]) == tuple(size):
        return raw
    resized = np.asarray(Image.fromarray(raw.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
    top = 255 if raw.dtype == np.uint8 else 65535
    return np.clip(np.rint(resized), 0, top).astype(raw.dtype)


def _thermal_array(raw: np.ndarray, encoding: str, counts: tuple[float, float]) -> tuple[np.ndarray, str]:
    """The thermal pixels and encoding to write (8 → 16 bit as ``offset + gain · value`` when asked)."""
    if encoding == "auto":
        encoding = "mono8" if raw.dtype == np.uint8 else "mono16"
    if encoding == "mono8":
        if raw.dtype != np.uint8:
            raise ValueError("thermal encoding mono8 asked for, but the folder holds 16-bit thermal images")
        return raw, encoding
    if raw.dtype == np.uint8:
        offset, gain = counts
        raw = np.clip(np.rint(offset + gain * raw.astype(np.float64)), 0, 65535).astype(np.uint16)
    return raw, encoding


def _camera_message(array: np.ndarray, encoding: str, codec: str, stamp: int, frame_id: str) -> object:
    """A raw ``Image`` in ``encoding`` or, for codec jpeg/png, a ``CompressedImage`` (RGB or gray input)."""
    if codec == "raw":
        return make_image_msg(array, encoding, stamp, frame_id)
    return make_compressed_msg(array, codec, stamp, frame_id)


def make_bag(
    folder: str | Path, out: str | Path, opts: RigOptions, storage: str = "mcap", bag_format: str = "kilted"
) -> dict:
    """Write the bag; returns a JSON-ready summary (topics, counts, drops, encodings, duration)."""
    folder, out = Path(folder), Path(out)
    pairs = _folder_pairs(folder, opts.labels)
    has_labels = opts.labels and all(p.label is not None for p in pairs)
    plan = plan_stamps(len(pairs), opts)
    topics = opts.topics
    # Frames repeat when --frames cycles the folder, and thermal at a higher rate reuses a pair: cache the
    # decoded arrays of one cycle (bounded, so a long real folder streams).
    cached = functools.lru_cache(maxsize=min(len(pairs), 64))

    @cached
    def visible(index: int) -> np.ndarray:
        rgb = read_visible(pairs[index].vis)
        bgr = opts.visible_encoding == "bgr8" and opts.codecs["visible"] == "raw"
        return np.ascontiguousarray(rgb[..., ::-1]) if bgr else rgb

    @cached
    def thermal(index: int) -> tuple[np.ndarray, str]:
        raw = _resize_thermal(read_infrared_raw(pairs[index].ir), opts.thermal_size)
        return _thermal_array(raw, opts.thermal_encoding, opts.counts)

    @cached
    def label(index: int) -> np.ndarray:
        path = pairs[index].label
        ids = read_label(path)  # type: ignore[arg-type]
        if ids.dtype != np.uint8:
            if ids.size and ids.max() > 255:
                raise ValueError(f"label file {path} has class ids > 255 (the labels topic is mono8)")
            ids = ids.astype(np.uint8)
        return ids

    events: list[tuple[int, int, str, int, int]] = []  # (log_ns, order, topic key, pair index, stamp)
    for index, stamp, log in plan.visible:
        events.append((log, 0, "visible", index, stamp))
        if has_labels:
            events.append((log, 2, "labels", index, stamp))
    for index, stamp, log in plan.thermal:
        events.append((log, 1, "thermal", index, stamp))
    events.sort()
    counts = {"visible": 0, "thermal": 0, "labels": 0}
    encodings: dict[str, str] = {"visible": opts.visible_encoding}
    names = {kind: topics[kind] for kind in ("visible", "thermal", "labels")}
    for kind in ("visible", "thermal"):
        if opts.codecs[kind] != "raw":  # image_transport's compressed topic beside the raw name
            names[kind] = topics[kind] + COMPRESSED_TOPIC_SUFFIX
    with open_writer(out, storage, bag_format) as bag:
        out = bag.path
        for kind in ("visible", "thermal", "labels") if has_labels else ("visible", "thermal"):
            compressed = opts.codecs.get(kind, "raw") != "raw"
            bag.add_topic(names[kind], COMPRESSED_IMAGE_TYPE if compressed else IMAGE_TYPE)
        for log, _, kind, index, stamp in events:
            if kind == "visible":
                array, encoding = visible(index), opts.visible_encoding
                frame_id = opts.frame_ids["visible"]
            elif kind == "thermal":
                array, encoding = thermal(index)
                frame_id = opts.frame_ids["thermal"]
            else:
                array, encoding = label(index), "mono8"
                frame_id = opts.frame_ids["visible"]
            encodings[kind] = encoding
            codec = opts.codecs.get(kind, "raw")
            bag.write(names[kind], log, _camera_message(array, encoding, codec, stamp, frame_id))
            counts[kind] += 1
    stamps = [s for _, _, _, _, s in events]
    return {
        "bag": str(out),
        "storage": storage,
        "folder": str(folder),
        "pairs_in_folder": len(pairs),
        "bag_format": bag_format,
        "topics": {k: names[k] for k in counts if counts[k] or k != "labels"},
        "codecs": dict(opts.codecs),
        "messages": counts,
        "dropped": plan.dropped,
        "encodings": encodings,
        "duration_s": (max(stamps) - min(stamps)) / NS_PER_S if stamps else 0.0,
        "seed": opts.seed,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssvif-make-bag",
        description="Write a rosbag2 bag of visible + thermal (+ labels) Image topics from a paired folder.",
    )
    p.add_argument("folder", type=Path, help="paired folder (vi/ + ir/ [+ label/]; real or ssvif-synthetic)")
    p.add_argument("--out", type=Path, required=True, help="bag directory to create (must not exist)")
    p.add_argument("--storage", choices=STORAGES, default="mcap")
    p.add_argument(
        "--bag-format",
        choices=tuple(BAG_FORMATS),
        default="kilted",
        help=BAG_FORMAT_HELP,
    )
    p.add_argument(
        "--visible-codec",
        choices=CODECS["visible"],
        default="raw",
        help="raw: sensor_msgs/Image; jpeg/png: CompressedImage on TOPIC/compressed",
    )
    p.add_argument(
        "--thermal-codec",
        choices=CODECS["thermal"],
        default="raw",
        help="raw: sensor_msgs/Image; png: CompressedImage on TOPIC/compressed (16-bit kept)",
    )
    p.add_argument("--rate", type=float, default=10.0, help="visible frame rate, Hz (default 10)")
    p.add_argument(
        "--thermal-rate", type=float, default=None, help="thermal frame rate, Hz (default: --rate)"
    )
    p.add_argument(
        "--thermal-size", type=size_arg(1), default=None, help="thermal WIDTHxHEIGHT (default: as files)"
    )
    p.add_argument("--thermal-offset-ms", type=float, default=0.0, help="thermal clock offset, ms")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="uniform stamp jitter ±ms, per message")
    p.add_argument("--latency-ms", type=float, default=0.0, help="log time − header stamp, ms")
    p.add_argument("--drop-visible", type=float, default=0.0, help="probability a visible frame is dropped")
    p.add_argument("--drop-thermal", type=float, default=0.0, help="probability a thermal frame is dropped")
    p.add_argument("--thermal-encoding", choices=THERMAL_ENCODINGS, default="auto")
    p.add_argument("--visible-encoding", choices=VISIBLE_ENCODINGS, default="rgb8")
    p.add_argument(
        "--counts",
        type=float,
        nargs=2,
        metavar=("OFFSET", "GAIN"),
        default=(8000.0, 32.0),
        help="8-bit thermal → 16 bit as OFFSET + GAIN·value (default 8000 32)",
    )
    p.add_argument("--frames", type=int, default=None, help="visible frames (default: one per pair; cycles)")
    p.add_argument("--start", type=float, default=1_700_000_000.0, help="first stamp, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--visible-topic", default=DEFAULT_TOPICS["visible"])
    p.add_argument("--thermal-topic", default=DEFAULT_TOPICS["thermal"])
    p.add_argument("--labels-topic", default=DEFAULT_TOPICS["labels"])
    p.add_argument("--no-labels", action="store_true", help="do not write the labels topic")
    p.add_argument("--visible-frame-id", default="camera")
    p.add_argument("--thermal-frame-id", default="thermal")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = RigOptions(
        rate_hz=args.rate,
        thermal_rate_hz=args.thermal_rate,
        thermal_size=args.thermal_size,
        thermal_offset_ms=args.thermal_offset_ms,
        jitter_ms=args.jitter_ms,
        latency_ms=args.latency_ms,
        drop_visible=args.drop_visible,
        drop_thermal=args.drop_thermal,
        thermal_encoding=args.thermal_encoding,
        visible_encoding=args.visible_encoding,
        counts=tuple(args.counts),
        frames=args.frames,
        start_s=args.start,
        seed=args.seed,
        topics={"visible": args.visible_topic, "thermal": args.thermal_topic, "labels": args.labels_topic},
        frame_ids={"visible": args.visible_frame_id, "thermal": args.thermal_frame_id},
        labels=not args.no_labels,
        codecs={"visible": args.visible_codec, "thermal": args.thermal_codec},
    )
    try:
        summary = make_bag(args.folder, args.out, opts, args.storage, args.bag_format)
    except (BagError, DatasetError, ValueError, OSError) as err:
        print(f"ssvif-make-bag: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
