"""Property-based fuzzing of the config loader and of `validate_config` (issue 11).

Random YAML-ish text (indentation, flow collections, anchors, aliases, merge keys,
tags, quotes, `${env:…}` references), YAML dumps of random structures with
characters flipped, and random nested structures (mostly made of the words a
config uses, so validation gets past the first check) either load / validate or
raise `ConfigError` whose problems are non-empty lines; no other exception
escapes, and no example spends more than 100 ms of CPU.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.loader import load_config, parse_yaml
from pipeline.config.model import Config, validate_config
from pipeline.errors import ConfigError
from pipeline.receivers import jsonlogs, otlp
from pipeline.registry import Registry
from tests.support import cpu_bounded
from tests.unit.config.registry import core_factories

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CPU_BOUND = 0.1
SOURCE = "fuzz.yaml"
REGISTRY = Registry([*core_factories(), otlp.factory, jsonlogs.factory])
T = TypeVar("T")


def bounded(call: Callable[[], T]) -> T | ConfigError:
    """The call's result or its ConfigError (checked), within the CPU bound."""
    def run() -> T | ConfigError:
        try:
            return call()
        except ConfigError as exc:
            return exc

    result = cpu_bounded(run, CPU_BOUND)
    if isinstance(result, ConfigError):
        assert result.problems, "a ConfigError without problems"
        assert all(isinstance(p, str) and p.strip() for p in result.problems), result.problems
    return result

# YAML-ish text ---------------------------------------------------------------------------

WORDS = ["receivers", "processors", "exporters", "connectors", "extensions", "service",
         "pipelines", "traces", "logs", "metrics", "otlp", "nop", "batch", "debug", "file",
         "memory_limiter", "forward", "health", "jsonlogs", "protocols", "grpc", "http",
         "endpoint", "timeout", "path", "limit_mib", "check_interval", "send_batch_size",
         "telemetry", "level", "shutdown_timeout", "otlp/2", "traces/x", "1s", "10ms",
         "localhost:4317", "0", "-1", "1e9", "true", "null", "~", "2024-02-30", "0x1F",
         "yes", "'q'", '"d\\x41"', "${env:HOME}", "${env:NOPE:-x}", "${env:}", "${foo}",
         "$$", "ä", "\u2028"]
TOKENS = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from([": ", ":", "- ", "-", "[", "]", "{", "}", ", ", ",", "&a ", "*a", "&b ",
                     "*b", "<<: ", "!!str ", "!!int ", "!!float ", "!!binary ", "!!set ",
                     "!!timestamp ", "!!map ", "!!seq ", "!!python/object ", "!custom ", "? ",
                     "| ", "> ", "#", "'", '"', "%YAML 1.1\n", "---\n", "...\n", "\t", "\\",
                     "@", "`", "\x00", "\ufeff"]),
    st.text(max_size=4),
)


@st.composite
def yamlish(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        indent = " " * draw(st.sampled_from([0, 0, 2, 2, 4, 6, 1, 3]))
        lines.append(indent + "".join(draw(st.lists(TOKENS, max_size=6))))
    return "\n".join(lines)


KEYS = st.sampled_from(WORDS) | st.text(max_size=6)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                   st.text(max_size=10), st.sampled_from(WORDS))
_FLAT = st.one_of(LEAVES, st.lists(LEAVES, max_size=3), st.dictionaries(KEYS, LEAVES,
                                                                        max_size=3))
STRUCTURES = st.one_of(LEAVES, st.lists(_FLAT, max_size=3),
                       st.dictionaries(KEYS, _FLAT, max_size=4))  # three levels at most
TOP = st.dictionaries(st.sampled_from(["receivers", "processors", "exporters", "connectors",
                                       "extensions", "service"]) | KEYS,
                      STRUCTURES, max_size=5)


@st.composite
def mutated_dump(draw: st.DrawFn) -> str:
    """A YAML dump of a random config-like structure, with a few characters changed."""
    text = list(yaml.safe_dump(draw(TOP), default_flow_style=draw(st.booleans())))
    for _ in range(draw(st.integers(0, 4))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        text[at] = draw(st.sampled_from([":", "-", " ", "\n", "[", "{", "&a", "*a", "'", "x"]))
    return "".join(text)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="loader-fuzz-") as d:
        yield Path(d)


# Properties ------------------------------------------------------------------------------

def check_parsed(text: str) -> None:
    result = bounded(lambda: parse_yaml(text, SOURCE))
    if isinstance(result, ConfigError):
        assert all(p.startswith(SOURCE) for p in result.problems), result.problems
    else:
        assert isinstance(result, dict)


@FUZZ
@given(text=yamlish())
def test_yamlish_text(text: str) -> None:
    check_parsed(text)


@FUZZ
@given(text=mutated_dump())
def test_mutated_dumps(text: str) -> None:
    check_parsed(text)


@FUZZ
@given(text=st.one_of(yamlish(), mutated_dump()),
       env=st.dictionaries(st.sampled_from(["HOME", "A", "NOPE", "X_1"]), st.text(max_size=8),
                           max_size=3))
def test_load_config_with_env(workdir: Path, text: str, env: dict[str, str]) -> None:
    path = workdir / "config.yaml"
    try:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        return
    result = bounded(lambda: load_config([path], env=env))
    assert isinstance(result, (dict, ConfigError))


def check_validated(raw: dict[str, Any]) -> None:
    result = bounded(lambda: validate_config(raw, REGISTRY))
    assert isinstance(result, (Config, ConfigError))


@FUZZ
@given(raw=TOP)
def test_validate_random_structures(raw: dict[str, Any]) -> None:
    check_validated(raw)


PIPELINE = st.fixed_dictionaries({}, optional={
    "receivers": st.lists(st.sampled_from(["otlp", "jsonlogs", "otlp/2", "forward", "nop", 1,
                                           None]), max_size=3),
    "processors": st.lists(st.sampled_from(["batch", "memory_limiter", "batch/x", "nop"]),
                           max_size=3),
    "exporters": st.lists(st.sampled_from(["nop", "debug", "forward", "file", "otlp"]),
                          max_size=3),
    "extra": STRUCTURES})
NEAR_VALID = st.fixed_dictionaries({
    "receivers": st.dictionaries(st.sampled_from(["otlp", "otlp/2", "jsonlogs", "nop"]),
                                 st.none() | st.dictionaries(KEYS, STRUCTURES, max_size=3),
                                 max_size=3),
    "processors": st.dictionaries(st.sampled_from(["batch", "memory_limiter", "batch/x"]),
                                  st.none() | st.dictionaries(KEYS, LEAVES, max_size=3),
                                  max_size=2),
    "exporters": st.dictionaries(st.sampled_from(["nop", "debug", "file"]),
                                 st.none() | st.dictionaries(KEYS, LEAVES, max_size=3),
                                 max_size=2),
    "connectors": st.dictionaries(st.sampled_from(["forward", "forward/b"]), st.none(),
                                  max_size=2),
    "service": st.fixed_dictionaries({
        "pipelines": st.dictionaries(st.sampled_from(["traces", "logs", "metrics", "logs/a",
                                                      "traces/", "spans", ""]),
                                     PIPELINE, max_size=4)},
        optional={"extensions": st.lists(st.sampled_from(["health", "x"]), max_size=2),
                  "telemetry": STRUCTURES, "shutdown_timeout": LEAVES}),
})


@FUZZ
@given(raw=NEAR_VALID)
def test_validate_near_valid_configs(raw: dict[str, Any]) -> None:
    check_validated(raw)


@pytest.mark.parametrize("text", [
    "receivers:\n  otlp: {since: 2024-02-30}\n",  # an impossible date
    "a: 2024-13-45\n",
    "a: !!int 0x\n",
    "a: !!float x\n",
    "a: !!timestamp 2024-02-30\n",
    "!!int \n",  # IndexError
])
def test_values_yaml_cannot_construct_are_config_errors(text: str) -> None:
    """Found by this module: PyYAML's constructors raise ValueError (not a YAMLError) for
    an implicit date that does not exist or a tagged scalar that does not convert;
    `parse_yaml` lets it escape, so `otelpipe validate` prints a traceback and exits 1
    instead of naming the file, line and column and exiting 2."""
    with pytest.raises(ConfigError) as exc:
        parse_yaml(text, SOURCE)
    assert exc.value.problems[0].startswith(f"{SOURCE}:")
