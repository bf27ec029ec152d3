"""What parsing one line produced (`Record`), and writing it into a log record.

A parser fills a `Record`; the processor then applies it to an OTLP LogRecord
(`write_record`) or to a Python record of `pdata.logrecords` (`apply_record`),
with the same result.
"""

from __future__ import annotations

from typing import Any

from pipeline.pdata.logfields import any_value_dict

__all__ = ["Record", "any_dict", "apply_record", "set_trace_context", "set_value", "write_record"]


class Record:
    """What parsing one line produced, before it is written into the LogRecord."""

    __slots__ = ("attrs", "body", "fallback_time", "flags", "format", "sev_num", "sev_text",
                 "span_id", "time", "trace_id")

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        self.time = 0
        self.fallback_time = 0  # a container wrapper's time, used when the line has none
        self.sev_num = 0
        self.sev_text: str | None = None
        self.body: Any = None  # None: the body stays as it is
        self.trace_id = b""
        self.span_id = b""
        self.flags = -1
        # attribute name -> value (a later one replaces); may be the record's own dict
        self.attrs: dict[str, Any] = {} if attrs is None else attrs
        self.format = ""


# ---------------------------------------------------------------------------------------
# Writing a Record into an OTLP LogRecord

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def any_dict(v: Any) -> dict[str, Any]:
    """OTLP AnyValue (as a dict) of a Python value."""
    return any_value_dict(v, 1, 31)


def write_record(rec: Record, lr: Any) -> None:
    """Apply a parse result to a LogRecord, in place."""
    t = rec.time or rec.fallback_time
    if t:
        lr.time_unix_nano = t
    if rec.sev_text is not None:
        lr.severity_number = rec.sev_num
        lr.severity_text = rec.sev_text
    body = rec.body
    if body is not None:
        if type(body) is str:
            lr.body.string_value = body
        else:
            lr.body.CopyFrom(type(lr.body)(**any_dict(body)))
    if rec.trace_id or rec.span_id:
        set_trace_context(rec, lr)
    if rec.attrs:
        _write_attributes(rec.attrs, lr.attributes)


def set_trace_context(rec: Record, lr: Any) -> None:
    """Trace id, span id and flags of `rec` onto `lr` (OTLP or Python record): the span
    id and flags only with a trace id, or a lone span id."""
    if rec.trace_id:
        lr.trace_id = rec.trace_id
        if rec.span_id:
            lr.span_id = rec.span_id
        if rec.flags >= 0:
            lr.flags = (lr.flags & ~0xFF) | rec.flags
    elif rec.span_id:
        lr.span_id = rec.span_id


def _write_attributes(attrs: dict[str, Any], existing: Any) -> None:
    """Add `attrs` to an OTLP attribute list; a key already there gets the new value."""
    if len(existing):
        by_key: dict[str, Any] = {kv.key: kv for kv in existing}
        if by_key.keys() & attrs.keys():
            for k, v in attrs.items():
                kv = by_key.get(k)
                if kv is None:
                    kv = by_key[k] = existing.add(key=k)
                set_value(kv.value, v)
            return
    add = existing.add
    for k, v in attrs.items():
        tv = type(v)
        if tv is str:
            add(key=k).value.string_value = v
        elif tv is int and _INT64_MIN <= v <= _INT64_MAX:
            add(key=k).value.int_value = v
        else:
            set_value(add(key=k).value, v)


def apply_record(rec: Record, lr: Any) -> None:
    """Apply a parse result to a Python record (pdata.logrecords.LogRecord), in place:
    the same result as `write_record` gives on the record's OTLP encoding."""
    t = rec.time or rec.fallback_time
    if t:
        lr.time_unix_nano = t
    if rec.sev_text is not None:
        lr.severity_number = rec.sev_num
        lr.severity_text = rec.sev_text
    if rec.body is not None:
        lr.body = rec.body
    if rec.trace_id or rec.span_id:
        set_trace_context(rec, lr)
    if rec.attrs:
        lr.attributes.update(rec.attrs)


def set_value(av: Any, v: Any) -> None:
    """Set an OTLP AnyValue to the Python value `v`."""
    tv = type(v)
    if tv is str:
        av.string_value = v
    elif tv is bool:
        av.bool_value = v
    elif tv is int and _INT64_MIN <= v <= _INT64_MAX:
        av.int_value = v
    elif tv is float:
        av.double_value = v
    elif tv is bytes:
        av.bytes_value = v
    else:
        av.CopyFrom(type(av)(**any_dict(v)))
