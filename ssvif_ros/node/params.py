"""The fusion node's parameters, in one table: defaults, descriptions, constraints and validation.

:data:`PARAMETERS` is the single source: the node declares every entry (read-only, described),
``config/fuse.yaml`` is tested against it, and :func:`parse_config` turns raw values into a typed
:class:`FuseConfig`, refusing unknown names (with the closest valid one) and bad values (naming the
parameter and why). ``ssvif-replay --params-file`` reads a params file through :func:`read_params_file`
and :func:`parse_config`, so it accepts exactly what the node accepts. ROS-free.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ssvif_ros.fusion.pairing import POLICIES
from ssvif_ros.fusion.registration import Registration
from ssvif_ros.fusion.thermal import ThermalToU8

OUTPUT_ENCODINGS = ("rgb8", "bgr8")
RELIABILITIES = ("best_effort", "reliable")
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
MAX_INPUT_PIXELS = 3840 * 2160  # 4K UHD: larger frames are dropped (a 3000x4000 pair took 9.8 s, 1.7 GB)
Check = Callable[[str, Any], Any]


class ConfigError(ValueError):
    """A parameter (or what it points to) that cannot work; the message names the parameter and why."""


def param_error(name: str, why: str) -> ConfigError:
    return ConfigError(f"parameter '{name}': {why}")


# ------------------------------------------------------------------------------------------------- checks


def text() -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise param_error(name, f"must be a string, got {value!r}")
        return value

    return check


def flag() -> Check:
    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise param_error(name, f"must be true or false, got {value!r}")
        return value

    return check


def choice(*options: str) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise param_error(name, f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return check


def integer(low: int) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise param_error(name, f"must be an integer, got {type(value).__name__} {value!r}")
        if value < low:
            raise param_error(name, f"must be >= {low}, got {value}")
        return int(value)

    return check


def number(
    low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False
) -> Check:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise param_error(name, f"must be a finite number, got {type(value).__name__} {value!r}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            raise param_error(name, f"must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if high is not None and (value > high or (high_open and value == high)):
            raise param_error(name, f"must be {'<' if high_open else '<='} {high:g}, got {value:g}")
        return value

    return check


def size() -> Check:
    def check(name: str, value: Any) -> tuple[int, int]:
        value = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
            raise param_error(
                name, f"must be [height, width] with integers >= 0 ([0, 0]: none), got {value!r}"
            )
        if (value[0] == 0) != (value[1] == 0):
            raise param_error(name, f"height and width must both be > 0 or both 0, got {value!r}")
        return int(value[0]), int(value[1])

    return check


def floats(count: int) -> Check:
    def check(name: str, value: Any) -> tuple[float, ...]:
        value = list(value) if isinstance(value, (list, tuple)) else [value]
        ok = len(value) == count and all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in value
        )
        if not ok:
            raise param_error(name, f"must be {count} finite numbers, got {value!r}")
        return tuple(float(v) for v in value)

    return check


# -------------------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its ROS name and default, what it means, its constraints (as shown to users), the
    :class:`FuseConfig` field it fills and the check that validates and converts it."""

    name: str
    default: Any
    description: str
    constraints: str = ""
    field: str = ""
    check: Check | None = None


PARAMETERS: tuple[ParamSpec, ...] = (
    # --- model and inference -------------------------------------------------------------------------
    ParamSpec(
        "weights",
        "",
        "fusion checkpoint (.safetensors with its .json sidecar); empty: the shipped model",
        field="weights",
        check=text(),
    ),
    ParamSpec(
        "model",
        "lightunet",
        "model name built with random weights when allow_untrained is true and "
        "no checkpoint is available (tests/benchmarks only)",
        field="model",
        check=text(),
    ),
    ParamSpec(
        "allow_untrained",
        False,
        "allow a random-init model when no weights are given and none ships "
        "(output is NOT a meaningful fusion; for tests and benchmarks)",
        field="allow_untrained",
        check=flag(),
    ),
    ParamSpec(
        "backend",
        "auto",
        "inference backend",
        "auto (ONNX Runtime on CPU, TensorRT on CUDA when installed, else torch) | torch | onnxruntime | "
        "tensorrt (CUDA, torch-tensorrt) | passthrough (benchmark only)",
        field="backend",
        check=text(),
    ),
    ParamSpec(
        "device", "auto", "inference device", "auto | cpu | cuda | cuda:N", field="device", check=text()
    ),
    ParamSpec(
        "precision",
        "fp32",
        "inference precision",
        "fp32 | fp16 (CUDA only)",
        field="precision",
        check=choice("fp32", "fp16"),
    ),
    ParamSpec(
        "torch_threads",
        0,
        "inference intra-op threads, torch and ONNX Runtime (0: automatic from the usable cores, "
        "printed at start: 1 on up to 2 cores, else half of them up to 4; 1 on CUDA)",
        ">= 0",
        field="torch_threads",
        check=integer(0),
    ),
    ParamSpec(
        "inline_max_ms",
        15.0,
        "pairs are fused in the subscription callback (no hand-off to the worker thread) while the "
        "last pair and the recent ones on average took less than this; slower models use the worker; "
        "0: always the worker",
        ">= 0; keep it well below the camera frame period",
        field="inline_max_ms",
        check=number(0.0),
    ),
    ParamSpec(
        "warmup.visible_size",
        [480, 640],
        "[height, width] of the expected visible images: the model "
        "runs once at this size at start; [0, 0] skips the warm-up",
        field="warmup_visible_size",
        check=size(),
    ),
    ParamSpec(
        "warmup.thermal_size",
        [0, 0],
        "[height, width] of the expected thermal images (prebuilds the "
        "registration maps); [0, 0]: same as warmup.visible_size",
        field="warmup_thermal_size",
        check=size(),
    ),
    ParamSpec(
        "inputs.transport",
        "raw",
        "input image transport",
        "raw (sensor_msgs/Image on visible/image_raw, thermal/image_raw) | compressed (image_transport's "
        "CompressedImage, JPEG/PNG, on visible/image_raw/compressed, thermal/image_raw/compressed)",
        field="input_transport",
        check=choice("raw", "compressed"),
    ),
    # --- pairing --------------------------------------------------------------------------------------
    ParamSpec(
        "sync.policy",
        "approximate",
        "pairing policy",
        "approximate (message_filters semantics) | "
        "latest (each visible frame with the closest recent thermal frame)",
        field="sync_policy",
        check=choice(*POLICIES),
    ),
    ParamSpec(
        "sync.queue_size",
        10,
        "messages kept per input while waiting for a partner",
        ">= 1",
        field="sync_queue_size",
        check=integer(1),
    ),
    ParamSpec(
        "sync.slop_s",
        0.05,
        "largest stamp difference of a pair, seconds",
        "> 0",
        field="sync_slop_s",
        check=number(0.0, low_open=True),
    ),
    ParamSpec(
        "sync.clock_jump_reset_s",
        1.0,
        "a stamp this many seconds older than the newest one seen "
        "(bag loop, clock reset) resets the synchroniser",
        "> 0",
        field="sync_clock_jump_reset_s",
        check=number(0.0, low_open=True),
    ),
    # --- QoS ------------------------------------------------------------------------------------------
    ParamSpec(
        "qos.reliability",
        "best_effort",
        "input subscriptions' reliability (best_effort matches both reliable and best-effort publishers)",
        "best_effort | reliable",
        field="qos_reliability",
        check=choice(*RELIABILITIES),
    ),
    ParamSpec(
        "qos.depth", 5, "input subscriptions' history depth", ">= 1", field="qos_depth", check=integer(1)
    ),
    ParamSpec(
        "qos.output_reliability",
        "reliable",
        "output publishers' reliability",
        "best_effort | reliable",
        field="qos_output_reliability",
        check=choice(*RELIABILITIES),
    ),
    ParamSpec(
        "qos.output_depth",
        2,
        "output publishers' history depth",
        ">= 1",
        field="qos_output_depth",
        check=integer(1),
    ),
    # --- thermal to 8 bit -------------------------------------------------------------------------------
    ParamSpec(
        "thermal.mode",
        "auto",
        "16-bit thermal gain: auto (percentile window, smoothed) or fixed "
        "(thermal.fixed_range); mono8 thermal passes through",
        "auto | fixed",
        field="thermal_mode",
        check=choice("auto", "fixed"),
    ),
    ParamSpec(
        "thermal.low_percentile",
        1.0,
        "auto gain: lower percentile of the window",
        "0 <= low < high",
        field="thermal_low_percentile",
        check=number(0.0, 100.0),
    ),
    ParamSpec(
        "thermal.high_percentile",
        99.0,
        "auto gain: upper percentile of the window",
        "low < high <= 100",
        field="thermal_high_percentile",
        check=number(0.0, 100.0),
    ),
    ParamSpec(
        "thermal.smoothing",
        0.9,
        "auto gain: EMA weight of the previous window (0: none)",
        "[0, 1)",
        field="thermal_smoothing",
        check=number(0.0, 1.0, high_open=True),
    ),
    ParamSpec(
        "thermal.scene_cut",
        0.5,
        "auto gain: re-settle at once (scene cut) when the frame's window and the smoothed one overlap "
        "by less than this share of the narrower (0: off)",
        "[0, 1]",
        field="thermal_scene_cut",
        check=number(0.0, 1.0),
    ),
    ParamSpec(
        "thermal.fixed_range",
        [0.0, 65535.0],
        "fixed gain: [min_count, max_count] mapped to 0..255",
        "0 <= min < max <= 65535",
        field="thermal_fixed_range",
        check=floats(2),
    ),
    ParamSpec(
        "thermal.subsample",
        4,
        "auto gain: percentiles on every n-th row and column",
        ">= 1",
        field="thermal_subsample",
        check=integer(1),
    ),
    # --- registration -----------------------------------------------------------------------------------
    ParamSpec(
        "registration.homography",
        list(IDENTITY),
        "3×3 row-major homography from the thermal image "
        "resized to the visible size to visible pixels (identity: aligned cameras)",
        "9 numbers",
        field="homography",
        check=floats(9),
    ),
    ParamSpec(
        "registration.max_aspect_mismatch",
        0.25,
        "largest relative difference of the thermal and "
        "visible aspect ratios; a pair beyond it is dropped as malformed",
        ">= 0",
        field="max_aspect_mismatch",
        check=number(0.0),
    ),
    ParamSpec(
        "max_input_pixels",
        MAX_INPUT_PIXELS,
        "largest input image (height × width, either camera) the node processes; a larger one is "
        "dropped before decoding, counted and warned about (the model's time and memory grow with it)",
        ">= 1",
        field="max_input_pixels",
        check=integer(1),
    ),
    # --- outputs ----------------------------------------------------------------------------------------
    ParamSpec("outputs.fused_image", True, "publish ~/fused/image", field="output_fused_image", check=flag()),
    ParamSpec(
        "outputs.camera_info",
        True,
        "subscribe to visible/camera_info and publish ~/fused/camera_info with each fused image (the "
        "visible camera's calibration: the fused image is in its frame)",
        field="output_camera_info",
        check=flag(),
    ),
    ParamSpec(
        "outputs.segmentation",
        True,
        "publish ~/fused/segmentation (mono8 class ids; needs a checkpoint with a segmentation head)",
        field="output_segmentation",
        check=flag(),
    ),
    ParamSpec(
        "outputs.overlay",
        True,
        "publish ~/fused/overlay (classes blended over the fused image)",
        field="output_overlay",
        check=flag(),
    ),
    ParamSpec(
        "outputs.encoding",
        "rgb8",
        "encoding of ~/fused/image and ~/fused/overlay",
        "rgb8 | bgr8",
        field="output_encoding",
        check=choice(*OUTPUT_ENCODINGS),
    ),
    ParamSpec(
        "outputs.overlay_alpha",
        0.5,
        "weight of the class colour in the overlay",
        "[0, 1]",
        field="overlay_alpha",
        check=number(0.0, 1.0),
    ),
    # --- input loss -------------------------------------------------------------------------------------
    ParamSpec(
        "timeouts.visible_s",
        1.0,
        "visible silence (seconds) reported as WARN",
        "> 0",
        field="visible_timeout_s",
        check=number(0.0, low_open=True),
    ),
    ParamSpec(
        "timeouts.thermal_s",
        1.0,
        "thermal silence (seconds) reported as WARN (and passthrough)",
        "> 0",
        field="thermal_timeout_s",
        check=number(0.0, low_open=True),
    ),
    ParamSpec(
        "passthrough_on_thermal_loss",
        True,
        "republish the visible image on ~/fused/image while thermal is silent, so consumers keep a picture",
        field="passthrough_on_thermal_loss",
        check=flag(),
    ),
    # --- diagnostics and logging ----------------------------------------------------------------------------
    ParamSpec(
        "diagnostics.period_s",
        1.0,
        "period of /diagnostics, seconds",
        "> 0",
        field="diagnostics_period_s",
        check=number(0.0, low_open=True),
    ),
    ParamSpec(
        "diagnostics.window",
        300,
        "frames kept for the latency percentiles",
        ">= 1",
        field="diagnostics_window",
        check=integer(1),
    ),
    ParamSpec(
        "log_throttle_s",
        5.0,
        "least seconds between two warnings of the same kind",
        ">= 0",
        field="log_throttle_s",
        check=number(0.0),
    ),
)


DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}
"""Parameter name -> default, as declared by the node and written in ``config/fuse.yaml``."""


@dataclass(frozen=True)
class FuseConfig:
    """Validated parameters (:data:`PARAMETERS` says what each means); built by :func:`parse_config`."""

    weights: str
    model: str
    allow_untrained: bool
    backend: str
    device: str
    precision: str
    torch_threads: int
    inline_max_ms: float
    warmup_visible_size: tuple[int, int]
    warmup_thermal_size: tuple[int, int]
    input_transport: str
    sync_policy: str
    sync_queue_size: int
    sync_slop_s: float
    sync_clock_jump_reset_s: float
    qos_reliability: str
    qos_depth: int
    qos_output_reliability: str
    qos_output_depth: int
    thermal_mode: str
    thermal_low_percentile: float
    thermal_high_percentile: float
    thermal_smoothing: float
    thermal_scene_cut: float
    thermal_fixed_range: tuple[float, float]
    thermal_subsample: int
    homography: tuple[float, ...]
    max_aspect_mismatch: float
    max_input_pixels: int
    output_fused_image: bool
    output_camera_info: bool
    output_segmentation: bool
    output_overlay: bool
    output_encoding: str
    overlay_alpha: float
    visible_timeout_s: float
    thermal_timeout_s: float
    passthrough_on_thermal_loss: bool
    diagnostics_period_s: float
    diagnostics_window: int
    log_throttle_s: float

    def thermal_settings(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~ssvif_ros.fusion.thermal.ThermalToU8` these settings give."""
        return {
            "mode": self.thermal_mode,
            "low_percentile": self.thermal_low_percentile,
            "high_percentile": self.thermal_high_percentile,
            "smoothing": self.thermal_smoothing,
            "scene_cut": self.thermal_scene_cut,
            "fixed_range": self.thermal_fixed_range,
            "subsample": self.thermal_subsample,
        }

    def thermal_converter(self) -> ThermalToU8:
        """A fresh 16-bit -> 8-bit converter with these settings (one per stream: it keeps gain state)."""
        return ThermalToU8(**self.thermal_settings())


REMOVED = {
    "sync.use_message_filters": "was removed: the node always pairs with ssvif_ros.fusion.pairing "
    "(message_filters' ApproximateTimeSynchronizer semantics, checked against it where it is importable; "
    "the pairing the replay and the tests use); delete it from the params file",
}
"""Parameters of earlier versions and what became of them."""


def check_names(names: Any) -> None:
    """Raise :class:`ConfigError` for a name that is not a parameter, suggesting the closest one."""
    for name in names:
        if name in REMOVED:
            raise ConfigError(f"parameter '{name}' {REMOVED[name]}")
        if name not in DEFAULTS:
            close = difflib.get_close_matches(name, list(DEFAULTS), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else "; see config/fuse.yaml for every parameter"
            raise ConfigError(f"unknown parameter '{name}'{hint}")


def parse_config(values: Mapping[str, Any], defaults: bool = False) -> FuseConfig:
    """Validate raw parameter values (name -> value) into a :class:`FuseConfig`.

    Every name must be a parameter; with ``defaults`` the missing ones take their default, otherwise every
    parameter must be given (the node declares all). Raises :class:`ConfigError` naming the first bad one.
    """
    check_names(values)
    if defaults:
        values = {**DEFAULTS, **values}
    missing = [spec.name for spec in PARAMETERS if spec.name not in values]
    if missing:
        raise ConfigError(f"missing parameter(s): {', '.join(missing)}")
    cfg = FuseConfig(**{spec.field: spec.check(spec.name, values[spec.name]) for spec in PARAMETERS})
    _check_together(cfg)
    return cfg


def _check_together(cfg: FuseConfig) -> None:
    """The constraints between parameters, and the weights file."""
    if cfg.weights and not Path(cfg.weights).is_file():
        raise param_error("weights", f"file {cfg.weights} does not exist")
    if cfg.thermal_low_percentile >= cfg.thermal_high_percentile:
        raise param_error(
            "thermal.low_percentile",
            f"must be < thermal.high_percentile "
            f"({cfg.thermal_low_percentile:g} >= {cfg.thermal_high_percentile:g})",
        )
    low, high = cfg.thermal_fixed_range
    if not 0.0 <= low < high <= 65535.0:
        raise param_error(
            "thermal.fixed_range", f"must be [min, max] with 0 <= min < max <= 65535, got [{low}, {high}]"
        )
    try:
        Registration(cfg.homography, (1, 1))
    except ValueError as err:
        raise param_error("registration.homography", str(err)) from None
    if not (cfg.output_fused_image or cfg.output_segmentation or cfg.output_overlay):
        raise param_error(
            "outputs.fused_image",
            "all outputs (outputs.fused_image, outputs.segmentation, "
            "outputs.overlay) are disabled: the node would have nothing to publish",
        )


def _flatten(prefix: str, tree: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten(f"{name}.", value, out)
        else:
            out[name] = value


class _RosYamlLoader(yaml.SafeLoader):
    """YAML read as ROS 2's params-file parser reads it where they differ: rcl types a plain scalar with
    ``strtod``, so ``1e-05``, ``2.5e3``, ``.5`` and ``inf`` are doubles (YAML 1.1, and so PyYAML, wants a
    dot and a signed exponent, and would read strings)."""


for _pattern, _first in (
    (r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$", "-+.0123456789"),
    (r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)$", "-+.0123456789"),
    (r"^[-+]?(?:[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])$", "-+iInN"),
):
    _RosYamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_pattern), list(_first))


def _load_params_yaml(path: str | Path) -> Any:
    try:
        return yaml.load(Path(path).read_text(), Loader=_RosYamlLoader)  # a SafeLoader subclass
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read params file {path}: {err}") from err


def _parameter_sections(where: str, tree: Any, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """``(fully qualified node name or pattern, flattened parameters)`` of every ``ros__parameters``
    section, at any depth (``NODE:``, ``/NAMESPACE/NODE:`` or ``/NAMESPACE: NODE:``; wildcards ``*`` and
    ``**`` kept). Refuses, naming ``where``, what rcl refuses in any section: a value outside every
    ``ros__parameters:``, a parameter with no value, a list it cannot type (:func:`check_list_types`)."""
    if tree is None and not prefix:
        return []  # an empty file
    if not isinstance(tree, Mapping):
        raise ConfigError(
            f"{where}: {prefix or 'the file'} holds a value outside any 'ros__parameters:' section (ROS 2 "
            "refuses the file): write NODE:, then ros__parameters:, then the parameters"
        )
    sections: list[tuple[str, dict[str, Any]]] = []
    for key, value in tree.items():
        if key == "ros__parameters" and isinstance(value, Mapping):
            params: dict[str, Any] = {}
            _flatten("", value, params)
            empty = [name for name, v in params.items() if v is None]
            if empty:
                raise ConfigError(f"{where}: {prefix}/{empty[0]} has no value (ROS 2 refuses the file)")
            check_list_types(where, params)
            sections.append((prefix or "/", params))
        else:
            sections += _parameter_sections(where, value, f"{prefix}/{str(key).strip('/')}")
    return sections


def _names_node(pattern: str, node: str) -> bool:
    """Whether a section's name applies to the node ``node`` (fully qualified), as rcl matches them:
    ``*`` stands for one name token, ``**`` for any number of tokens."""
    parts = {"**": "(?:/[^/]+)*", "*": "/[^/]+"}
    regex = "".join(parts.get(token, "/" + re.escape(token)) for token in pattern.strip("/").split("/"))
    return re.fullmatch(regex, node) is not None


def read_params_file(path: str | Path, node: str = "/fuse_node") -> dict[str, Any]:
    """The parameters a ROS 2 params file gives the node ``node`` (fully qualified; the fusion node's
    default name in the root namespace): the sections whose name matches it (``fuse_node``,
    ``/fuse_node``, ``/**``, ...), merged in file order, nested keys flattened to dotted names. Raises
    :class:`ConfigError` naming the file, also for lists ROS 2 itself would refuse in any section."""
    sections = _parameter_sections(f"params file {path}", _load_params_yaml(path))
    params: dict[str, Any] = {}
    for name, section in sections:
        if _names_node(name, node):
            params.update(section)
    if not params:
        found = ", ".join(name for name, _ in sections) or "none"
        raise ConfigError(
            f"params file {path} has no parameters for {node} (sections: {found}); "
            f"write them under '{node.rsplit('/', 1)[-1]}: ros__parameters:' or '/**: ros__parameters:'"
        )
    return params


def check_ros_arguments(ros_args: list[str]) -> None:
    """Refuse, with a message that says what to do, the ``--params-file FILE`` and ``-p NAME:=VALUE``
    arguments that ROS 2 itself refuses with a traceback at ``rclpy.init`` (lists it cannot type)."""
    for k, token in enumerate(ros_args[:-1]):
        value = ros_args[k + 1]
        if token == "--params-file":
            _parameter_sections(f"params file {value}", _load_params_yaml(value))  # raises what rcl refuses
        elif token in ("-p", "--param") and ":=" in value:
            name, text = value.split(":=", 1)
            try:
                parsed = yaml.load(text, Loader=_RosYamlLoader)  # a SafeLoader subclass
            except yaml.YAMLError:
                continue  # ROS reads it as a string
            check_list_types("-p", {name: parsed})


def check_list_types(where: str, params: Mapping[str, Any]) -> None:
    """Refuse the lists ROS 2's parameter parser certainly refuses (it stops the node with a traceback):
    lists of lists or mappings, and booleans, integers and doubles mixed (``[1.02, 0.0, 1]``). Lists with
    strings are left to ROS 2, which types words such as ``y`` or ``1_000`` differently from YAML. Raises
    :class:`ConfigError` naming ``where`` and the parameter."""
    for name, value in params.items():
        if not isinstance(value, list):
            continue
        if any(isinstance(v, (list, Mapping)) for v in value):
            raise ConfigError(
                f"{where}: {name} = {value!r}: a ROS 2 list parameter holds booleans, integers, doubles "
                "or strings, not lists or mappings"
            )
        kinds = {type(v).__name__ for v in value}
        if len(kinds) > 1 and kinds <= {"bool", "int", "float"}:
            hint = "write whole numbers as doubles (1 -> 1.0)" if kinds == {"int", "float"} else "one type"
            raise ConfigError(
                f"{where}: {name} mixes {' and '.join(sorted(kinds))} elements ({value!r}); ROS 2 needs "
                f"every element of a list to have one type: {hint}"
            )
