from __future__ import annotations

import pytest

from pipeline.processors.logstruct.tracecontext import hex_id, trace_flags, traceparent

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@pytest.mark.parametrize(("value", "size", "want"), [
    (TRACE, 16, bytes.fromhex(TRACE)),
    (SPAN, 8, bytes.fromhex(SPAN)),
    (SPAN, 16, None),          # wrong length
    ("0" * 32, 16, None),      # all zeros is no id
    ("zz" * 8, 8, None),       # not hex
    (12345678, 8, None),       # not text
])
def test_hex_id(value: object, size: int, want: bytes | None) -> None:
    assert hex_id(value, size) == want


@pytest.mark.parametrize(("value", "want"), [
    (1, 1), (255, 255), (256, None), (-1, None), ("01", 1), ("ff", 255), ("f", 15),
    ("", None), ("100", None), ("xy", None), (True, None),
])
def test_trace_flags(value: object, want: int | None) -> None:
    assert trace_flags(value) == want


def test_traceparent() -> None:
    assert traceparent(f" 00-{TRACE}-{SPAN}-01 ") == (bytes.fromhex(TRACE),
                                                       bytes.fromhex(SPAN), 1)
    assert traceparent(f"00-{TRACE}-{'0' * 16}-01") is None
    assert traceparent(f"00-{TRACE}-{SPAN}-1") is None
    assert traceparent(f"0-{TRACE}-{SPAN}-01") is None
    assert traceparent("00-abc") is None
