"""YAML configs with dotted ``key=value`` overrides, checked against a dict of defaults.

Why a defaults dict rather than dataclasses: the training script reads like nanoGPT (one dict, stored
verbatim in every checkpoint), and evaluation scripts can reload a run's ``config.yaml`` without
importing the trainer. The defaults dict is the schema:

- every key of a file or an override must exist in the defaults (a typo is an error naming the key and
  the close matches), except under *open* keys (e.g. ``model.cfg``: free factory arguments);
- values are YAML-typed (``training.lr=3e-4``, ``data.roots=[a,b]``, ``ssvif.csc=false``) and checked
  against the default's type: a float default takes ints and numeric strings (PyYAML reads ``1e-4``
  as a string), an int default takes ints only, a bool default only ``true``/``false``, a ``null``
  default anything.

    cfg = load_config("config/train/tiny.yaml", ["training.lr=1e-3"], defaults=DEFAULTS,
                      open_keys={"model.cfg"})
    text = dump_config(cfg)   # the resolved config, YAML
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit the defaults; the message names the key (and file)."""


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.lr=3e-4"`` -> ``("training.lr", "3e-4")`` with the value parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return key, value


def _close_matches(name: str, options: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(matches)}?)" if matches else ""


def _checked_value(key: str, default: Any, value: Any, where: str) -> Any:
    """``value`` converted to the type of ``default``, or a ConfigError naming ``key``."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key} must be {expected}, got {value!r} ({type(value).__name__})")

    if default is None or value is None:
        return copy.deepcopy(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool):
            raise fail("a number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise fail("a number") from None
        raise fail("a number")
    if isinstance(default, str):
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if isinstance(default, list | tuple):
        if not isinstance(value, list | tuple):
            raise fail("a list")
        return list(copy.deepcopy(value))
    return copy.deepcopy(value)


def merge_into(
    cfg: dict[str, Any],
    update: Mapping[str, Any],
    *,
    open_keys: Iterable[str] = (),
    where: str = "config",
    prefix: str = "",
) -> None:
    """Merge ``update`` into ``cfg`` in place, recursively; keys must exist in ``cfg`` (outside open keys)."""
    open_set = set(open_keys)
    section = prefix.rstrip(".")
    section_is_open = any(section == o or section.startswith(o + ".") for o in open_set)
    for name, value in update.items():
        key = f"{prefix}{name}"
        if not isinstance(name, str):
            raise ConfigError(f"{where}: key {key!r} must be a string")
        if section_is_open and not (isinstance(cfg.get(name), dict) and isinstance(value, Mapping)):
            cfg[name] = copy.deepcopy(value)  # free-form section: no schema to check against
            continue
        if name not in cfg:
            raise ConfigError(f"{where}: unknown key {key!r}{_close_matches(name, cfg)}")
        default = cfg[name]
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {key} is a section; give its fields ({key}.FIELD=...)")
            merge_into(default, value, open_keys=open_set, where=where, prefix=f"{key}.")
        else:
            if isinstance(value, Mapping) and default is not None:
                raise ConfigError(f"{where}: {key} is a value, not a section")
            cfg[name] = _checked_value(key, default, value, where)


def set_dotted(
    cfg: dict[str, Any], key: str, value: Any, *, open_keys: Iterable[str] = (), where: str = "override"
) -> None:
    """``cfg[a][b][c] = value`` for ``key = "a.b.c"``, with the checks of :func:`merge_into`."""
    parts = key.split(".")
    update: Any = value
    for part in reversed(parts):
        update = {part: update}
    merge_into(cfg, update, open_keys=open_keys, where=f"{where} {key}={value!r}")


def load_config(
    path: str | os.PathLike[str] | None,
    overrides: Iterable[str] = (),
    *,
    defaults: Mapping[str, Any],
    open_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path`` (may be None), then the ``key=value`` overrides."""
    open_keys = tuple(open_keys)
    cfg = copy.deepcopy(dict(defaults))
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"
            )
        merge_into(cfg, data, open_keys=open_keys, where=str(path))
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(cfg, key, value, open_keys=open_keys)
    return cfg


def get_dotted(cfg: Mapping[str, Any], key: str) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``; KeyError naming the key when absent."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"config has no key {key!r}")
        node = node[part]
    return node


def diff_configs(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs (keys present in only one count too)."""
    out = []
    for name in sorted(set(a) | set(b)):
        key = f"{prefix}{name}"
        va, vb = a.get(name), b.get(name)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += diff_configs(va, vb, f"{key}.")
        elif va != vb:
            out.append(key)
    return out


def dump_config(cfg: Mapping[str, Any]) -> str:
    """The config as YAML, keys in their defined order."""
    return yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=None)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
