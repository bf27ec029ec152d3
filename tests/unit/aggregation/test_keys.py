from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.aggregation.keys import DimensionWatch, KeyTable, ValueCache, key_prefix


def kv(key: str, **value: Any) -> bytes:
    serialized: bytes = KeyValue(key=key, value=AnyValue(**value)).SerializeToString()
    return serialized


def test_key_prefix_is_the_serialized_key_field() -> None:
    long = "k" * 200  # a two-byte length varint
    for key in ("a", "http.route", long):
        assert kv(key, string_value="x").startswith(key_prefix(key))
    assert key_prefix(long)[1:3] == bytes((200 & 0x7F | 0x80, 200 >> 7))


def test_key_table_selects_wanted_attributes_without_decoding() -> None:
    table = KeyTable(["http.route", "a"])
    out: list[Any] = [None, None]
    attrs = [kv("other", int_value=1), kv("a", int_value=2), kv("http.route", string_value="/x"),
             kv("http.router", string_value="no"), b"\x0a"]
    table.scan(attrs, out)
    assert out == [attrs[2], attrs[1]]


def test_value_cache_decodes_once_and_stays_bounded() -> None:
    cache = ValueCache(max_size=2)
    assert cache(kv("a", bool_value=True)) is True
    assert cache(kv("b", bytes_value=b"\x01\xff")) == "01ff"
    assert cache(kv("c", int_value=3)) == 3
    assert len(cache.values) == 1  # cleared when full
    any_values = ValueCache(any_value=True)
    assert any_values(AnyValue(double_value=0.5).SerializeToString()) == 0.5


def test_dimension_watch_counts_whole_batches(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    w = DimensionWatch(logging.getLogger("t"), "redmetrics/x", "spans", ["a", "b", "c"],
                       [None, "d", None], 10, [True, True, False])
    w.absent[:] = [4, 4, 3]
    assert w.end_batch(4) == []  # c was present on one span: its count restarts
    assert w.runs == [4, 4, 0]
    assert w.absent == [0, 0, 0]
    assert w.end_batch(0) == []
    assert w.runs == [4, 4, 0]
    w.absent[:] = [6, 6, 6]
    w.seen_old[2] = "old.c"
    assert w.end_batch(6) == [0, 1]
    # b has a default and no deprecated name was seen: done without a word.
    assert [r.getMessage() for r in caplog.records] == [
        "connector redmetrics/x: dimension 'a' was absent from 10 spans in a row, so their "
        "series lack it (is the attribute name right?)"]
    assert w.active
    w.absent[:] = [9, 9, 10]
    assert w.end_batch(10) == [2]
    assert not w.active
    assert caplog.records[-1].getMessage() == (
        "connector redmetrics/x: dimension 'c' was absent from 16 spans in a row, so their "
        "series lack it; the spans carry the deprecated name 'old.c' instead: put the "
        "semconv processor before this connector, or set deprecated_names: true on it")
    assert len(caplog.records) == 2


def test_dimension_watch_zero_never_watches() -> None:
    w = DimensionWatch(logging.getLogger("t"), "c", "spans", ["a"], [None], 0, [True])
    assert not w.active
    assert w.done == [True]
