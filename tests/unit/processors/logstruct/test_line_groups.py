"""Groups that still hold lines (`LogGroup.from_lines`, what `filelog` emits) are built and
parsed in one pass (`LogStructProcessor._process_lines`): the result must be byte for
byte what building the records first and parsing them gives."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.pdata.logrecords import LogGroup, encode_groups
from pipeline.processors.logstruct.parsers.json import JsonParser
from tests.unit.processors.logstruct.helpers import corpus_lines, make
from tests.unit.processors.logstruct.linegen import (
    GROK_PATTERNS,
    line_grok,
    line_json,
    line_logfmt,
    line_mixed,
    line_nginx,
    line_syslog,
)

BASE = {"log.file.name": "app.log"}


def _groups(lines: list[str], extras: list[dict[str, Any] | None] | None
            ) -> tuple[LogGroup, LogGroup]:
    raw = [x.encode() for x in lines]
    lazy = LogGroup.from_lines(raw, BASE, 7, extras=extras, resource={"service.name": "s"})
    built = LogGroup.from_lines(raw, BASE, 7, extras=extras, resource={"service.name": "s"})
    built.records  # noqa: B018 - builds the records: the general path
    assert not lazy.materialized
    assert built.materialized
    return lazy, built


def _same(cfg: dict[str, Any], lines: list[str],
          extras: list[dict[str, Any] | None] | None = None) -> list[Any]:
    lazy, built = _groups(lines, extras)
    make(cfg).process_records([lazy])
    make(cfg).process_records([built])
    assert lazy.materialized
    assert encode_groups([lazy]) == encode_groups([built])
    assert lazy.records == built.records
    return lazy.records


def _gen(fn: Any, n: int = 300) -> list[str]:
    r = random.Random(5)
    return [fn(r, i) for i in range(n)]


CORPUS = ["json", "logfmt", "syslog", "access", "apache_error", "klog", "container"]


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_lines_same_as_built_records(name: str) -> None:
    lines = [x for x in corpus_lines(name) if isinstance(x, str) and x]
    _same({"auto": True}, lines)
    _same({"auto": True, "keep_original": True, "templates": {"enabled": True}}, lines)


@pytest.mark.parametrize(("cfg", "gen"), [
    ({"parsers": [{"type": "json"}]}, line_json),
    ({"parsers": [{"type": "logfmt"}]}, line_logfmt),
    ({"parsers": [{"type": "access_log"}]}, line_nginx),
    ({"parsers": [{"type": "syslog", "protocol": "rfc3164"}]}, line_syslog),
    ({"auto": True, "templates": {"enabled": True}}, line_mixed),
    ({"parsers": [{"type": "grok", "pattern": GROK_PATTERNS}]}, line_grok),
    ({"parsers": [{"type": "json"}], "semconv": False, "rename": {"msg": "note"}}, line_mixed),
    ({"parsers": [{"type": "logfmt", "when": {"attributes": {"log.file.name": "app.log"}}},
                  {"type": "json"}]}, line_mixed),
    ({"parsers": [{"type": "json", "source": 'attributes["raw"]'}], "auto": True},
     line_mixed),
])
def test_generated_lines_same_as_built_records(cfg: dict[str, Any], gen: Any) -> None:
    lines = _gen(gen)
    extras: list[dict[str, Any] | None] = [
        {"log.split": True} if i % 7 == 0 else ({"raw": lines[i]} if i % 3 == 0 else None)
        for i in range(len(lines))]
    _same(cfg, lines)
    _same(cfg, lines, extras)


def test_parsed_keys_replace_file_attributes_in_place() -> None:
    (rec,) = _same({"parsers": [{"type": "json"}]},
                   ['{"a": 1, "log.file.name": "other", "msg": "m"}'])
    assert list(rec.attributes.items()) == [("log.file.name", "other"), ("a", 1)]
    assert rec.body == "m"


def test_a_parser_that_raises_leaves_the_record_as_built_from_the_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: JsonParser, obj: dict[str, Any], rec: Any) -> None:
        rec.attrs["half"] = "written"
        rec.body = "changed"
        raise RuntimeError("boom")

    monkeypatch.setattr(JsonParser, "fill", broken)
    lines = ['{"msg": "a"}', "plain"]
    lazy, _ = _groups(lines, [{"log.split": True}, None])
    make({"parsers": [{"type": "json"}]}).process_records([lazy])
    first, second = lazy.records
    assert first.body == '{"msg": "a"}'
    assert first.attributes == {"log.file.name": "app.log", "log.split": True,
                                "log.parse_error": "parser failed: RuntimeError: boom"}
    assert first.observed_time_unix_nano == 7
    assert second.attributes == {"log.file.name": "app.log",
                                 "log.parse_error": "not a JSON object"}
