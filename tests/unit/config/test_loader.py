from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import (
    load_config,
    load_yaml_files,
    merge,
    parse_yaml,
    substitute_env,
)
from pipeline.errors import ConfigError


def _problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return exc.value.problems


def test_broken_yaml_points_at_file_line_column(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("receivers:\n  otlp: {}\nprocessors:\n  batch:\n    timeout: [1, 2\n"
                 "exporters: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml_files([f])
    assert _problems(exc) == [
        f"{f}:6:10: invalid YAML: while parsing a flow sequence, expected ',' or ']', "
        "but got ':'"]


def test_bad_indentation(tmp_path: Path) -> None:
    f = tmp_path / "indent.yaml"
    f.write_text("service:\n  pipelines:\n    traces: {}\n   bad: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_yaml_files([f])
    assert _problems(exc) == [
        f"{f}:4:4: invalid YAML: while parsing a block mapping, expected <block end>, "
        "but found '<block mapping start>'"]


def test_top_level_must_be_mapping() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml("- a\n- b\n", "x.yaml")
    assert _problems(exc) == ["x.yaml: the top level must be a mapping, got list"]


def test_empty_file_is_empty_mapping() -> None:
    assert parse_yaml("", "x.yaml") == {}


def test_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load_yaml_files([f])
    assert _problems(exc) == [f"{f}: cannot read config file: No such file or directory"]


def test_merge_is_deep_and_later_wins() -> None:
    base = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [1, 2], "s": "x"}
    over = {"a": {"c": {"e": 30, "f": 4}}, "l": [9], "s": {"now": "map"}}
    assert merge(base, over) == {"a": {"b": 1, "c": {"d": 2, "e": 30, "f": 4}}, "l": [9],
                                 "s": {"now": "map"}}
    assert base == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [1, 2], "s": "x"}


def test_several_files_merge_in_order(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    two = tmp_path / "two.yaml"
    three = tmp_path / "three.yaml"
    one.write_text("processors:\n  batch: {send_batch_size: 10, timeout: 1s}\n"
                   "service:\n  pipelines:\n    traces: {receivers: [a], exporters: [b]}\n")
    two.write_text("processors:\n  batch: {send_batch_size: 20}\n")
    three.write_text("processors:\n  batch: {send_batch_size: 30}\n"
                     "service:\n  pipelines:\n    traces: {exporters: [c, d]}\n")
    assert load_yaml_files([one, two, three]) == {
        "processors": {"batch": {"send_batch_size": 30, "timeout": "1s"}},
        "service": {"pipelines": {"traces": {"receivers": ["a"], "exporters": ["c", "d"]}}}}
    assert load_yaml_files([three, one])["processors"]["batch"] == {
        "send_batch_size": 10, "timeout": "1s"}


def test_no_file_loads_embedded_default() -> None:
    raw = load_yaml_files([])
    assert sorted(raw["service"]["pipelines"]) == ["logs", "metrics", "traces"]


def test_env_substitution() -> None:
    raw = {"exporters": {"file": {"path": "${env:DIR}/out-${env:N:-7}.jsonl",
                                  "list": ["${env:DIR}", 5, None, True]}}}
    assert load_config_from(raw, {"DIR": "/data"}) == {
        "exporters": {"file": {"path": "/data/out-7.jsonl", "list": ["/data", 5, None, True]}}}


def load_config_from(raw: dict[str, Any], env: dict[str, str]) -> object:
    problems: list[str] = []
    out = substitute_env(raw, env, "", problems)
    if problems:
        raise ConfigError(problems)
    return out


def test_env_set_value_wins_over_default_and_empty_default() -> None:
    problems: list[str] = []
    assert substitute_env("${env:A:-x}|${env:B:-}", {"A": "set"}, "k", problems) == "set|"
    assert problems == []


def test_dollar_dollar_escape() -> None:
    problems: list[str] = []
    env = {"X": "x", "HOME": "/h"}
    assert substitute_env("cost $$5 and $${env:HOME}", env, "k", problems) == (
        "cost $5 and ${env:HOME}")
    assert substitute_env("$$${env:X}|$$$${env:X}", env, "k", problems) == "$x|$${env:X}"
    assert problems == []


def test_unset_variable_names_key_path(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("exporters:\n  file/a:\n    path: ${env:OTELPIPE_TEST_UNSET}/x\n"
                 "  kafka:\n    brokers: [ok, '${env:OTELPIPE_TEST_UNSET2}']\n")
    with pytest.raises(ConfigError) as exc:
        load_config([f], env={})
    assert _problems(exc) == [
        "exporters.file/a.path: environment variable OTELPIPE_TEST_UNSET is not set "
        "(write ${env:OTELPIPE_TEST_UNSET:-default} to give a default)",
        "exporters.kafka.brokers[1]: environment variable OTELPIPE_TEST_UNSET2 is not set "
        "(write ${env:OTELPIPE_TEST_UNSET2:-default} to give a default)"]


def test_unsupported_reference() -> None:
    problems: list[str] = []
    substitute_env("${HOME}", {"HOME": "/h"}, "a.b", problems)
    assert problems == [
        "a.b: unsupported reference ${HOME}: use ${env:VAR} or ${env:VAR:-default}"]


def test_load_config_reads_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTELPIPE_TEST_PORT", "4999")
    f = tmp_path / "c.yaml"
    f.write_text("receivers:\n  otlp:\n    endpoint: 127.0.0.1:${env:OTELPIPE_TEST_PORT}\n")
    assert load_config([f]) == {"receivers": {"otlp": {"endpoint": "127.0.0.1:4999"}}}
