"""Fuzz the ``sensor_msgs/Image`` decoders and the running fusion node with generated messages; print JSON.

``--count`` messages (24000 by default) are generated from a seeded RNG (``--seed``), one fault at most each:

- valid messages of every encoding the package supports (``ssvif_ros.io.image_msg.ENCODINGS``), random
  sizes (1..64 px a side, 3 % up to 480×640), row padding (``step`` > width × bytes per pixel, also by a
  number of bytes that is not a multiple of the pixel size) and byte order (``is_bigendian`` 0/1);
- valid variants: height or width smaller than the data holds, the byte order flipped, trailing bytes after
  the last row, ``data`` as ``bytes``/``bytearray``/``memoryview``/``ndarray``/``list``, numpy integers or
  ``bool`` in the integer fields, ``strict=True`` on exact data;
- malformed messages: ``step`` too small or too large for the data, truncated or empty ``data``, zero,
  negative, grown and huge ``height``/``width``/``step``, unknown and non-string encodings, ``is_bigendian``
  out of 0/1 or of a wrong type, non-integer fields, ``data`` that is not a buffer of bytes (str, None,
  numbers, lists out of 0..255, ragged or float lists, a non-contiguous array), trailing bytes with
  ``strict=True``.

The pixels are drawn first and the message bytes are packed from them here (explicit byte order, padding
bytes random), independently of the code under test.

Part A (in process, no ROS transport): every message is decoded with both ``to_rgb8`` and ``to_thermal``.
A decode of a valid message must return exactly the expected array (dtype, shape, C order); one whose
encoding belongs to the other decoder, and every malformed message, must raise ``MalformedImage`` naming
the faulty field (a derived field is accepted too: a huge height makes ``data`` too short). Anything
else is counted: wrong decodes, refusals of valid messages, malformed messages accepted, refusals naming
another field, and exceptions of any other type (each must be 0; examples are listed).

Part B (``--node``, on by default): the fusion node is started like the product (as
``bench/node_latency.py`` does: ``python -m ssvif_ros.node.fuse_node --ros-args --params-file
config/fuse.yaml -p ...``; the shipped model, ``--backend passthrough`` for none; reliable input QoS, so the
counts are exact) in a random ROS domain of this run's own, loopback only. ``--node-messages`` of the
messages that a real ``Image`` can carry on the wire are published from this process, alternately on its
visible and thermal topics, pairs with equal stamps, within ``--node-seconds``. Then: is the node alive,
did it receive everything, do its ``/diagnostics`` malformed counts per field match the expectation (the
decoders' outcome; ``max_input_pixels`` for an image over the node's limit), and does it exit with 0 on
SIGINT. Pairs of valid messages reach the model with random sizes (``aspect`` drops and ``errors`` are
reported as they come).

Prints one JSON document on stdout; progress on stderr. Bounded: Part A is linear in ``--count``; Part B
waits at most 120 s for the node to start and ``--node-seconds`` for the messages.

    python bench/fuzz_messages.py                                  # 24000 messages, 2000 to the node
    python bench/fuzz_messages.py --count 600 --node-seconds 10    # quick
    python bench/fuzz_messages.py --no-node --seed 3
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Network safety before rclpy is imported (children inherit): loopback only, a domain of this run's own.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))

import numpy as np  # noqa: E402

from ssvif_ros.io import image_msg  # noqa: E402
from ssvif_ros.io.image_msg import MalformedImage, to_rgb8, to_thermal  # noqa: E402

# The oracle's own table (bytes per channel, channels, channel order), checked against the package's list
# at start: an encoding added to the package must be added here too.
LAYOUT: dict[str, tuple[int, int, str]] = {
    "rgb8": (1, 3, "rgb"),
    "bgr8": (1, 3, "bgr"),
    "rgba8": (1, 4, "rgba"),
    "bgra8": (1, 4, "bgra"),
    "mono8": (1, 1, "mono"),
    "8UC1": (1, 1, "mono"),
    "mono16": (2, 1, "mono"),
    "16UC1": (2, 1, "mono"),
}
VISIBLE = frozenset(e for e, (size, _, _) in LAYOUT.items() if size == 1)
THERMAL = frozenset(e for e, (_, channels, _) in LAYOUT.items() if channels == 1)
MAX_INPUT_PIXELS = 8294400  # the node's default max_input_pixels (config/fuse.yaml), set explicitly below
UINT32 = 2**32
EXAMPLES = 5  # examples kept per kind of failure
FIELDS = ("height", "width", "encoding", "is_bigendian", "step", "data")


def log(text: str) -> None:
    print(f"[fuzz_messages] {text}", file=sys.stderr, flush=True)


class RawImage:
    """An object with the ``Image`` fields and any values (as a bag reader or a hand-built message may
    hand over); the decoders accept any such object."""

    __slots__ = ("data", "encoding", "header", "height", "is_bigendian", "step", "width")

    def __init__(self, **fields: Any) -> None:
        self.header = None
        for name, value in fields.items():
            setattr(self, name, value)

    def describe(self) -> dict[str, str]:
        return {name: _short(getattr(self, name)) for name in FIELDS}


def _short(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview, array.array, np.ndarray, list)):
        return f"{type(value).__name__}[{len(value)}]"
    return repr(value)[:40]


@dataclass
class Base:
    """A valid message's ingredients: its pixels (the expected content) and the packed bytes."""

    encoding: str
    pixels: np.ndarray  # uint8 (H, W[, C]) or uint16 (H, W) values
    big: int
    step: int
    payload: bytes  # rows of step bytes (pixels + padding), no trailing bytes

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def bpp(self) -> int:
        size, channels, _ = LAYOUT[self.encoding]
        return size * channels


@dataclass
class Case:
    msg: Any
    label: str  # "valid", a variant or a mutation name
    category: str  # valid | variant | malformed
    expected: np.ndarray | None  # the pixels a decoder must return (layout of the encoding); None: refused
    fields: frozenset[str]  # fields a refusal may name (malformed only)
    strict: bool = False
    wire: bool = True  # a real sensor_msgs Image with values its wire types can carry
    refused: dict[str, str | None] | None = None  # per decoder: the field part A's refusal named


def pack(pixels: np.ndarray, encoding: str, big: int, pad: bytes) -> bytes:
    """The rows' bytes, each followed by ``pad``: explicit byte order for 16 bit, by hand."""
    size, _, _ = LAYOUT[encoding]
    if size == 2:
        pixels = pixels.astype(">u2" if big else "<u2")
    rows = pixels.reshape(pixels.shape[0], -1)
    return b"".join(row.tobytes() + pad for row in rows)


def random_base(rng: np.random.Generator, encoding: str | None = None) -> Base:
    encoding = encoding or str(rng.choice(sorted(LAYOUT)))
    size, channels, _ = LAYOUT[encoding]
    if rng.random() < 0.03:
        height, width = int(rng.integers(1, 481)), int(rng.integers(1, 641))
    else:
        height, width = int(rng.integers(1, 65)), int(rng.integers(1, 65))
    shape = (height, width) if channels == 1 else (height, width, channels)
    if size == 1:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        pixels = rng.integers(0, 65536, shape, dtype=np.uint16)
    big = int(rng.integers(0, 2))
    pad_len = 0 if rng.random() < 0.5 else int(rng.integers(1, 9))
    pad = rng.integers(0, 256, pad_len, dtype=np.uint8).tobytes()
    return Base(encoding, pixels, big, width * size * channels + pad_len, pack(pixels, encoding, big, pad))


def make(base: Base, duck: bool = False, **override: Any) -> Any:
    """The message of ``base`` with fields overridden: a real ``Image`` (data as the generated message
    stores it: ``array.array('B')``), or with ``duck`` a :class:`RawImage` holding the values as given."""
    fields = {
        "height": base.height,
        "width": base.width,
        "encoding": base.encoding,
        "is_bigendian": base.big,
        "step": base.step,
        "data": base.payload,
    }
    fields.update(override)
    if duck:
        return RawImage(**fields)
    from sensor_msgs.msg import Image

    msg = Image()
    for name, value in fields.items():
        if name == "data" and not isinstance(value, array.array):
            value = array.array("B", value)
        setattr(msg, name, value)
    return msg


def byteswapped(base: Base) -> np.ndarray:
    if LAYOUT[base.encoding][0] == 1:
        return base.pixels
    return ((base.pixels >> 8) | (base.pixels << 8)).astype(np.uint16)


# --- variants (valid) and mutations (malformed): fn(rng, base) -> Case ------------------------------------


def v_height_shrunk(rng, b):
    if b.height < 2:
        return Case(make(b), "valid", "valid", b.pixels, frozenset())
    h = int(rng.integers(1, b.height))
    return Case(make(b, height=h), "height_shrunk", "variant", b.pixels[:h], frozenset())


def v_width_shrunk(rng, b):
    if b.width < 2:
        return Case(make(b), "valid", "valid", b.pixels, frozenset())
    w = int(rng.integers(1, b.width))
    return Case(make(b, width=w), "width_shrunk", "variant", b.pixels[:, :w], frozenset())


def v_bigendian_flipped(rng, b):
    return Case(make(b, is_bigendian=1 - b.big), "bigendian_flipped", "variant", byteswapped(b), frozenset())


def v_trailing_bytes(rng, b):
    extra = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return Case(make(b, data=b.payload + extra), "trailing_bytes", "variant", b.pixels, frozenset())


def v_strict_exact(rng, b):
    return Case(make(b), "strict_exact", "variant", b.pixels, frozenset(), strict=True)


def v_container(rng, b):
    kinds = ["bytes", "bytearray", "memoryview", "ndarray", "ndarray_2d"]
    if len(b.payload) <= 4096:
        kinds.append("list")
    kind = str(rng.choice(kinds))
    data: Any = {
        "bytes": lambda: bytes(b.payload),
        "bytearray": lambda: bytearray(b.payload),
        "memoryview": lambda: memoryview(b.payload),
        "ndarray": lambda: np.frombuffer(b.payload, dtype=np.uint8).copy(),
        "ndarray_2d": lambda: np.frombuffer(b.payload, dtype=np.uint8).reshape(b.height, b.step).copy(),
        "list": lambda: list(b.payload),
    }[kind]()
    return Case(make(b, duck=True, data=data), f"data_{kind}", "variant", b.pixels, frozenset(), wire=False)


def v_numpy_fields(rng, b):
    kind = str(rng.choice(["uint32", "int64", "bool_bigendian"]))
    if kind == "bool_bigendian":
        msg = make(b, duck=True, is_bigendian=bool(b.big))
    else:
        t = np.uint32 if kind == "uint32" else np.int64
        msg = make(b, duck=True, height=t(b.height), width=t(b.width), step=t(b.step), is_bigendian=t(b.big))
    return Case(msg, f"fields_{kind}", "variant", b.pixels, frozenset(), wire=False)


def v_nested_list(rng, b):
    """``data`` as a list of rows (maybe one more than needed): a correct decode, or refused as 'data'."""
    if len(b.payload) > 4096:
        return v_container(rng, b)
    rows = [list(b.payload[r * b.step : (r + 1) * b.step]) for r in range(b.height)]
    if rng.random() < 0.5:
        rows.append([0] * b.step)
    msg = make(b, duck=True, data=rows)
    return Case(msg, "data_list_of_rows", "variant", b.pixels, frozenset({"data"}), wire=False)


VARIANTS = [
    v_height_shrunk,
    v_width_shrunk,
    v_bigendian_flipped,
    v_trailing_bytes,
    v_strict_exact,
    v_container,
    v_numpy_fields,
    v_nested_list,
]


def bad(msg: Any, label: str, *fields: str, strict: bool = False, wire: bool = True) -> Case:
    return Case(msg, label, "malformed", None, frozenset(fields), strict, wire)


def m_step_too_small(rng, b):
    return bad(make(b, step=int(rng.integers(0, b.width * b.bpp))), "step_too_small", "step")


def m_step_grown(rng, b):
    # (step + k) × height > the data's step × height bytes
    return bad(make(b, step=b.step + int(rng.integers(1, 64))), "step_grown", "data", "step")


def m_step_huge(rng, b):
    step = int(rng.choice([2**31, UINT32 - 1, 2**40]))
    return bad(make(b, duck=step >= UINT32, step=step), "step_huge", "data", "step", wire=step < UINT32)


def m_data_truncated(rng, b):
    keep = int(rng.integers(0, len(b.payload)))
    return bad(make(b, data=b.payload[:keep]), "data_truncated", "data")


def m_data_empty(rng, b):
    return bad(make(b, data=b""), "data_empty", "data")


def m_trailing_strict(rng, b):
    extra = bytes(int(rng.integers(1, 17)))
    return bad(make(b, data=b.payload + extra), "trailing_bytes_strict", "data", strict=True)


def m_zero(rng, b):
    name = str(rng.choice(["height", "width"]))
    return bad(make(b, **{name: 0}), f"{name}_zero", name)


def m_negative(rng, b):
    name = str(rng.choice(["height", "width"]))
    value = -int(rng.choice([1, b.height, 2**31, 2**40]))
    return bad(make(b, duck=True, **{name: value}), f"{name}_negative", name, wire=False)


def m_height_grown(rng, b):
    height = int(rng.choice([b.height + int(rng.integers(1, 5)), 2**16, 2**31, UINT32 - 1, 2**40]))
    wire = height < UINT32
    return bad(make(b, duck=not wire, height=height), "height_grown", "data", "height", wire=wire)


def m_width_grown(rng, b):
    # wider than a row of step bytes holds (not into the padding, whose bytes are no expected pixels)
    width = int(rng.choice([b.step // b.bpp + int(rng.integers(1, 5)), 2**16, 2**31, UINT32 - 1, 2**40]))
    wire = width < UINT32
    return bad(make(b, duck=not wire, width=width), "width_grown", "step", "width", wire=wire)


WIRE_BAD_ENCODINGS = [
    "", "RGB8", "Mono16", "rgb16", "mono12", "yuv422", "bayer_rggb8", "32FC1", "16SC1", "8UC3", "jpeg",
    " rgb8", "mono8 ", "rgb8\n", "ümlaut", "rgb8;mono16",
]  # fmt: skip
DUCK_BAD_ENCODINGS: list[Any] = ["rgb8\x00", None, 5, 3.0, b"rgb8", ["rgb8"], ("mono16",), object()]


def m_encoding_unknown(rng, b):
    if rng.random() < 0.7:
        enc = WIRE_BAD_ENCODINGS[int(rng.integers(len(WIRE_BAD_ENCODINGS)))]
        return bad(make(b, encoding=enc), "encoding_unknown", "encoding")
    enc = DUCK_BAD_ENCODINGS[int(rng.integers(len(DUCK_BAD_ENCODINGS)))]
    label = "encoding_unknown" if isinstance(enc, str) else "encoding_not_a_string"
    return bad(make(b, duck=True, encoding=enc), label, "encoding", wire=False)


def m_bigendian_range(rng, b):
    if rng.random() < 0.6:
        return bad(make(b, is_bigendian=int(rng.integers(2, 256))), "is_bigendian_range", "is_bigendian")
    value = int(rng.choice([-1, 256, 1000, 2**40]))
    return bad(make(b, duck=True, is_bigendian=value), "is_bigendian_range", "is_bigendian", wire=False)


def m_bigendian_type(rng, b):
    values: list[Any] = [float(b.big), str(b.big), None, bytes([b.big]), 0.5, [b.big], np.float32(b.big)]
    value = values[int(rng.integers(len(values)))]
    return bad(make(b, duck=True, is_bigendian=value), "is_bigendian_type", "is_bigendian", wire=False)


def m_field_type(rng, b):
    name = str(rng.choice(["height", "width", "step"]))
    good = getattr(b, name)
    values: list[Any] = [float(good), str(good), None, True, np.float64(good), [good], complex(good)]
    value = values[int(rng.integers(len(values)))]
    return bad(make(b, duck=True, **{name: value}), f"{name}_type", name, wire=False)


def m_data_type(rng, b):
    n = len(b.payload)
    small = n <= 4096
    kinds = ["str", "none", "int", "float", "dict", "object", "noncontiguous", "ndarray_object"]
    if small:
        kinds += ["list_256", "list_negative", "list_float", "list_ragged", "list_none", "list_str"]
    kind = str(rng.choice(kinds))
    values = list(b.payload)
    if kind.startswith("list_") and not values:
        values = [0]
    pos = int(rng.integers(len(values))) if values else 0
    data: Any
    if kind == "str":
        data = b.payload.decode("latin-1")
    elif kind == "none":
        data = None
    elif kind == "int":
        data = n
    elif kind == "float":
        data = float(n)
    elif kind == "dict":
        data = {"data": b.payload}
    elif kind == "object":
        data = object()
    elif kind == "ndarray_object":
        data = np.array(list(b.payload), dtype=object)
    elif kind == "noncontiguous":  # the right values, but a strided array (no byte buffer of its own)
        doubled = np.zeros(2 * n + 2, dtype=np.uint8)
        doubled[::2][:n] = np.frombuffer(b.payload, dtype=np.uint8)
        data = doubled[::2][:n]
    elif kind == "list_256":
        data = [*values[:pos], 256, *values[pos + 1 :]]
    elif kind == "list_negative":
        data = [*values[:pos], -1, *values[pos + 1 :]]
    elif kind == "list_float":
        data = [float(v) for v in values]
    elif kind == "list_ragged":
        data = [values[:pos], [*values[pos:], 0]]
    elif kind == "list_none":
        data = [*values[:pos], None, *values[pos + 1 :]]
    else:  # list_str
        data = [str(v) for v in values]
    return bad(make(b, duck=True, data=data), f"data_{kind}", "data", wire=False)


MUTATIONS = [
    m_step_too_small,
    m_step_grown,
    m_step_huge,
    m_data_truncated,
    m_data_empty,
    m_trailing_strict,
    m_zero,
    m_negative,
    m_height_grown,
    m_width_grown,
    m_encoding_unknown,
    m_bigendian_range,
    m_bigendian_type,
    m_field_type,
    m_data_type,
]


def generate(rng: np.random.Generator, index: int) -> Case:
    """Message ``index``: the first ones cycle through the encodings, so each is covered at any count."""
    base = random_base(rng, sorted(LAYOUT)[index] if index < len(LAYOUT) else None)
    roll = rng.random()
    if index < len(LAYOUT) or roll < 0.45:
        return Case(make(base), "valid", "valid", base.pixels, frozenset())
    if roll < 0.65:
        return VARIANTS[int(rng.integers(len(VARIANTS)))](rng, base)
    return MUTATIONS[int(rng.integers(len(MUTATIONS)))](rng, base)


def expected_output(decoder: str, encoding: str, pixels: np.ndarray) -> np.ndarray:
    """What ``to_rgb8`` / ``to_thermal`` must return for ``pixels`` in ``encoding``'s layout."""
    if decoder == "thermal":
        return pixels
    order = LAYOUT[encoding][2]
    if order == "rgb":
        return pixels
    if order == "bgr":
        return pixels[..., ::-1]
    if order == "rgba":
        return pixels[..., :3]
    if order == "bgra":
        return pixels[..., 2::-1]
    return np.repeat(pixels[..., None], 3, axis=2)


def expectation(case: Case, decoder: str) -> tuple[np.ndarray | None, frozenset[str]]:
    """(expected array or None: must be refused, fields a refusal may name; empty: must decode)."""
    encoding = case.msg.encoding
    kinds = VISIBLE if decoder == "visible" else THERMAL
    if isinstance(encoding, str) and encoding in LAYOUT and encoding not in kinds:
        return None, frozenset({"encoding"})  # a supported encoding, but the other decoder's
    if case.expected is None:
        return None, case.fields
    return expected_output(decoder, encoding, case.expected), case.fields


def describe(case: Case) -> dict[str, Any]:
    msg = case.msg
    fields = msg.describe() if isinstance(msg, RawImage) else RawImage(**_fields_of(msg)).describe()
    return {"label": case.label, "strict": case.strict, "fields": fields}


def _fields_of(msg: Any) -> dict[str, Any]:
    return {n: getattr(msg, n) for n in FIELDS}


# --- part A ----------------------------------------------------------------------------------------------


FAILURES = ("wrong_decode", "valid_refused", "refused_other_field", "malformed_accepted", "other_exception")


class Tally:
    """Outcome counts; failures also split by the object decoded: a real ``sensor_msgs/Image`` (what the
    node receives) or another object with the fields (:class:`RawImage`)."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.failures: dict[str, Counter] = {kind: Counter() for kind in FAILURES}
        self.refused_by_field: Counter = Counter()
        self.examples: dict[str, list] = {}

    def fail(self, kind: str, case: Case, decoder: str, detail: str) -> None:
        self.failures[kind]["other_objects" if isinstance(case.msg, RawImage) else "sensor_msgs_image"] += 1
        items = self.examples.setdefault(kind, [])
        if len(items) < EXAMPLES:
            items.append({"decoder": decoder, **describe(case), "detail": detail[:400]})

    def check(self, case: Case, decoder: str) -> None:
        want, fields = expectation(case, decoder)
        decode = to_rgb8 if decoder == "visible" else to_thermal
        self.counts["expect_ok" if want is not None else "expect_refused"] += 1
        case.refused = case.refused or {}
        case.refused[decoder] = None
        try:
            got = decode(case.msg, f"/fuzz/{decoder}", strict=case.strict)
        except MalformedImage as err:
            case.refused[decoder] = err.field
            self.refused_by_field[err.field] += 1
            if err.field in fields:
                self.counts["refused_as_expected" if want is None else "refused_as_allowed"] += 1
            elif want is not None:
                self.fail("valid_refused", case, decoder, str(err))
            else:
                self.fail("refused_other_field", case, decoder, f"expected {sorted(fields)}: {err}")
            return
        except Exception as err:  # the point: any other type is a finding
            text = traceback.format_exception_only(type(err), err)[-1].strip()
            self.fail("other_exception", case, decoder, f"{type(err).__module__}.{text}")
            return
        if want is None:
            self.fail("malformed_accepted", case, decoder, f"returned {got.dtype} {got.shape}")
            return
        # ``want`` was built in native order (uint8, or uint16 in this host's order)
        if (
            isinstance(got, np.ndarray)
            and got.dtype == want.dtype
            and got.dtype.isnative
            and got.shape == want.shape
            and got.flags.c_contiguous
            and np.array_equal(got, want)
        ):
            self.counts["decoded_correctly"] += 1
        else:
            detail = f"got {getattr(got, 'dtype', type(got))} {getattr(got, 'shape', '')}"
            self.fail("wrong_decode", case, decoder, detail + f", want {want.dtype} {want.shape}")


def run_part_a(args: argparse.Namespace) -> tuple[dict, list[Case]]:
    rng = np.random.default_rng(args.seed)
    tally = Tally()
    labels: Counter = Counter()
    categories: Counter = Counter()
    encodings: Counter = Counter()
    wire_cases: list[Case] = []
    started = time.perf_counter()
    for i in range(args.count):
        case = generate(rng, i)
        labels[case.label] += 1
        categories[case.category] += 1
        if case.category == "valid":
            encodings[case.msg.encoding] += 1
        tally.check(case, "visible")
        tally.check(case, "thermal")
        if args.node and case.wire and not case.strict and len(wire_cases) < args.node_messages:
            wire_cases.append(case)
        if (i + 1) % 4000 == 0:
            log(f"part A: {i + 1}/{args.count} messages, {time.perf_counter() - started:.1f} s")
    c, f = tally.counts, {k: sum(v.values()) for k, v in tally.failures.items()}
    result = {
        "messages": args.count,
        "by_category": dict(categories),
        "valid_by_encoding": dict(sorted(encodings.items())),
        "by_label": dict(sorted(labels.items())),
        "decodes": c["expect_ok"] + c["expect_refused"],
        "decodes_expected_ok": c["expect_ok"],
        "decodes_expected_refused": c["expect_refused"],
        "decoded_correctly": c["decoded_correctly"],
        "refused_where_allowed": c["refused_as_allowed"],
        "wrong_decodes": f["wrong_decode"],
        "valid_refused": f["valid_refused"],
        "malformed_refused": c["refused_as_expected"] + f["refused_other_field"],
        "malformed_refused_other_field": f["refused_other_field"],
        "malformed_accepted": f["malformed_accepted"],
        "refused_by_field": dict(sorted(tally.refused_by_field.items())),
        "other_exceptions": f["other_exception"],
        "failures_by_object": {k: dict(v) for k, v in tally.failures.items() if v},
        "examples": tally.examples,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    result["ok"] = not any(f.values())
    result["ok_sensor_msgs_image"] = not any(v["sensor_msgs_image"] for v in tally.failures.values())
    return result, wire_cases


# --- part B ----------------------------------------------------------------------------------------------


def node_expectation(case: Case, decoder: str) -> str | None:
    """The field the node counts a message under (None: decoded): ``max_input_pixels`` for an image over
    the node's limit (checked before decoding), else the field the same decoder named in part A, where it
    was checked against the oracle."""
    msg = case.msg
    if int(msg.height) * int(msg.width) > MAX_INPUT_PIXELS:
        return "max_input_pixels"
    return (case.refused or {}).get(decoder)


def parse_fields(text: str) -> dict[str, int]:
    """``"data: 3, step: 2"`` (the node's "malformed by field") → dict."""
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.rpartition(":")
        out[name.strip()] = int(count)
    return out


def run_part_b(args: argparse.Namespace, cases: list[Case], weights: str | None) -> dict:

    import rclpy
    from node_latency import (  # bench/node_latency.py
        Listener,
        model_arguments,
        node_arguments,
        start_node,
        wait_for,
    )
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ssvif_ros.tools.live import stop_process

    class DiagListener(Listener):
        """node_latency's listener, keeping the status message too."""

        def _on_diagnostics(self, msg) -> None:
            for status in msg.status:
                if status.name == self.status_name:
                    values = {kv.key: kv.value for kv in status.values}
                    values["__message"] = status.message
                    with self.lock:
                        self.diagnostics.append((time.monotonic(), values))

    tag = f"fz{os.getpid()}"
    namespace = f"/ssvif_fuzz_{tag}"
    node_name = f"fuse_node_{tag}"
    depth = min(max(len(cases), 1), 1000)
    node_args = node_arguments(namespace, node_name, "cpu", 1, "64x64", "64x64")
    node_args += [
        "-p", "qos.reliability:=reliable",
        "-p", f"qos.depth:={depth}",
        "-p", "diagnostics.period_s:=0.25",
        "-p", f"max_input_pixels:={MAX_INPUT_PIXELS}",
    ]  # fmt: skip
    model_args, model_note = model_arguments(args.backend == "passthrough", weights)
    log(f"part B: starting the node ({model_note})")
    started = time.monotonic()
    command = ["-m", "ssvif_ros.node.fuse_node", "--ros-args", *node_args, *model_args]
    node, node_log = start_node(command, Path(args.log_dir) / "node_fuzz.log")
    listener = DiagListener(f"/{node_name}/fused/image", node_name)
    pub_node = rclpy.create_node(f"fuzz_publisher_{os.getpid()}")
    qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {
        "visible": pub_node.create_publisher(type(cases[0].msg), f"{namespace}/visible", qos),
        "thermal": pub_node.create_publisher(type(cases[0].msg), f"{namespace}/thermal", qos),
    }
    expected: dict[str, Counter] = {"visible": Counter(), "thermal": Counter()}
    sent = Counter()
    startup_s = publish_s = None
    alive = False
    code: int | None = None
    diag: dict[str, str] = {}
    try:
        wait_for(lambda: listener.sub.get_publisher_count() > 0 or node.poll() is not None, 120, "the node")
        if node.poll() is not None:
            raise RuntimeError(f"the node exited with {node.returncode} at start; see {node_log.name}")
        wait_for(
            lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 30, "the node's subscriptions"
        )
        startup_s = time.monotonic() - started
        log(f"part B: node up after {startup_s:.1f} s; publishing {len(cases)} messages")
        budget = args.node_seconds
        deadline = time.monotonic() + budget
        period = 0.6 * budget / max(len(cases), 1)
        t0 = time.time_ns()
        publish_start = time.monotonic()
        for i, case in enumerate(cases):
            if time.monotonic() > deadline:
                break
            topic = "visible" if i % 2 == 0 else "thermal"
            stamp = t0 + (i // 2) * 100_000_000  # a pair per two messages, 100 ms apart (> sync slop)
            case.msg.header.stamp.sec, case.msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            case.msg.header.frame_id = f"fuzz_{topic}"
            pubs[topic].publish(case.msg)
            sent[topic] += 1
            outcome = node_expectation(case, topic)
            expected[topic][outcome or "decoded"] += 1
            delay = publish_start + (i + 1) * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        publish_s = time.monotonic() - publish_start
        log(f"part B: published {dict(sent)} in {publish_s:.1f} s; waiting for the node to count them")

        def received_all() -> bool:
            latest = listener.latest_diagnostics()
            if latest is None:
                return False
            values = latest[1]
            return all(int(values.get(f"{k} received", "0")) >= sent[k] for k in sent)

        try:
            wait_for(received_all, max(2.0, deadline - time.monotonic()), "the node to receive everything")
        except TimeoutError as err:
            log(f"part B: {err}")
        time.sleep(0.6)  # pairs in flight; a fresh diagnostics report
        alive = node.poll() is None
        latest = listener.latest_diagnostics()
        diag = latest[1] if latest else {}
    finally:
        pub_node.destroy_node()
        listener.close()
        code = stop_process(node)
        node_log.close()
    log_text = Path(node_log.name).read_text(errors="replace")
    reported = {k: parse_fields(diag.get(f"{k} malformed by field", "")) for k in ("visible", "thermal")}
    # pair-level drops (registration "aspect") are counted against thermal too: not decoder fields
    decode_fields = {"encoding", "height", "width", "is_bigendian", "step", "data", "max_input_pixels"}
    match = {}
    for k in ("visible", "thermal"):
        want = {f: n for f, n in expected[k].items() if f != "decoded"}
        match[k] = want == {f: n for f, n in reported[k].items() if f in decode_fields}
    result = {
        "model": model_note,
        "model_name": diag.get("model"),
        "weights": diag.get("weights"),
        "backend": diag.get("backend"),
        "node_startup_s": None if startup_s is None else round(startup_s, 1),
        "sent": dict(sent),
        "publish_s": None if publish_s is None else round(publish_s, 2),
        "received": {k: int(diag.get(f"{k} received", "0")) for k in ("visible", "thermal")},
        "expected_outcomes": {k: dict(sorted(v.items())) for k, v in expected.items()},
        "malformed_reported": {k: int(diag.get(f"{k} malformed", "0")) for k in ("visible", "thermal")},
        "malformed_reported_by_field": reported,
        "malformed_counts_match_expected": match,
        "pairs": int(diag.get("pairs", "0")),
        "published": int(diag.get("published", "0")),
        "skipped_model_busy": int(diag.get("skipped (model busy)", "0")),
        "passthrough_frames": int(diag.get("passthrough frames", "0")),
        "errors": int(diag.get("errors", "0")),
        "status_message": diag.get("__message"),
        "node_alive_after_fuzz": alive,
        "node_exit_code": code,
        "node_log": node_log.name,
        "node_log_tracebacks": log_text.count("Traceback"),
        "wall_s": round(time.monotonic() - started, 2),
    }
    result["ok"] = (
        alive
        and code == 0
        and result["received"] == result["sent"]
        and all(match.values())
        and result["node_log_tracebacks"] == 0
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=24000, help="messages generated (part A)")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed")
    parser.add_argument("--node", action=argparse.BooleanOptionalAction, default=True, help="run part B")
    parser.add_argument("--node-messages", type=int, default=2000, help="messages published to the node")
    parser.add_argument("--node-seconds", type=float, default=60.0, help="bound of part B's publishing")
    parser.add_argument("--backend", default="model", choices=("model", "passthrough"), help="node engine")
    parser.add_argument("--weights", default=None, help="node checkpoint (default: the shipped model)")
    parser.add_argument("--log-dir", default=None, help="folder for the node log (default: a temp folder)")
    args = parser.parse_args(argv)
    if set(LAYOUT) != set(image_msg.ENCODINGS) or (
        (VISIBLE, THERMAL) != (set(image_msg.VISIBLE_ENCODINGS), set(image_msg.THERMAL_ENCODINGS))
    ):
        parser.error(
            f"the package's encodings changed ({sorted(image_msg.ENCODINGS)}): update LAYOUT in this script"
        )
    started = time.perf_counter()
    part_a, wire_cases = run_part_a(args)
    log(
        f"part A: {part_a['decoded_correctly']} correct, {part_a['wrong_decodes']} wrong, "
        f"{part_a['malformed_refused']} refused, {part_a['other_exceptions']} other exceptions "
        f"in {part_a['wall_s']} s"
    )
    part_b = None
    if args.node and wire_cases:
        import rclpy

        from ssvif_ros.tools.dds import use_shm_transport

        args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="fuzz_messages_")
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        use_shm_transport(args.log_dir)  # as node_latency.py: this process and the node (inherited)
        rclpy.init()
        try:
            part_b = run_part_b(args, wire_cases, args.weights)
        finally:
            rclpy.try_shutdown()
        log(
            f"part B: node alive {part_b['node_alive_after_fuzz']}, exit code {part_b['node_exit_code']}, "
            f"malformed {part_b['malformed_reported']}, match {part_b['malformed_counts_match_expected']}"
        )
    meta = {
        "seed": args.seed,
        "count": args.count,
        "node_messages": len(wire_cases) if args.node else 0,
        "ros_domain_id": os.environ["ROS_DOMAIN_ID"],
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    ok = part_a["ok"] and (part_b is None or part_b["ok"])
    print(json.dumps({"meta": meta, "decoders": part_a, "node": part_b, "ok": ok}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
