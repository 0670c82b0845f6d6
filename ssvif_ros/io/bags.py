"""rosbag2 read/write without ROS, through ``rosbags`` (mcap and sqlite3 storage).

Why a wrapper: the tools (make_bag, replay, play, record) need the same few things — list a bag's topics,
iterate deserialised messages in time order, write Image messages — and should not each repeat the
``rosbags`` typestore/connection plumbing. Messages are ``rosbags`` dataclasses; their fields match
``sensor_msgs/Image``, so :func:`ssvif_ros.io.image_msg.to_rgb8` / ``to_thermal`` read them directly.

API (kept small and stable; other tools depend on it)::

    with open_reader(path) as bag:
        bag.topics()                       # {"/camera/image_raw": "sensor_msgs/msg/Image", ...}
        for topic, msgtype, t_ns, msg in bag.messages(["/camera/image_raw"]):
            ...

    with open_writer(path, storage="mcap") as bag:
        bag.add_topic("/camera/image_raw", IMAGE_TYPE)
        bag.write("/camera/image_raw", t_ns, make_image_msg(rgb, "rgb8", t_ns, "camera"))

Types come from the ROS 2 Kilted typestore (``sensor_msgs/Image`` is the same from Humble to Kilted);
a type the typestore lacks is registered from the definition the bag embeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ssvif_ros.io.compressed import COMPRESSED_TOPIC_SUFFIX, INPUT_DECODERS, encode_compressed
from ssvif_ros.io.image_msg import COMPRESSED_IMAGE_TYPE, ENCODINGS, IMAGE_TYPE, _checked_array

__all__ = [
    "BAG_FORMATS",
    "BAG_FORMAT_HELP",
    "CAMERA_IMAGE_TYPES",
    "COMPRESSED_IMAGE_TYPE",
    "IMAGE_TYPE",
    "STORAGES",
    "BagError",
    "BagReader",
    "BagWriter",
    "image_fields",
    "make_compressed_msg",
    "make_image_msg",
    "open_reader",
    "open_writer",
    "stamp_ns",
    "typestore",
]

CAMERA_IMAGE_TYPES = tuple(INPUT_DECODERS)  # the message types a camera input may have
STORAGES = ("mcap", "sqlite3")
STORAGE_SUFFIXES = {"mcap": ".mcap", "sqlite3": ".db3"}
NS_PER_S = 1_000_000_000
_TYPESTORE: Typestore | None = None


class BagError(RuntimeError):
    """A bag that cannot be opened, read or written; the message names the path and why."""


def typestore() -> Typestore:
    """The shared ROS 2 typestore (Kilted; built once)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` as integer ns (a rosbags or rclpy message)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def _header(stamp_ns: int, frame_id: str) -> Any:
    if stamp_ns < 0:
        raise ValueError(f"stamp_ns must be >= 0, got {stamp_ns}")
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](
        sec=int(stamp_ns // NS_PER_S), nanosec=int(stamp_ns % NS_PER_S)
    )
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=str(frame_id))


def make_compressed_msg(array: np.ndarray, codec: str, stamp_ns: int, frame_id: str = "") -> Any:
    """A rosbags ``sensor_msgs/msg/CompressedImage`` of ``array`` (RGB uint8 or gray uint8/uint16), as
    image_transport's ``compressed`` plugin writes it (:func:`~ssvif_ros.io.compressed.encode_compressed`)."""
    fmt, data = encode_compressed(array, codec)
    return typestore().types[COMPRESSED_IMAGE_TYPE](
        header=_header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(data, dtype=np.uint8).copy()
    )


def make_image_msg(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "") -> Any:
    """A rosbags ``sensor_msgs/msg/Image`` holding ``array`` in ``encoding``'s layout.

    ``rgb8``/``bgr8``: uint8 (H, W, 3) in that channel order (give BGR data for ``bgr8``); ``mono8``:
    uint8 (H, W); ``mono16``/``16UC1``: uint16 (H, W). Native byte order, no row padding.
    """
    header = _header(stamp_ns, frame_id)
    pixels, info = _checked_array(array, encoding)
    return typestore().types[IMAGE_TYPE](
        header=header,
        height=int(pixels.shape[0]),
        width=int(pixels.shape[1]),
        encoding=encoding,
        is_bigendian=int(np.little_endian is False),
        step=int(pixels.shape[1]) * info.bytes_per_pixel,
        data=pixels.reshape(-1).view(np.uint8).copy(),
    )


def image_fields(msg: Any) -> dict[str, Any]:
    """The ``sensor_msgs/Image`` fields of ``msg`` as a dict (stamp in ns), e.g. to copy or log them."""
    return {
        "stamp_ns": stamp_ns(msg),
        "frame_id": msg.header.frame_id,
        "height": int(msg.height),
        "width": int(msg.width),
        "encoding": msg.encoding,
        "is_bigendian": int(msg.is_bigendian),
        "step": int(msg.step),
        "data": msg.data,
    }


def _bag_dir(path: Path) -> Path:
    """Accept the bag directory or a file inside it (metadata.yaml, a .mcap / .db3 part), or the name the
    bag was written under (``pairs.mcap`` for the folder ``pairs``, as :func:`bag_directory` maps it)."""
    if path.is_file() and (path.parent / "metadata.yaml").is_file():
        return path.parent
    if not path.exists() and path.suffix in STORAGE_SUFFIXES.values():
        folder = path.with_suffix("")
        if (folder / "metadata.yaml").is_file():
            return folder
    return path


def is_bag(path: str | Path) -> bool:
    """Whether ``path`` names a rosbag2 bag that :func:`open_reader` can open (a folder with metadata.yaml,
    a file inside one, or the ``NAME.mcap`` / ``NAME.db3`` name of the folder ``NAME``)."""
    return (_bag_dir(Path(path)) / "metadata.yaml").is_file()


class BagReader:
    """An open rosbag2 bag: :meth:`topics` and time-ordered deserialised :meth:`messages`."""

    def __init__(self, reader: Reader, path: Path) -> None:
        self._reader = reader
        self.path = path
        store = typestore()
        for conn in reader.connections:
            if conn.msgtype not in store.types:
                self._register(store, conn)

    @staticmethod
    def _register(store: Typestore, conn: Any) -> None:
        msgdef = getattr(conn, "msgdef", None)
        text = getattr(msgdef, "data", "") if msgdef is not None else ""
        fmt = str(getattr(msgdef, "format", "msg")).lower()
        if text and "msg" in fmt:
            try:
                store.register(get_types_from_msg(text.split("=" * 80)[0], conn.msgtype))
            except Exception:  # an unreadable custom type only matters if it is read
                pass

    def topics(self) -> dict[str, str]:
        """``{topic: msgtype}`` of every topic in the bag (e.g. ``"sensor_msgs/msg/Image"``)."""
        return {conn.topic: conn.msgtype for conn in self._reader.connections}

    def message_counts(self) -> dict[str, int]:
        """``{topic: messages}`` from the bag's metadata."""
        counts: dict[str, int] = {}
        for conn in self._reader.connections:
            counts[conn.topic] = counts.get(conn.topic, 0) + int(conn.msgcount)
        return counts

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    def describe(self) -> str:
        """``topic (msgtype, N msgs)`` lines, for error messages that say what the bag has."""
        counts = self.message_counts()
        lines = [
            f"  {topic} ({msgtype}, {counts.get(topic, 0)} msgs)" for topic, msgtype in self.topics().items()
        ]
        return "\n".join(lines) if lines else "  (no topics)"

    def camera_topic(self, topic: str, option: str) -> tuple[str, str]:
        """``(topic, msgtype)`` of a camera input: ``topic`` itself when it holds ``Image`` or
        ``CompressedImage`` messages, else its image_transport ``compressed`` sibling ``topic/compressed``
        when only that was recorded. Raises :class:`BagError` naming ``option`` and the bag's topics."""
        topics = self.topics()
        for candidate in (topic, topic + COMPRESSED_TOPIC_SUFFIX):
            if topics.get(candidate) in CAMERA_IMAGE_TYPES:
                return candidate, topics[candidate]
        found = f"has type {topics[topic]}" if topic in topics else "is not in the bag"
        raise BagError(
            f"{option} {topic} {found} (expected {' or '.join(CAMERA_IMAGE_TYPES)}); bag {self.path} "
            f"has these topics:\n{self.describe()}"
        )

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, Any]]:
        """``(topic, msgtype, timestamp_ns, msg)`` in bag (receive) time order, for ``topics`` (None: all).

        ``timestamp_ns`` is the bag's log time; the header stamp is ``stamp_ns(msg)``. Raises
        :class:`BagError` for a topic the bag does not have.
        """
        connections = self._reader.connections
        if topics is not None:
            wanted = set(topics)
            missing = wanted - {c.topic for c in connections}
            if missing:
                raise BagError(
                    f"bag {self.path} has no topic {', '.join(sorted(missing))}; it has:\n{self.describe()}"
                )
            connections = [c for c in connections if c.topic in wanted]
            if not connections:
                return
        store = typestore()
        for conn, timestamp, raw in self._reader.messages(connections=connections):
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as err:
                raise BagError(
                    f"bag {self.path}: cannot deserialise a {conn.msgtype} message on {conn.topic} at "
                    f"t={timestamp} ns: {err}"
                ) from err
            yield conn.topic, conn.msgtype, int(timestamp), msg


@contextmanager
def open_reader(path: str | Path) -> Iterator[BagReader]:
    """Open a rosbag2 bag (directory with metadata.yaml; mcap or sqlite3) for reading."""
    path = _bag_dir(Path(path))
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError, KeyError, ValueError) as err:
        raise BagError(
            f"cannot open bag {path}: {err} (expected a rosbag2 directory with metadata.yaml)"
        ) from err
    try:
        yield BagReader(reader, path)
    finally:
        reader.close()


class BagWriter:
    """An open rosbag2 bag being written: :meth:`add_topic` once per topic, then :meth:`write`."""

    def __init__(self, writer: Writer, path: Path) -> None:
        self._writer = writer
        self._connections: dict[str, Any] = {}
        self.path = path

    def add_topic(self, topic: str, msgtype: str = IMAGE_TYPE) -> None:
        """Declare ``topic`` with ``msgtype`` (e.g. ``sensor_msgs/msg/Image``); once per topic."""
        if topic in self._connections:
            raise BagError(f"bag {self.path}: topic {topic} added twice")
        store = typestore()
        if msgtype not in store.types:
            raise BagError(f"bag {self.path}: unknown message type {msgtype!r} for topic {topic}")
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=store)

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        """Serialise ``msg`` and write it on ``topic`` at log time ``timestamp_ns``."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"bag {self.path}: write to topic {topic} before add_topic")
        self._writer.write(conn, int(timestamp_ns), typestore().serialize_cdr(msg, conn.msgtype))


def bag_directory(path: str | Path, storage: str = "mcap") -> Path:
    """The bag folder for a path a user gave: a rosbag2 bag is a folder holding ``<name>.mcap`` (or
    ``.db3``) and ``metadata.yaml``, so ``pairs.mcap`` means the folder ``pairs`` (not
    ``pairs.mcap/pairs.mcap.mcap``)."""
    path = Path(path)
    return path.with_suffix("") if path.suffix == STORAGE_SUFFIXES[storage] else path


# rosbag2 metadata formats a writer can produce: what each is for, and the rosbags writer version used.
BAG_FORMATS = {
    "kilted": "metadata version 9 (Jazzy, Kilted and newer readers)",
    "humble": "metadata version 5 (Humble's readers, which newer ones also read)",
}
BAG_FORMAT_HELP = "; ".join(f"{name}: {what}" for name, what in BAG_FORMATS.items())  # for --bag-format
_WRITER_VERSION = {"kilted": 9, "humble": 8}  # humble: v8's QoS strings, then metadata.yaml rewritten as v5
_HUMBLE_METADATA_VERSION = 5


@contextmanager
def open_writer(path: str | Path, storage: str = "mcap", bag_format: str = "kilted") -> Iterator[BagWriter]:
    """Create a new rosbag2 bag directory at ``path`` (must not exist; see :func:`bag_directory`) with
    ``storage`` mcap or sqlite3 and the metadata format ``bag_format`` (:data:`BAG_FORMATS`); the
    writer's ``path`` is the folder created. Humble reads ``mcap`` only with ``rosbag2_storage_mcap``
    installed; ``sqlite3`` is its default storage.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    if bag_format not in BAG_FORMATS:
        raise ValueError(f"bag format must be one of {', '.join(BAG_FORMATS)}, got {bag_format!r}")
    path = bag_directory(path, storage)
    if path.exists():
        raise BagError(f"bag {path} exists already; choose a new path or delete it")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(path, version=_WRITER_VERSION[bag_format], storage_plugin=plugin)
        writer.open()
    except (WriterError, OSError) as err:
        raise BagError(f"cannot create bag {path}: {err}") from err
    try:
        yield BagWriter(writer, path)
    finally:
        writer.close()
        if bag_format == "humble":
            _write_humble_metadata(path / "metadata.yaml")


def _write_humble_metadata(metadata_path: Path) -> None:
    """Rewrite a version 8 ``metadata.yaml`` as version 5, the newest Humble parses: without the fields
    later versions added (``ros_distro``, ``custom_data``, each topic's ``type_description_hash``) and
    with each topic's ``offered_qos_profiles`` as the YAML string Humble expects."""
    document = yaml.safe_load(metadata_path.read_text())
    info = document["rosbag2_bagfile_information"]
    info["version"] = _HUMBLE_METADATA_VERSION
    for key in ("ros_distro", "custom_data"):
        info.pop(key, None)
    for topic in info.get("topics_with_message_count", []):
        meta = topic["topic_metadata"]
        meta.pop("type_description_hash", None)
        qos = meta.get("offered_qos_profiles", "")
        meta["offered_qos_profiles"] = qos if isinstance(qos, str) else yaml.safe_dump(qos)
    temporary = metadata_path.with_suffix(".yaml.tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False))
    temporary.replace(metadata_path)


def encoding_names() -> tuple[str, ...]:
    """Image encodings the builders accept."""
    return tuple(ENCODINGS)
