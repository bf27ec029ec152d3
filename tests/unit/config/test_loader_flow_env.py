"""`${env:…}` inside flow collections (`{…}`, `[…]`): substituted after parsing, as the
Collector's confmap does, so an unquoted reference there is a YAML error -- one that
says which reference to quote and how."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.loader import load_config, parse_yaml
from pipeline.errors import ConfigError


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_yaml(text, "c.yaml")
    return exc.value.problems


def test_unquoted_reference_in_a_flow_mapping_says_to_quote_it() -> None:
    assert problems("auth:\n  x: {bearer_token: ${env:OTLP_TOKEN}}\n") == [
        'c.yaml:2:21: invalid YAML: ${env:OTLP_TOKEN} inside a flow mapping ({…}) must be '
        'quoted: "${env:OTLP_TOKEN}"']


def test_unquoted_reference_in_a_flow_sequence_says_to_quote_it() -> None:
    assert problems("bearer_tokens: [${env:TOKEN_A}, ${env:TOKEN_B}]\n") == [
        'c.yaml:1:17: invalid YAML: ${env:TOKEN_A} inside a flow sequence ([…]) must be '
        'quoted: "${env:TOKEN_A}"']


def test_the_hint_quotes_the_whole_value_around_the_reference() -> None:
    assert problems("e: {endpoint: http://${env:HOST:-h}:4318, x: 1}\n") == [
        'c.yaml:1:22: invalid YAML: ${env:HOST:-h} inside a flow mapping ({…}) must be '
        'quoted: "http://${env:HOST:-h}:4318"']


def test_other_yaml_errors_keep_the_parser_message() -> None:
    [problem] = problems("a: {b: [}\n")
    assert "must be quoted" not in problem
    assert problem.startswith("c.yaml:1:9: invalid YAML")


def test_quoted_in_flow_and_unquoted_in_block_are_substituted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: {token: \"${env:T}\", list: ['${env:T}', x]}\n"
                    "b:\n  token: ${env:T}\n  list:\n    - ${env:T}\n")
    assert load_config([path], env={"T": "s3cret"}) == {
        "a": {"token": "s3cret", "list": ["s3cret", "x"]},
        "b": {"token": "s3cret", "list": ["s3cret"]}}


def test_a_value_cannot_inject_yaml(tmp_path: Path) -> None:
    """Substitution happens in parsed strings: a value that looks like YAML (a flow
    mapping, an alias) stays a string."""
    path = tmp_path / "c.yaml"
    path.write_text('a: {token: "${env:T}"}\n')
    value = "x}, extra: {y: *z"
    assert load_config([path], env={"T": value}) == {"a": {"token": value}}
