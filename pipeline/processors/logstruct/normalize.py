"""Normalisation of parsed fields: what each field name becomes in the record.

Every parser hands its fields to a `Normalizer`, which decides per field name
(after the `rename` map and, with `semconv: true`, the semantic-convention
map, see `semconv.py`) what the field becomes:

- `timestamp`, `time`, `ts`, `@timestamp`, `datetime` -> `time_unix_nano`
  (first parseable one wins; an unparseable value stays an attribute; formats
  in `timestamps.py`);
- `level`, `severity`, `lvl`, `loglevel`, `log.level` -> `severity_number` / `severity_text`;
- `message`, `msg` -> the body;
- `trace_id`, `traceId`, `trace.id`, `traceid` (32 hex digits), `span_id`,
  `spanId`, `span.id`, `spanid` (16 hex digits), `trace_flags`, and a W3C
  `traceparent` -> the record's trace context (invalid ids stay attributes);
- `request`, `request_uri`, `uri`, `url` when it is a request target
  (`/path?query`) -> `url.path` and `url.query`;
- anything else -> an attribute, renamed by `SEMCONV` (`status` ->
  `http.response.status_code` as an int, `client_ip` -> `client.address` …).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pipeline.pdata.logfields import MAX_INT_DIGITS
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.semconv import (
    ATTR,
    BODY,
    DASH_MEANS_NONE,
    DEFAULT_SEMCONV,
    FLAGS,
    INT_ATTRS,
    LEVEL,
    ROLE_KEYS,
    SPAN,
    TARGET,
    TIME,
    TRACE,
    TRACEPARENT,
    Plan,
)
from pipeline.processors.logstruct.severity import level_of
from pipeline.processors.logstruct.timestamps import TimeParser
from pipeline.processors.logstruct.tracecontext import (
    ZERO_SPAN,
    ZERO_TRACE,
    hex_id,
    trace_flags,
    traceparent,
)

__all__ = ["Normalizer"]

_PLANS_MAX = 10_000


class Normalizer:
    """Maps field names to what they become; one per parser configuration."""

    def __init__(self, times: TimeParser, *, semconv: bool = True,
                 rename: dict[str, str] | None = None):
        self.times = times
        names = dict(DEFAULT_SEMCONV) if semconv else {}
        names.update(rename or {})
        self.names = names
        self.plans: dict[str, Plan] = {}
        # `put` of a field with a role, indexed by role: True when the value took the
        # role, False when it stays an attribute.
        by_role: dict[int, Callable[[Record, Any], bool]] = {
            TIME: self._put_time, LEVEL: self._put_level, BODY: self._put_body,
            TRACE: self._put_trace, SPAN: self._put_span, FLAGS: self._put_flags,
            TRACEPARENT: self._put_traceparent, TARGET: self._put_target}
        self._roles = tuple(by_role[r] for r in range(len(by_role)))

    def plan(self, key: str) -> Plan:
        """How a field name is handled (see `Plan`)."""
        p = self.plans.get(key)
        if p is None:
            name = self.names.get(key, key)
            role = ROLE_KEYS.get(name, ATTR)
            is_int = name in INT_ATTRS
            p = (role, name, is_int, key,
                 role == ATTR and not is_int and name not in DASH_MEANS_NONE)
            if len(self.plans) < _PLANS_MAX:  # JSON keys are unbounded: bound the cache
                self.plans[key] = p
        return p

    def fill(self, rec: Record, items: Iterable[tuple[str, Any]]) -> None:  # noqa: C901 - hot path, inlined on purpose
        """`put` for every (field name, value), with the common cases inlined (this loop
        is most of the cost of a JSON or logfmt line): plain attributes, time, level,
        message, trace and span ids, numbers. `None` values are left out."""
        plans = self.plans
        put = self.put
        attrs = rec.attrs
        fromhex = bytes.fromhex
        for k, v in items:
            try:
                p = plans[k]
            except KeyError:
                p = self.plan(k)
            tv = type(v)
            if p[4]:  # an attribute stored as it is
                if tv is str or tv is int or tv is float or tv is bool:
                    attrs[p[1]] = v
                elif v is not None:
                    put(rec, p, v)  # a container keeps its own key
                continue
            role = p[0]
            if role == TIME:
                if not rec.time:
                    ns = self.times.parse(v)
                    if ns is not None:
                        rec.time = ns
                        continue
            elif role == LEVEL:
                if rec.sev_text is None:
                    sev = level_of(v)
                    if sev is not None:
                        rec.sev_num, rec.sev_text = sev
                        continue
            elif role == BODY:
                if rec.body is None:
                    if v is not None:
                        rec.body = v
                    continue
            elif role == TRACE:  # hex_id(v, 16), inlined
                if not rec.trace_id and tv is str and len(v) == 32:
                    try:
                        b = fromhex(v)
                    except ValueError:
                        b = b""
                    if len(b) == 16 and b != ZERO_TRACE:
                        rec.trace_id = b
                        continue
            elif role == SPAN:  # hex_id(v, 8), inlined
                if not rec.span_id and tv is str and len(v) == 16:
                    try:
                        b = fromhex(v)
                    except ValueError:
                        b = b""
                    if len(b) == 8 and b != ZERO_SPAN:
                        rec.span_id = b
                        continue
            elif role == ATTR and (tv is int or tv is float or tv is bool):
                attrs[p[1]] = v  # what put() does with a number
                continue
            elif v is not None:
                put(rec, p, v)
                continue
            if v is not None:  # not usable for its role: an attribute
                attrs[p[1]] = v

    def field(self, rec: Record, key: str, value: Any) -> None:
        """`put` by field name."""
        p = self.plans.get(key)
        self.put(rec, self.plan(key) if p is None else p, value)

    def put(self, rec: Record, plan: Plan, value: Any) -> None:
        """Give `value` its role in `rec`, or store it as an attribute: renamed, `-` left
        out where it means "no value", numeric text of an int attribute converted."""
        role = plan[0]
        if role == ATTR:
            name = plan[1]
            tv = type(value)
            if tv is dict or tv is list:
                name = plan[3]  # semconv names are for scalars: a container keeps its key
            elif tv is str:
                if value == "-" and name in DASH_MEANS_NONE:
                    return  # "no value" in access logs
                if plan[2] and value.isdigit() and len(value) <= MAX_INT_DIGITS \
                        and value.isascii():
                    value = int(value)  # longer digit runs stay text (int-string limit)
            rec.attrs[name] = value
        elif not self._roles[role](rec, value) and value is not None:
            rec.attrs[plan[1]] = value  # not usable for its role: keep it as an attribute

    # -- one role each -------------------------------------------------------------------

    def _put_time(self, rec: Record, value: Any) -> bool:
        if not rec.time:
            ns = self.times.parse(value)
            if ns is not None:
                rec.time = ns
                return True
        return False

    @staticmethod
    def _put_level(rec: Record, value: Any) -> bool:
        if rec.sev_text is None:
            sev = level_of(value)
            if sev is not None:
                rec.sev_num, rec.sev_text = sev
                return True
        return False

    @staticmethod
    def _put_body(rec: Record, value: Any) -> bool:
        if rec.body is None:
            rec.body = value
            return True
        return False

    @staticmethod
    def _put_trace(rec: Record, value: Any) -> bool:
        if not rec.trace_id:
            tid = hex_id(value, 16)
            if tid is not None:
                rec.trace_id = tid
                return True
        return False

    @staticmethod
    def _put_span(rec: Record, value: Any) -> bool:
        if not rec.span_id:
            sid = hex_id(value, 8)
            if sid is not None:
                rec.span_id = sid
                return True
        return False

    @staticmethod
    def _put_flags(rec: Record, value: Any) -> bool:
        if rec.flags < 0:
            flags = trace_flags(value)
            if flags is not None:
                rec.flags = flags
                return True
        return False

    @staticmethod
    def _put_traceparent(rec: Record, value: Any) -> bool:
        if not rec.trace_id and type(value) is str:
            ctx = traceparent(value)
            if ctx is not None:
                rec.trace_id, rec.span_id, rec.flags = ctx
                return True
        return False

    def _put_target(self, rec: Record, value: Any) -> bool:
        """A request target `/path?query` -> the path and query attributes."""
        if type(value) is str and value[:1] == "/":
            path, q, query = value.partition("?")
            names = self.names
            rec.attrs[names.get("path", "path")] = path
            if q:
                rec.attrs[names.get("query", "query")] = query
            return True
        return False
