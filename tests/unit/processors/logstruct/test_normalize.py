from __future__ import annotations

from datetime import UTC, datetime

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.timestamps import TimeParser


def ns(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, frac: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()) * 1_000_000_000 + frac


def test_semconv_roles_and_rename() -> None:
    norm = Normalizer(TimeParser(), semconv=True, rename={"who": "enduser.id", "when": "time"})
    rec = Record()
    for k, v in [("when", "2024-03-01T12:00:00Z"), ("who", "u1"), ("status", "404"),
                 ("bytes", "-"), ("request", "/a/b?c=d"), ("client_ip", "10.0.0.1"),
                 ("span_id", "b7ad6b7169203331"), ("trace_flags", "01"), ("msg", "m"),
                 ("message", "second message stays")]:
        norm.field(rec, k, v)
    assert rec.time == ns(2024, 3, 1, 12)
    assert rec.body == "m"
    assert rec.span_id.hex() == "b7ad6b7169203331"
    assert rec.flags == 1
    assert rec.attrs == {"enduser.id": "u1", "http.response.status_code": 404,
                         "url.path": "/a/b", "url.query": "c=d", "client.address": "10.0.0.1",
                         "message": "second message stays"}
    plain = Normalizer(TimeParser(), semconv=False)
    rec = Record()
    plain.field(rec, "status", "404")
    plain.field(rec, "request", "/x?y")
    assert rec.attrs == {"status": "404", "path": "/x", "query": "y"}
