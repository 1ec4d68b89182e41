"""Loading settings: defaults, then a TOML file, then `SENSORIUM_*` environment variables.

Environment variables name a setting by its path, with `__` between levels:
`SENSORIUM_DEVICE=cpu`, `SENSORIUM_LLM__BACKEND=none`, `SENSORIUM_FUSION__ABSTAIN_BELOW=0.4`.
Values are read as JSON when they parse (numbers, lists, booleans), else as text.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sensorium.agent import Settings
from sensorium.tools import UserError

ENV_PREFIX = "SENSORIUM_"
NOT_SETTINGS = {"SENSORIUM_CONFIG"}  # variables that are about loading, not settings


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$SENSORIUM_CONFIG`, else `config.toml` in the per-user config folder."""
    env = os.environ if env is None else env
    if explicit := env.get("SENSORIUM_CONFIG"):
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sensorium" / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        target = overrides
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return overrides


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    path: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from defaults < TOML file < environment < `overrides`.

    Args:
        path: a TOML file; it must exist when given (or named by `SENSORIUM_CONFIG`).
            Default: `config.toml` in the per-user config folder, used only if it exists
        overrides: values that win over everything (the CLI's flags)
        env: the environment to read (default: `os.environ`)
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "defaults"
    if path is None and env.get("SENSORIUM_CONFIG"):
        path = default_config_path(env)  # named explicitly, so it must exist too
    if path is not None:
        config = Path(path).expanduser()
        if not config.is_file():
            raise UserError(f"config file not found: {config}")
        data, source = _read_toml(config), str(config)
    elif (config := default_config_path(env)).is_file():
        data, source = _read_toml(config), str(config)
    data = _merge(data, _env_overrides(env))
    data = _merge(data, overrides or {})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise UserError(
            f"invalid setting {where}: {error['msg']} (from {source} or SENSORIUM_* variables)"
        ) from None
