"""Log records as plain Python objects, and their OTLP protobuf encoding.

Logs that start life as text (file lines, JSON over HTTP) need not become
protobuf messages until something asks for OTLP: a processor such as
`logstruct` sets fields and attributes with attribute and dict assignments
(~20x cheaper than writing into upb messages), a `json` exporter writes them
with orjson, and only an exporter that sends OTLP encodes them — with the
hand-written encoder below (varints and length prefixes from `pdata.wire`),
whose output the tests parse back with the `opentelemetry-proto` classes and
compare with what upb serializes.

Model:

- `LogRecord` — OTLP `LogRecord` fields under their OTLP names; `body` and
  attribute values are Python values: `str`, `bool`, `int` (int64; larger
  integers are encoded as their decimal string), `float`, `bytes`, `dict`
  (kvlist; `None` members are left out), `list`/`tuple` (array; `None` items
  stay as empty values), `None` (no value). Containers nested deeper than 31
  levels are encoded as their JSON text (as the `jsonlogs` receiver does).
- `LogGroup` — records sharing one resource and one instrumentation scope
  (one `ResourceLogs` with one `ScopeLogs` on the wire).
  `LogGroup.from_lines` holds UTF-8 lines and builds `LogRecord`s only when
  someone asks for `records`; until then it encodes straight from the lines.

A `Batch` (pdata/batch.py) can carry a list of groups instead of OTLP bytes.
The groups as flat JSON objects (the `json` format) are in `pdata/flatlogs.py`.

The model and its hand-written encoder stay in one module: they share module-level
caches (encoded keys, attribute headers, prefixes) and bound helpers that the
per-record loops read as globals.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import chain, repeat
from typing import Any

from pipeline.pdata.logfields import dumps as json_text
from pipeline.pdata.wire import SMALL_VARINTS, ld, varint

__all__ = [
    "LogGroup",
    "LogRecord",
    "encode_groups",
    "encode_record",
]

MAX_DEPTH = 31
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64 = 1 << 64


# Field tags, lengths and the fixed fields of a record (timestamps, severity, ids), and
# a typical attribute (key, value and framing): what `LogGroup.estimated_bytes` adds to
# the bodies' text.
_RECORD_OVERHEAD = 48
_ATTRIBUTE_ESTIMATE = 32


class LogRecord:
    """One log record. Fields not given keep the class defaults (OTLP defaults).

    A plain class (no `__slots__`): with class-level defaults only the fields
    set are stored, which makes creating a record from a line ~40% cheaper.
    """

    time_unix_nano: int = 0
    observed_time_unix_nano: int = 0
    severity_number: int = 0
    severity_text: str = ""
    body: Any = None
    dropped_attributes_count: int = 0
    flags: int = 0
    trace_id: bytes = b""
    span_id: bytes = b""
    event_name: str = ""

    def __init__(self, body: Any = None, attributes: dict[str, Any] | None = None,
                 observed_time_unix_nano: int = 0, **fields: Any):
        self.body = body
        self.attributes: dict[str, Any] = {} if attributes is None else attributes
        if observed_time_unix_nano:
            self.observed_time_unix_nano = observed_time_unix_nano
        for k, v in fields.items():
            if k not in _FIELDS:
                raise TypeError(f"LogRecord has no field {k!r}")
            setattr(self, k, v)

    def copy(self) -> LogRecord:
        """An independent copy (containers in the body and attributes copied too)."""
        r = LogRecord.__new__(LogRecord)
        d = r.__dict__
        d.update(self.__dict__)
        d["attributes"] = {k: _copy_value(v) for k, v in self.attributes.items()}
        body = d.get("body")
        if type(body) is dict or type(body) is list:
            d["body"] = _copy_value(body)
        return r

    def fields(self) -> dict[str, Any]:
        """Every field, by OTLP name (for tests and debugging)."""
        return {k: getattr(self, k) for k in (*_FIELDS, "attributes")}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogRecord) and self.fields() == other.fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        set_ = {k: v for k, v in self.fields().items()
                if v != getattr(LogRecord, k, None) and v != {}}
        return f"LogRecord({', '.join(f'{k}={v!r}' for k, v in set_.items())})"


_FIELDS = ("time_unix_nano", "observed_time_unix_nano", "severity_number", "severity_text",
           "body", "dropped_attributes_count", "flags", "trace_id", "span_id", "event_name")


def _copy_value(v: Any) -> Any:
    t = type(v)
    if t is dict:
        return {k: _copy_value(x) for k, x in v.items()}
    if t is list:
        return [_copy_value(x) for x in v]
    return v


class LogGroup:
    """Records sharing one resource and one scope."""

    __slots__ = ("_extras", "_lines", "_records", "line_attributes", "observed",
                 "resource", "resource_schema_url", "scope_attributes", "scope_name",
                 "scope_schema_url", "scope_version")

    def __init__(self, records: list[LogRecord] | None = None, *,
                 resource: dict[str, Any] | None = None, resource_schema_url: str = "",
                 scope_name: str = "", scope_version: str = "",
                 scope_attributes: dict[str, Any] | None = None,
                 scope_schema_url: str = ""):
        self._records: list[LogRecord] | None = [] if records is None else records
        self._lines: list[bytes] | None = None
        self._extras: list[dict[str, Any] | None] | None = None
        self.line_attributes: dict[str, Any] = {}
        self.observed = 0
        self.resource: dict[str, Any] = {} if resource is None else resource
        self.resource_schema_url = resource_schema_url
        self.scope_name = scope_name
        self.scope_version = scope_version
        self.scope_attributes: dict[str, Any] = {} if scope_attributes is None \
            else scope_attributes
        self.scope_schema_url = scope_schema_url

    @classmethod
    def from_lines(cls, lines: list[bytes], attributes: dict[str, Any], observed: int, *,
                   extras: list[dict[str, Any] | None] | None = None,
                   resource: dict[str, Any] | None = None) -> LogGroup:
        """Records whose bodies are `lines` (valid UTF-8), each with `attributes` (shared,
        never changed) plus `extras[i]`, observed at `observed`. `LogRecord`s are built
        on first access to `records`; encoding before that works from the lines."""
        g = cls(resource=resource)
        g._records = None
        g._lines = lines
        g._extras = extras
        g.line_attributes = attributes
        g.observed = observed
        return g

    @property
    def materialized(self) -> bool:
        return self._records is not None

    @property
    def records(self) -> list[LogRecord]:
        """The records (built from the lines on first access); may be changed in place."""
        recs = self._records
        if recs is None:
            recs = self._records = self._build()
            self._lines = self._extras = None
        return recs

    @property
    def lines(self) -> list[bytes] | None:
        """The UTF-8 bodies while the records are not built yet (read-only), else None."""
        return self._lines

    @property
    def extras(self) -> list[dict[str, Any] | None] | None:
        """Per-line extra attributes while the records are not built yet, else None."""
        return self._extras

    def estimated_bytes(self) -> int:
        """Roughly the OTLP size of the group, without encoding it: the bodies' length
        plus a fixed cost per record and per attribute. For memory budgets (in-flight and
        queue bounds), where encoding just to weigh a batch would double the cost of a
        route that never ships OTLP; attribute values are not measured (walking them
        cost a parsed access log a fifth of its throughput)."""
        lines = self._lines
        if lines is not None:
            return sum(map(len, lines)) + _RECORD_OVERHEAD * len(lines)
        total = 0
        for rec in self.records:
            body = rec.body
            total += _RECORD_OVERHEAD + _ATTRIBUTE_ESTIMATE * len(rec.attributes) + (
                len(body) if isinstance(body, str | bytes) else 0)
        return total

    def set_records(self, records: list[LogRecord]) -> None:
        """Replace the lines by records built from them elsewhere (a processor that builds
        and parses each record in one pass)."""
        self._records = records
        self._lines = self._extras = None

    def _build(self) -> list[LogRecord]:
        lines = self._lines
        assert lines is not None
        attrs = self.line_attributes
        obs = self.observed
        extras = self._extras
        make = object.__new__  # skips __init__: ~30% cheaper per record
        cls = LogRecord
        out: list[LogRecord] = []
        append = out.append
        for i, line in enumerate(lines):
            r = make(cls)
            r.body = line.decode()
            a = r.attributes = attrs.copy()
            if obs:
                r.observed_time_unix_nano = obs
            if extras is not None:
                e = extras[i]
                if e:
                    a.update(e)
            append(r)
        return out

    def __len__(self) -> int:
        recs = self._records
        if recs is not None:
            return len(recs)
        assert self._lines is not None
        return len(self._lines)

    def like(self, records: list[LogRecord]) -> LogGroup:
        """A group with the same resource and scope holding `records`."""
        return LogGroup(records, resource=dict(self.resource),
                        resource_schema_url=self.resource_schema_url,
                        scope_name=self.scope_name, scope_version=self.scope_version,
                        scope_attributes=dict(self.scope_attributes),
                        scope_schema_url=self.scope_schema_url)

    def copy(self) -> LogGroup:
        """An independent copy (lines are shared: they are never changed)."""
        if self._records is None:
            assert self._lines is not None
            return LogGroup.from_lines(self._lines, self.line_attributes, self.observed,
                                       extras=self._extras,
                                       resource=_copy_value(self.resource))
        g = self.like([r.copy() for r in self._records])
        g.resource = _copy_value(self.resource)
        g.scope_attributes = _copy_value(self.scope_attributes)
        return g

    def __repr__(self) -> str:
        return f"LogGroup({len(self)} records, resource={self.resource!r})"


# ---------------------------------------------------------------------------------------
# Encoding (opentelemetry/proto/logs/v1/logs.proto, common/v1/common.proto)

_pack_fixed64 = struct.Struct("<BQ").pack
_pack_double = struct.Struct("<Bd").pack
_pack_fixed32 = struct.Struct("<BI").pack
_TRUE, _FALSE = b"\x10\x01", b"\x10\x00"
_KEYS: dict[str, bytes] = {}


def _key(k: str) -> bytes:
    """`KeyValue.key` field, cached (attribute names repeat)."""
    b = _KEYS.get(k)
    if b is None:
        b = ld(b"\x0a", _utf8(k if type(k) is str else str(k)))
        if len(_KEYS) < 20_000:
            _KEYS[k] = b
    return b


def _utf8(s: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:  # lone surrogates: protobuf strings must be valid UTF-8
        return s.encode("utf-8", "replace")


def any_value(v: Any, depth: int = 1) -> bytes:
    """Serialized `AnyValue` of a Python value (see the module docstring)."""
    t = type(v)
    if t is str:
        b = _utf8(v)
        n = len(b)
        return b"\x0a" + (SMALL_VARINTS[n] if n < 0x80 else varint(n)) + b
    if t is int:
        i: int = v
        if 0 <= i < 0x80:
            return b"\x18" + SMALL_VARINTS[i]
        if _INT64_MIN <= i <= _INT64_MAX:
            return b"\x18" + varint(i if i >= 0 else i + _UINT64)
        return ld(b"\x0a", str(i).encode())
    if t is bool:
        return _TRUE if v else _FALSE
    if t is float:
        return _pack_double(0x21, v)
    if t is dict:
        if depth > MAX_DEPTH:
            return ld(b"\x0a", json_text(v).encode())
        d = depth + 1
        return ld(b"\x32", b"".join([ld(b"\x0a", _kv(k, x, d))
                                      for k, x in v.items() if x is not None]))
    if t is list or t is tuple:
        if depth > MAX_DEPTH:
            return ld(b"\x0a", json_text(v).encode())
        d = depth + 1
        return ld(b"\x2a", b"".join([ld(b"\x0a", any_value(x, d)) for x in v]))
    if v is None:
        return b""
    if t is bytes or t is bytearray or t is memoryview:
        return ld(b"\x3a", bytes(v))
    return ld(b"\x0a", _utf8(str(v)))


def _kv(k: str, v: Any, depth: int = 1) -> bytes:
    """Serialized `KeyValue`."""
    a = any_value(v, depth)
    n = len(a)
    return _key(k) + b"\x12" + (SMALL_VARINTS[n] if n < 0x80 else varint(n)) + a


def encode_attributes(attrs: dict[str, Any], tag: bytes = b"\x32") -> bytes:
    """Repeated `KeyValue` fields (`LogRecord.attributes` by default)."""
    out = []
    for k, v in attrs.items():
        kv = _kv(k, v)
        n = len(kv)
        out.append(tag + (SMALL_VARINTS[n] if n < 0x80 else varint(n)) + kv)
    return b"".join(out)


class _AttrHeaders(dict[int, bytes]):
    """Everything of a `LogRecord.attributes` entry with key `k` before the value's
    payload, by payload shape: `n >= 0` a string of n bytes, `n < 0` an int whose varint
    is -n bytes long. The lengths inside depend only on those, so an entry is
    `headers[len(payload)] + payload`."""

    __slots__ = ("kp",)

    def __init__(self, kp: bytes):
        super().__init__()
        self.kp = kp

    def __missing__(self, n: int) -> bytes:
        if n >= 0:
            inner = b"\x0a" + varint(n)
            a = len(inner) + n
        else:
            inner = b"\x18"
            a = 1 - n
        kvlen = len(self.kp) + 1 + len(varint(a)) + a
        h = b"\x32" + varint(kvlen) + self.kp + b"\x12" + varint(a) + inner
        if len(self) < 1024:
            self[n] = h
        return h


_HEADERS: dict[str, _AttrHeaders] = {}


def _headers(k: str) -> _AttrHeaders:
    h = _HEADERS.get(k)
    if h is None:
        h = _AttrHeaders(_key(k))
        if len(_HEADERS) < 20_000:
            _HEADERS[k] = h
    return h


def _body_header(n: int) -> bytes:
    """`LogRecord.body` tag and lengths before a string body of n bytes."""
    if n < 0x7E:
        return _BODY_SHORT[n]
    inner = b"\x0a" + varint(n)
    return b"\x2a" + varint(len(inner) + n) + inner


_BODY_SHORT = [b"\x2a" + bytes((n + 2,)) + b"\x0a" + bytes((n,)) for n in range(0x7E)]


def encode_record(r: LogRecord) -> bytes:
    """Serialized `LogRecord` (fields in field-number order, as upb writes them)."""
    parts: list[bytes] = []
    append = parts.append
    t = r.time_unix_nano
    if t:
        append(_pack_fixed64(0x09, t))
    if r.severity_number:
        append(b"\x10" + varint(r.severity_number & 0xFFFFFFFFFFFFFFFF))
    if r.severity_text:
        append(ld(b"\x1a", _utf8(r.severity_text)))
    body = r.body
    if body is not None:
        if type(body) is str:
            b = _utf8(body)
            append(_body_header(len(b)))
            append(b)
        else:
            append(ld(b"\x2a", any_value(body)))
    if r.attributes:
        _append_attributes(append, r.attributes)
    if r.dropped_attributes_count:
        append(b"\x38" + varint(r.dropped_attributes_count))
    if r.flags:
        append(_pack_fixed32(0x45, r.flags))
    if r.trace_id:
        append(ld(b"\x4a", r.trace_id))
    if r.span_id:
        append(ld(b"\x52", r.span_id))
    o = r.observed_time_unix_nano
    if o:
        append(_pack_fixed64(0x59, o))
    if r.event_name:
        append(ld(b"\x62", _utf8(r.event_name)))
    return b"".join(parts)


def _append_attributes(append: Callable[[bytes], None], attrs: dict[str, Any]) -> None:
    """`LogRecord.attributes` entries; strings and small ints from cached headers."""
    headers = _HEADERS
    for k, v in attrs.items():
        tv = type(v)
        if tv is str:
            try:
                vb = v.encode()
            except UnicodeEncodeError:
                vb = v.encode("utf-8", "replace")
            h = headers.get(k)
            if h is None:
                h = _headers(k)
            append(h[len(vb)])
            append(vb)
        elif tv is int and 0 <= v <= _INT64_MAX:
            vb = SMALL_VARINTS[v] if v < 0x80 else varint(v)
            h = headers.get(k)
            if h is None:
                h = _headers(k)
            append(h[-len(vb)])
            append(vb)
        else:
            kv = _kv(k, v)
            n = len(kv)
            append(b"\x32" + (SMALL_VARINTS[n] if n < 0x80 else varint(n)) + kv)


class _Prefixes(dict[int, bytes]):
    """`ScopeLogs.log_records` tag + record length + body tags, by line length, for
    records whose bytes after the body (the tail) are `tail_len` long."""

    def __init__(self, tail_len: int):
        super().__init__()
        self.tail_len = tail_len

    def __missing__(self, n: int) -> bytes:
        v = varint(n)
        any_len = 1 + len(v) + n
        body = b"\x2a" + varint(any_len) + b"\x0a" + v
        p = b"\x12" + varint(len(body) + n + self.tail_len) + body
        if len(self) < 65536:
            self[n] = p
        return p


_PREFIXES: dict[int, _Prefixes] = {}


def line_prefixes(tail_len: int) -> _Prefixes:
    p = _PREFIXES.get(tail_len)
    if p is None:
        p = _PREFIXES[tail_len] = _Prefixes(tail_len)
    return p


def encode_lines(bodies: list[bytes], extras: list[bytes] | None, attrs: bytes,
                 observed: int) -> bytes:
    """Serialized `ScopeLogs.log_records` of records that have only a string body (UTF-8
    bytes), the attributes `attrs` (serialized) plus `extras[i]`, and the observed time.

    Everything but the body and its length is the same for every record, so this is
    `b"".join(prefix(len(line)), line, tail ...)`: no per-record objects."""
    obs = _pack_fixed64(0x59, observed) if observed else b""
    tail = attrs + obs
    pre = line_prefixes(len(tail))
    if extras is None:
        return b"".join(chain.from_iterable(
            zip(map(pre.__getitem__, map(len, bodies)), bodies, repeat(tail))))
    parts: list[bytes] = []
    for body, extra in zip(bodies, extras, strict=True):
        if extra:
            t = attrs + extra + obs
            parts += (line_prefixes(len(t))[len(body)], body, t)
        else:
            parts += (pre[len(body)], body, tail)
    return b"".join(parts)


def _scope_logs_records(g: LogGroup) -> bytes:
    lines = g._lines
    if lines is not None:
        attrs = encode_attributes(g.line_attributes)
        extras = None
        if g._extras is not None:
            extras = [encode_attributes(e) if e else b"" for e in g._extras]
        return encode_lines(lines, extras, attrs, g.observed)
    out = []
    assert g._records is not None
    for r in g._records:
        rb = encode_record(r)
        n = len(rb)
        out.append(b"\x12" + (SMALL_VARINTS[n] if n < 0x80 else varint(n)) + rb)
    return b"".join(out)


def encode_group(g: LogGroup) -> bytes:
    """Serialized `ResourceLogs` (one ScopeLogs) of a group."""
    scope = b""
    if g.scope_name:
        scope += ld(b"\x0a", _utf8(g.scope_name))
    if g.scope_version:
        scope += ld(b"\x12", _utf8(g.scope_version))
    if g.scope_attributes:
        scope += encode_attributes(g.scope_attributes, b"\x1a")
    sl = (ld(b"\x0a", scope) if scope else b"") + _scope_logs_records(g)
    if g.scope_schema_url:
        sl += ld(b"\x1a", _utf8(g.scope_schema_url))
    rl = b""
    if g.resource:
        rl = ld(b"\x0a", encode_attributes(g.resource, b"\x0a"))
    rl += ld(b"\x12", sl)
    if g.resource_schema_url:
        rl += ld(b"\x1a", _utf8(g.resource_schema_url))
    return rl


def encode_groups(groups: list[LogGroup]) -> bytes:
    """A serialized `ExportLogsServiceRequest` (one ResourceLogs per group)."""
    return b"".join([ld(b"\x0a", encode_group(g)) for g in groups])
