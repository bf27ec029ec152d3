from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.component import Kind, Signal
from pipeline.pdata.otlpjson import flat_records
from pipeline.processors.logstruct.parsers.json import JsonParser
from pipeline.registry import default_registry
from pipeline.telemetry.metrics import Telemetry
from tests.builders import traces
from tests.support import Sink
from tests.unit.processors.logstruct.helpers import Mode, batch_of, make, records, run

ACCESS = ('10.0.0.1 - - [01/Mar/2024:12:00:00 +0000] "GET /a?b=1 HTTP/1.1" 200 5 "-" '
          '"curl/8"')


def errors(tel: Telemetry, reason: str) -> float:
    return tel.registry.get_sample_value(
        "otelpipe_processor_logstruct_parse_errors_total",
        {"processor": "logstruct", "pipeline": "logs", "reason": reason}) or 0.0


def parsed(tel: Telemetry, fmt: str) -> float:
    return tel.registry.get_sample_value(
        "otelpipe_processor_logstruct_parsed_records_total",
        {"processor": "logstruct", "pipeline": "logs", "format": fmt}) or 0.0


def test_registered_for_logs_only() -> None:
    f = default_registry().get(Kind.PROCESSOR, "logstruct")
    assert f is not None
    assert f.signals == frozenset({Signal.LOGS})


def test_parsers_in_order_first_match_wins_then_auto(mode: Mode) -> None:
    cfg = {"parsers": [{"type": "regex", "pattern": r"^(?P<message>only this) (?P<x>\w+)$"},
                       {"type": "logfmt"}],
           "auto": True}
    # (an access line with `?b=1` would be taken by logfmt: first match wins)
    got = run(mode, cfg, ["only this one", "a=1 b=2", ACCESS.replace("?b=1", ""), "plain words"])
    assert got[0]["body"] == "only this"
    assert got[0]["attributes"] == {"x": "one"}
    assert got[1]["attributes"] == {"a": "1", "b": "2"}
    assert got[2]["attributes"]["client.address"] == "10.0.0.1"  # auto after the list
    assert got[3]["attributes"] == {"log.parse_error": "unrecognised format"}


def test_when_conditions(mode: Mode) -> None:
    cfg = {"parsers": [
        {"type": "regex", "pattern": r"(?P<message>.*)", "when": {"starts_with": ["A:", "B:"]},
         "time_format": None},
        {"type": "logfmt", "when": {"matches": r"\bsvc=pay\b"}},
        {"type": "regex", "pattern": r"(?P<whole>.+)", "when": {"attributes": {"kind": "x"}}},
        {"type": "regex", "pattern": r"(?P<res>.+)", "when": {"resource": {"service.name": "r"}}},
    ]}
    proc = make(cfg)
    b = batch_of(mode, ["A: one", "svc=pay a=1", "svc=other a=1", "attr-gated", "res-gated"],
                 attributes=[{}, {}, {"kind": "y"}, {"kind": "x"}, {}],
                 resource={"service.name": "r"})
    proc.process(b)
    got = records(b)
    assert got[0]["body"] == "A: one"
    assert got[0]["attributes"] == {}
    assert got[1]["attributes"] == {"svc": "pay", "a": "1"}
    assert got[2]["attributes"] == {"kind": "y", "res": "svc=other a=1"}
    assert got[3]["attributes"] == {"kind": "x", "whole": "attr-gated"}
    assert got[4]["attributes"] == {"res": "res-gated"}


def test_source_attribute(mode: Mode) -> None:
    cfg = {"parsers": [{"type": "logfmt", "source": 'attributes["raw"]'}]}
    proc = make(cfg)
    b = batch_of(mode, ["body stays", "no raw attribute"],
                 attributes=[{"raw": "level=error msg=from-attr user=bob"}, {}])
    proc.process(b)
    got = records(b)
    assert got[0] == {"time_unix_nano": 0, "severity_number": 17, "severity_text": "error",
                      "body": "from-attr",
                      "attributes": {"raw": "level=error msg=from-attr user=bob",
                                     "user.name": "bob"}}
    assert got[1]["attributes"] == {"log.parse_error": "no parser matched"}


def test_parse_errors_are_counted_and_formats_too(mode: Mode) -> None:
    tel = Telemetry()
    proc = make({"auto": True}, telemetry=tel)
    proc.process(batch_of(mode, ["nothing to see", '{"broken', ACCESS, "a=1 b=2"]))
    assert errors(tel, "no_match") == 2
    assert parsed(tel, "access_log") == 1
    assert parsed(tel, "logfmt") == 1


def test_a_raising_parser_is_contained_per_record(monkeypatch: pytest.MonkeyPatch,
                                                  mode: Mode) -> None:
    tel = Telemetry()
    sink = Sink()
    proc = make({"parsers": [{"type": "json"}]}, telemetry=tel, sink=sink)
    original = JsonParser.parse

    def flaky(self: JsonParser, text: str, rec: Any) -> bool:
        if "boom" in text:
            raise RuntimeError("kaboom")
        return original(self, text, rec)

    monkeypatch.setattr(JsonParser, "parse", flaky)
    lines = ['{"msg":"ok 1"}', '{"msg":"boom"}', '{"msg":"ok 2"}']
    asyncio.run(proc.consume(batch_of(mode, lines)))
    (b,) = sink.batches
    got = records(b)
    assert [r["body"] for r in got] == ["ok 1", '{"msg":"boom"}', "ok 2"]
    assert got[1]["attributes"] == {"log.parse_error": "parser failed: RuntimeError: kaboom"}
    assert errors(tel, "exception") == 1


def test_templates_on_every_text_record(tmp_path: Path, mode: Mode) -> None:
    store = tmp_path / "templates.json"
    cfg = {"auto": True, "templates": {"enabled": True, "persist_path": str(store)}}
    got = run(mode, cfg, ["level=info msg=\"user 17 logged in\"",
                          "level=info msg=\"user 18 logged in\"", "unparseable 42 line"])
    t = [(r["attributes"]["log.template"], r["attributes"]["log.template_id"]) for r in got]
    assert t[0][0] == "user <*> logged in"
    assert t[0][1] == t[1][1]
    assert t[2][0] == "unparseable <*> line"
    assert got[2]["attributes"]["log.parse_error"] == "unrecognised format"


async def test_templates_persist_across_restarts(tmp_path: Path, mode: Mode) -> None:
    cfg = {"templates": {"enabled": True, "persist_path": str(tmp_path / "t.json")}}
    p1 = make(cfg)
    b1 = batch_of(mode, ["disk 1 full"])
    p1.process(b1)
    await p1.shutdown()
    p2 = make(cfg)
    b2 = batch_of(mode, ["disk 2 full"])
    p2.process(b2)
    assert records(b1)[0]["attributes"]["log.template_id"] == \
        records(b2)[0]["attributes"]["log.template_id"]


def test_skip_structured_and_rename_and_semconv_off(mode: Mode) -> None:
    b = batch_of(mode, ["level=info msg=x status=200", "level=info msg=y status=200"])
    b.mutable().resource_logs[0].scope_logs[0].log_records[1].severity_number = 9
    make({"auto": True, "semconv": False, "rename": {"msg": "message2"}}).process(b)
    got = records(b)
    assert got[0]["attributes"] == {"message2": "x", "status": "200"}
    assert got[1]["attributes"] == {}  # already structured: left alone
    b = batch_of(mode, ["level=info status=200"])
    b.mutable().resource_logs[0].scope_logs[0].log_records[0].time_unix_nano = 5
    make({"auto": True, "skip_structured": False}).process(b)
    assert records(b)[0]["attributes"] == {"http.response.status_code": 200}


def test_keep_original_and_existing_attribute_collisions(mode: Mode) -> None:
    proc = make({"auto": True, "keep_original": True})
    b = batch_of(mode, ["a=1 log.file.name=override"], attributes=[{"log.file.name": "app.log"}])
    proc.process(b)
    assert records(b)[0]["attributes"] == {"log.file.name": "override", "a": "1",
                                           "log.record.original": "a=1 log.file.name=override"}


async def test_non_log_batches_pass_through_untouched() -> None:
    sink = Sink()
    proc = make({"auto": True}, sink=sink)
    b = traces(1)
    raw = b.to_bytes()
    await proc.consume(b)
    assert sink.batches[0].to_bytes() == raw


def test_flat_json_output_of_parsed_records(mode: Mode) -> None:
    proc = make({"auto": True})
    b = batch_of(mode, ['{"time":"2024-03-01T12:00:00.5Z","level":"error","msg":"failed",'
                  '"trace_id":"0af7651916cd43dd8448eb211c80319c","order":{"id":7}}', ACCESS])
    proc.process(b)
    out = [orjson.loads(orjson.dumps(r)) for r in flat_records(Signal.LOGS, b.message)]
    assert out[0] == {"time": "2024-03-01T12:00:00.500000000Z", "severity_text": "error",
                      "severity_number": 17, "body": "failed",
                      "trace_id": "0af7651916cd43dd8448eb211c80319c", "order": {"id": 7}}
    assert out[1]["time"] == "2024-03-01T12:00:00.000000000Z"
    assert out[1]["http.response.status_code"] == 200
    assert out[1]["body"] == ACCESS
