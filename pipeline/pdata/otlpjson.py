"""OTLP JSON as the specification defines it, and flat JSON records.

OTLP JSON differs from protobuf's canonical JSON mapping: trace and span ids
are hex strings (not base64) and enums are integers. Keys are lowerCamelCase;
receivers also accept the snake_case names and ignore unknown fields.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson
from google.protobuf import json_format

from pipeline.component import Signal
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.otlp import REQUEST_TYPES

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id",
                      "parent_span_id"})
MAX_JSON_DEPTH = 64


class OTLPJSONError(ValueError):
    """The body is not a valid OTLP JSON request."""


def _ids_hex_to_b64(node: Any, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise OTLPJSONError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OTLPJSONError(f"{key} {value!r} is not a hex string") from None
            elif isinstance(value, dict | list):
                _ids_hex_to_b64(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                _ids_hex_to_b64(value, depth + 1)
    return node


def _ids_b64_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            elif isinstance(value, dict | list):
                _ids_b64_to_hex(value)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                _ids_b64_to_hex(value)
    return node


def decode_request(signal: Signal, body: bytes) -> Any:
    """Parse an OTLP JSON request body into the protobuf request. Raises OTLPJSONError."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OTLPJSONError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OTLPJSONError("an OTLP JSON request must be a JSON object")
    _ids_hex_to_b64(data)
    msg = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, binascii.Error) as exc:
        raise OTLPJSONError(f"invalid OTLP JSON: {exc}") from None
    return msg


def message_to_otlp_dict(message: Any) -> dict[str, Any]:
    d: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
    _ids_b64_to_hex(d)
    return d


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
