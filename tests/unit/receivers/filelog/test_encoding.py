"""filelog encodings: hand-encoded OTLP pieces, lines split on code-unit boundaries,
files in other codecs, invalid bytes replaced and flagged, byte order marks."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from pipeline.pdata.otlpjson import attributes
from pipeline.receivers.filelog.encoding import (
    encode_attribute,
    encode_records,
    split_lines,
    wrap_request,
)
from tests.support import Sink, aeventually
from tests.unit.receivers.filelog.helpers import (
    bodies,
    records,
    running,
    write,
)


def test_hand_encoded_records_parse_as_otlp() -> None:
    attrs = encode_attribute("log.file.name", "a.log") + encode_attribute("n", 3)
    bodies_ = [b"hello", "é".encode() * 100, b"x" * 20000, b""]
    raw = wrap_request(encode_records(bodies_, [b"", encode_attribute("f", True), b"", b""],
                                      attrs, 123456789), b"")
    req = ExportLogsServiceRequest.FromString(raw)
    recs = req.resource_logs[0].scope_logs[0].log_records
    assert [r.body.string_value.encode() for r in recs] == bodies_
    assert all(r.observed_time_unix_nano == 123456789 for r in recs)
    assert attributes(recs[1].attributes) == {"log.file.name": "a.log", "n": 3, "f": True}
    expected = LogRecord(
        observed_time_unix_nano=123456789, body=AnyValue(string_value="hello"),
        attributes=[KeyValue(key="log.file.name", value=AnyValue(string_value="a.log")),
                    KeyValue(key="n", value=AnyValue(int_value=3))])
    assert recs[0] == expected


def test_split_lines_utf16_alignment() -> None:
    nl = "\n".encode("utf-16-le")
    # U+0A00 is b"\x00\x0a" in UTF-16LE: "\u0a00" followed by "\u0041" has the bytes
    # 00 0a 41 00, holding b"\n\x00" at an odd offset: no newline there.
    text = "a\u0a00A\nb\n"
    lines, _, rest = split_lines(text.encode("utf-16-le"), nl)
    assert [x.decode("utf-16-le") for x in lines] == ["a\u0a00A", "b"]
    assert rest == b""


async def test_latin1_file(tmp_path: Path) -> None:
    log = tmp_path / "latin1.log"
    write(log, "café crème\nGrüße\n".encode("latin-1"))
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", encoding="latin-1"):
        await aeventually(lambda: sink.items == 2)
    assert records(sink) == [("café crème", {"log.file.name": "latin1.log"}),
                             ("Grüße", {"log.file.name": "latin1.log"})]


async def test_invalid_utf8_is_replaced_and_flagged(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, b"good\ncaf\xe9 latin-1 in utf-8\n\xff\xfe\nalso good\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning"):
        await aeventually(lambda: sink.items == 4)
    got = records(sink)
    assert got[0] == ("good", {"log.file.name": "app.log"})
    assert got[1] == ("caf\ufffd latin-1 in utf-8",
                      {"log.file.name": "app.log", "log.invalid_encoding": True})
    assert got[2][0] == "\ufffd\ufffd"
    assert got[2][1]["log.invalid_encoding"] is True
    assert got[3] == ("also good", {"log.file.name": "app.log"})


async def test_ascii_file_with_invalid_bytes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, b"plain\nna\xefve\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", encoding="ascii"):
        await aeventually(lambda: sink.items == 2)
    assert records(sink)[1] == ("na\ufffdve",
                                {"log.file.name": "app.log", "log.invalid_encoding": True})


@pytest.mark.parametrize(("encoding", "data"), [
    ("utf-16le", "\ufeffhello\r\nwörld 🎉\r\n".encode("utf-16-le")),
    ("utf-16be", "hello\nwörld 🎉\n".encode("utf-16-be")),
    ("utf-16", "\ufeffhello\nwörld 🎉\n".encode("utf-16-be")),  # BOM says big endian
    ("utf-8", "\ufeffhello\nwörld 🎉\n".encode()),  # a UTF-8 BOM is skipped
])
async def test_utf16_and_bom(tmp_path: Path, encoding: str, data: bytes) -> None:
    log = tmp_path / "app.log"
    write(log, data)
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", encoding=encoding):
        await aeventually(lambda: sink.items == 2)
    assert bodies(sink) == ["hello", "wörld 🎉"]
