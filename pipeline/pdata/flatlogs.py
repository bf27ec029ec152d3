"""Log record groups (`pdata.logrecords.LogGroup`) as flat JSON objects, one per
record: resource and record attributes at the top level, the same objects as
`otlpjson.flat_log_records` gives for their OTLP encoding (the `json` format of the
file and kafka exporters), without encoding them first.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson

from pipeline.pdata.logfields import dumps as json_text
from pipeline.pdata.logrecords import MAX_DEPTH, LogGroup

__all__ = ["dumps_flat", "flat_group_records", "flat_value", "rfc3339_nanos"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def flat_value(v: Any, depth: int = 1) -> Any:
    """The value `otlpjson.any_value` gives for the encoding of `v`."""
    t = type(v)
    if t is str or t is bool or t is float or v is None:
        return v
    if t is int:
        return v if _INT64_MIN <= v <= _INT64_MAX else str(v)
    if t is dict:
        if depth > MAX_DEPTH:
            return json_text(v)
        d = depth + 1
        return {str(k): flat_value(x, d) for k, x in v.items() if x is not None}
    if t is list or t is tuple:
        if depth > MAX_DEPTH:
            return json_text(v)
        d = depth + 1
        return [flat_value(x, d) for x in v]
    if t is bytes or t is bytearray or t is memoryview:
        return base64.b64encode(v).decode()
    return str(v)


_PLAIN = frozenset((str, bool, float))
_SECONDS: dict[int, str] = {}


def rfc3339_nanos(ns: int) -> str | None:
    """As `otlpjson.rfc3339_nanos`, with the second's text cached."""
    if not ns:
        return None
    secs, frac = divmod(ns, 1_000_000_000)
    head = _SECONDS.get(secs)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[secs] = dt.datetime.fromtimestamp(secs, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S")
    return f"{head}.{frac:09d}Z"


def flat_group_records(groups: list[LogGroup]) -> Iterator[dict[str, Any]]:
    """One flat object per record: resource and record attributes at the top level."""
    plain = _PLAIN
    for g in groups:
        res = {k: flat_value(v) for k, v in g.resource.items()}
        scope = g.scope_name
        for r in g.records:
            body = r.body
            rec: dict[str, Any] = {
                "time": rfc3339_nanos(r.time_unix_nano or r.observed_time_unix_nano),
                "severity_text": r.severity_text or None,
                "severity_number": r.severity_number or None,
                "body": body if type(body) in plain else flat_value(body),
                "trace_id": r.trace_id.hex() or None,
                "span_id": r.span_id.hex() or None,
            }
            if scope:
                rec["scope.name"] = scope
            rec.update(res)
            for k, v in r.attributes.items():
                rec[k] = v if type(v) in plain else flat_value(v)
            yield {k: v for k, v in rec.items() if v is not None}


def dumps_flat(groups: list[LogGroup]) -> bytes:
    """`format: json` lines of record groups."""
    dumps = orjson.dumps
    return b"".join([dumps(r) + b"\n" for r in flat_group_records(groups)])
