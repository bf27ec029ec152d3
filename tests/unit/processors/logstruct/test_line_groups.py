"""Groups that still hold lines (`LogGroup.from_lines`, what `filelog` emits) are built and
parsed in one pass (`LogStructProcessor._process_lines`): the result must be byte for
byte what building the records first and parsing them gives. Also the hand-written
fast paths (logfmt pairs, per-second timestamp caches) against their general forms."""

from __future__ import annotations

import random
from typing import Any

import pytest

from benchmarks.logstruct_throughput import (
    GROK_PATTERNS,
    line_grok,
    line_json,
    line_logfmt,
    line_mixed,
    line_nginx,
    line_syslog,
)
from pipeline.pdata.logrecords import LogGroup, encode_groups
from pipeline.processors.logstruct.normalize import TimeParser
from pipeline.processors.logstruct.parsers import _LOGFMT, JsonParser, _unquote, logfmt_pairs
from tests.unit.processors.logstruct.helpers import NOW, corpus_lines, make

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


TRICKY_LOGFMT = [
    "", "a", "a=", "=a", "==", "a==b", "a=b=c", 'a="x y" b', 'a="unterminated', 'a="',
    'a=""', 'a="x"b=1', 'x"y" z=1', 'a=b"c d"', '"q"=1', 'k="a\\"b" c=d', 'k="a\\\\" z=1',
    'k="x\\', "a=1\tb=2\u2003c", 'a="1" ="2"', ' a="x"  b="y"  ', 'é="ü" ß', "a= b",
    'k= "v"', 'msg="line\nbreak" x=1',
]


@pytest.mark.parametrize("text", TRICKY_LOGFMT)
def test_logfmt_pairs_are_what_the_regex_finds(text: str) -> None:
    assert logfmt_pairs(text) == [(k, _unquote(v) if eq else True)
                                  for k, eq, v in _LOGFMT.findall(text)]


def test_logfmt_pairs_random_texts() -> None:
    r = random.Random(11)
    alphabet = ["a", "b", "=", '"', " ", "\t", "x=", 'k="', '" ', "\u2003", "\\", "\n", "é",
                "==", "\\\""]
    for _ in range(20_000):
        text = "".join(r.choice(alphabet) for _ in range(r.randint(0, 14)))
        assert logfmt_pairs(text) == [(k, _unquote(v) if eq else True)
                                      for k, eq, v in _LOGFMT.findall(text)], text


@pytest.mark.parametrize("tz", [None, "Europe/Berlin"])
def test_per_second_time_caches_agree_with_a_fresh_parser(tz: str | None) -> None:
    cached = TimeParser(None, tz, lambda: NOW)
    stamps = []
    for sec in ("2024-03-31 01:59:59", "2024-03-31T02:30:00", "2024-10-27 02:30:00",
                "2024-01-15T10:20:30", "1970-01-01 00:00:00"):
        for frac in (".000", ".001", ",500", ".999"):
            stamps += [sec + frac, sec.replace(" ", "T") + frac + "Z"]
    stamps += ["2024-01-15T10:20:30.12x", "2024-01-15 10:20:30.1234", "2024-13-15 10:20:30.123"]
    for _ in range(2):  # the second round is served from the caches
        for s in stamps:
            assert cached.parse(s) == TimeParser(None, tz, lambda: NOW).parse(s), s
