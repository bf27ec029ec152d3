"""OTLP JSON as the specification defines it, and flat JSON records.

OTLP JSON differs from protobuf's canonical JSON mapping: trace and span ids
are hex strings (not base64) and enums are integers. Keys are lowerCamelCase;
receivers also accept the snake_case names and ignore unknown fields.

The codec does not use `google.protobuf.json_format` (≈ 100 µs per span
either way, all of it Python): decoding is `orjson.loads`, one Python pass that
renames keys and converts values after a table made once per message type from
its descriptor, and the message built from the nested dicts by the protobuf
constructor (C code in upb). Encoding reads `ListFields()` (set fields only, in
field-number order, as `json_format` does) and converts after the same tables;
`orjson.dumps` writes the bytes. Both agree with `json_format` (ParseDict with
`ignore_unknown_fields`, MessageToDict with integer enums) on OTLP messages:
tests/unit/pdata/test_otlpjson_codec.py checks it with Hypothesis. Values that
need no conversion take a fast path; the rest (int64 as strings, enum names,
special floats, base64 bytes) go through the rules `json_format` applies.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from pipeline.component import Signal
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.otlp import REQUEST_TYPES

MAX_JSON_DEPTH = 64
# Bytes fields written as hex (OTLP JSON), not base64 (protobuf's JSON mapping).
_HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})


class OTLPJSONError(ValueError):
    """The body is not a valid OTLP JSON request."""


# Per message type: how each field converts -----------------------------------------

# Field kinds.
_MSG, _STR, _INT32, _INT64, _DBL, _BOOL, _ENUM, _BYTES, _HEX = range(9)
_INT64_TYPES = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64,
                          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64,
                          FieldDescriptor.TYPE_SINT64})
_INT32_TYPES = frozenset({FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_UINT32,
                          FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32,
                          FieldDescriptor.TYPE_SINT32})
# (field name, kind, schema of a message field, repeated, field descriptor)
_DecodeField = tuple[str, int, "_Schema | None", bool, FieldDescriptor]
# (JSON name, kind, schema of a message field, repeated)
_EncodeField = tuple[str, int, "_Schema | None", bool]


class _Schema:
    """The conversion table of one message type."""

    __slots__ = ("decode", "encode", "full_name", "oneofs")

    def __init__(self, full_name: str):
        self.full_name = full_name
        # JSON key (lowerCamelCase and the proto field name) -> field
        self.decode: dict[str, _DecodeField] = {}
        self.encode: dict[FieldDescriptor, _EncodeField] = {}
        # field name -> oneof name, for the fields of a oneof (empty if none)
        self.oneofs: dict[str, str] = {}


_SCHEMAS: dict[str, _Schema] = {}


def _kind(fd: FieldDescriptor) -> int:
    t = fd.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        return _MSG
    if t == FieldDescriptor.TYPE_STRING:
        return _STR
    if t == FieldDescriptor.TYPE_BYTES:
        return _HEX if fd.name in _HEX_FIELDS else _BYTES
    if t in _INT64_TYPES:
        return _INT64
    if t in _INT32_TYPES:
        return _INT32
    if t == FieldDescriptor.TYPE_DOUBLE:
        return _DBL
    if t == FieldDescriptor.TYPE_BOOL:
        return _BOOL
    if t == FieldDescriptor.TYPE_ENUM:
        return _ENUM
    # float32 (json_format rounds it to the shortest form), groups: not in OTLP.
    raise NotImplementedError(f"field {fd.full_name}: type {t} is not supported")


def _is_repeated(fd: FieldDescriptor) -> bool:
    if hasattr(fd, "is_repeated"):  # protobuf >= 6; `label` is deprecated there
        return bool(fd.is_repeated)
    return bool(fd.label == FieldDescriptor.LABEL_REPEATED)


def _schema(desc: Descriptor) -> _Schema:
    schema = _SCHEMAS.get(desc.full_name)
    if schema is not None:
        return schema
    if desc.full_name.startswith("google.protobuf.") or desc.GetOptions().map_entry:
        # Well-known types and maps have their own JSON forms; OTLP uses neither.
        raise NotImplementedError(f"{desc.full_name} is not supported")
    schema = _SCHEMAS[desc.full_name] = _Schema(desc.full_name)
    for fd in desc.fields:
        kind = _kind(fd)
        sub = _schema(fd.message_type) if kind == _MSG else None
        repeated = _is_repeated(fd)
        entry: _DecodeField = (fd.name, kind, sub, repeated, fd)
        schema.decode[fd.json_name] = entry
        schema.decode.setdefault(fd.name, entry)
        schema.encode[fd] = (fd.json_name, kind, sub, repeated)
        if fd.containing_oneof is not None:
            schema.oneofs[fd.name] = fd.containing_oneof.name
    return schema


# Decoding --------------------------------------------------------------------------

def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "null")


def _slow_scalar(key: str, value: Any, fd: FieldDescriptor) -> Any:
    """A scalar the fast path does not take (int64 as "-5", enum names, "NaN", …),
    converted by json_format's own rules so both parsers agree. Returns `_SKIP` for
    an unknown enum name (ignored, as json_format does with ignore_unknown_fields)."""
    try:
        return json_format._ConvertScalarFieldValue(value, fd, key)
    except json_format.EnumStringValueParseError:
        return _SKIP
    except (json_format.ParseError, ValueError, TypeError, binascii.Error) as exc:
        raise OTLPJSONError(f"invalid OTLP JSON: field {key}: {exc}") from None


_SKIP = object()
_INTS = frozenset({_INT32, _INT64})


def _scalar(key: str, kind: int, value: Any, fd: FieldDescriptor) -> Any:  # noqa: C901 - one branch per kind, hot path
    t = type(value)
    if kind == _STR:
        if t is str:
            return value
    elif kind in _INTS:
        if t is int:
            return value
        if t is str and value.isdigit() and value.isascii():
            return int(value)
    elif kind == _HEX:
        if t is str:
            try:
                return bytes.fromhex(value)
            except ValueError:
                pass
        raise OTLPJSONError(f"{key} {value!r} is not a hex string")
    elif kind == _ENUM:
        if t is int:
            return value
    elif kind == _BOOL:
        if t is bool:
            return value
    elif kind == _DBL:
        if t is float:
            if value - value == 0.0:  # finite
                return value
        elif t is int:
            return float(value)
    return _slow_scalar(key, value, fd)


def _decode_msg(js: Any, schema: _Schema, depth: int) -> dict[str, Any]:
    if type(js) is not dict:
        raise OTLPJSONError(f"invalid OTLP JSON: {schema.full_name} must be an object, "
                            f"not {_json_type(js)}")
    if depth > MAX_JSON_DEPTH:
        raise OTLPJSONError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    out: dict[str, Any] = {}
    fields = schema.decode
    for key, value in js.items():
        f = fields.get(key)
        if f is None or value is None:  # unknown fields are ignored, null means unset
            continue
        name, kind, sub, repeated, fd = f
        if repeated:
            if type(value) is not list:
                raise OTLPJSONError(f"invalid OTLP JSON: repeated field {key} must be an "
                                    f"array, not {_json_type(value)}")
            if depth >= MAX_JSON_DEPTH:
                raise OTLPJSONError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if sub is _KEY_VALUE:
                out[name] = _decode_attributes(value, depth + 2)
            elif sub is not None:
                d = depth + 2
                out[name] = [_decode_msg(x, sub, d) for x in value]
            else:
                items = [_scalar(key, kind, x, fd) for x in value]
                out[name] = [x for x in items if x is not _SKIP]
        elif sub is not None:
            out[name] = _decode_msg(value, sub, depth + 1)
        else:
            v = _scalar(key, kind, value, fd)
            if v is not _SKIP:
                out[name] = v
    if schema.oneofs and len(out) > 1:
        _check_oneofs(schema, out)
    return out


# AnyValue fields whose JSON value needs no conversion when of this type.
_PLAIN_VALUES: dict[str, tuple[str, type]] = {
    "stringValue": ("string_value", str), "boolValue": ("bool_value", bool),
    "intValue": ("int_value", int), "doubleValue": ("double_value", float),
    "string_value": ("string_value", str), "bool_value": ("bool_value", bool),
    "int_value": ("int_value", int), "double_value": ("double_value", float),
}


def _decode_attributes(items: list[Any], depth: int) -> list[dict[str, Any]]:
    """A KeyValue list: the common shapes ({"key": k, "value": {"stringValue": s}},
    an intValue as a string of digits) without the general walk."""
    out: list[dict[str, Any]] = []
    append = out.append
    plain = _PLAIN_VALUES
    for kv in items:
        if type(kv) is dict and len(kv) == 2:
            key = kv.get("key")
            value = kv.get("value")
            if type(key) is str and type(value) is dict and len(value) == 1:
                [(vkey, v)] = value.items()
                known = plain.get(vkey)
                if known is not None:
                    t = type(v)
                    if t is known[1] and (t is not float or v - v == 0.0):
                        append({"key": key, "value": {known[0]: v}})
                        continue
                    if t is str and known[1] is int and v.isdigit() and v.isascii():
                        append({"key": key, "value": {"int_value": int(v)}})
                        continue
        append(_decode_msg(kv, _KEY_VALUE, depth))
    return out


def _check_oneofs(schema: _Schema, fields: dict[str, Any]) -> None:
    seen: set[str] = set()
    for name in fields:
        oneof = schema.oneofs.get(name)
        if oneof is not None:
            if oneof in seen:
                raise OTLPJSONError(f"invalid OTLP JSON: {schema.full_name} has more than "
                                    f"one field of oneof {oneof!r}")
            seen.add(oneof)


_KEY_VALUE = _schema(KeyValue.DESCRIPTOR)


def decode_message(message_type: type[Message], data: Any) -> Any:
    """A message of `message_type` from parsed OTLP JSON (`orjson.loads`' result)."""
    kwargs = _decode_msg(data, _schema(message_type.DESCRIPTOR), 0)
    try:
        return message_type(**kwargs)
    except (ValueError, TypeError) as exc:  # out of range, not UTF-8 (surrogates)
        raise OTLPJSONError(f"invalid OTLP JSON: {exc}") from None


def decode_request(signal: Signal, body: bytes) -> Any:
    """Parse an OTLP JSON request body into the protobuf request. Raises OTLPJSONError."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OTLPJSONError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OTLPJSONError("an OTLP JSON request must be a JSON object")
    return decode_message(REQUEST_TYPES[signal], data)


# Encoding --------------------------------------------------------------------------

def _double(value: float) -> float | str:
    if value - value == 0.0:
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


_AS_IS = frozenset({_STR, _INT32, _ENUM, _BOOL})
_SCALAR_ENCODERS: dict[int, Callable[[Any], Any]] = {
    _INT64: str, _DBL: _double, _BYTES: _b64, _HEX: bytes.hex,
}


def _encode_msg(message: Any, schema: _Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = schema.encode
    for fd, value in message.ListFields():
        name, kind, sub, repeated = fields[fd]
        if sub is not None:
            out[name] = [_encode_msg(m, sub) for m in value] if repeated \
                else _encode_msg(value, sub)
        elif kind in _AS_IS:
            out[name] = list(value) if repeated else value
        else:
            conv = _SCALAR_ENCODERS[kind]
            out[name] = [conv(v) for v in value] if repeated else conv(value)
    return out


def message_to_otlp_dict(message: Any) -> dict[str, Any]:
    """The OTLP JSON object of a message (as `json_format.MessageToDict` with integer
    enums, ids in hex)."""
    return _encode_msg(message, _schema(message.DESCRIPTOR))


def encode_request(message: Any) -> bytes:
    """OTLP JSON bytes of a request or response message."""
    return orjson.dumps(message_to_otlp_dict(message))


# Flat records -------------------------------------------------------------------

SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
              5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def rfc3339_nanos(ns: int) -> str | None:
    if not ns:
        return None
    secs, frac = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def flat_log_records(request: Any) -> Iterator[dict[str, Any]]:
    """One flat object per log record: resource and record attributes at the top level."""
    for rl in request.resource_logs:
        res = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for lr in sl.log_records:
                rec: dict[str, Any] = {
                    "time": rfc3339_nanos(lr.time_unix_nano or lr.observed_time_unix_nano),
                    "severity_text": lr.severity_text or None,
                    "severity_number": lr.severity_number or None,
                    "body": any_value(lr.body),
                    "trace_id": lr.trace_id.hex() or None,
                    "span_id": lr.span_id.hex() or None,
                }
                if scope:
                    rec["scope.name"] = scope
                rec.update(res)
                rec.update(attributes(lr.attributes))
                yield {k: v for k, v in rec.items() if v is not None}


def flat_spans(request: Any) -> Iterator[dict[str, Any]]:
    """One flat object per span."""
    for rs in request.resource_spans:
        res = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                rec: dict[str, Any] = {
                    "trace_id": sp.trace_id.hex(),
                    "span_id": sp.span_id.hex(),
                    "parent_span_id": sp.parent_span_id.hex() or None,
                    "name": sp.name,
                    "kind": SPAN_KINDS.get(sp.kind, str(sp.kind)),
                    "start_time": rfc3339_nanos(sp.start_time_unix_nano),
                    "end_time": rfc3339_nanos(sp.end_time_unix_nano),
                    "duration_ms": (sp.end_time_unix_nano - sp.start_time_unix_nano) / 1e6,
                    "status_code": STATUS_CODES.get(sp.status.code, str(sp.status.code)),
                    "status_message": sp.status.message or None,
                }
                if scope:
                    rec["scope.name"] = scope
                rec.update(res)
                rec.update(attributes(sp.attributes))
                if len(sp.events):
                    rec["events"] = [{"name": e.name, "time": rfc3339_nanos(e.time_unix_nano),
                                      **attributes(e.attributes)} for e in sp.events]
                yield {k: v for k, v in rec.items() if v is not None}


def flat_records(signal: Signal, request: Any) -> Iterator[dict[str, Any]]:
    if signal is Signal.LOGS:
        return flat_log_records(request)
    if signal is Signal.TRACES:
        return flat_spans(request)
    raise ValueError("flat JSON records exist for logs and traces; use otlp_json for metrics")
