from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import (
    MAX_DEPTH,
    MAX_NODES,
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


# Bounded parsing: alias bombs and deep nesting -----------------------------------


def laughs(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each level lists the previous one `width` times."""
    rows = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(rows) + "\nservice: {pipelines: {}}\n"


def test_alias_bomb_is_refused_fast_naming_the_limit() -> None:
    started = time.thread_time()  # CPU, not wall: a loaded machine must not fail it
    with pytest.raises(ConfigError) as exc:
        parse_yaml(laughs(), "bomb.yaml")
    assert time.thread_time() - started < 0.5
    # refused at a6 (9**6 = 531,441 nodes), not after expanding 9**9
    assert _problems(exc) == [
        f"bomb.yaml:6:5: config has more than {MAX_NODES} YAML nodes once its aliases are "
        "expanded (an alias bomb?)"]


def test_merge_key_bomb_is_refused() -> None:
    rows = ["m0: &m0 {a: 1, b: 2}"]
    rows += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}, *m{i - 1}, *m{i - 1}], k{i}: 1}}"
             for i in range(1, 30)]
    with pytest.raises(ConfigError) as exc:
        parse_yaml("\n".join(rows) + "\n", "merge.yaml")
    [problem] = _problems(exc)
    assert problem.startswith("merge.yaml:")
    assert problem.endswith(f"more than {MAX_NODES} YAML nodes once its aliases are "
                            "expanded (an alias bomb?)")


def test_aliases_and_merge_keys_within_the_limits_load() -> None:
    text = ("base: &base {timeout: 1s, send_batch_size: 10}\n"
            "processors:\n  batch/a: *base\n  batch/b: {<<: *base, timeout: 2s}\n"
            "lists: &l [1, 2]\nagain: [*l, *l]\n")
    assert parse_yaml(text, "x.yaml") == {
        "base": {"timeout": "1s", "send_batch_size": 10},
        "processors": {"batch/a": {"timeout": "1s", "send_batch_size": 10},
                       "batch/b": {"timeout": "2s", "send_batch_size": 10}},
        "lists": [1, 2], "again": [[1, 2], [1, 2]]}


def test_a_config_of_exactly_the_node_limit_loads() -> None:
    # root + 2 keys + x (1 + 640 items) + y (1 + 155 aliases of x, 641 nodes each)
    x = "x: &x [" + ", ".join(["1"] * 640) + "]\n"
    y = "y: [" + ", ".join(["*x"] * 155) + "]\n"
    assert MAX_NODES == 1 + 2 + 641 + 1 + 155 * 641
    data = parse_yaml(x + y, "big.yaml")
    assert len(data["y"]) == 155
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES} YAML nodes"):
        parse_yaml(x + y + "z: 1\n", "big.yaml")


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml("a: &a [1, *a]\n", "rec.yaml")
    assert _problems(exc) == [
        "rec.yaml:1:11: recursive alias *a (it refers to a node that contains it)"]


@pytest.mark.parametrize(("text", "column"), [
    ("a: " + "[" * 20_000 + "]" * 20_000 + "\n", 103),
    ("a: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n", 397),
], ids=["sequences", "mappings"])
def test_deep_nesting_is_a_clean_error(text: str, column: int) -> None:
    started = time.thread_time()  # CPU, not wall: a loaded machine must not fail it
    with pytest.raises(ConfigError) as exc:
        parse_yaml(text, "deep.yaml")
    assert time.thread_time() - started < 2  # ~0.35 s: PyYAML's scanner looks ahead
    assert _problems(exc) == [f"deep.yaml:1:{column}: config nested deeper than "
                              f"{MAX_DEPTH} levels"]


def test_nesting_limit_is_exact_in_block_style() -> None:
    assert MAX_DEPTH == 100

    def nested(levels: int) -> str:  # the root mapping is level 1, the last scalars the last
        return ("".join("  " * i + "a:\n" for i in range(levels - 2))
                + "  " * (levels - 2) + "a: 1\n")

    data = parse_yaml(nested(MAX_DEPTH), "ok.yaml")
    for _ in range(MAX_DEPTH - 2):
        data = data["a"]
    assert data == {"a": 1}
    with pytest.raises(ConfigError) as exc:
        parse_yaml(nested(MAX_DEPTH + 1), "deep.yaml")
    # level 101 is the last line's key
    assert _problems(exc) == ["deep.yaml:100:199: config nested deeper than 100 levels"]


def test_nesting_through_aliases_counts() -> None:
    rows = ["l0: &l0 [x]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, 150)]
    with pytest.raises(ConfigError) as exc:
        parse_yaml("\n".join(rows) + "\n", "chain.yaml")
    # l99 (line 100) is 101 levels high: [[[ … [x] … ]]]
    assert _problems(exc) == ["chain.yaml:100:6: config nested deeper than 100 levels once its "
                              "aliases are expanded"]


def test_a_chain_of_merge_keys_is_bounded_too() -> None:
    rows = ["m0: &m0 {a: 1}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}, b{i}: 1}}"
                                  for i in range(1, 3000)]
    with pytest.raises(ConfigError, match=f"nested deeper than {MAX_DEPTH} levels once"):
        parse_yaml("\n".join(rows) + "\n", "chain.yaml")
