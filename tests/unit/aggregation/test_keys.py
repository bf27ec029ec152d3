from __future__ import annotations

from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.aggregation.keys import KeyTable, ValueCache, key_prefix


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
