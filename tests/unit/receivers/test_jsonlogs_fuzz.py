"""Property-based fuzzing of the jsonlogs receiver's body parser (issue 11).

NDJSON, JSON and text bodies built from JSON values (huge integers, deep nesting,
odd floats and strings), broken JSON, invalid UTF-8, control bytes, CR/LF
mixes, a byte order mark and lines over `max_line_size` go through
`JsonLogsReceiver._parse` as the handler calls it, then through the OTLP
encoder every exporter may ask for. No exception escapes; every line is
accounted for (one record per non-blank line; per element of a JSON array;
one per JSON object); no example spends more than 100 ms of CPU.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Coroutine
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.receiverhelper.body import BodyError
from pipeline.receivers.jsonlogs import (
    JSON,
    NDJSON,
    TEXT,
    JsonLogsConfig,
    JsonLogsReceiver,
    LogsBuilder,
    _to_utf8,
)
from tests.support import cpu_bounded

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CPU_BOUND = 0.1
MAX_LINE = 200  # small, so that long lines are common
CONFIG = JsonLogsConfig.model_validate({"max_line_size": MAX_LINE})
SHALLOW = JsonLogsConfig.model_validate({"max_line_size": MAX_LINE, "max_nesting_depth": 3})


def drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that only ever yields to the loop (`asyncio.sleep(0)`)."""
    try:
        while True:
            coro.send(None)
    except StopIteration:
        pass


# Inputs ----------------------------------------------------------------------------------

KEYS = st.sampled_from(["message", "msg", "level", "severity", "lvl", "time", "timestamp",
                        "ts", "@timestamp", "trace_id", "traceId", "span_id", "service",
                        "service.name", "user", "a", ""]) | st.text(max_size=6)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                                                                     allow_infinity=False),
    st.text(max_size=12), st.sampled_from([
        "2024-02-30T25:61:00Z", "1700000000", "1e400", "-0", "0" * 40, "ERROR", "warn",
        "4bf92f3577b34da6a3ce929d0e0e4736", "00000000000000000000000000000000",
        "00f067aa0ba902b7", "notahexidnotahexidnotahexidnotah"]))
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner,
                                                                           max_size=4),
    max_leaves=10)


def dumps(value: Any) -> bytes:
    """JSON text (the standard library's: orjson refuses integers beyond 64 bits)."""
    return json.dumps(value, ensure_ascii=False).encode()


def deep(depth: int, obj: bool) -> bytes:
    """A JSON value nested `depth` levels deep, as text."""
    return (b'{"a":' * depth + b"1" + b"}" * depth) if obj else \
        (b"[" * depth + b"1" + b"]" * depth)


LINE = st.one_of(
    JSON_VALUES.map(dumps),
    st.dictionaries(KEYS, JSON_VALUES, max_size=6).map(dumps),
    st.builds(deep, st.integers(1, 1100), st.booleans()),
    st.binary(max_size=60),  # garbage, invalid UTF-8, control bytes
    st.text(max_size=60).map(str.encode),
    st.sampled_from([b"", b" ", b"\r", b" \t\r", b"\x0b\x0c", b"{", b'{"a":', b"\xff\xfe",
                     b'{"message": "\xff"}', b"NaN", b"[1,2", b"\xef\xbb\xbf{}",
                     b"\xe2\x82", b"x" * (MAX_LINE + 5), b"\xe2\x82\xac" * 80,
                     b" " * (MAX_LINE + 1)]),
)
LINES = st.lists(LINE, max_size=12)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Lines joined by LF or CRLF, maybe with a BOM, maybe without a final newline."""
    sep = draw(st.sampled_from([b"\n", b"\r\n"]))
    body = sep.join(draw(LINES))
    if draw(st.booleans()):
        body += sep
    if draw(st.integers(0, 9)) == 0:
        body = codecs.BOM_UTF8 + body
    return body


JSON_DOCS = st.one_of(
    st.lists(JSON_VALUES, max_size=10).map(dumps),
    st.dictionaries(KEYS, JSON_VALUES, max_size=8).map(dumps),
    JSON_VALUES.map(dumps),
    bodies(),
)


# What the parser should make of them -----------------------------------------------------

def _line_records(body: bytes) -> int:
    """One record per line that is over the limit or not blank (NDJSON and text)."""
    return sum(1 for line in body.split(b"\n") if len(line) > MAX_LINE or line.strip())


def expected_records(kind: str, body: bytes) -> int:
    if body.startswith(codecs.BOM_UTF8):
        body = body[3:]
    if not body:
        return 0
    if kind == JSON:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if type(doc) is list:
            return len(doc)
        if type(doc) is dict:
            return 1
    return _line_records(body)


def parse(kind: str, body: bytes, config: JsonLogsConfig = CONFIG) -> LogsBuilder:
    def run() -> tuple[LogsBuilder, ExportLogsServiceRequest]:
        builder = LogsBuilder(config, 1_700_000_000_000_000_000)
        drive(JsonLogsReceiver._parse(builder, kind, body))
        return builder, builder.request  # the OTLP encoding an exporter may ask for

    builder, request = cpu_bounded(run, CPU_BOUND)
    records = [lr for rl in request.resource_logs for sl in rl.scope_logs
               for lr in sl.log_records]
    assert len(records) == builder.count
    return builder


# Properties ------------------------------------------------------------------------------

@FUZZ
@given(body=bodies())
def test_ndjson_every_line_accounted_for(body: bytes) -> None:
    assert parse(NDJSON, body).count == expected_records(NDJSON, body)


@FUZZ
@given(body=bodies())
def test_text_every_line_accounted_for(body: bytes) -> None:
    builder = parse(TEXT, body)
    assert builder.count == expected_records(TEXT, body)
    # A text line is its own body, whatever it holds.
    for group in builder.groups:
        for record in group.records:
            assert isinstance(record.body, str)


@FUZZ
@given(body=JSON_DOCS)
def test_json_every_element_accounted_for(body: bytes) -> None:
    assert parse(JSON, body).count == expected_records(JSON, body)


@FUZZ
@given(body=st.one_of(JSON_DOCS, bodies()), kind=st.sampled_from([NDJSON, JSON, TEXT]))
def test_lower_nesting_limit(body: bytes, kind: str) -> None:
    assert parse(kind, body, SHALLOW).count == expected_records(kind, body)


def test_a_timestamp_beyond_uint64_nanoseconds_stays_an_attribute() -> None:
    """Found by this module: a float epoch in [1.8447e16, 1e17) is read as microseconds
    and scaled past 2**64 - 1 ns (`pdata.logfields._scale_float` checks the value, not
    the scaled result, unlike `_scale_int`); the record then cannot be encoded
    (`struct.error: argument out of range` in `pdata.logrecords.encode_record`), so
    every exporter that encodes fails on the batch it is in."""
    builder = parse(NDJSON, b'{"time": 5e16, "msg": "m"}\n{"ts": 1.8446744073709550e16}')
    assert builder.count == 2


@FUZZ
@given(body=st.binary(max_size=400),
       charset=st.sampled_from([None, "utf-8", "latin-1", "utf-16", "utf-16-le", "cp1252",
                                "shift_jis", "ascii", "koi8-r", "x-unknown", "utf-7",
                                "rot13", "hex"]))
def test_charsets(body: bytes, charset: str | None) -> None:
    """Any body in any declared charset is transcoded (bad bytes replaced) or refused
    with 415; the result then parses like any other body."""
    try:
        utf8: bytes | BodyError = _to_utf8(body, charset)
    except BodyError as exc:
        utf8 = exc
    except LookupError:
        pytest.fail(f"charset {charset!r} escaped as LookupError")
    if isinstance(utf8, BodyError):
        assert utf8.status == 415
    else:
        parse(TEXT, utf8)
