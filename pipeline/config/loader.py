"""Read YAML files, merge them in order and substitute `${env:VAR}` references.

Parsing is bounded whatever the file holds: a document whose tree, with every
alias expanded, has more than `MAX_NODES` nodes (a "billion laughs" alias bomb)
or is nested deeper than `MAX_DEPTH` levels is refused with a `ConfigError`
while it is composed, before anything walks it (substitution, merging and
validation recurse over the expanded tree). Each node's expanded size and
height are computed once from its children's, so the check is linear in the
text, and an alias costs nothing to count.

`${env:…}` references are substituted after parsing, in the parsed strings (as the
Collector's confmap does), never in the YAML text: a variable's value cannot add
keys, anchors or aliases, and the bounds above hold whatever the environment holds.
The price: inside a flow mapping or sequence (`{…}`, `[…]`) a reference must be
quoted (`{bearer_token: "${env:TOKEN}"}`), since `{` ends a plain scalar there; the
YAML error says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

DEFAULT_CONFIG_NAME = "<embedded default>"
MAX_NODES = 100_000
"""Nodes a config may have once its aliases are expanded (real ones have hundreds)."""
MAX_DEPTH = 100
"""Nesting levels a config may have (aliases and merge keys included)."""
_REF = re.compile(r"\$\{[^}\n]*\}")
_FLOW_STOP = " \t,[]{}"
_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}")


def default_config_text() -> str:
    return resources.files("pipeline.config").joinpath("default.yaml").read_text()


class _TooBig(Exception):
    def __init__(self, message: str, mark: object):
        super().__init__(message)
        self.message = message
        line, column = getattr(mark, "line", None), getattr(mark, "column", None)
        self.where = (line, column) if isinstance(line, int) and isinstance(column, int) \
            else None


class BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses, while composing, a tree that expands past
    `max_nodes` nodes or `max_depth` levels, and recursive aliases."""

    def __init__(self, stream: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH):
        super().__init__(stream)
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self._depth = 0
        # id(node) -> (expanded size, height); nodes stay alive while loading
        self._measured: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        peek: Callable[[], yaml.Event] = self.peek_event  # untyped in the stubs
        event = peek()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._measured:  # still being composed: `&a [*a]`
                raise _TooBig(f"recursive alias *{event.anchor} (it refers to a node that "
                              "contains it)", event.start_mark)
            return node
        self._depth += 1
        if self._depth > self.max_depth:
            raise _TooBig(self._too_deep(), event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node is not None:
            self._measure(node)
        return node

    def _too_deep(self) -> str:
        return f"config nested deeper than {self.max_depth} levels"

    def _measure(self, node: yaml.Node) -> None:
        size, height = 1, 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            csize, cheight = self._measured[id(child)]
            size += csize
            height = max(height, cheight + 1)
        if size > self.max_nodes:
            raise _TooBig(f"config has more than {self.max_nodes} YAML nodes once its "
                          "aliases are expanded (an alias bomb?)", node.start_mark)
        if height > self.max_depth:
            raise _TooBig(self._too_deep() + " once its aliases are expanded",
                          node.start_mark)
        self._measured[id(node)] = (size, height)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        loader = BoundedLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _TooBig as exc:
        where = f"{source}:{exc.where[0] + 1}:{exc.where[1] + 1}" if exc.where else source
        raise ConfigError([f"{where}: {exc.message}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        if mark is not None and (hint := _unquoted_reference(text, mark, context)):
            where = f"{source}:{mark.line + 1}:{mark.column}"  # at the `$`, not the `{`
            detail = hint
        raise ConfigError([f"{where}: invalid YAML: {detail}"]) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values they cannot build (`2024-02-30`
        # as a date, `!!int 0x`), without a position.
        raise ConfigError([f"{source}: invalid YAML value: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping, got {type(data).__name__}"])
    mapping: dict[str, Any] = data
    return mapping


def _unquoted_reference(text: str, mark: Any, context: str | None) -> str | None:
    """The hint for `{key: ${env:VAR}}`: YAML stops the plain scalar at the `{` of the
    reference and then fails there; say which reference to quote, and how."""
    if mark is None or context not in ("while parsing a flow mapping",
                                       "while parsing a flow sequence"):
        return None
    lines = text.splitlines()
    if not 0 <= mark.line < len(lines):
        return None
    line = lines[mark.line]
    ref = next((m for m in _REF.finditer(line) if m.start() == mark.column - 1), None)
    if ref is None:
        return None
    start, end = ref.start(), ref.end()
    while start > 0 and line[start - 1] not in _FLOW_STOP:
        start -= 1
    while end < len(line) and line[end] not in _FLOW_STOP:
        end += 1
    where = "a flow mapping ({…})" if context.endswith("mapping") else \
        "a flow sequence ([…])"
    return (f"{ref.group(0)} inside {where} must be quoted: "
            f"\"{line[start:end]}\"")


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
