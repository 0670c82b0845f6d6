"""Procedural labelled road scenes: aligned visible / thermal / label triples, seeded and fast.

Why: tests, the demo and the segmentation experiments need paired visible + thermal images with pixel-exact
labels, under conditions where fusion matters (night, fog), without shipping real data. A scene is built
once as geometry (a pinhole camera over a flat road, facades on the sides, sprite objects standing on the
ground at their depth) and then *rendered twice* from the same per-pixel buffers: the visible camera (albedo
× light + emitters, fog by depth, glare, sensor noise) and the thermal camera (temperature per material,
LWIR fog, optics blur, fixed-pattern noise). The label is written by the same z-tested masks, so labels,
visible and thermal pixels agree exactly (occlusion by depth).

Fusion-relevant by construction:
- visible-only content: lane markings (paint has the asphalt's temperature), sign faces, car paint colours,
  lit windows, foliage texture;
- thermal-only content: at night a dark-clothed pedestrian outside the low-beam cone and between street
  lights, pedestrians far away (in fog beyond the visibility distance); ``Scene.thermal_only`` marks them,
  measured on the rendered images, not assumed.

Classes (native ids, Cityscapes colours): see ``CLASS_NAMES``. ``class_names(K)`` / ``class_mapping(K)``
merge them down to any K in 2..15 along ``MERGE_CHAIN`` (documented there; K=10 is the base set road,
sidewalk, lane_marking, building, vegetation, sky, pole, car, person, bicycle).

Thermal counts (``Scene.ir16``) are radiometric-like: ``counts = 7500 + 30 * T[°C]`` (+ noise) in a uint16
holding a 14-bit core, so -20 °C ≈ 6900 and 37 °C ≈ 8610; ``Scene.ir`` is an 8-bit view of it made like a
camera's AGC (plateau histogram equalisation blended with a linear stretch).

CLI: ``python -m ssvif_ros.data.synthetic --out DIR -n 20 [--seed S] [--conditions night,fog,day,dusk]
[--size 640x480] [--thermal-16bit] [--num-classes K]`` writes ``DIR/{vi,ir,label}/NAME.png``,
``DIR/classes.json`` and ``DIR/meta.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ssvif_ros.cli import size_arg

# --------------------------------------------------------------------------------------------- classes

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "lane_marking",
    "building",
    "wall",
    "vegetation",
    "terrain",
    "sky",
    "pole",
    "traffic_sign",
    "car",
    "truck",
    "person",
    "rider",
    "bicycle",
)
"""Native class names; the index is the native class id (K = 15)."""

NUM_NATIVE_CLASSES = len(CLASS_NAMES)

PALETTE: np.ndarray = np.array(
    [
        (128, 64, 128),  # road
        (244, 35, 232),  # sidewalk
        (255, 255, 255),  # lane_marking
        (70, 70, 70),  # building
        (102, 102, 156),  # wall
        (107, 142, 35),  # vegetation
        (152, 251, 152),  # terrain
        (70, 130, 180),  # sky
        (153, 153, 153),  # pole
        (220, 220, 0),  # traffic_sign
        (0, 0, 142),  # car
        (0, 0, 70),  # truck
        (220, 20, 60),  # person
        (255, 0, 0),  # rider
        (119, 11, 32),  # bicycle
    ],
    dtype=np.uint8,
)
"""Native colour palette, (15, 3) uint8 RGB (Cityscapes colours; lane_marking white)."""

MERGE_CHAIN: tuple[tuple[str, str, str], ...] = (
    ("rider", "person", "person"),  # 15 -> 14
    ("truck", "car", "car"),  # 14 -> 13
    ("wall", "building", "building"),  # 13 -> 12
    ("terrain", "vegetation", "vegetation"),  # 12 -> 11
    ("traffic_sign", "pole", "pole"),  # 11 -> 10: the base set
    ("sidewalk", "road", "road"),  # 10 -> 9
    ("bicycle", "car", "vehicle"),  # 9 -> 8
    ("pole", "building", "structure"),  # 8 -> 7
    ("lane_marking", "road", "road"),  # 7 -> 6
    ("vegetation", "structure", "background"),  # 6 -> 5
    ("sky", "background", "background"),  # 5 -> 4
    ("road", "background", "background"),  # 4 -> 3
    ("vehicle", "person", "object"),  # 3 -> 2: background vs object
)
"""How K < 15 classes are made: step i (from 15 - i to 14 - i classes) merges the first class into the second
and names the union by the third. Surviving classes keep the native order and the colour of the class merged
into. E.g. K=9: road (incl. sidewalk), lane_marking, building (incl. wall), vegetation (incl. terrain), sky,
pole (incl. traffic_sign), car (incl. truck), person (incl. rider), bicycle."""


@functools.cache
def _grouping(num_classes: int) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """(names, colour source native id per class, native id -> class id) for K classes."""
    if not isinstance(num_classes, int) or not 2 <= num_classes <= NUM_NATIVE_CLASSES:
        raise ValueError(f"num_classes must be an int in 2..{NUM_NATIVE_CLASSES}, got {num_classes!r}")
    groups: list[tuple[str, int, set[int]]] = [(name, i, {i}) for i, name in enumerate(CLASS_NAMES)]
    for source, target, new_name in MERGE_CHAIN[: NUM_NATIVE_CLASSES - num_classes]:
        names = [g[0] for g in groups]
        src, dst = names.index(source), names.index(target)
        _, colour, members = groups[dst]
        groups[dst] = (new_name, colour, members | groups[src][2])
        del groups[src]
    lut = [0] * NUM_NATIVE_CLASSES
    for class_id, (_, _, members) in enumerate(groups):
        for native in members:
            lut[native] = class_id
    return tuple(g[0] for g in groups), tuple(g[1] for g in groups), tuple(lut)


def class_names(num_classes: int | None = None) -> tuple[str, ...]:
    """Class names for K classes (None: the 15 native classes), index = class id."""
    return _grouping(num_classes or NUM_NATIVE_CLASSES)[0]


def palette(num_classes: int | None = None) -> np.ndarray:
    """(K, 3) uint8 RGB colours for K classes (None: native 15)."""
    return PALETTE[list(_grouping(num_classes or NUM_NATIVE_CLASSES)[1])].copy()


def class_mapping(num_classes: int | None = None) -> np.ndarray:
    """(15,) uint8 lookup table native class id -> class id among K classes."""
    return np.array(_grouping(num_classes or NUM_NATIVE_CLASSES)[2], dtype=np.uint8)


_C = {name: i for i, name in enumerate(CLASS_NAMES)}

# ------------------------------------------------------------------------------------------ conditions

CONDITIONS: tuple[str, ...] = ("day", "dusk", "night", "fog")

IR_COUNTS_OFFSET = 7500.0
IR_COUNTS_PER_KELVIN = 30.0
_SKY_DEPTH = 1.0e4

# Temperatures (°C) per material and condition. "sun" entries are added where the surface is sunlit.
_TEMPS: dict[str, dict[str, float]] = {
    #              day   dusk  night  fog
    "asphalt": dict(day=17, dusk=18, night=14, fog=12),
    "sidewalk": dict(day=15, dusk=16, night=10.5, fog=11),
    "terrain": dict(day=17, dusk=13, night=5.5, fog=10),
    "foliage": dict(day=14, dusk=11, night=3.5, fog=9),
    "bark": dict(day=15, dusk=12, night=5, fog=9.5),
    "facade": dict(day=16, dusk=15, night=11.5, fog=11),
    "window": dict(day=6, dusk=5, night=2.5, fog=8),
    "wall": dict(day=16, dusk=14, night=9, fog=10.5),
    "car_body": dict(day=15, dusk=13, night=6, fog=10),
    "car_glass": dict(day=8, dusk=7, night=1.5, fog=9),
    "tyre": dict(day=15, dusk=13, night=6, fog=10),
    "grille": dict(day=15, dusk=13, night=6, fog=10),
    "exhaust": dict(day=15, dusk=13, night=6, fog=10),
    "car_lamp": dict(day=15, dusk=13, night=6, fog=10),
    "plate": dict(day=15, dusk=13, night=6, fog=10),
    "metal": dict(day=15, dusk=13, night=6, fog=10),
    "streetlamp": dict(day=15, dusk=30, night=42, fog=10),
    "sign": dict(day=15, dusk=13, night=6, fog=10),
    "cloth": dict(day=28, dusk=26, night=23, fog=24),
    "skin": dict(day=33.5, dusk=33, night=32, fog=31.5),
    "hair": dict(day=29, dusk=28, night=26, fog=26),
    "sky_zenith": dict(day=-25, dusk=-28, night=-32, fog=8.5),
    "sky_horizon": dict(day=4, dusk=0, night=-6, fog=9.5),
}
_SUN_DELTA = {"asphalt": 8.0, "sidewalk": 8.0, "terrain": 5.0, "facade": 6.0, "wall": 5.0, "car_body": 8.0}
# Running vehicles: engine, exhaust, tyres and lamps warm up (added when a part is "hot").
_HOT_DELTA = {
    "grille": 38.0,
    "exhaust": 55.0,
    "tyre": 16.0,
    "car_body": 4.0,
    "car_glass": 3.0,
    "car_lamp": 6.0,
    "plate": 2.0,
}
_IR_TEXTURE_K = {"foliage": 1.0, "terrain": 0.7, "asphalt": 0.35, "sidewalk": 0.3, "facade": 0.3, "bark": 0.4}


@dataclass(frozen=True)
class Look:
    """Rendering conditions of one scene (visible light, fog, sensor, thermal environment)."""

    condition: str
    ambient: tuple[float, float, float]
    sun: tuple[float, float, float]
    sun_elevation: float  # radians
    sun_side: int  # +1: sun on the right (left facades lit), -1: on the left
    exposure: float
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    clouds: float
    fog_visibility_m: float  # inf: clear; fog extinction beta = 3 / visibility
    airlight: tuple[float, float, float]
    car_lights: bool
    street_lights: bool
    headlights: bool
    windows_lit: float
    noise_shot: float
    noise_read: float
    bloom: float
    temp_offset: float  # °C added to all material temperatures (weather variation)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["fog_visibility_m"] = None if math.isinf(self.fog_visibility_m) else round(self.fog_visibility_m, 2)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _make_look(condition: str, rng: np.random.Generator) -> Look:
    """Random (seeded) rendering parameters for a condition."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS} or None, got {condition!r}")
    jitter = float(rng.uniform(0.9, 1.15))
    common = dict(
        condition=condition, sun_side=int(rng.choice([-1, 1])), temp_offset=float(rng.uniform(-2, 2))
    )
    if condition == "day":
        return Look(
            **common,
            ambient=(0.30, 0.33, 0.40),
            sun=(1.5, 1.45, 1.35),
            sun_elevation=float(rng.uniform(0.5, 1.0)),
            exposure=1.1 * jitter,
            sky_top=(0.22, 0.40, 0.80),
            sky_horizon=(0.62, 0.72, 0.88),
            clouds=float(rng.uniform(0.0, 0.7)),
            fog_visibility_m=float(rng.uniform(1500, 4000)),  # haze: aerial perspective
            airlight=(0.62, 0.70, 0.85),
            car_lights=False,
            street_lights=False,
            headlights=False,
            windows_lit=0.0,
            noise_shot=4e-4,
            noise_read=2e-6,
            bloom=0.0,
        )
    if condition == "dusk":
        return Look(
            **common,
            ambient=(0.07, 0.06, 0.08),
            sun=(0.55, 0.30, 0.14),
            sun_elevation=float(rng.uniform(0.06, 0.2)),
            exposure=1.6 * jitter,
            sky_top=(0.05, 0.08, 0.22),
            sky_horizon=(0.85, 0.42, 0.20),
            clouds=float(rng.uniform(0.0, 0.6)),
            fog_visibility_m=float(rng.uniform(800, 2000)),
            airlight=(0.45, 0.32, 0.25),
            car_lights=True,
            street_lights=True,
            headlights=True,
            windows_lit=0.25,
            noise_shot=1.5e-3,
            noise_read=2e-5,
            bloom=0.10,
        )
    if condition == "night":
        return Look(
            **common,
            ambient=(0.0015, 0.0015, 0.002),
            sun=(0.0, 0.0, 0.0),
            sun_elevation=0.0,
            exposure=1.0 * jitter,
            sky_top=(0.002, 0.003, 0.008),
            sky_horizon=(0.018, 0.015, 0.014),  # light pollution
            clouds=0.0,
            fog_visibility_m=float(rng.uniform(600, 1500)),
            airlight=(0.01, 0.009, 0.009),
            car_lights=True,
            street_lights=True,
            headlights=True,
            windows_lit=0.2,
            noise_shot=3e-3,
            noise_read=1.2e-5,
            bloom=0.16,
        )
    return Look(  # fog: overcast daylight, visibility 25-45 m
        **common,
        ambient=(0.72, 0.74, 0.78),
        sun=(0.0, 0.0, 0.0),
        sun_elevation=0.0,
        exposure=1.0 * jitter,
        sky_top=(0.68, 0.70, 0.72),
        sky_horizon=(0.68, 0.70, 0.72),
        clouds=0.0,
        fog_visibility_m=float(rng.uniform(25, 45)),
        airlight=(0.68, 0.70, 0.72),
        car_lights=True,
        street_lights=False,
        headlights=False,
        windows_lit=0.0,
        noise_shot=6e-4,
        noise_read=4e-6,
        bloom=0.30,
    )


# ------------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class Camera:
    """Pinhole camera over a flat ground: focal length (px), vanishing point (cx, horizon) in continuous pixel
    coordinates (pixel (r, c) centre is (c + 0.5, r + 0.5)), height above ground (m)."""

    focal_px: float
    cx: float
    horizon: float
    height_m: float

    def ground_row(self, z: float) -> float:
        """Continuous image row where the ground at depth ``z`` (m) projects."""
        return self.horizon + self.focal_px * self.height_m / z

    def column(self, x: float, z: float) -> float:
        """Continuous image column of lateral position ``x`` (m) at depth ``z`` (m)."""
        return self.cx + self.focal_px * x / z


MaskFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


@dataclass
class _Part:
    mask: MaskFn  # (u (1,w), v (h,1), metres per pixel) -> (h,w) bool, in sprite coordinates (m)
    cls: int
    material: str
    albedo: tuple[float, float, float]
    hot: bool = False
    light: str | None = None  # "head", "tail", "street": emits when the condition has lights on
    temp_offset: float = 0.0
    tex: float = 0.04
    reflective: bool = False  # glass: reflects the sky
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour of the light it emits


@dataclass
class _Sprite:
    kind: str
    x: float  # lateral position of the sprite origin (m, + right)
    z: float  # depth of its camera-facing surface (m)
    extent: tuple[float, float, float, float]  # umin, umax, vmin, vmax (m) around the origin
    parts: list[_Part]
    shadow_half_width: float = 0.0  # contact shadow footprint (m); 0: none
    role: str = ""


@dataclass
class _Lot:
    z0: float
    z1: float
    kind: str  # building, vegetation, wall, open
    height: float
    albedo: tuple[float, float, float]
    floor_h: float = 3.2
    win_spacing: float = 3.0
    win_w: float = 0.5
    win_h: float = 0.5
    phase: float = 0.0


@dataclass
class _Side:
    sign: int  # -1 left, +1 right
    curb_x: float  # road edge (m)
    walk_x: float  # outer edge of the sidewalk
    facade_x: float  # facade plane
    lots: list[_Lot]


@dataclass
class _Layout:
    camera: Camera
    width: int
    height: int
    lane_width: float
    road_left: float
    road_right: float  # includes a parking strip when present
    lanes_right: float  # right edge of the driving lanes
    n_lanes: int
    n_oncoming: int
    parking: bool
    edge_lines: bool
    centre_solid: bool
    dash: tuple[float, float, float]  # dash length, period, phase (m)
    crosswalk_z: float | None
    asphalt: float
    sides: tuple[_Side, _Side]
    backdrop: list[tuple[int, int, float, str, float]]  # (x0, x1, height m, kind, albedo)
    backdrop_z: float
    sprites: list[_Sprite]
    street_lamps: list[tuple[float, float, float, tuple[float, float, float]]]  # x, y, z, colour


# --- sprite shapes (sprite coordinates: u metres right of the origin, v metres above the ground) -----------


def _rect(u0: float, u1: float, v0: float, v1: float) -> MaskFn:
    def fn(u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
        a0, a1 = (u0, u1) if u1 - u0 >= px else ((u0 + u1 - px) / 2, (u0 + u1 + px) / 2)
        b0, b1 = (v0, v1) if v1 - v0 >= px else ((v0 + v1 - px) / 2, (v0 + v1 + px) / 2)
        return (u >= a0) & (u <= a1) & (v >= b0) & (v <= b1)

    return fn


def _ellipse(cu: float, cv: float, ru: float, rv: float) -> MaskFn:
    def fn(u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
        a, b = max(ru, 0.55 * px), max(rv, 0.55 * px)
        return ((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 <= 1.0

    return fn


def _segment(p: tuple[float, float], q: tuple[float, float], half_width: float) -> MaskFn:
    dx, dy = q[0] - p[0], q[1] - p[1]
    length2 = max(dx * dx + dy * dy, 1e-9)

    def fn(u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
        hw = max(half_width, 0.55 * px)
        t = np.clip(((u - p[0]) * dx + (v - p[1]) * dy) / length2, 0.0, 1.0)
        return (u - p[0] - t * dx) ** 2 + (v - p[1] - t * dy) ** 2 <= hw * hw

    return fn


def _trapezoid(v0: float, v1: float, half_bottom: float, half_top: float, cu: float = 0.0) -> MaskFn:
    def fn(u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
        s = np.clip((v - v0) / max(v1 - v0, 1e-6), 0.0, 1.0)
        half = np.maximum(half_bottom + (half_top - half_bottom) * s, 0.5 * px)
        return (v >= v0) & (v <= v1) & (np.abs(u - cu) <= half)

    return fn


def _ring(cu: float, cv: float, r_out: float, r_in: float) -> MaskFn:
    def fn(u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
        r2 = (u - cu) ** 2 + (v - cv) ** 2
        inner = min(r_in, r_out - 0.8 * px)
        return (r2 <= r_out * r_out) & (r2 >= max(inner, 0.0) ** 2)

    return fn


def _triangle(cu: float, v0: float, side: float) -> MaskFn:
    """Upward-pointing equilateral triangle with its base at height v0."""
    h = side * math.sqrt(3) / 2

    def fn(u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
        s = (v - v0) / h
        return (v >= v0) & (s <= 1.0) & (np.abs(u - cu) <= (1.0 - s) * side / 2 + 0.3 * px)

    return fn


def _crown(cu: float, cv: float, r: float, phases: np.ndarray) -> MaskFn:
    """A tree crown: a circle with a lumpy (angular harmonic) outline."""

    def fn(u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
        du, dv = u - cu, (v - cv) / 1.1
        theta = np.arctan2(dv, du)
        k = np.arange(2, 2 + len(phases)).reshape(-1, 1, 1)
        lumps = 0.09 * np.sin(k * theta[None] + phases.reshape(-1, 1, 1)).sum(axis=0)
        return du * du + dv * dv <= (r * (1.0 + lumps)) ** 2

    return fn


# --- sprite factories ----------------------------------------------------------------------------------

_CAR_PAINTS = (
    (0.70, 0.70, 0.70),
    (0.42, 0.43, 0.45),
    (0.03, 0.03, 0.035),
    (0.12, 0.12, 0.13),
    (0.50, 0.04, 0.03),
    (0.04, 0.09, 0.38),
    (0.55, 0.45, 0.08),
    (0.05, 0.22, 0.10),
    (0.30, 0.20, 0.12),
    (0.75, 0.74, 0.70),
)
_CLOTHES = (
    (0.05, 0.05, 0.06),
    (0.10, 0.10, 0.12),
    (0.04, 0.06, 0.14),
    (0.35, 0.05, 0.05),
    (0.45, 0.45, 0.42),
    (0.08, 0.18, 0.08),
    (0.55, 0.35, 0.12),
    (0.60, 0.60, 0.62),
    (0.15, 0.22, 0.40),
    (0.25, 0.18, 0.12),
)
_DARK_CLOTHES = ((0.03, 0.03, 0.035), (0.04, 0.04, 0.06), (0.05, 0.045, 0.04), (0.03, 0.04, 0.05))
_SKINS = ((0.55, 0.38, 0.28), (0.42, 0.28, 0.20), (0.25, 0.16, 0.11), (0.62, 0.46, 0.36))
_HAIRS = ((0.05, 0.04, 0.03), (0.15, 0.10, 0.06), (0.35, 0.28, 0.15), (0.30, 0.30, 0.30))


def _pick(
    rng: np.random.Generator, options: Sequence[tuple[float, float, float]]
) -> tuple[float, float, float]:
    return options[int(rng.integers(len(options)))]


def _car(
    rng: np.random.Generator, x: float, z: float, facing: str, hot: bool, truck: bool = False
) -> _Sprite:
    """A car or truck seen from behind (``facing="rear"``) or from the front (``"front"``); hot: running."""
    cls = _C["truck"] if truck else _C["car"]
    parts: list[_Part] = []

    def add(mask: MaskFn, material: str, albedo: tuple[float, float, float], **kw: Any) -> None:
        parts.append(_Part(mask, cls, material, albedo, hot, **kw))

    paint = _pick(rng, _CAR_PAINTS)
    trim = (0.5 * paint[0], 0.5 * paint[1], 0.5 * paint[2])
    dark, glass = (0.025, 0.025, 0.028), (0.025, 0.03, 0.035)
    tail, head = (0.45, 0.03, 0.02), (0.78, 0.78, 0.75)
    hw = float(rng.uniform(1.15, 1.25) if truck else rng.uniform(0.82, 0.95))  # half width
    h = float(rng.uniform(3.0, 3.8) if truck else rng.uniform(1.38, 1.6))
    wheel_top = 0.55 if truck else 0.45
    add(_rect(-hw + 0.05, -hw + 0.32, 0.0, wheel_top), "tyre", dark)
    add(_rect(hw - 0.32, hw - 0.05, 0.0, wheel_top), "tyre", dark)
    if truck:  # a box body (rear) or a cab (front)
        add(_rect(-hw, hw, 0.45, h), "car_body", paint, tex=0.05)
        add(_rect(-hw, hw, 0.35, 0.55), "car_body", dark)
        lamp_v, plate_v = (0.6, 0.78), 0.42
        if facing == "front":
            add(_rect(-hw + 0.15, hw - 0.15, h * 0.55, h - 0.25), "car_glass", glass, reflective=True)
            add(_rect(-0.6, 0.6, 0.6, 1.25), "grille", (0.06, 0.06, 0.06))
        else:
            add(_rect(-0.02, 0.02, 0.6, h - 0.1), "car_body", trim)  # rear doors
    else:  # body, cabin, window, bumper
        belt = h * 0.62
        add(_rect(-hw, hw, 0.28, belt), "car_body", paint, tex=0.03)
        add(_trapezoid(belt, h, hw - 0.06, hw - 0.32), "car_body", paint, tex=0.03)
        add(_trapezoid(belt + 0.06, h - 0.07, hw - 0.16, hw - 0.38), "car_glass", glass, reflective=True)
        add(_rect(-hw, hw, 0.25, 0.40), "car_body", trim)
        lamp_v, plate_v = (
            ((belt - 0.2, belt - 0.04) if facing == "rear" else (belt - 0.24, belt - 0.08)),
            0.44,
        )
        if facing == "front":
            add(_rect(-0.45, 0.45, 0.42, belt - 0.1), "grille", (0.04, 0.04, 0.045))
    for s in (-1, 1):
        u0, u1 = sorted((s * (hw - 0.04), s * (hw - 0.34)))
        if facing == "rear":
            add(_rect(u0, u1, *lamp_v), "car_lamp", tail, light="tail")
        else:
            add(_rect(u0, u1, *lamp_v), "car_lamp", head, light="head")
    if facing == "rear":
        add(_ellipse(hw - 0.42, 0.28, 0.05, 0.04), "exhaust", dark)
    add(_rect(-0.26, 0.26, plate_v, plate_v + 0.12), "plate", (0.8, 0.8, 0.75))
    return _Sprite("truck" if truck else "car", x, z, (-hw, hw, 0.0, h), parts, shadow_half_width=hw * 1.05)


def _person(rng: np.random.Generator, dark: bool = False, cls: int = _C["person"]) -> list[_Part]:
    """Parts of a standing/walking person 1.6-1.9 m tall, in sprite coordinates (feet at u = 0, v = 0)."""
    parts: list[_Part] = []

    def add(mask: MaskFn, material: str, albedo: tuple[float, float, float], dt: float = 0.0) -> None:
        parts.append(_Part(mask, cls, material, albedo, temp_offset=dt))

    s = float(rng.uniform(0.92, 1.08))
    top = _pick(rng, _DARK_CLOTHES if dark else _CLOTHES)
    bottom = _pick(rng, _DARK_CLOTHES if dark else _CLOTHES)
    skin, hair = _pick(rng, _SKINS), _pick(rng, _HAIRS)
    stride = float(rng.uniform(-0.18, 0.18))
    dt = float(rng.normal(0, 1.0))  # clothing warmth
    facing_us = bool(rng.random() < 0.5)
    hip, shoulder = 0.88 * s, 1.42 * s
    for side in (-1, 1):
        add(_segment((side * 0.09, hip), (side * (0.09 + stride), 0.06), 0.075), "cloth", bottom, dt - 1.5)
        hand = (side * (0.26 - stride / 2), hip - 0.05)
        add(_segment((side * 0.21, shoulder - 0.03), hand, 0.05), "cloth", top, dt)
        add(_ellipse(hand[0], hand[1] - 0.03, 0.045, 0.06), "skin", skin, -2.5)
    add(_rect(-0.2 - stride, -stride, 0.0, 0.07), "cloth", (0.03, 0.03, 0.03), -4.0)  # a shoe
    add(_trapezoid(hip - 0.05, shoulder, 0.17, 0.21), "cloth", top, dt)
    add(_rect(-0.05, 0.05, shoulder - 0.02, shoulder + 0.08), "skin", skin)
    head = _ellipse(0.0, shoulder + 0.2 * s, 0.1, 0.125 * s)
    if facing_us:
        add(head, "skin", skin)
    else:
        add(head, "hair", hair)
    add(_ellipse(0.0, shoulder + 0.26 * s, 0.1, 0.075 * s), "hair", hair)
    return parts


def _pedestrian(rng: np.random.Generator, x: float, z: float, dark: bool = False, role: str = "") -> _Sprite:
    return _Sprite("person", x, z, (-0.5, 0.5, 0.0, 2.1), _person(rng, dark), 0.35, role)


_FRAME_PAINTS = ((0.5, 0.05, 0.05), (0.05, 0.1, 0.4), (0.6, 0.6, 0.6), (0.05, 0.05, 0.05), (0.1, 0.4, 0.1))
# Side-view bicycle and rider joints (u, v) in metres, riding towards +u.
_BIKE_JOINTS = {
    "rear": (-0.52, 0.34),
    "front": (0.52, 0.34),
    "bb": (-0.04, 0.30),
    "seat": (-0.16, 0.90),
    "head_top": (0.38, 0.92),
    "head_bot": (0.42, 0.72),
    "bar": (0.36, 1.04),
    "hip": (-0.14, 1.02),
    "shoulder": (0.12, 1.48),
    "knee": (0.16, 0.72),
    "pedal": (0.04, 0.20),
}
_BIKE_TUBES = (
    ("rear", "bb"),
    ("rear", "seat"),
    ("bb", "seat"),
    ("bb", "head_bot"),
    ("seat", "head_top"),
    ("head_top", "front"),
    ("head_top", "bar"),
)


def _cyclist(rng: np.random.Generator, x: float, z: float, side_view: bool, role: str = "") -> _Sprite:
    """A bicycle with its rider, from the side (crossing) or from behind (riding away)."""
    parts: list[_Part] = []

    def add(mask: MaskFn, cls: int, material: str, albedo: tuple[float, float, float], **kw: Any) -> None:
        parts.append(_Part(mask, cls, material, albedo, **kw))

    bike, rider = _C["bicycle"], _C["rider"]
    frame, dark = _pick(rng, _FRAME_PAINTS), (0.03, 0.03, 0.03)
    top, bottom = _pick(rng, _CLOTHES), _pick(rng, _CLOTHES)
    skin, hair = _pick(rng, _SKINS), _pick(rng, _HAIRS)
    dt = float(rng.normal(0, 1.0))
    if side_view:
        f = 1.0 if rng.random() < 0.5 else -1.0  # riding right (+1) or left (-1)
        q = {k: (f * a, b) for k, (a, b) in _BIKE_JOINTS.items()}
        add(_ring(*q["rear"], 0.34, 0.30), bike, "tyre", dark)
        add(_ring(*q["front"], 0.34, 0.30), bike, "tyre", dark)
        for a, b in _BIKE_TUBES:
            add(_segment(q[a], q[b], 0.022), bike, "metal", frame)
        add(_segment(q["hip"], q["knee"], 0.08), rider, "cloth", bottom, temp_offset=dt - 1.5)
        add(_segment(q["knee"], q["pedal"], 0.065), rider, "cloth", bottom, temp_offset=dt - 1.5)
        add(_segment(q["hip"], q["shoulder"], 0.15), rider, "cloth", top, temp_offset=dt)
        add(_segment(q["shoulder"], q["bar"], 0.05), rider, "cloth", top, temp_offset=dt)
        add(_ellipse(f * 0.2, 1.66, 0.1, 0.12), rider, "skin", skin)
        add(_ellipse(f * 0.17, 1.72, 0.11, 0.07), rider, "hair", hair)
        return _Sprite("cyclist", x, z, (-0.9, 0.9, 0.0, 1.85), parts, 0.6, role)
    add(_rect(-0.025, 0.025, 0.0, 0.68), bike, "tyre", dark)  # rear wheel, edge on
    add(_rect(-0.03, 0.03, 0.55, 0.95), bike, "metal", frame)
    add(_rect(-0.3, 0.3, 1.0, 1.05), bike, "metal", (0.1, 0.1, 0.1))  # handlebar
    add(_rect(-0.06, 0.06, 0.25, 0.36), bike, "car_lamp", (0.5, 0.03, 0.02), light="tail", hot=True)
    for side in (-1, 1):
        foot = (side * 0.13, 0.3 if side < 0 else 0.45)
        add(_segment((side * 0.1, 1.0), foot, 0.07), rider, "cloth", bottom, temp_offset=dt - 1.5)
        add(_segment((side * 0.2, 1.45), (side * 0.29, 1.04), 0.05), rider, "cloth", top, temp_offset=dt)
    add(_trapezoid(0.95, 1.5, 0.18, 0.21), rider, "cloth", top, temp_offset=dt)
    add(_rect(-0.05, 0.05, 1.48, 1.56), rider, "skin", skin)
    add(_ellipse(0.0, 1.68, 0.1, 0.125), rider, "hair", hair)
    return _Sprite("cyclist", x, z, (-0.4, 0.4, 0.0, 1.85), parts, 0.35, role)


def _street_light(
    x: float, z: float, height: float, arm: float, colour: tuple[float, float, float]
) -> _Sprite:
    pole = _C["pole"]
    grey = (0.22, 0.22, 0.23)
    parts = [
        _Part(_segment((0.0, 0.0), (0.0, height), 0.08), pole, "metal", grey),
        _Part(_segment((0.0, height - 0.35), (arm * 0.85, height), 0.045), pole, "metal", grey),
        _Part(_ellipse(arm, height - 0.03, 0.38, 0.1), pole, "metal", grey),
        _Part(
            _ellipse(arm, height - 0.09, 0.3, 0.045),
            pole,
            "streetlamp",
            (0.6, 0.6, 0.55),
            light="street",
            tint=colour,
        ),
    ]
    return _Sprite(
        "street_light", x, z, (min(0.0, arm) - 0.45, max(0.0, arm) + 0.45, 0.0, height + 0.15), parts
    )


def _sign(rng: np.random.Generator, x: float, z: float) -> _Sprite:
    pole, sign = _C["pole"], _C["traffic_sign"]
    top = float(rng.uniform(2.2, 2.6))
    parts = [_Part(_segment((0.0, 0.0), (0.0, top), 0.035), pole, "metal", (0.35, 0.35, 0.36))]
    red, white, blue = (0.55, 0.03, 0.03), (0.85, 0.85, 0.85), (0.03, 0.12, 0.55)
    kind = int(rng.integers(4))
    c = top + 0.32
    if kind == 0:  # prohibitory: red ring, white disc
        parts += [
            _Part(_ellipse(0, c, 0.3, 0.3), sign, "sign", red),
            _Part(_ellipse(0, c, 0.22, 0.22), sign, "sign", white),
        ]
    elif kind == 1:  # mandatory: blue disc, white arrow
        parts += [
            _Part(_ellipse(0, c, 0.3, 0.3), sign, "sign", blue),
            _Part(_rect(-0.04, 0.04, c - 0.18, c + 0.12), sign, "sign", white),
            _Part(_triangle(0.0, c + 0.08, 0.2), sign, "sign", white),
        ]
    elif kind == 2:  # warning: red triangle, white inside
        parts += [
            _Part(_triangle(0.0, top, 0.75), sign, "sign", red),
            _Part(_triangle(0.0, top + 0.09, 0.5), sign, "sign", white),
        ]
    else:  # information: blue square with a white stripe
        parts += [
            _Part(_rect(-0.3, 0.3, top, top + 0.6), sign, "sign", blue),
            _Part(_rect(-0.2, 0.2, top + 0.2, top + 0.4), sign, "sign", white),
        ]
    return _Sprite("traffic_sign", x, z, (-0.45, 0.45, 0.0, top + 0.75), parts)


def _tree(rng: np.random.Generator, x: float, z: float) -> _Sprite:
    veg = _C["vegetation"]
    trunk_h = float(rng.uniform(1.8, 3.0))
    r = float(rng.uniform(1.4, 2.6))
    green = (float(rng.uniform(0.04, 0.09)), float(rng.uniform(0.10, 0.17)), float(rng.uniform(0.02, 0.05)))
    crown = _crown(0.0, trunk_h + r * 0.85, r, rng.uniform(0, 2 * math.pi, 5))
    parts = [
        _Part(_rect(-0.13, 0.13, 0.0, trunk_h + r * 0.5), veg, "bark", (0.12, 0.09, 0.06), tex=0.15),
        _Part(crown, veg, "foliage", green, tex=0.9),
    ]
    return _Sprite("tree", x, z, (-r * 1.25, r * 1.25, 0.0, trunk_h + r * 2.15), parts)


# --- layout --------------------------------------------------------------------------------------------

_FACADES = (
    (0.45, 0.42, 0.38),
    (0.55, 0.50, 0.42),
    (0.36, 0.20, 0.15),
    (0.30, 0.30, 0.32),
    (0.60, 0.58, 0.55),
    (0.42, 0.32, 0.22),
    (0.20, 0.24, 0.28),
    (0.50, 0.45, 0.35),
)


def _make_lots(rng: np.random.Generator, far: float) -> list[_Lot]:
    lots: list[_Lot] = []
    z = float(rng.uniform(-20, -5))
    while z < far:
        length = float(rng.uniform(8, 32))
        kind = str(rng.choice(["building", "vegetation", "wall", "open"], p=[0.6, 0.24, 0.08, 0.08]))
        if kind == "building":
            floors = int(rng.integers(2, 9))
            floor_h = float(rng.uniform(2.9, 3.5))
            albedo = _pick(rng, _FACADES)
            height = floors * floor_h + float(rng.uniform(0.3, 1.5))  # + a parapet
            lots.append(
                _Lot(
                    z, z + length, kind, height, albedo, floor_h=floor_h,
                    win_spacing=float(rng.uniform(2.4, 4.0)), win_w=float(rng.uniform(0.35, 0.6)),
                    win_h=float(rng.uniform(0.4, 0.6)), phase=float(rng.uniform(0, 1000)),
                )
            )  # fmt: skip
        elif kind == "vegetation":
            g = rng.uniform((0.04, 0.09, 0.02), (0.08, 0.15, 0.05))
            height = float(rng.uniform(2.5, 11.0))
            green = (float(g[0]), float(g[1]), float(g[2]))
            lots.append(_Lot(z, z + length, kind, height, green, phase=float(rng.uniform(0, 100))))
        elif kind == "wall":
            lots.append(_Lot(z, z + length, kind, float(rng.uniform(1.4, 2.6)), _pick(rng, _FACADES)))
        else:
            lots.append(_Lot(z, z + length, kind, 0.0, (0, 0, 0)))
        z += length
    return lots


def _free(zs: list[float], z: float, gap: float) -> bool:
    return all(abs(z - other) >= gap for other in zs)


def _make_backdrop(
    rng: np.random.Generator, width: int
) -> tuple[float, list[tuple[int, int, float, str, float]]]:
    """The far skyline: its depth and (x0, x1, height, kind, shade) strips across the image."""
    backdrop_z = float(rng.uniform(250, 400))
    backdrop: list[tuple[int, int, float, str, float]] = []
    x = 0
    while x < width:
        w = int(rng.integers(max(2, width // 60), max(4, width // 12)))
        kind = "building" if rng.random() < 0.7 else "vegetation"
        hgt = float(rng.uniform(6, 35)) if kind == "building" else float(rng.uniform(6, 15))
        backdrop.append((x, min(width, x + w), hgt, kind, float(rng.uniform(0.2, 0.45))))
        x += w
    return backdrop_z, backdrop


def _add_street_lights(
    rng: np.random.Generator, sides: list[_Side], dark_x: float, dark_z: float, sprites: list[_Sprite]
) -> list[tuple[float, float, float, tuple[float, float, float]]]:
    """Lamp posts appended to ``sprites``; the lamps' light sources (x, y, z, colour)."""
    right = sides[1]
    # Street lights: phase chosen so that the dark pedestrian is >= 16 m from every lamp along the road.
    spacing = float(rng.uniform(34, 44))
    lamp_sides = [(-1,), (1,), (-1, 1)][int(rng.choice(3, p=[0.25, 0.35, 0.4]))]
    lamp_colour = (1.0, 0.62, 0.3) if rng.random() < 0.5 else (0.95, 0.95, 1.0)
    lamp_h = float(rng.uniform(7.0, 9.0))
    street_lamps = []
    first = dark_z + float(rng.uniform(16, spacing - 16)) - spacing * 3
    # No lamp lights what is seen behind the dark pedestrian (up to where his line of sight meets the
    # facades): a gap in the rows of lamps.
    behind_z = dark_z * right.facade_x / dark_x + 20.0
    for k in range(12):
        zl = first + k * spacing
        if zl < 3.0 or zl > 260:
            continue
        for sign in lamp_sides:
            if dark_z - 16.0 < zl < behind_z:
                continue
            side = sides[0 if sign < 0 else 1]
            xl = side.curb_x + sign * 0.5
            arm = -sign * 1.6
            sprites.append(_street_light(xl, zl, lamp_h, arm, lamp_colour))
            street_lamps.append((xl + arm, lamp_h - 0.12, zl, lamp_colour))
    return street_lamps


def _add_road_users(
    rng: np.random.Generator, sides: list[_Side], road_left: float, lanes_right: float, lw: float,
    n_lanes: int, n_onc: int, ego: int, parking: bool, dark_z: float, sprites: list[_Sprite],
) -> float | None:  # fmt: skip
    """Pedestrians, a crosswalk, cyclists, moving and parked cars appended to ``sprites``; the crosswalk's
    distance (None: none)."""
    # Far pedestrians (beyond fog visibility; small).
    for _ in range(int(rng.integers(1, 3))):
        side = sides[int(rng.integers(2))]
        xp = side.curb_x + side.sign * float(rng.uniform(0.4, 2.0))
        sprites.append(_pedestrian(rng, xp, float(rng.uniform(50, 90)), role="far_pedestrian"))
    # Pedestrians on the sidewalks (none in front of the dark pedestrian).
    for _ in range(int(rng.integers(0, 5))):
        side = sides[int(rng.integers(2))]
        xp = side.curb_x + side.sign * float(rng.uniform(0.4, abs(side.walk_x - side.curb_x) - 0.3))
        zp = float(rng.uniform(6, 60))
        if side.sign < 0 or zp > dark_z + 3:
            sprites.append(_pedestrian(rng, xp, zp))
    # Crosswalk with people crossing.
    crosswalk = float(rng.uniform(14, 35)) if rng.random() < 0.3 else None
    if crosswalk is not None:
        for _ in range(int(rng.integers(0, 3))):
            sprites.append(
                _pedestrian(rng, float(rng.uniform(road_left + 0.5, lanes_right - 0.5)), crosswalk + 2.0)
            )
    # Cyclists.
    for _ in range(int(rng.integers(0, 3))):
        if rng.random() < 0.5:
            sprites.append(_cyclist(rng, lanes_right - 0.7, float(rng.uniform(10, 70)), side_view=False))
        else:
            zc = float(rng.uniform(15, 55))
            sprites.append(
                _cyclist(rng, float(rng.uniform(road_left + 1, lanes_right - 1)), zc, side_view=True)
            )
    # Cars in lanes.
    for lane in range(n_lanes):
        xc = road_left + (lane + 0.5) * lw
        zs: list[float] = []
        for _ in range(int(rng.integers(0, 4))):
            zc = float(rng.uniform(12 if lane == ego else 7, 120))
            if _free(zs, zc, 10.0):
                zs.append(zc)
                truck = bool(rng.random() < 0.12)
                sprites.append(
                    _car(
                        rng,
                        xc + float(rng.uniform(-0.3, 0.3)),
                        zc,
                        "front" if lane < n_onc else "rear",
                        hot=True,
                        truck=truck,
                    )
                )
    # Parked cars (cold at night) on the parking strip.
    if parking:
        z = float(rng.uniform(3, 9))
        while z < 90:
            if rng.random() < 0.55 and z > dark_z + 3:  # none between us and the dark pedestrian
                sprites.append(_car(rng, lanes_right + 1.1, z, "rear", hot=False))
            z += float(rng.uniform(5.2, 7.5))
    return crosswalk


def _add_signs_and_trees(
    rng: np.random.Generator, sides: list[_Side], dark_z: float, sprites: list[_Sprite]
) -> None:
    """Signs and rows of trees appended to ``sprites`` (none just around the dark pedestrian)."""
    # Signs and trees.
    for _ in range(int(rng.integers(0, 3))):
        side = sides[int(rng.integers(2))]
        zs_ = float(rng.uniform(8, 60))
        if not dark_z - 14 < zs_ < dark_z + 3:
            sprites.append(_sign(rng, side.curb_x + side.sign * 0.35, zs_))
    for side in sides:
        if rng.random() < 0.55:
            x_tree = (
                side.walk_x - side.sign * 0.8
                if abs(side.facade_x - side.walk_x) < 2
                else (side.walk_x + side.sign * 1.0)
            )
            z = float(rng.uniform(4, 14))
            step = float(rng.uniform(8, 16))
            while z < 110:
                if side.sign < 0 or not dark_z - 14 < z < dark_z + 3:
                    sprites.append(_tree(rng, x_tree, z))
                z += step * float(rng.uniform(0.8, 1.2))


def _make_layout(rng: np.random.Generator, width: int, height: int) -> _Layout:
    """Random street geometry and objects; independent of the rendering condition."""
    f = 0.875 * width
    cam = Camera(
        focal_px=f,
        cx=width / 2 + float(rng.uniform(-0.06, 0.06)) * width,
        horizon=height * float(rng.uniform(0.40, 0.47)),
        height_m=float(rng.uniform(1.3, 1.6)),
    )
    lw = float(rng.uniform(3.2, 3.6))
    n_lanes = int(rng.choice([2, 2, 3, 4]))
    n_onc = n_lanes // 2
    ego = n_onc + (int(rng.integers(n_lanes - n_onc)) if n_lanes - n_onc > 1 else 0)
    road_left = -(ego + 0.5) * lw
    lanes_right = road_left + n_lanes * lw
    parking = bool(rng.random() < 0.5)
    road_right = lanes_right + (2.2 if parking else 0.0)
    sides = []
    for sign, curb in ((-1, road_left), (1, road_right)):
        walk = float(rng.uniform(2.0, 4.5))
        setback = 0.0 if rng.random() < 0.55 else float(rng.uniform(1.5, 7.0))
        walk_x = curb + sign * walk
        facade_x = walk_x + sign * setback
        if sign > 0:  # room on the right for a pedestrian outside our low beam (a front garden if need be)
            facade_x = max(facade_x, 7.0)
        sides.append(_Side(sign, curb, walk_x, facade_x, _make_lots(rng, 420.0)))
    backdrop_z, backdrop = _make_backdrop(rng, width)

    sprites: list[_Sprite] = []
    right = sides[1]
    # The dark pedestrian: right of the road, outside our low beam, in a gap between street lamps.
    candidates = [
        (
            float(rng.uniform(right.curb_x + 0.5, max(right.curb_x + 0.6, right.facade_x - 0.5))),
            float(rng.uniform(*zr)),
        )
        for zr in [(14.0, 30.0)] * 24 + [(8.0, 14.0)] * 8
    ]
    in_view = (0.96 * width - cam.cx) / cam.focal_px  # the rightmost bearing in the image, with a margin
    outside = [c for c in candidates if _outside_low_beam(*c) > 0.04 and c[0] / c[1] < in_view]
    dark_x, dark_z = outside[0] if outside else max(candidates, key=lambda c: _outside_low_beam(*c))
    sprites.append(_pedestrian(rng, dark_x, dark_z, dark=True, role="dark_pedestrian"))

    street_lamps = _add_street_lights(rng, sides, dark_x, dark_z, sprites)
    crosswalk = _add_road_users(
        rng, sides, road_left, lanes_right, lw, n_lanes, n_onc, ego, parking, dark_z, sprites
    )
    _add_signs_and_trees(rng, sides, dark_z, sprites)

    return _Layout(
        cam,
        width,
        height,
        lw,
        road_left,
        road_right,
        lanes_right,
        n_lanes,
        n_onc,
        parking,
        bool(rng.random() < 0.8),
        bool(rng.random() < 0.5),
        (3.0, 9.0, float(rng.uniform(0, 9)))
        if rng.random() < 0.7
        else (6.0, 12.0, float(rng.uniform(0, 12))),
        crosswalk,
        float(rng.uniform(0.07, 0.11)),
        (sides[0], sides[1]),
        backdrop,
        backdrop_z,
        sprites,
        street_lamps,
    )


# --------------------------------------------------------------------------------------------- canvas

_ORIENT_GROUND, _ORIENT_LEFT, _ORIENT_RIGHT, _ORIENT_FRONT, _ORIENT_SKY = 0, 1, 2, 3, 4
# Surface normals per orientation code (x right, y up, z forward): ground, left facade (faces +x), right
# facade (faces -x), camera-facing, sky.
_NORMALS = np.array([(0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, -1), (0, 0, 0)], dtype=np.float32)


class _Canvas:
    """Per-pixel scene buffers shared by the visible and the thermal renderer (H×W, float32 unless noted)."""

    def __init__(self, h: int, w: int) -> None:
        self.label = np.full((h, w), _C["sky"], dtype=np.uint8)
        self.depth = np.full((h, w), _SKY_DEPTH, dtype=np.float32)
        self.albedo = np.zeros((h, w, 3), dtype=np.float32)
        self.emit = np.zeros((h, w, 3), dtype=np.float32)  # emitted / reflected radiance (sky, lights)
        self.lights = np.zeros((h, w, 3), dtype=np.float32)  # bright emitters, for glare
        self.temp = np.zeros((h, w), dtype=np.float32)
        self.sun_dt = np.zeros((h, w), dtype=np.float32)  # warming where sunlit (K)
        self.sunlit = np.zeros((h, w), dtype=np.float32)
        self.tex = np.zeros((h, w), dtype=np.float32)  # visible texture amplitude
        self.ir_tex = np.zeros((h, w), dtype=np.float32)  # thermal texture amplitude (K)
        self.orient = np.full((h, w), _ORIENT_SKY, dtype=np.uint8)
        self.instance = np.zeros((h, w), dtype=np.int32)
        self.ao = np.ones((h, w), dtype=np.float32)


def _material_temp(material: str, look: Look, hot: bool = False) -> float:
    t = _TEMPS[material][look.condition] + look.temp_offset
    return t + (_HOT_DELTA.get(material, 0.0) if hot else 0.0)


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise in [-1, 1], (h, w) float32: a random (h/cell, w/cell) grid, bilinearly upsampled."""
    grid = rng.random((h // cell + 2, w // cell + 2), dtype=np.float32) * 2.0 - 1.0
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR), dtype=np.float32)


def _hash01(*keys: np.ndarray) -> np.ndarray:
    """Cheap deterministic pseudo-random numbers in [0, 1) from integer-valued arrays."""
    acc = np.zeros(np.broadcast_shapes(*(k.shape for k in keys)), dtype=np.float64)
    for k, m in zip(keys, (12.9898, 78.233, 37.719, 93.989), strict=False):
        acc = acc + k * m
    return (np.sin(acc) * 43758.5453) % 1.0


def _draw_ground(cv: _Canvas, lay: _Layout, look: Look) -> tuple[np.ndarray, np.ndarray]:
    """Road, sidewalks, markings and terrain on the ground plane; returns (X, Z) of ground rows r0..H."""
    cam, h, w = lay.camera, lay.height, lay.width
    r0 = max(0, math.ceil(cam.horizon - 0.5 + 1e-3))
    ys = np.arange(r0, h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
    z = np.minimum(cam.focal_px * cam.height_m / np.maximum(ys - cam.horizon, 1e-3), 5000.0)
    z = np.broadcast_to(z, (h - r0, w))
    x = (xs - cam.cx) * z / cam.focal_px
    px = z / cam.focal_px  # metres per pixel

    left, right = lay.sides
    road = (x >= lay.road_left) & (x <= lay.road_right)
    walk = ((x < lay.road_left) & (x >= left.walk_x)) | ((x > lay.road_right) & (x <= right.walk_x))
    label = np.where(road, _C["road"], np.where(walk, _C["sidewalk"], _C["terrain"])).astype(np.uint8)

    # Markings (world coordinates; at least 0.7 px wide so that far lines stay connected).
    half = np.maximum(0.075, 0.35 * px)
    mark = np.zeros(z.shape, dtype=bool)
    dash_len, period, phase = lay.dash
    dashed = ((z + phase) % period) < dash_len
    for i in range(1, lay.n_lanes):
        xb = lay.road_left + i * lay.lane_width
        line = np.abs(x - xb) <= half
        if i == lay.n_oncoming and lay.centre_solid:
            mark |= line
        else:
            mark |= line & dashed
    if lay.edge_lines:
        mark |= np.abs(x - (lay.road_left + 0.3)) <= half
        mark |= np.abs(x - (lay.lanes_right - 0.2)) <= half
    if lay.parking:  # parking bay separators
        bay = (
            (np.abs(((z + phase) % 6.0) - 3.0) <= np.maximum(0.06, 0.35 * px))
            & (x > lay.lanes_right)
            & (x < lay.road_right - 0.1)
        )
        mark |= bay
    if lay.crosswalk_z is not None:
        zc = lay.crosswalk_z
        stripes = ((x - lay.road_left) % 1.0) < 0.5
        mark |= (
            (z >= zc) & (z <= zc + 4.0) & stripes & (x > lay.road_left + 0.3) & (x < lay.lanes_right - 0.2)
        )
    mark &= road
    label[mark] = _C["lane_marking"]

    # Albedo: asphalt with darker wheel tracks, curb stones, paving, grass.
    lane_pos = (x - lay.road_left) % lay.lane_width - lay.lane_width / 2
    tracks = (np.abs(np.abs(lane_pos) - 0.85) < 0.3) & road
    a = np.where(tracks, lay.asphalt * 0.82, lay.asphalt).astype(np.float32)
    curb = (~road) & ((np.abs(x - lay.road_left) < 0.18) | (np.abs(x - lay.road_right) < 0.18))
    alb = np.empty((*z.shape, 3), dtype=np.float32)
    alb[...] = a[..., None] * np.array([1.0, 1.0, 1.04], dtype=np.float32)
    paving = np.array([0.30, 0.28, 0.27], dtype=np.float32)
    grass = np.array([0.09, 0.13, 0.05], dtype=np.float32)
    alb[walk] = paving
    alb[curb] = paving * 1.3
    alb[label == _C["terrain"]] = grass
    alb[mark] = np.array([0.62, 0.62, 0.60], dtype=np.float32)
    # Fine paving joints on the sidewalk.
    joints = walk & (
        ((z % 0.6) < np.maximum(0.04, 0.5 * px)) | ((np.abs(x) % 0.6) < np.maximum(0.04, 0.5 * px))
    )
    alb[joints & (px < 0.05)] *= 0.8

    sl = slice(r0, h)
    cv.label[sl] = label
    cv.depth[sl] = z
    cv.albedo[sl] = alb
    cv.orient[sl] = _ORIENT_GROUND
    tex = np.where(label == _C["terrain"], 0.5, np.where(road, 0.25, 0.18)).astype(np.float32)
    tex[mark] = 0.1
    cv.tex[sl] = tex
    mats = {"asphalt": road, "sidewalk": walk, "terrain": label == _C["terrain"]}
    temp = np.zeros(z.shape, dtype=np.float32)
    sun_dt = np.zeros(z.shape, dtype=np.float32)
    ir_tex = np.zeros(z.shape, dtype=np.float32)
    for name, m in mats.items():
        temp[m] = _material_temp(name, look)
        sun_dt[m] = _SUN_DELTA[name]
        ir_tex[m] = _IR_TEXTURE_K[name]
    cv.temp[sl] = temp
    cv.sun_dt[sl] = sun_dt
    cv.ir_tex[sl] = ir_tex

    # Sun shadows of the facades on the sun side (sun at azimuth perpendicular to the road).
    if look.sun_elevation > 0:
        side = lay.sides[1 if look.sun_side > 0 else 0]
        reach = 1.0 / math.tan(look.sun_elevation)
        z0 = np.array([lot.z0 for lot in side.lots], dtype=np.float32)
        heights = np.array([lot.height for lot in side.lots] + [0.0], dtype=np.float32)
        idx = np.clip(np.searchsorted(z0, z, side="right") - 1, 0, len(side.lots) - 1)
        shadow = np.abs(x - side.facade_x) < heights[idx] * reach
        shadow &= (x - side.facade_x) * side.sign < 0  # on the road side of the facade
        cv.sunlit[sl] = (~shadow).astype(np.float32)
    return x, z


def _draw_backdrop(cv: _Canvas, lay: _Layout, look: Look, noise: np.ndarray) -> None:
    """A distant skyline across the image at ``backdrop_z``: closes the road at the vanishing point."""
    cam, h, w = lay.camera, lay.height, lay.width
    zb = lay.backdrop_z
    bottom = min(h, math.ceil(cam.ground_row(zb)))
    top = np.zeros(w, dtype=np.float32)
    kind = np.zeros(w, dtype=bool)  # True: vegetation
    shade = np.zeros(w, dtype=np.float32)
    for x0, x1, hgt, k, alb in lay.backdrop:
        top[x0:x1] = cam.horizon - cam.focal_px * (hgt - cam.height_m) / zb
        kind[x0:x1] = k == "vegetation"
        shade[x0:x1] = alb
    xs = np.arange(w, dtype=np.float32)
    top = top + np.where(kind, 2.0 * np.sin(xs * 0.9) + 1.5 * np.sin(xs * 0.37), 0.0) * (w / 640)
    r0 = max(0, math.floor(float(top.min())))
    if bottom <= r0:
        return
    ys = np.arange(r0, bottom, dtype=np.float32)[:, None] + 0.5
    m = (ys >= top[None, :]) & (cv.depth[r0:bottom] > zb)
    sub = (slice(r0, bottom), slice(None))
    veg = np.broadcast_to(kind[None, :], m.shape)
    cv.depth[sub][m] = zb
    cv.label[sub][m] = np.where(veg[m], _C["vegetation"], _C["building"])
    grey = np.broadcast_to(shade[None, :, None] * np.array([1.0, 1.0, 1.05], dtype=np.float32), (*m.shape, 3))
    green = np.array([0.06, 0.1, 0.04], dtype=np.float32)
    cv.albedo[sub][m] = np.where(veg[m][:, None], green, grey[m])
    cv.orient[sub][m] = _ORIENT_FRONT
    cv.tex[sub][m] = 0.2
    cv.temp[sub][m] = np.where(veg[m], _material_temp("foliage", look), _material_temp("facade", look))
    cv.sunlit[sub][m] = 0.5
    if look.windows_lit > 0:  # far city lights
        lit = m & ~veg & (noise[r0:bottom] > 0.92) & (ys > top[None, :] + 1)
        cv.emit[sub][lit] = np.array([1.0, 0.8, 0.5], dtype=np.float32) * 0.12


def _draw_facades(cv: _Canvas, lay: _Layout, look: Look) -> None:
    """Building, vegetation and wall lots on both sides: vertical planes parallel to the road."""
    cam, h, w = lay.camera, lay.height, lay.width
    xs = np.arange(w, dtype=np.float32) + 0.5
    for side in lay.sides:
        cols = (xs - cam.cx) * side.sign > 0.5
        zcol = np.full(w, np.inf, dtype=np.float32)
        zcol[cols] = cam.focal_px * side.facade_x / (xs[cols] - cam.cx)
        z0 = np.array([lot.z0 for lot in side.lots], dtype=np.float32)
        idx = np.clip(np.searchsorted(z0, zcol, side="right") - 1, 0, len(side.lots) - 1)
        heights = np.array([lot.height for lot in side.lots], dtype=np.float32)[idx]
        veg_col = np.array([lot.kind == "vegetation" for lot in side.lots])[idx]
        phases = np.array([lot.phase for lot in side.lots], dtype=np.float32)[idx]
        zfin = np.where(cols, np.minimum(zcol, 1e4), 0.0)
        ragged = np.sin(zfin * 0.8 + phases) * 0.9 + np.sin(zfin * 2.1 + 2 * phases) * 0.5
        heights = np.where(veg_col, heights + ragged * np.minimum(1.0, heights / 4), heights)
        valid = cols & (zcol < 420.0) & (heights > 0.05)
        top = cam.horizon - cam.focal_px * (heights - cam.height_m) / np.where(valid, zcol, 1.0)
        bottom = cam.horizon + cam.focal_px * cam.height_m / np.where(valid, zcol, 1.0)
        if not valid.any():
            continue
        r0 = max(0, math.floor(float(top[valid].min())))
        r1 = min(h, math.ceil(float(bottom[valid].max())) + 1)
        if r1 <= r0:
            continue
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
        m = (
            valid[None, :]
            & (ys >= top[None, :])
            & (ys <= bottom[None, :])
            & (cv.depth[r0:r1] > zcol[None, :])
        )
        rr, cc = np.nonzero(m)
        if rr.size == 0:
            continue
        rows = rr + r0
        zp = zcol[cc]
        vp = cam.height_m + (cam.horizon - (rows + 0.5)) * zp / cam.focal_px  # height above ground (m)
        lot_i = idx[cc]
        kinds = np.array(
            [{"building": 0, "vegetation": 1, "wall": 2, "open": 3}[lot.kind] for lot in side.lots]
        )[lot_i]
        alb = np.array([lot.albedo for lot in side.lots], dtype=np.float32)[lot_i]
        label = np.where(kinds == 0, _C["building"], np.where(kinds == 1, _C["vegetation"], _C["wall"]))
        temp = np.where(
            kinds == 1,
            _material_temp("foliage", look),
            np.where(kinds == 2, _material_temp("wall", look), _material_temp("facade", look)),
        )
        tex = np.where(kinds == 1, 0.9, 0.12).astype(np.float32)
        ir_tex = np.where(kinds == 1, _IR_TEXTURE_K["foliage"], _IR_TEXTURE_K["facade"]).astype(np.float32)
        sun_dt = np.where(kinds == 1, 0.0, _SUN_DELTA["facade"]).astype(np.float32)
        emit = np.zeros((rr.size, 3), dtype=np.float32)
        # Windows on buildings: a grid in (along-road, height) with margins at the lot ends and the roof.
        b = kinds == 0
        if b.any():
            lots = side.lots
            floor_h = np.array([lot.floor_h for lot in lots], dtype=np.float32)[lot_i]
            spacing = np.array([lot.win_spacing for lot in lots], dtype=np.float32)[lot_i]
            ww = np.array([lot.win_w for lot in lots], dtype=np.float32)[lot_i]
            wh = np.array([lot.win_h for lot in lots], dtype=np.float32)[lot_i]
            lz0 = z0[lot_i]
            lz1 = np.array([lot.z1 for lot in lots], dtype=np.float32)[lot_i]
            hgt = np.array([lot.height for lot in lots], dtype=np.float32)[lot_i]
            along = (zp - lz0) / spacing
            fl = vp / floor_h
            win = b & ((along % 1.0) > 0.5 - ww / 2) & ((along % 1.0) < 0.5 + ww / 2)
            win &= ((fl % 1.0) > 0.3) & ((fl % 1.0) < 0.3 + wh)
            win &= (zp > lz0 + 0.8) & (zp < lz1 - 0.8) & (vp < hgt - 0.6)
            alb[win] = np.array([0.035, 0.04, 0.05], dtype=np.float32)
            temp[win] = _material_temp("window", look)
            sun_dt[win] = 0.0
            tex[win] = 0.03
            ir_tex[win] = 0.0
            emit[win] = np.array(look.sky_horizon, dtype=np.float32) * 0.25
            if look.windows_lit > 0:
                phase = np.array([lot.phase for lot in lots], dtype=np.float32)[lot_i]
                rnd = _hash01(np.floor(along[win]), np.floor(fl[win]), phase[win])
                lit = (rnd < look.windows_lit) & (fl[win] >= 1.0)
                warm = (
                    np.array([1.0, 0.78, 0.45], dtype=np.float32)
                    * (0.08 + 0.1 * _hash01(rnd * 1000))[:, None]
                )
                e = emit[win]
                e[lit] = warm[lit]
                emit[win] = e
        sub = (slice(r0, r1), slice(None))
        cv.depth[sub][m] = zp
        cv.label[sub][m] = label
        cv.albedo[sub][m] = alb
        cv.emit[sub][m] = emit
        cv.temp[sub][m] = temp
        cv.sun_dt[sub][m] = sun_dt
        cv.tex[sub][m] = tex
        cv.ir_tex[sub][m] = ir_tex
        cv.orient[sub][m] = _ORIENT_LEFT if side.sign < 0 else _ORIENT_RIGHT
        facing_sun = (side.sign < 0) == (look.sun_side > 0)
        cv.sunlit[sub][m] = 1.0 if facing_sun else 0.0


def _sprite_box(sp: _Sprite, cam: Camera, h: int, w: int) -> tuple[int, int, int, int]:
    """Pixel bounding box (x0, y0, x1, y1), exclusive end, unclipped."""
    umin, umax, vmin, vmax = sp.extent
    x0 = math.floor(cam.column(sp.x + umin, sp.z)) - 1
    x1 = math.ceil(cam.column(sp.x + umax, sp.z)) + 1
    y0 = math.floor(cam.horizon + cam.focal_px * (cam.height_m - vmax) / sp.z) - 1
    y1 = math.ceil(cam.horizon + cam.focal_px * (cam.height_m - vmin) / sp.z) + 1
    return x0, y0, x1, y1


def _draw_sprite(cv: _Canvas, lay: _Layout, look: Look, sp: _Sprite, instance: int) -> None:
    cam, h, w = lay.camera, lay.height, lay.width
    x0, y0, x1, y1 = _sprite_box(sp, cam, h, w)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0 or sp.z <= 0.5:
        return
    px = sp.z / cam.focal_px
    u = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - cam.cx) * px - sp.x)[None, :]
    v = (cam.height_m - (np.arange(y0, y1, dtype=np.float32) + 0.5 - cam.horizon) * px)[:, None]
    which = np.full((y1 - y0, x1 - x0), -1, dtype=np.int16)
    for i, part in enumerate(sp.parts):
        which[part.mask(u, v, px)] = i
    sub = (slice(y0, y1), slice(x0, x1))
    visible = (which >= 0) & (cv.depth[sub] > sp.z)
    if not visible.any():
        return
    # Sunlit if the sprite's foot point is outside the facade shadows.
    gy = min(h - 1, max(0, int(cam.ground_row(sp.z + 0.5))))
    gx = min(w - 1, max(0, int(cam.column(sp.x, sp.z + 0.5))))
    sunlit = float(cv.sunlit[gy, gx]) if cv.orient[gy, gx] == _ORIENT_GROUND else 1.0
    cv.depth[sub][visible] = sp.z
    cv.orient[sub][visible] = _ORIENT_FRONT
    cv.instance[sub][visible] = instance
    cv.sunlit[sub][visible] = sunlit
    cv.emit[sub][visible] = 0.0
    cv.lights[sub][visible] = 0.0
    cv.ir_tex[sub][visible] = 0.0
    cv.sun_dt[sub][visible] = 0.0
    for i, part in enumerate(sp.parts):
        sel = visible & (which == i)
        if not sel.any():
            continue
        cv.label[sub][sel] = part.cls
        cv.albedo[sub][sel] = part.albedo
        cv.tex[sub][sel] = part.tex
        cv.temp[sub][sel] = _material_temp(part.material, look, part.hot) + part.temp_offset
        if part.material == "foliage":
            cv.ir_tex[sub][sel] = _IR_TEXTURE_K["foliage"]
        if part.material == "car_body":
            cv.sun_dt[sub][sel] = _SUN_DELTA["car_body"] * 0.5
        if part.reflective:
            cv.emit[sub][sel] = np.array(look.sky_horizon, dtype=np.float32) * 0.3
        light = _light_emission(part, look)
        if light is not None:
            cv.emit[sub][sel] = light
            cv.lights[sub][sel] = light
            if part.light != "street":
                cv.temp[sub][sel] += 10.0
    if sp.shadow_half_width > 0:
        _contact_shadow(cv, cam, sp, h, w)


def _light_emission(part: _Part, look: Look) -> np.ndarray | None:
    """Radiance (RGB) of a lamp part when it is switched on under ``look``, else None."""
    kind = part.light
    if kind is None:
        return None
    if kind == "street":
        return np.array(part.tint, dtype=np.float32) * 20.0 if look.street_lights else None
    if not (look.car_lights and part.hot):
        return None
    if kind == "head":
        return np.array([30.0, 30.0, 28.0], dtype=np.float32)
    return np.array([2.5, 0.12, 0.06], dtype=np.float32)  # tail


def _contact_shadow(cv: _Canvas, cam: Camera, sp: _Sprite, h: int, w: int) -> None:
    """Ambient occlusion on the ground under an object: an ellipse around its footprint (ground only)."""
    hw = sp.shadow_half_width
    cxp = cam.column(sp.x, sp.z)
    cyp = cam.ground_row(sp.z + 0.6)
    ru = cam.focal_px * hw / sp.z
    rv = max(1.0, cam.ground_row(sp.z) - cam.ground_row(sp.z + 1.6))
    x0, x1 = max(0, int(cxp - ru) - 1), min(w, int(cxp + ru) + 2)
    y0, y1 = max(0, int(cyp - rv) - 1), min(h, int(cyp + rv) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    xx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cxp)[None, :] / ru
    yy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cyp)[:, None] / rv
    d2 = xx * xx + yy * yy
    occl = np.clip(1.0 - d2, 0.0, 1.0) ** 0.5 * 0.75
    ground = cv.orient[y0:y1, x0:x1] == _ORIENT_GROUND
    cv.ao[y0:y1, x0:x1] = np.where(ground, cv.ao[y0:y1, x0:x1] * (1.0 - occl), cv.ao[y0:y1, x0:x1])


# ------------------------------------------------------------------------------------------ rendering


_BEAM_SPREAD, _BEAM_WIDENING, _BEAM_EDGE = (
    0.1,
    1.5,
    0.06,
)  # low-beam fan: half width (rad) = 0.1 + 1.5 × depression


def _outside_low_beam(x: float, z: float) -> float:
    """Margin (rad) by which the feet of someone at (x, z) lie outside our right low beam (> 0: outside)."""
    fwd = z - 1.8
    depression = min(0.7 / max(fwd, 0.3), 0.2)
    return (x - 0.75) / max(fwd, 0.3) - (_BEAM_SPREAD + _BEAM_WIDENING * depression + 2 * _BEAM_EDGE)


def _lamp_light(
    lay: _Layout, look: Look, cv: _Canvas, moving_fronts: list[tuple[float, float]]
) -> np.ndarray | None:
    """Irradiance from street lights and headlights, (H, W, 3), computed at half resolution."""
    lamps: list[tuple[np.ndarray, np.ndarray, float, int]] = []  # position, colour, intensity, beam (0/+1/-1)
    if look.street_lights:
        for xl, yl, zl, colour in lay.street_lamps:
            lamps.append((np.array([xl, yl, zl], np.float32), np.array(colour, np.float32), 40.0, 0))
    if look.headlights:
        for s in (-0.75, 0.75):
            lamps.append(
                (np.array([s, 0.7, 1.8], np.float32), np.array([1.0, 0.97, 0.9], np.float32), 600.0, 1)
            )
        for xc, zc in sorted(moving_fronts, key=lambda t: t[1])[:3]:
            for s in (-0.6, 0.6):
                lamps.append(
                    (
                        np.array([xc + s, 0.65, zc], np.float32),
                        np.array([1.0, 0.97, 0.9], np.float32),
                        600.0,
                        -1,
                    )
                )
    if not lamps:
        return None
    cam, h, w = lay.camera, lay.height, lay.width
    depth = cv.depth[::2, ::2]
    orient = cv.orient[::2, ::2]
    hh, ww = depth.shape
    ys = (np.arange(hh, dtype=np.float32) * 2 + 1.0)[:, None]
    xs = (np.arange(ww, dtype=np.float32) * 2 + 1.0)[None, :]
    valid = orient != _ORIENT_SKY
    pz = np.where(valid, depth, 1e4)
    px_ = (xs - cam.cx) * pz / cam.focal_px
    py = cam.height_m + (cam.horizon - ys) * pz / cam.focal_px
    nrm = _NORMALS[orient]
    ground = orient == _ORIENT_GROUND
    irr = np.zeros((hh, ww, 3), dtype=np.float32)
    for pos, colour, power, beam in lamps:
        dx, dy, dz = pos[0] - px_, pos[1] - py, pos[2] - pz
        d2 = dx * dx + dy * dy + dz * dz + 0.5
        cos = (nrm[..., 0] * dx + nrm[..., 1] * dy + nrm[..., 2] * dz) / np.sqrt(d2)
        cos = np.maximum(cos, 0.0)
        if (
            beam > 0
        ):  # asphalt lit by our own headlights at grazing angles scatters back far more than Lambert
            cos = np.where(ground, 10.0 * np.sqrt(cos), cos)
        e = power * cos / d2
        if beam == 0:  # street light: mostly downwards (pools of light)
            e = e * np.square(np.square(np.maximum(dy, 0.0)) / d2)
        else:  # low beam: a horizontal fan, brightest just below a cut-off at the horizon
            fwd = -dz * beam
            ok = fwd > 0.3
            fwd = np.maximum(fwd, 0.3)
            bearing = np.abs(dx) / fwd
            rise = -dy / fwd  # < 0 below the lamp
            # Wide for the near road (steep rays), narrow near the cut-off (the far hot spot).
            spread = _BEAM_SPREAD + _BEAM_WIDENING * np.clip(-rise, 0.0, 0.2)
            if beam < 0:  # oncoming low beams are dipped towards their opposite lane (our right)
                spread = np.where(dx < 0, 0.5 * spread, spread)
            fan = np.exp(-np.square(np.maximum(bearing - spread, 0.0) / _BEAM_EDGE))
            vertical = np.exp(np.clip(rise, -1.0, 0.0) / 0.025) / (
                1.0 + np.exp(np.clip((rise + 0.004) / 0.004, -30, 30))
            )
            e = e * fan * vertical * ok
        irr += e[..., None] * colour
    irr *= valid[..., None]
    out = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        out[..., c] = np.asarray(
            Image.fromarray(np.ascontiguousarray(irr[..., c])).resize((w, h), Image.BILINEAR)
        )
    return out


def _blur_small(img: np.ndarray, factor: int, sigma: float) -> np.ndarray:
    """Wide gaussian blur of an (H, W, 3) image computed at 1/factor resolution (glare)."""
    h, w = img.shape[:2]
    hs, ws = h // factor, w // factor
    small = img[: hs * factor, : ws * factor].reshape(hs, factor, ws, factor, 3).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, (sigma, sigma, 0))
    out = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        out[..., c] = np.asarray(
            Image.fromarray(np.ascontiguousarray(small[..., c])).resize((w, h), Image.BILINEAR)
        )
    return out


def _srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1 / 2.4) - 0.055)


def _render_visible(
    cv: _Canvas,
    lay: _Layout,
    look: Look,
    noise: dict[str, np.ndarray],
    rng: np.random.Generator,
    moving_fronts: list[tuple[float, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """Visible camera: returns (uint8 H×W×3 image, noise-free exposed linear radiance H×W×3)."""
    cam, h, w = lay.camera, lay.height, lay.width
    sky = cv.orient == _ORIENT_SKY
    # Sky: a gradient by elevation, with clouds by day/dusk.
    rows = np.arange(h, dtype=np.float32) + 0.5
    elev = np.clip((cam.horizon - rows) / cam.focal_px, 0.0, 1.5)[:, None, None]  # radians above horizon
    s = np.clip(elev / 0.5, 0, 1) ** 0.6
    sky_rgb = np.array(look.sky_horizon, np.float32) * (1 - s) + np.array(look.sky_top, np.float32) * s
    if look.clouds > 0:
        cl = np.clip((noise["coarse"] * 0.7 + noise["mid"] * 0.3 + look.clouds - 0.6) * 2.0, 0, 1)[..., None]
        sky_rgb = sky_rgb * (1 - 0.8 * cl) + 0.8 * cl * np.array(look.sky_horizon, np.float32).max()
    else:
        sky_rgb = np.broadcast_to(sky_rgb, (h, w, 3))
    # Light: ambient by orientation (× contact shadows) + sun where sunlit + lamps.
    amb_o = np.array([1.0, 0.8, 0.8, 0.85, 0.0], np.float32)[cv.orient]
    sin_e, cos_e = math.sin(look.sun_elevation), math.cos(look.sun_elevation)
    sun_o = np.array([sin_e, 0.85 * cos_e, 0.85 * cos_e, 0.45, 0.0], np.float32)[cv.orient] * cv.sunlit
    irr = (amb_o * cv.ao)[..., None] * np.array(look.ambient, np.float32)
    if look.sun_elevation > 0:
        irr += (sun_o * cv.ao)[..., None] * np.array(look.sun, np.float32)
    lamp = _lamp_light(lay, look, cv, moving_fronts)
    if lamp is not None:
        irr += lamp * cv.ao[..., None]
    texture = 1.0 + cv.tex * (0.55 * noise["fine"] + 0.3 * noise["mid"] + 0.25 * noise["coarse"])
    rad = cv.albedo * irr * texture[..., None] + cv.emit
    rad[sky] = sky_rgb[sky]
    # Fog / haze: Koschmieder with the scene depth; the sky itself becomes the airlight in fog.
    beta = 3.0 / look.fog_visibility_m
    t = np.exp(-beta * cv.depth)[..., None]
    if look.condition == "fog":
        t[sky] = 0.0
    else:
        t[sky] = 1.0
    air = np.array(look.airlight, np.float32)
    rad = rad * t + air * (1.0 - t)
    v = rad * look.exposure
    if look.bloom > 0 and cv.lights.any():
        glow = cv.lights * t * look.exposure
        v += look.bloom * (_blur_small(glow, 4, 2.0) + 0.35 * _blur_small(glow, 8, 4.0))
    clean = v
    # Sensor noise: signal-dependent shot noise + read noise (triangular-distributed, cheap), per channel.
    sigma = np.sqrt(look.noise_shot * np.maximum(v, 0.0) + look.noise_read)
    tri = rng.random((h, w, 3), dtype=np.float32) + rng.random((h, w, 3), dtype=np.float32) - 1.0
    v = v + sigma * tri * 2.449  # unit variance
    img = (_srgb(v) * 255.0 + 0.5).astype(np.uint8)
    return img, clean


def _render_thermal(
    cv: _Canvas, lay: _Layout, look: Look, noise: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Thermal camera: returns (uint16 counts H×W, noise-free float counts H×W)."""
    cam, h, w = lay.camera, lay.height, lay.width
    sky = cv.orient == _ORIENT_SKY
    temp = cv.temp + cv.sun_dt * cv.sunlit * (look.sun_elevation > 0) + cv.ir_tex * noise["mid"]
    elev = np.clip((cam.horizon - (np.arange(h, dtype=np.float32) + 0.5)) / cam.focal_px, 0.0, 1.5)[:, None]
    tz, th = _material_temp("sky_zenith", look), _material_temp("sky_horizon", look)
    sky_t = tz + (th - tz) * np.exp(-elev / 0.15)
    if look.clouds > 0:
        cl = np.clip((noise["coarse"] * 0.7 + noise["mid"] * 0.3 + look.clouds - 0.6) * 2.0, 0, 1)
        sky_t = sky_t + cl * 15.0
    temp = np.where(sky, np.broadcast_to(sky_t, (h, w)), temp)
    # LWIR sees through fog far better than the eye: ~8x smaller extinction.
    beta_ir = 3.0 / look.fog_visibility_m / 8.0
    t = np.exp(-beta_ir * cv.depth)
    t[sky] = 1.0
    air_t = _TEMPS["facade"][look.condition] + look.temp_offset
    temp = temp * t + air_t * (1.0 - t)
    counts = IR_COUNTS_OFFSET + IR_COUNTS_PER_KELVIN * temp
    sigma = 1.1 * w / 640.0  # thermal optics
    counts = ndimage.gaussian_filter(counts, sigma, truncate=3.0)
    clean = counts
    # Fixed-pattern noise (column and row offsets), a little vignetting, temporal noise (NETD ~ 50 mK).
    col = rng.normal(0.0, 6.0, size=(1, w)).astype(np.float32)
    row = rng.normal(0.0, 3.0, size=(h, 1)).astype(np.float32)
    yy = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / h
    xx = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / w
    vignette = -40.0 * (xx * xx + yy * yy)
    temporal = (rng.random((h, w), dtype=np.float32) - 0.5) * (1.5 * 3.46)
    raw = counts + col + row + vignette + temporal
    return np.clip(raw + 0.5, 0, 16383).astype(np.uint16), clean


def _thermal_8bit(
    counts: np.ndarray, plateau: float = 0.004, linear_mix: float = 0.35
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """8-bit view of thermal counts like a camera's AGC: plateau-limited histogram equalisation blended with a
    linear stretch between robust extremes (so order is kept and hot spots stay brightest).

    counts: (H, W) uint16. Returns (image uint8 (H, W), lut float32 (16384,) counts -> grey, low, high)."""
    sample = counts[::2, ::2].ravel()
    lo, hi = (float(p) for p in np.percentile(sample, [0.5, 99.8]))
    hi = max(hi, lo + 60.0)
    hist = np.bincount(np.minimum(sample, 16383), minlength=16384).astype(np.float32)
    hist = np.minimum(hist, plateau * sample.size)
    cdf = np.cumsum(hist)
    cdf /= max(float(cdf[-1]), 1.0)
    levels = np.arange(16384, dtype=np.float32)
    linear = np.clip((levels - lo) / (hi - lo), 0.0, 1.0)
    lut = ((1.0 - linear_mix) * cdf + linear_mix * linear) * 255.0
    img = (lut[np.minimum(counts, 16383)] + 0.5).astype(np.uint8)
    return img, lut.astype(np.float32), lo, hi


# ---------------------------------------------------------------------------------------------- scene


@dataclass
class SceneObject:
    """One drawn object: kind (car, truck, person, cyclist, street_light, traffic_sign, tree), position (m),
    bbox of its visible pixels (x0, y0, x1, y1; exclusive end; zeros when fully hidden), visible pixel count,
    mean absolute contrast against its local background in the noise-free visible luminance and thermal
    8-bit images, and whether it is visible only in thermal."""

    instance: int
    kind: str
    role: str
    x_m: float
    z_m: float
    bbox: tuple[int, int, int, int]
    pixels: int
    vis_contrast: float
    ir_contrast: float
    thermal_only: bool


@dataclass
class Scene:
    """An aligned visible / thermal / label triple and what made it.

    vis (H, W, 3) uint8 RGB; ir (H, W) uint8 (AGC of ir16); ir16 (H, W) uint16 counts (14-bit core);
    label (H, W) uint8 class ids among ``num_classes``; depth (H, W) float32 metres (sky 1e4);
    instances (H, W) int32 (0 none, i: objects[i - 1]); thermal_only (H, W) bool (pixels of persons/cyclists
    visible only in thermal)."""

    vis: np.ndarray
    ir: np.ndarray
    ir16: np.ndarray
    label: np.ndarray
    depth: np.ndarray
    instances: np.ndarray
    thermal_only: np.ndarray
    objects: list[SceneObject]
    condition: str
    seed: int
    num_classes: int
    camera: Camera
    look: Look
    ir_range: tuple[float, float] = field(default=(0.0, 0.0))

    def meta(self) -> dict[str, Any]:
        """JSON-serialisable description: seed, condition, camera, look, object summary."""
        return {
            "seed": self.seed,
            "condition": self.condition,
            "num_classes": self.num_classes,
            "size": [int(self.vis.shape[1]), int(self.vis.shape[0])],
            "camera": dict(self.camera.__dict__),
            "look": self.look.to_json(),
            "ir_agc_counts": [round(self.ir_range[0], 1), round(self.ir_range[1], 1)],
            "objects": {k: sum(o.kind == k and o.pixels > 0 for o in self.objects) for k in _OBJECT_KINDS},
            "thermal_only_objects": sum(o.thermal_only for o in self.objects),
        }


_OBJECT_KINDS = ("car", "truck", "person", "cyclist", "street_light", "traffic_sign", "tree")
_THERMAL_ONLY_KINDS = ("person", "cyclist")
# A person/cyclist is "thermal-only" when its mean absolute contrast to its local background is below the
# first (grey levels, noise-free visible image) and at least the second (8-bit thermal image).
THERMAL_ONLY_MAX_VIS_CONTRAST = 6.0
THERMAL_ONLY_MIN_IR_CONTRAST = 20.0


def _luma8(rgb_linear_exposed: np.ndarray) -> np.ndarray:
    y = rgb_linear_exposed @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    return _srgb(y) * 255.0


def _surround(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` (square neighbourhood) of ``mask`` but not in it: its local background."""
    return ndimage.maximum_filter(mask, size=2 * radius + 1) & ~mask


def _measure_objects(
    lay: _Layout, cv: _Canvas, vis_clean: np.ndarray, ir_clean: np.ndarray, ir_lut: np.ndarray
) -> list[SceneObject]:
    """Per-object mean absolute contrast against its local background (a band around its visible pixels,
    a third of its width thick) in noise-free visible luminance and thermal 8-bit images."""
    h, w = lay.height, lay.width
    out = []
    for i, sp in enumerate(lay.sprites, start=1):
        x0, y0, x1, y1 = _sprite_box(sp, lay.camera, h, w)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        bbox, n, vis_c, ir_c = (0, 0, 0, 0), 0, 0.0, 0.0
        if x1 > x0 and y1 > y0:
            inst = cv.instance[y0:y1, x0:x1] == i
            n = int(inst.sum())
        if n > 0:
            ys, xs = np.nonzero(inst)
            bbox = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
            r = max(2, round((bbox[2] - bbox[0]) / 3))
            ex0, ey0, ex1, ey1 = (
                max(bbox[0] - r, 0),
                max(bbox[1] - r, 0),
                min(bbox[2] + r, w),
                min(bbox[3] + r, h),
            )
            inst = cv.instance[ey0:ey1, ex0:ex1] == i
            ring = _surround(inst, r)
            if ring.any():
                lum = _luma8(vis_clean[ey0:ey1, ex0:ex1])
                ir8 = np.interp(ir_clean[ey0:ey1, ex0:ex1], np.arange(ir_lut.size), ir_lut)
                vis_c = float(np.abs(lum[inst] - lum[ring].mean()).mean())
                ir_c = float(np.abs(ir8[inst] - ir8[ring].mean()).mean())
        only = (
            sp.kind in _THERMAL_ONLY_KINDS
            and n >= 12
            and vis_c < THERMAL_ONLY_MAX_VIS_CONTRAST
            and ir_c >= THERMAL_ONLY_MIN_IR_CONTRAST
        )
        out.append(SceneObject(i, sp.kind, sp.role, sp.x, sp.z, bbox, n, vis_c, ir_c, only))
    return out


def _seed_streams(seed: int) -> list[np.random.Generator]:
    """Independent generators: condition choice, layout, look, textures, visible noise, thermal noise."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(6)]


def generate_scene(
    seed: int,
    width: int = 640,
    height: int = 480,
    condition: str | None = None,
    num_classes: int | None = None,
    draw_objects: bool = True,
) -> Scene:
    """Render one aligned visible / thermal / label triple.

    The geometry depends only on ``seed`` (and the size), so the same seed under different conditions shows
    the same street. ``condition``: "day", "dusk", "night", "fog", or None (chosen from the seed).
    ``num_classes``: K in 2..15 (None: 15 native classes; see ``MERGE_CHAIN``). ``draw_objects=False``
    renders the same street without cars, people, poles, signs and trees (used to check label alignment).
    """
    if width < 32 or height < 32:
        raise ValueError(f"scene size must be at least 32x32, got {width}x{height}")
    k = num_classes or NUM_NATIVE_CLASSES
    lut = class_mapping(k)
    g_choice, g_layout, g_look, g_tex, g_vis, g_ir = _seed_streams(seed)
    if condition is None:
        condition = CONDITIONS[int(g_choice.integers(len(CONDITIONS)))]
    look = _make_look(condition, g_look)
    lay = _make_layout(g_layout, width, height)
    noise = {
        "fine": g_tex.random((height, width), dtype=np.float32) * 2.0 - 1.0,
        "mid": _value_noise(g_tex, height, width, 4),
        "coarse": _value_noise(g_tex, height, width, 24),
    }
    cv = _Canvas(height, width)
    _draw_ground(cv, lay, look)
    _draw_backdrop(cv, lay, look, noise["fine"])
    _draw_facades(cv, lay, look)
    sprites = lay.sprites if draw_objects else []
    if not draw_objects:
        lay.sprites = []
        lay.street_lamps = []
    # Far to near, so that contact shadows of nearer objects are not overwritten.
    for i, sp in sorted(enumerate(sprites, start=1), key=lambda t: -t[1].z):
        _draw_sprite(cv, lay, look, sp, i)
    moving_fronts = [(sp.x, sp.z) for sp in sprites if sp.kind in ("car", "truck") and _is_oncoming(sp)]
    vis, vis_clean = _render_visible(cv, lay, look, noise, g_vis, moving_fronts)
    ir16, ir_clean = _render_thermal(cv, lay, look, noise, g_ir)
    ir, ir_lut, lo, hi = _thermal_8bit(ir16)
    objects = _measure_objects(lay, cv, vis_clean, ir_clean, ir_lut)
    thermal_only = np.zeros((height, width), dtype=bool)
    for o in objects:
        if o.thermal_only:
            thermal_only |= cv.instance == o.instance
    return Scene(
        vis=vis,
        ir=ir,
        ir16=ir16,
        label=lut[cv.label],
        depth=cv.depth,
        instances=cv.instance,
        thermal_only=thermal_only,
        objects=objects,
        condition=condition,
        seed=int(seed),
        num_classes=k,
        camera=lay.camera,
        look=look,
        ir_range=(lo, hi),
    )


def _is_oncoming(sp: _Sprite) -> bool:
    return any(p.light == "head" for p in sp.parts)


# ------------------------------------------------------------------------------------------- dataset


def scene_seed(base_seed: int, index: int) -> int:
    """The seed of scene ``index`` in a dataset made with ``base_seed`` (stable, non-overlapping)."""
    return int(np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1)[0])


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    conditions: Sequence[str] = CONDITIONS,
    width: int = 640,
    height: int = 480,
    thermal_16bit: bool = False,
    num_classes: int | None = None,
    progress: bool | None = None,
    test_count: int = 0,
) -> list[Path]:
    """Write ``n`` triples as ``out_dir/{vi,ir,label}/NAME.png`` plus ``classes.json`` and ``meta.json``.

    Conditions cycle through ``conditions``; scene i uses ``scene_seed(seed, i)``. ``ir`` PNGs are 8-bit gray,
    or 16-bit gray counts with ``thermal_16bit``. ``test_count`` > 0 also writes ``manifest.csv``
    (``name,split``: the last ``test_count`` scenes "test", the others "train"), the split the training
    (``data.exclude_splits``) and evaluation scripts read. Returns the visible image paths."""
    if not 0 <= test_count <= n:
        raise ValueError(f"test_count must be in 0..n={n}, got {test_count}")
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r} in conditions; choose from {CONDITIONS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = Path(out_dir)
    for sub in ("vi", "ir", "label"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    k = num_classes or NUM_NATIVE_CLASSES
    names, pal = class_names(k), palette(k)
    classes = {
        "num_classes": k,
        "names": list(names),
        "palette": pal.tolist(),
        "ignore_index": 255,
        "native_mapping": {CLASS_NAMES[i]: names[j] for i, j in enumerate(class_mapping(k))},
    }
    (out / "classes.json").write_text(  # one line per key: the palette stays readable
        "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in classes.items()) + "\n}\n"
    )
    iterator: Any = range(n)
    if progress is None:
        progress = n >= 20 and sys.stderr.isatty()
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="synthetic scenes", unit="scene")
    scenes_meta: dict[str, Any] = {}
    written = []
    for i in iterator:
        name = f"{i:05d}"
        scene = generate_scene(scene_seed(seed, i), width, height, conditions[i % len(conditions)], k)
        Image.fromarray(scene.vis).save(out / "vi" / f"{name}.png")
        Image.fromarray(scene.ir16 if thermal_16bit else scene.ir).save(out / "ir" / f"{name}.png")
        Image.fromarray(scene.label).save(out / "label" / f"{name}.png")
        scenes_meta[name] = scene.meta()
        written.append(out / "vi" / f"{name}.png")
    meta = {
        "generator": "ssvif_ros.data.synthetic",
        "base_seed": seed,
        "size": [width, height],
        "thermal_16bit": thermal_16bit,
        "ir_counts": f"{IR_COUNTS_OFFSET:g} + {IR_COUNTS_PER_KELVIN:g} * T[degC]",
        "scenes": scenes_meta,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if test_count:
        rows = [f"{i:05d},{'test' if i >= n - test_count else 'train'}" for i in range(n)]
        (out / "manifest.csv").write_text("name,split\n" + "\n".join(rows) + "\n")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssvif_ros.data.synthetic",
        description="Write procedural visible/thermal/label road scenes as paired folders (vi/ ir/ label/).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("-n", type=int, default=20, help="number of scenes (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma list cycled over scenes")
    parser.add_argument("--size", type=size_arg(32), default=(640, 480), help="WIDTHxHEIGHT (640x480)")
    parser.add_argument("--thermal-16bit", action="store_true", help="write ir/ as 16-bit counts")
    parser.add_argument("--num-classes", type=int, default=None, help="K in 2..15 (default 15)")
    parser.add_argument("--test", type=int, default=0, help="last N scenes are the test split (manifest.csv)")
    args = parser.parse_args(argv)
    if not 0 <= args.test <= args.n:
        parser.error(f"--test must be in 0..{args.n}, got {args.test}")
    conds = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    bad = [c for c in conds if c not in CONDITIONS]
    if bad or not conds:
        parser.error(f"--conditions: unknown {bad or 'empty list'}; choose from {','.join(CONDITIONS)}")
    try:
        class_names(args.num_classes)
    except ValueError as e:
        parser.error(f"--num-classes: {e}")
    w, h = args.size
    paths = write_dataset(
        args.out,
        args.n,
        args.seed,
        conds,
        w,
        h,
        args.thermal_16bit,
        args.num_classes,
        progress=args.n >= 20,
        test_count=args.test,
    )
    k = args.num_classes or NUM_NATIVE_CLASSES
    scenes = f"{len(paths)} scene{'' if len(paths) == 1 else 's'}"
    print(
        f"wrote {scenes} ({w}x{h}, conditions {','.join(conds)}, {k} classes, "
        f"ir {'16' if args.thermal_16bit else '8'}-bit) to {args.out}: vi/ ir/ label/ classes.json meta.json"
        + (f" manifest.csv ({args.test} test)" if args.test else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
