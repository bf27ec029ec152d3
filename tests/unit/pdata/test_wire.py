"""The protobuf varint / length-delimited writer, checked against upb's encoding."""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2
from hypothesis import given
from hypothesis import strategies as st

from pipeline.pdata.wire import MASK64, SMALL_VARINTS, int64_varint, ld, read_varint, varint

EDGES = [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 1 << 35, (1 << 63) - 1,
         1 << 63, MASK64]


@pytest.mark.parametrize("n", EDGES)
def test_varint_matches_upb(n: int) -> None:
    # UInt64Value.value is field 1, varint: tag 0x08, then the varint.
    expected = wrappers_pb2.UInt64Value(value=n).SerializeToString()
    assert (b"\x08" + varint(n) if n else b"") == expected


@pytest.mark.parametrize("n", [0, 1, -1, -(1 << 63), (1 << 63) - 1, 1_760_000_000_000, -5000])
def test_int64_varint_matches_upb(n: int) -> None:
    expected = wrappers_pb2.Int64Value(value=n).SerializeToString()
    assert (b"\x08" + int64_varint(n) if n else b"") == expected


def test_negative_int64_is_ten_bytes() -> None:
    assert len(int64_varint(-1)) == 10
    assert int64_varint(-1) == varint(MASK64)


def test_small_varints_are_one_byte() -> None:
    assert len(SMALL_VARINTS) == 0x80
    assert all(SMALL_VARINTS[i] == varint(i) == bytes((i,)) for i in range(0x80))


@pytest.mark.parametrize("size", [0, 1, 0x7F, 0x80, 300, 0x4000, 70_000])
def test_ld_matches_upb(size: int) -> None:
    payload = b"x" * size
    # BytesValue.value is field 1, length-delimited: tag 0x0a.
    expected = wrappers_pb2.BytesValue(value=payload).SerializeToString()
    assert (ld(b"\x0a", payload) if size else b"") == expected
    assert ld(b"\x0a", payload)[:1] == b"\x0a"


@given(st.integers(0, 2**64 - 1), st.binary(max_size=4))
def test_read_varint_reads_what_varint_wrote(n: int, tail: bytes) -> None:
    raw = b"\xff" + varint(n) + tail
    assert read_varint(raw, 1) == (n, 1 + len(varint(n)))


def test_read_varint_refuses_truncated_and_overlong() -> None:
    with pytest.raises(IndexError):
        read_varint(b"\x80\x80", 0)
    with pytest.raises(ValueError, match="ten bytes"):
        read_varint(b"\xff" * 11, 0)
