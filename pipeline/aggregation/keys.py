"""Series lookup keys: picking the wanted attributes out of serialized KeyValues.

Front ends build a cheap *raw key* per item from undecoded attribute bytes (a
`KeyTable` selects the KeyValues whose key is wanted without decoding any)
and decode values only when a key is new (`ValueCache`).

Dimension matching beyond the name as written: a dimension that names a stable
semantic-convention attribute also matches its deprecated names
(`pipeline.pdata.semconv.aliases`), and `DimensionWatch` warns once about a
dimension that stays absent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.pdata.anyvalue import any_value_to_python
from pipeline.pdata.wire import ld


def key_prefix(key: str) -> bytes:
    """Wire bytes every serialized `KeyValue` with this key starts with.

    Field 1 (`key`, tag 0x0a), its varint length, the UTF-8 key. Encoders write
    fields in field-number order, so testing `kv_bytes.startswith(prefix)`
    selects an attribute without decoding it.
    """
    return ld(b"\x0a", key.encode())


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



# Dimension matching: deprecated names and absent dimensions ---------------------------

class _Absent:
    """Marks a dimension that neither its name nor a deprecated one gave (in a key)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


class DimensionWatch:
    """Warns once per dimension that is absent from `after` items in a row.

    Front ends count, per batch (request), the items they saw and, per dimension,
    the items that lacked it (`end_batch`); a dimension absent from every item of
    consecutive batches adds them up, one present anywhere in a batch resets its
    count. So the count is exact for a dimension that never comes (the case that
    matters: a typo, or data on another semantic-convention version) and errs
    towards not warning otherwise. `seen_old[i]` is a deprecated name of dimension
    i seen on an item that lacked it (reported in the warning). A dimension with a
    `default` is expected to be absent at times: it warns only if a deprecated name
    was seen instead. `note_matched` says once, at info level, that a deprecated
    name was matched. `end_batch` returns the dimensions that stopped being watched.
    """

    def __init__(self, logger: logging.Logger, connector: str, items: str,
                 names: Sequence[str], defaults: Sequence[str | None], after: int,
                 fallback: Sequence[bool]):
        self.logger = logger
        self.connector = connector
        self.items = items
        self.names = list(names)
        self.defaults = list(defaults)
        self.after = after
        self.fallback = list(fallback)
        n = len(self.names)
        self.runs = [0] * n
        self.done = [after <= 0] * n
        self.absent = [0] * n  # this batch
        self.seen_old: list[str | None] = [None] * n
        self.noted = [False] * n
        self.active = not all(self.done)

    def end_batch(self, items: int) -> list[int]:
        """Close a batch of `items` items; the dimensions no longer watched from now on
        (warned about, or quietly done: a default was expected)."""
        warned: list[int] = []
        absent = self.absent
        for i, n_absent in enumerate(absent):
            if self.done[i]:
                continue
            if items and n_absent >= items:
                self.runs[i] += items
                if self.runs[i] >= self.after:
                    self.done[i] = True
                    warned.append(i)
                    if self.defaults[i] is None or self.seen_old[i] is not None:
                        self.logger.warning(self.message(i))
            elif items:
                self.runs[i] = 0
            absent[i] = 0
        self.active = not all(self.done)
        return warned

    def message(self, i: int) -> str:
        name = self.names[i]
        default = self.defaults[i]
        items = self.items
        text = (f"connector {self.connector}: dimension {name!r} was absent from "
                f"{self.runs[i]} {items} in a row, so their series "
                + (f"got its default {default!r}" if default is not None else "lack it"))
        old = self.seen_old[i]
        if old is None:
            return text + " (is the attribute name right?)"
        text += (f"; the {items.split()[0]} carry the deprecated name {old!r} instead: put "
                 f"the semconv processor before this connector")
        if not self.fallback[i]:
            text += ", or set deprecated_names: true on it"
        return text

    def note_matched(self, i: int, old: str) -> None:
        """Dimension i was taken from the deprecated name `old` (said once, at info)."""
        if not self.noted[i]:
            self.noted[i] = True
            self.logger.info(
                f"connector {self.connector}: dimension {self.names[i]!r} is matched by the "
                f"deprecated name {old!r} on {self.items} that lack it (deprecated_names)")
