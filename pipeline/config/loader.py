"""Read YAML files, merge them in order and substitute `${env:VAR}` references."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

DEFAULT_CONFIG_NAME = "<embedded default>"
_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}")


def default_config_text() -> str:
    return resources.files("pipeline.config").joinpath("default.yaml").read_text()


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        raise ConfigError([f"{where}: invalid YAML: {detail}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping, got {type(data).__name__}"])
    return data


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; lists and scalars of later files replace earlier ones."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def substitute_env(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Replace `${env:VAR}` / `${env:VAR:-default}` in every string; `$$` is a literal `$`."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            if m.group(3) is not None:
                problems.append(f"{path}: unsupported reference ${{{m.group(3)}}}: "
                                "use ${env:VAR} or ${env:VAR:-default}")
                return m.group(0)
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set "
                            f"(write ${{env:{name}:-default}} to give a default)")
            return ""
        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute_env(v, env, f"{path}.{k}" if path else str(k), problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def load_yaml_files(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Merge the given files in order (the embedded default when none is given)."""
    merged: dict[str, Any] = {}
    if not paths:
        return parse_yaml(default_config_text(), DEFAULT_CONFIG_NAME)
    for p in paths:
        try:
            text = Path(p).read_text()
        except OSError as exc:
            raise ConfigError([f"{p}: cannot read config file: {exc.strerror}"]) from None
        merged = merge(merged, parse_yaml(text, str(p)))
    return merged


def load_config(paths: Sequence[str | Path], env: Mapping[str, str] | None = None
                ) -> dict[str, Any]:
    raw = load_yaml_files(paths)
    problems: list[str] = []
    out: dict[str, Any] = substitute_env(raw, os.environ if env is None else env, "",
                                         problems)
    if problems:
        raise ConfigError(problems)
    return out
