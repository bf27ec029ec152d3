"""Series lookup keys: picking the wanted attributes out of serialized KeyValues.

Front ends build a cheap *raw key* per item from undecoded attribute bytes (a
`KeyTable` selects the KeyValues whose key is wanted without decoding any)
and decode values only when a key is new (`ValueCache`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.pdata.anyvalue import any_value_to_python


def key_prefix(key: str) -> bytes:
    """Wire bytes every serialized `KeyValue` with this key starts with.

    Field 1 (`key`, tag 0x0a), its varint length, the UTF-8 key. Encoders write
    fields in field-number order, so testing `kv_bytes.startswith(prefix)`
    selects an attribute without decoding it.
    """
    raw = key.encode()
    n = len(raw)
    varint = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return b"\x0a" + bytes(varint) + raw


class KeyTable:
    """Selects the serialized KeyValues whose key is one of `keys`.

    `table[kv[1]]` (the first byte of the key length) is None for almost every
    attribute, so the cost per unwanted attribute is one index and one test.
    """

    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)
        table: list[list[tuple[bytes, int]] | None] = [None] * 256
        for slot, key in enumerate(self.keys):
            prefix = key_prefix(key)
            entry = table[prefix[1]]
            if entry is None:
                entry = table[prefix[1]] = []
            entry.append((prefix, slot))
        self.table: list[tuple[tuple[bytes, int], ...] | None] = [
            tuple(e) if e else None for e in table]

    def scan(self, attributes: Iterable[bytes], out: list[Any]) -> None:
        """Store each wanted KeyValue's bytes into `out[slot]` (robust slow path)."""
        table = self.table
        for kv in attributes:
            if len(kv) < 2:
                continue
            entry = table[kv[1]]
            if entry is not None:
                for prefix, slot in entry:
                    if kv.startswith(prefix):
                        out[slot] = kv
                        break


class ValueCache:
    """Decodes serialized KeyValues (or, with `any_value=True`, serialized
    AnyValues) once per distinct bytes value (bounded)."""

    def __init__(self, max_size: int = 10_000, *, any_value: bool = False):
        self.max_size = max_size
        self.any_value = any_value
        self.values: dict[bytes, Any] = {}

    def __call__(self, kv: bytes) -> Any:
        value = self.values.get(kv)
        if value is None:
            if len(self.values) >= self.max_size:
                self.values.clear()
            av = AnyValue.FromString(kv) if self.any_value else KeyValue.FromString(kv).value
            value = self.values[kv] = any_value_to_python(av)
        return value

