"""Configuration: one defaults file, experiment overrides, then ``key=value`` from the CLI.

The defaults live in ``config/train.yaml`` (installed as ``instrument_seg._defaults``). Every key
a user may set appears there; an unknown key is an :class:`InputError`. The resolved config is
saved next to whatever a command produces.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from instrument_seg.errors import InputError
from instrument_seg.fileio import write_text

DEFAULTS_NAME = "train.yaml"


def defaults_path() -> Path:
    """Where ``train.yaml`` is: the installed ``instrument_seg._defaults`` or the source tree.

    An editable install maps ``config/`` only for regular installs, so a source checkout falls
    back to ``<repo>/config``.
    """
    try:
        installed = Path(str(resources.files("instrument_seg._defaults").joinpath(DEFAULTS_NAME)))
        if installed.is_file():
            return installed
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "config" / DEFAULTS_NAME


def default_config() -> dict[str, Any]:
    """Returns a fresh copy of the packaged defaults (``config/train.yaml``)."""
    return yaml.safe_load(defaults_path().read_text())


def _merge(
    base: dict[str, Any], override: Mapping[str, Any], origin: str, prefix: str = ""
) -> None:
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise InputError(f"unknown config key '{dotted}' in {origin}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise InputError(f"config key '{dotted}' in {origin} must be a mapping")
            _merge(base[key], value, origin, f"{dotted}.")
        else:
            base[key] = copy.deepcopy(value)


def parse_override(item: str) -> dict[str, Any]:
    """Turns ``a.b=value`` into ``{"a": {"b": value}}``; the value is parsed as YAML."""
    if "=" not in item:
        raise InputError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise InputError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise InputError(f"override '{item}' has a value that is not valid YAML") from exc
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def load_config(files: Iterable[str | Path] = (), overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Resolves defaults <- each YAML file <- each ``key=value`` override, in that order.

    Args:
        files: experiment YAML files overriding a subset of the defaults.
        overrides: ``dotted.key=value`` strings, values parsed as YAML.

    Returns:
        The resolved nested config.

    Raises:
        InputError: a missing or invalid file, or an unknown key.
    """
    config = default_config()
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"config file {path} is not valid YAML") from exc
        if not isinstance(data, Mapping):
            raise InputError(f"config file {path} must hold a mapping of keys")
        _merge(config, data, str(path))
    for item in overrides:
        _merge(config, parse_override(item), f"override '{item}'")
    return config


def complete_config(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A config saved by an earlier version, on top of today's defaults.

    A model's config travels with it (checkpoint, ONNX metadata) and outlives code changes:
    keys added since then take their defaults, keys since removed are dropped, so an old model
    keeps working with new code. None stays None.
    """
    if stored is None:
        return None

    def overlay(base: dict[str, Any], saved: Mapping[str, Any]) -> None:
        for key, value in saved.items():
            if key not in base:
                continue
            if isinstance(base[key], dict) and isinstance(value, Mapping):
                overlay(base[key], value)
            elif not isinstance(base[key], dict):
                base[key] = copy.deepcopy(value)

    config = default_config()
    overlay(config, stored)
    return config


def save_config(config: Mapping[str, Any], path: str | Path) -> None:
    """Writes the resolved config as YAML (atomically)."""
    write_text(path, yaml.safe_dump(dict(config), sort_keys=False))


def working_size(config: Mapping[str, Any]) -> tuple[int, int]:
    """``data.size`` as (H, W), validated."""
    size = config["data"]["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and v >= 16 for v in size)
    ):
        raise InputError(f"data.size must be [H, W] with integers >= 16, got {size}")
    return int(size[0]), int(size[1])


def inference_size(config: Mapping[str, Any]) -> tuple[int, int]:
    """The (H, W) a trained model runs at: ``model.inference_scale`` times ``data.size``.

    Training small and running large is the default (docs/results.md 9): a network trained at
    128x160 segments better at 256x320 than at its training size on the da Vinci sets.
    """
    h, w = working_size(config)
    scale = config["model"].get("inference_scale", 1)
    if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 4:
        raise InputError(f"model.inference_scale must be an integer 1..4, got {scale!r}")
    return h * scale, w * scale
