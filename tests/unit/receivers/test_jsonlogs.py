"""The jsonlogs receiver over a real socket, with an aiohttp client."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import zstandard
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from pydantic import ValidationError

from pipeline.component import Kind, Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.logfields import parse_severity, parse_timestamp
from pipeline.receivers.jsonlogs import JsonLogsConfig, JsonLogsReceiver, factory
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, free_port, receiver_settings

NDJSON = "application/x-ndjson"
JSON = "application/json"
TEXT = "text/plain"
TS = "2024-05-01T12:00:00.123456789Z"
TS_NS = 1714564800123456789
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@dataclass
class Env:
    receiver: JsonLogsReceiver
    sink: Sink
    telemetry: Telemetry
    url: str
    session: aiohttp.ClientSession

    async def post(self, body: bytes | str, content_type: str | None = NDJSON,
                   headers: dict[str, str] | None = None, path: str = "/logs"
                   ) -> tuple[int, dict[str, Any], Any]:
        hdrs = dict(headers or {})
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        data = body.encode() if isinstance(body, str) else body
        async with self.session.post(self.url + path, data=data, headers=hdrs,
                                     skip_auto_headers=["Content-Type"]) as resp:
            raw = await resp.read()
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                payload = raw
            return resp.status, dict(resp.headers), payload

    def records(self) -> list[tuple[str | None, LogRecord]]:
        """(service.name of the resource, record) of everything the sink got."""
        out: list[tuple[str | None, LogRecord]] = []
        for batch in self.sink.batches:
            # Through the wire format: what a downstream consumer would parse.
            req = ExportLogsServiceRequest.FromString(batch.to_bytes())
            for rl in req.resource_logs:
                attrs = {kv.key: kv.value.string_value for kv in rl.resource.attributes}
                for sl in rl.scope_logs:
                    out.extend((attrs.get("service.name"), r) for r in sl.log_records)
        return out

    def logs(self) -> list[LogRecord]:
        return [r for _, r in self.records()]

    def counter(self, name: str) -> float:
        v = self.telemetry.registry.get_sample_value(
            f"otelpipe_receiver_{name}_items_total",
            {"receiver": str(self.receiver_id), "transport": "http", "signal": "logs"})
        return v or 0.0

    def failed(self, reason: str) -> float:
        v = self.telemetry.registry.get_sample_value(
            "otelpipe_receiver_failed_requests_total",
            {"receiver": str(self.receiver_id), "transport": "http", "reason": reason})
        return v or 0.0

    receiver_id = "jsonlogs/test"


Starter = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start(telemetry: Telemetry) -> AsyncIterator[Starter]:
    receivers: list[JsonLogsReceiver] = []
    session = aiohttp.ClientSession()

    async def _start(**config: Any) -> Env:
        port = free_port()
        sink = Sink()
        settings = receiver_settings(Env.receiver_id, telemetry,
                                     consumers={Signal.LOGS: sink})
        cfg = JsonLogsConfig(endpoint=f"127.0.0.1:{port}", **config)
        receiver = factory.create(settings, cfg)
        assert isinstance(receiver, JsonLogsReceiver)
        await receiver.start(None)  # type: ignore[arg-type]
        receivers.append(receiver)
        return Env(receiver, sink, telemetry, f"http://127.0.0.1:{port}", session)

    yield _start
    await session.close()
    for r in receivers:
        await r.shutdown()


@pytest.fixture
async def env(start: Starter) -> Env:
    return await start()


def attrs(record: LogRecord) -> dict[str, Any]:
    return {kv.key: plain(kv.value) for kv in record.attributes}


def plain(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in v.kvlist_value.values}
    if kind == "array_value":
        return [plain(x) for x in v.array_value.values]
    return getattr(v, kind)


def ndjson(*objs: Any) -> bytes:
    return b"\n".join(orjson.dumps(o) for o in objs) + b"\n"


# Content types ---------------------------------------------------------------------------

async def test_ndjson_full_record(env: Env) -> None:
    line = {"timestamp": TS, "level": "warn", "msg": "disk almost full", "service": "api",
            "trace_id": TRACE, "span_id": SPAN, "host": "web-1", "free_mb": 512,
            "ratio": 0.95, "alert": True, "gone": None}
    status, _, payload = await env.post(ndjson(line))
    assert (status, payload) == (200, {"accepted": 1})
    [(service, r)] = env.records()
    assert service == "api"
    assert r.time_unix_nano == TS_NS
    assert r.observed_time_unix_nano > 0
    assert (r.severity_number, r.severity_text) == (13, "warn")
    assert plain(r.body) == "disk almost full"
    assert r.trace_id.hex() == TRACE
    assert r.span_id.hex() == SPAN
    assert attrs(r) == {"host": "web-1", "free_mb": 512, "ratio": 0.95, "alert": True}
    types = {kv.key: kv.value.WhichOneof("value") for kv in r.attributes}
    assert types == {"host": "string_value", "free_mb": "int_value", "ratio": "double_value",
                     "alert": "bool_value"}
    assert env.counter("accepted") == 1


async def test_ndjson_skips_blank_lines_and_crlf(env: Env) -> None:
    body = b'{"msg":"a"}\r\n\r\n   \n\t\n{"msg":"b"}\r\n{"msg":"c"}'
    status, _, payload = await env.post(body)
    assert (status, payload) == (200, {"accepted": 3})
    assert [plain(r.body) for r in env.logs()] == ["a", "b", "c"]


@pytest.mark.parametrize("ctype", ["application/x-ndjson", "application/ndjson",
                                   "application/jsonl", "application/x-ndjson; charset=utf-8",
                                   "Application/X-NDJSON; charset=UTF-8"])
async def test_ndjson_content_type_spellings(env: Env, ctype: str) -> None:
    status, _, payload = await env.post(ndjson({"msg": "x"}), ctype)
    assert (status, payload) == (200, {"accepted": 1})


async def test_json_array(env: Env) -> None:
    body = orjson.dumps([{"msg": "one", "n": 1}, {"msg": "two", "n": 2}, "three", 4, None,
                         [5]])
    status, _, payload = await env.post(body, JSON + "; charset=utf-8")
    assert (status, payload) == (200, {"accepted": 6})
    logs = env.logs()
    assert [plain(r.body) for r in logs] == ["one", "two", "three", "4", "null", "[5]"]
    assert [attrs(r) for r in logs[:2]] == [{"n": 1}, {"n": 2}]


async def test_json_single_object(env: Env) -> None:
    status, _, payload = await env.post(orjson.dumps({"message": "only", "k": "v"}), JSON)
    assert (status, payload) == (200, {"accepted": 1})
    [r] = env.logs()
    assert plain(r.body) == "only"
    assert attrs(r) == {"k": "v"}


async def test_json_content_type_with_ndjson_body_is_read_by_line(env: Env) -> None:
    body = b'{"msg":"a"}\n{"msg":"b"}\nnot json\n'
    status, _, payload = await env.post(body, JSON)
    assert (status, payload) == (200, {"accepted": 3})
    assert [plain(r.body) for r in env.logs()] == ["a", "b", "not json"]


async def test_json_broken_document_is_kept_raw(env: Env) -> None:
    status, _, payload = await env.post(b'[{"msg": "a"}, {"msg": ', JSON)
    assert (status, payload) == (200, {"accepted": 1})
    assert [plain(r.body) for r in env.logs()] == ['[{"msg": "a"}, {"msg": ']


async def test_text_plain(env: Env) -> None:
    body = ('127.0.0.1 - - "GET / HTTP/1.1" 200\r\n\n'
            '{"looks": "like json"}\n  indented line\nünïcödé\n')
    status, _, payload = await env.post(body, TEXT + "; charset=utf-8")
    assert (status, payload) == (200, {"accepted": 4})
    logs = env.logs()
    assert [plain(r.body) for r in logs] == [
        '127.0.0.1 - - "GET / HTTP/1.1" 200', '{"looks": "like json"}', "  indented line",
        "ünïcödé"]
    for r in logs:
        assert r.time_unix_nano == 0
        assert r.observed_time_unix_nano > 0
        assert not r.attributes
        assert r.severity_number == 0
    assert [s for s, _ in env.records()] == [None] * 4


@pytest.mark.parametrize("ctype", [NDJSON, JSON, TEXT])
async def test_utf8_bom_is_ignored(env: Env, ctype: str) -> None:
    status, _, payload = await env.post(b"\xef\xbb\xbf" + ndjson({"msg": "x"}), ctype)
    assert (status, payload) == (200, {"accepted": 1})
    [r] = env.logs()
    body = "x" if ctype != TEXT else '{"msg":"x"}'
    assert plain(r.body) == body
    assert attrs(r) == {}


async def test_text_plain_latin1_charset_is_transcoded(env: Env) -> None:
    status, _, _ = await env.post("café crème".encode("latin-1"), TEXT + "; charset=ISO-8859-1")
    assert status == 200
    [r] = env.logs()
    assert plain(r.body) == "café crème"
    assert not r.attributes


async def test_unknown_charset_is_415(env: Env) -> None:
    status, _, payload = await env.post(b"x", TEXT + "; charset=klingon")
    assert status == 415
    assert "charset" in payload["error"]


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "application/xml",
                                   "application/x-protobuf", None])
async def test_wrong_content_type_is_415(env: Env, ctype: str | None) -> None:
    status, _, payload = await env.post(ndjson({"msg": "x"}), ctype)
    assert status == 415
    assert "Content-Type" in payload["error"]
    assert "application/x-ndjson" in payload["error"]
    assert env.sink.batches == []
    assert env.failed("unsupported_media_type") == 1


async def test_empty_body_accepts_nothing(env: Env) -> None:
    for ctype in (NDJSON, JSON, TEXT):
        status, _, payload = await env.post(b"", ctype)
        assert (status, payload) == (200, {"accepted": 0})
    status, _, payload = await env.post(b"\n\n  \n", NDJSON)
    assert (status, payload) == (200, {"accepted": 0})
    assert env.sink.batches == []


async def test_other_paths_and_methods(env: Env) -> None:
    status, _, _ = await env.post(ndjson({"msg": "x"}), path="/v1/logs")
    assert status == 404
    async with env.session.get(env.url + "/logs") as resp:
        assert resp.status == 405


async def test_configured_path(start: Starter) -> None:
    env = await start(path="/ingest/json")
    status, _, _ = await env.post(ndjson({"msg": "x"}), path="/ingest/json")
    assert status == 200
    assert len(env.logs()) == 1


# Key aliases ------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["timestamp", "time", "ts", "@timestamp"])
async def test_timestamp_aliases(env: Env, key: str) -> None:
    await env.post(ndjson({key: TS, "msg": "x"}))
    [r] = env.logs()
    assert r.time_unix_nano == TS_NS
    assert attrs(r) == {}


@pytest.mark.parametrize("key", ["level", "severity", "lvl"])
async def test_severity_aliases(env: Env, key: str) -> None:
    await env.post(ndjson({key: "ERROR", "msg": "x"}))
    [r] = env.logs()
    assert (r.severity_number, r.severity_text) == (17, "ERROR")
    assert attrs(r) == {}


@pytest.mark.parametrize("key", ["message", "msg"])
async def test_message_aliases(env: Env, key: str) -> None:
    await env.post(ndjson({key: "hello", "k": 1}))
    [r] = env.logs()
    assert plain(r.body) == "hello"
    assert attrs(r) == {"k": 1}


@pytest.mark.parametrize("key", ["trace_id", "traceId", "trace.id"])
async def test_trace_id_aliases(env: Env, key: str) -> None:
    await env.post(ndjson({key: TRACE.upper(), "msg": "x"}))
    [r] = env.logs()
    assert r.trace_id.hex() == TRACE
    assert attrs(r) == {}


@pytest.mark.parametrize("key", ["span_id", "spanId"])
async def test_span_id_aliases(env: Env, key: str) -> None:
    await env.post(ndjson({key: SPAN, "msg": "x"}))
    [r] = env.logs()
    assert r.span_id.hex() == SPAN
    assert attrs(r) == {}


@pytest.mark.parametrize("key", ["service", "service.name"])
async def test_service_aliases(env: Env, key: str) -> None:
    await env.post(ndjson({key: "checkout", "msg": "x"}))
    [(service, r)] = env.records()
    assert service == "checkout"
    assert attrs(r) == {}


async def test_first_alias_wins_others_stay_attributes(env: Env) -> None:
    line = {"ts": 1700000000, "timestamp": TS, "msg": "short", "message": "long",
            "lvl": "debug", "level": "info"}
    await env.post(ndjson(line))
    [r] = env.logs()
    assert r.time_unix_nano == TS_NS
    assert plain(r.body) == "long"
    assert r.severity_text == "info"
    assert attrs(r) == {"ts": 1700000000, "msg": "short", "lvl": "debug"}


async def test_invalid_special_values_stay_attributes(env: Env) -> None:
    line = {"timestamp": "yesterday", "time": 1714564800, "level": {"n": 1}, "severity": True,
            "trace_id": "not-a-trace-id", "traceId": "0" * 32, "span_id": "xyz",
            "spanId": SPAN[:8], "service": 42, "msg": "m"}
    status, _, payload = await env.post(ndjson(line))
    assert (status, payload) == (200, {"accepted": 1})
    [(service, r)] = env.records()
    assert service is None
    assert r.time_unix_nano == 1714564800 * 10**9  # the next alias was usable
    assert r.severity_number == 0
    assert r.trace_id == b""
    assert r.span_id == b""
    assert attrs(r) == {"timestamp": "yesterday", "level": {"n": 1}, "severity": True,
                        "trace_id": "not-a-trace-id", "traceId": "0" * 32, "span_id": "xyz",
                        "spanId": SPAN[:8], "service": 42}


async def test_configured_keys(start: Starter) -> None:
    env = await start(timestamp_keys=["when"], severity_keys=["sev"], message_keys=["text"],
                      trace_id_keys=["tid"], span_id_keys=["sid"], service_keys=["app"])
    await env.post(ndjson({"when": TS, "sev": "info", "text": "t", "tid": TRACE, "sid": SPAN,
                           "app": "a", "msg": "stays", "level": "stays"}))
    [(service, r)] = env.records()
    assert (service, r.time_unix_nano, r.severity_number, plain(r.body)) == ("a", TS_NS, 9, "t")
    assert r.trace_id.hex() == TRACE
    assert r.span_id.hex() == SPAN
    assert attrs(r) == {"msg": "stays", "level": "stays"}


def test_config_validation() -> None:
    assert JsonLogsConfig().endpoint == "localhost:8081"
    assert JsonLogsConfig().path == "/logs"
    with pytest.raises(ValidationError, match="both"):
        JsonLogsConfig(message_keys=["msg", "level"])
    with pytest.raises(ValidationError, match="path"):
        JsonLogsConfig(path="logs")
    with pytest.raises(ValidationError):
        JsonLogsConfig(max_nesting_depth=100)
    with pytest.raises(ValidationError):
        JsonLogsConfig(unknown=1)  # type: ignore[call-arg]


def test_factory() -> None:
    from pipeline.registry import default_registry

    assert factory.type == "jsonlogs"
    assert factory.kind is Kind.RECEIVER
    assert factory.signals == frozenset({Signal.LOGS})
    assert default_registry().get(Kind.RECEIVER, "jsonlogs") is factory


# Timestamps and severities --------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("2024-05-01T12:00:00Z", 1714564800 * 10**9),
    ("2024-05-01T12:00:00.5Z", 1714564800_500_000_000),
    ("2024-05-01T12:00:00.123456Z", 1714564800_123_456_000),
    (TS, TS_NS),
    ("2024-05-01T12:00:00.1234567Z", 1714564800_123_456_700),
    ("2024-05-01T14:00:00+02:00", 1714564800 * 10**9),
    ("2024-05-01T07:30:00.25-04:30", 1714564800_250_000_000),
    ("2024-05-01T12:00:00", 1714564800 * 10**9),  # no offset: UTC
    ("2024-05-01 12:00:00Z", 1714564800 * 10**9),
    ("2024-05-01t12:00:00z", 1714564800 * 10**9),
    ("2024-05-01T12:00:00,5Z", 1714564800_500_000_000),
    (1714564800, 1714564800 * 10**9),                       # seconds
    (1714564800.25, 1714564800_250_000_000),                # fractional seconds
    (1714564800123, 1714564800_123_000_000),                # millis
    (1714564800123.5, 1714564800_123_500_000),
    (1714564800123456, 1714564800_123_456_000),             # micros
    (1714564800123456789, 1714564800_123_456_789),          # nanos
    ("1714564800", 1714564800 * 10**9),
    ("1714564800123", 1714564800_123_000_000),
    ("1714564800.5", 1714564800_500_000_000),
    (" 1714564800123456789 ", 1714564800_123_456_789),
])
def test_parse_timestamp(value: Any, expected: int) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "2024-13-45T00:00:00Z", "1969-01-01T00:00:00Z",
                                   "9999-01-01T00:00:00Z", -5, 0, 0.0, True, None, [1], {},
                                   "nan", "inf", "-1714564800", 2**64, 1e30])
def test_parse_timestamp_rejects(value: Any) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize("forms", [
    (1714564800, 1714564800_000, 1714564800_000_000, 1714564800_000_000_000,
     "2024-05-01T12:00:00Z", "2024-05-01T13:00:00+01:00", "1714564800", 1714564800.0)])
async def test_timestamp_forms_over_http(env: Env, forms: tuple[Any, ...]) -> None:
    await env.post(ndjson(*({"ts": f, "msg": str(i)} for i, f in enumerate(forms))))
    logs = env.logs()
    assert len(logs) == len(forms)
    assert {r.time_unix_nano for r in logs} == {1714564800 * 10**9}


async def test_no_timestamp_leaves_time_zero(env: Env) -> None:
    await env.post(ndjson({"msg": "x"}))
    [r] = env.logs()
    assert r.time_unix_nano == 0
    assert r.observed_time_unix_nano > 1.7e18


@pytest.mark.parametrize(("value", "number", "text"), [
    ("trace", 1, "trace"), ("TRACE", 1, "TRACE"), ("debug", 5, "debug"), ("Debug", 5, "Debug"),
    ("info", 9, "info"), ("INFO", 9, "INFO"), ("information", 9, "information"),
    ("notice", 10, "notice"), ("warn", 13, "warn"), ("WARNING", 13, "WARNING"),
    ("error", 17, "error"), ("err", 17, "err"), ("fatal", 21, "fatal"),
    ("critical", 21, "critical"), ("CRIT", 21, "CRIT"), ("alert", 22, "alert"),
    ("emerg", 24, "emerg"), ("emergency", 24, "emergency"), (" Warn ", 13, " Warn "),
    ("whatever", 0, "whatever"), ("30", 9, "30"),
    (10, 1, "TRACE"), (20, 5, "DEBUG"), (30, 9, "INFO"), (35, 9, "INFO"), (40, 13, "WARN"),
    (50, 17, "ERROR"), (60, 21, "FATAL"), (30.0, 9, "INFO"),
    (0, 24, "FATAL"), (3, 17, "ERROR"), (4, 13, "WARN"), (6, 9, "INFO"), (7, 5, "DEBUG"),
])
def test_parse_severity(value: Any, number: int, text: str) -> None:
    assert parse_severity(value) == (number, text)


@pytest.mark.parametrize("value", [True, None, -1, 100, 30.5, "", "  ", [1], {"a": 1}])
def test_parse_severity_rejects(value: Any) -> None:
    assert parse_severity(value) is None


async def test_severity_mapping_over_http(env: Env) -> None:
    levels = ["trace", "debug", "info", "warn", "warning", "error", "fatal", "critical",
              30, 50, "notice", "emerg", "alert"]
    await env.post(ndjson(*({"level": lv, "msg": "x"} for lv in levels)))
    assert [r.severity_number for r in env.logs()] == [1, 5, 9, 13, 13, 17, 21, 21, 9, 17, 10,
                                                       24, 22]


# Resources, nested values ------------------------------------------------------------------

async def test_records_grouped_by_service(env: Env) -> None:
    lines = [{"service": "a", "msg": "1"}, {"service": "b", "msg": "2"}, {"msg": "3"},
             {"service.name": "a", "msg": "4"}, "plain text", {"service": "b", "msg": "5"}]
    body = b"\n".join(o.encode() if isinstance(o, str) else orjson.dumps(o) for o in lines)
    status, _, payload = await env.post(body)
    assert (status, payload) == (200, {"accepted": 6})
    [batch] = env.sink.batches
    req = batch.message
    assert len(req.resource_logs) == 3
    grouped = {}
    for rl in req.resource_logs:
        key = tuple((kv.key, kv.value.string_value) for kv in rl.resource.attributes)
        assert len(rl.scope_logs) == 1
        grouped[key] = [plain(r.body) for r in rl.scope_logs[0].log_records]
    assert grouped == {(("service.name", "a"),): ["1", "4"], (("service.name", "b"),): ["2", "5"],
                       (): ["3", "plain text"]}


async def test_nested_objects_and_arrays(env: Env) -> None:
    line = {"msg": "x", "http": {"method": "GET", "status": 200, "headers": {"a": ["1", "2"]},
                                 "skip": None},
            "tags": ["a", 1, 2.5, True, None, {"k": "v"}, []], "empty": {},
            "big": 2**64 - 1, "neg": -(2**63), "unicode": "ü€😀"}
    await env.post(ndjson(line))
    [r] = env.logs()
    assert attrs(r) == {"http": {"method": "GET", "status": 200, "headers": {"a": ["1", "2"]}},
                        "tags": ["a", 1, 2.5, True, None, {"k": "v"}, []], "empty": {},
                        "big": str(2**64 - 1), "neg": -(2**63), "unicode": "ü€😀"}
    kinds = {kv.key: kv.value.WhichOneof("value") for kv in r.attributes}
    assert kinds["http"] == "kvlist_value"
    assert kinds["tags"] == "array_value"


async def test_non_string_message_keeps_its_type(env: Env) -> None:
    await env.post(ndjson({"msg": {"event": "login", "ok": True}}, {"message": 42}))
    a, b = env.logs()
    assert plain(a.body) == {"event": "login", "ok": True}
    assert b.body.int_value == 42


# Bad input -------------------------------------------------------------------------------

async def test_invalid_json_lines_mixed_with_valid(env: Env) -> None:
    body = (b'{"msg": "first", "n": 1}\n'
            b'this is not json\n'
            b'{"msg": "broken",\n'
            b'42\n'
            b'"a json string"\n'
            b'[1, 2]\n'
            b'null\n'
            b'{"msg": "last"} trailing\n'
            b'{"msg": "second", "n": 2}\n')
    status, _, payload = await env.post(body)
    assert (status, payload) == (200, {"accepted": 9})
    logs = env.logs()
    assert [(plain(r.body), attrs(r)) for r in logs] == [
        ("first", {"n": 1}),
        ("this is not json", {}),
        ('{"msg": "broken",', {}),
        ("42", {}),
        ('"a json string"', {}),
        ("[1, 2]", {}),
        ("null", {}),
        ('{"msg": "last"} trailing', {}),
        ("second", {"n": 2}),
    ]
    assert env.counter("accepted") == 9


async def test_invalid_utf8(env: Env) -> None:
    body = (b'{"msg": "caf\xe9", "k": "ok"}\n'       # latin-1 inside JSON
            b'plain \xff\xfe text\n'                  # not JSON, not UTF-8
            b'{"msg": "fine"}\n')
    status, _, payload = await env.post(body)
    assert (status, payload) == (200, {"accepted": 3})
    a, b, c = env.logs()
    assert plain(a.body) == "caf\ufffd"
    assert attrs(a) == {"k": "ok", "log.invalid_utf8": True}
    assert plain(b.body) == "plain \ufffd\ufffd text"
    assert attrs(b) == {"log.invalid_utf8": True}
    assert plain(c.body) == "fine"
    assert attrs(c) == {}

    status, _, payload = await env.post(b"ok line\nbad \xc3\x28 line\n", TEXT)
    assert (status, payload) == (200, {"accepted": 2})
    d, e = env.logs()[3:]
    assert plain(d.body) == "ok line"
    assert attrs(d) == {}
    assert plain(e.body) == "bad \ufffd( line"
    assert attrs(e) == {"log.invalid_utf8": True}


async def test_lone_surrogate_escape_is_kept_raw(env: Env) -> None:
    line = b'{"msg": "\\ud800 broken"}'
    status, _, _ = await env.post(line + b"\n")
    assert status == 200
    [r] = env.logs()
    assert plain(r.body) == line.decode()


async def test_deeply_nested_json_beyond_parser_limit(env: Env) -> None:
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    body = b'{"msg": "before"}\n' + deep + b'\n{"msg": "after"}\n'
    status, _, payload = await env.post(body)
    assert (status, payload) == (200, {"accepted": 3})
    before, raw, after = env.logs()
    assert plain(before.body) == "before"
    assert plain(after.body) == "after"
    assert raw.body.string_value == deep.decode()
    status, _, payload = await env.post(b"[" * 10_000 + b"]" * 10_000, JSON)
    assert (status, payload) == (200, {"accepted": 1})


async def test_deep_json_is_capped_and_stays_parseable(env: Env) -> None:
    # 600 levels: orjson parses it, orjson cannot write it back (255), protobuf
    # parsers refuse more than 100 message levels. The deep part becomes JSON text.
    depth = 600
    deep = '{"a":' * depth + '"leaf"' + "}" * depth
    body = '{"msg": "deep", "nest": ' + deep + ', "arr": ' + "[" * 40 + "]" * 40 + "}"
    status, _, payload = await env.post(body)
    assert (status, payload) == (200, {"accepted": 1})
    [r] = env.logs()  # parsed back from the wire: within protobuf's recursion limit
    value = attrs(r)["nest"]
    levels = 1  # the value of "nest" is the outermost object
    while isinstance(value, dict):
        value = value["a"]
        levels += 1
    assert isinstance(value, str)
    assert levels == 32  # 31 structured levels, then the rest as JSON text
    assert value == '{"a":' * (depth - 31) + '"leaf"' + "}" * (depth - 31)
    arr = attrs(r)["arr"]
    n = 0
    while isinstance(arr, list) and arr:
        arr, n = arr[0], n + 1
    assert n == 31
    assert arr == "[" * 9 + "]" * 9


async def test_max_nesting_depth_config(start: Starter) -> None:
    env = await start(max_nesting_depth=2)
    await env.post(ndjson({"a": {"b": {"c": {"d": 1}}}, "l": [[[1]]]}))
    [r] = env.logs()
    assert attrs(r) == {"a": {"b": {"c": '{"d":1}'}}, "l": [["[1]"]]}


async def test_huge_line_is_truncated(start: Starter) -> None:
    env = await start(max_line_size=1000)
    huge = orjson.dumps({"mx": "é" * 2000})  # 7 bytes, then 2-byte characters
    body = b'{"msg": "small"}\n' + huge + b"\n" + b"x" * 1000 + b"\n"
    status, _, payload = await env.post(body)
    assert (status, payload) == (200, {"accepted": 3})
    small, cut, exact = env.logs()
    assert plain(small.body) == "small"
    text = cut.body.string_value
    assert huge.decode().startswith(text)
    assert len(text.encode()) <= 1000
    assert len(text.encode()) == 999  # cut at a character boundary, not mid-character
    assert attrs(cut) == {"log.truncated": True}
    assert exact.body.string_value == "x" * 1000
    assert attrs(exact) == {}

    status, _, _ = await env.post(b"y" * 5000 + b"\n", TEXT)
    assert status == 200
    last = env.logs()[-1]
    assert last.body.string_value == "y" * 1000
    assert attrs(last) == {"log.truncated": True}


async def test_huge_line_default_limit(env: Env) -> None:
    huge = b"z" * (1024 * 1024 + 10)
    status, _, payload = await env.post(huge, TEXT)
    assert (status, payload) == (200, {"accepted": 1})
    [r] = env.logs()
    assert len(r.body.string_value) == 1024 * 1024
    assert attrs(r) == {"log.truncated": True}


# Encodings and sizes --------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
async def test_compressed_bodies(env: Env, encoding: str) -> None:
    body = ndjson(*({"msg": f"m{i}", "i": i} for i in range(100)))
    compress: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress, "deflate": zlib.compress,
        "zstd": zstandard.ZstdCompressor().compress}
    packed = compress[encoding](body)
    status, _, payload = await env.post(packed, headers={"Content-Encoding": encoding})
    assert (status, payload) == (200, {"accepted": 100})
    assert [attrs(r)["i"] for r in env.logs()] == list(range(100))


async def test_gzip_bomb_is_413(start: Starter) -> None:
    env = await start(max_request_body_size=1024 * 1024)
    bomb = gzip.compress(b"\n" * (64 * 1024 * 1024))
    assert len(bomb) < 1024 * 1024
    status, _, payload = await env.post(bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413
    assert "exceeds" in payload["error"]
    assert env.sink.batches == []
    assert env.failed("too_large") == 1


async def test_body_too_large_is_413(start: Starter) -> None:
    env = await start(max_request_body_size=1000)
    status, _, payload = await env.post(b"x" * 5000, TEXT)
    assert status == 413
    assert "1000" in payload["error"]
    status, _, payload = await env.post(b"x" * 999, TEXT)
    assert status == 200


async def test_bad_encodings(env: Env) -> None:
    status, _, payload = await env.post(b"not gzip", headers={"Content-Encoding": "gzip"})
    assert status == 400
    assert "gzip" in payload["error"]
    status, _, payload = await env.post(b"x", headers={"Content-Encoding": "br"})
    assert status == 415
    assert "Content-Encoding" in payload["error"]
    assert env.sink.batches == []


# Backpressure and errors ----------------------------------------------------------------

async def test_retryable_refusal_is_503_with_retry_after(env: Env) -> None:
    env.sink.refuse = RetryableError("memory limit reached", retry_after=7)
    status, headers, payload = await env.post(ndjson({"msg": "a"}, {"msg": "b"}))
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert payload == {"error": "memory limit reached"}
    assert env.counter("accepted") == 0
    assert env.counter("refused") == 2
    assert env.sink.batches == []

    env.sink.refuse = RetryableError("slow down", throttle=True)
    status, headers, payload = await env.post(ndjson({"msg": "a"}))
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert env.counter("accepted") == 0
    assert env.counter("refused") == 3

    env.sink.refuse = None
    status, _, payload = await env.post(ndjson({"msg": "a"}, {"msg": "b"}))
    assert (status, payload) == (200, {"accepted": 2})
    assert env.counter("accepted") == 2


async def test_permanent_error_is_400(env: Env) -> None:
    env.sink.refuse = PermanentError("bad data")
    status, _, payload = await env.post(ndjson({"msg": "a"}))
    assert status == 400
    assert payload == {"error": "bad data"}
    assert env.counter("rejected") == 1
    assert env.counter("accepted") == 0


async def test_an_exporters_error_never_reaches_the_sender(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    leaky = "http://alice:pw-S3cr3t@loki:3100/loki/api/v1/push?token=T0k"
    env.sink.refuse = RetryableError(f"{leaky}: HTTP 503", retry_after=2).from_origin(
        "exporter loki/main")
    status, headers, payload = await env.post(ndjson({"msg": "a"}))
    assert (status, headers["Retry-After"]) == (503, "2")
    assert payload == {"error": "exporter loki/main unavailable: retry later"}
    env.sink.refuse = PermanentError(f"{leaky}: HTTP 400").from_origin("exporter loki/main")
    status, _, payload = await env.post(ndjson({"msg": "a"}))
    assert (status, payload) == (400, {"error": "exporter loki/main rejected the data: "
                                                "do not retry"})
    logged = [r for r in caplog.records if r.getMessage().startswith("refused a request")]
    assert [r.error for r in logged] == [  # type: ignore[attr-defined]
        "http://alice:***@loki:3100/loki/api/v1/push?token=***: HTTP 503"]
    assert "S3cr3t" not in caplog.text
    assert "T0k" not in caplog.text


async def test_unexpected_pipeline_error_is_503(env: Env) -> None:
    env.sink.refuse = RuntimeError("bug")
    status, headers, payload = await env.post(ndjson({"msg": "a"}))
    assert status == 503
    assert "Retry-After" in headers
    assert "error" in payload
    assert env.counter("refused") == 1
    assert env.counter("accepted") == 0


async def test_one_batch_per_request_with_item_count(env: Env) -> None:
    n = 2500  # more than one parsing chunk
    status, _, payload = await env.post(ndjson(*({"msg": str(i)} for i in range(n))))
    assert (status, payload) == (200, {"accepted": n})
    [batch] = env.sink.batches
    assert batch.items == n
    assert batch.signal is Signal.LOGS
    assert [r.body.string_value for r in env.logs()] == [str(i) for i in range(n)]
