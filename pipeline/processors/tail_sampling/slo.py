"""The `slo` policy's span classifier: does a span count against an SLO?

An SLO of the `slo` connector is defined over the RED metrics the `redmetrics`
connector derives from spans (`pipeline.slo.model`): its indicator's selectors
name `traces.span.metrics.calls` (availability: `status.code` STATUS_CODE_ERROR is
bad) or `traces.span.metrics.duration` (latency: good is `lte` a threshold in
seconds), with `match`: values of the RED dimensions — `service.name`,
`span.name`, `span.kind` (`SPAN_KIND_SERVER` ...), `status.code`
(`STATUS_CODE_ERROR` ...) — or of span / resource attributes.

This module reads those same definitions per span: a span is an *event* of an
SLO when its `total` selector matches, and a *bad* event when the `bad`
selector matches or the `good` selector does not (the observation compared
with `op value` is 1 for the calls counter and the span's duration in seconds
for the duration histogram). SLOs over other metrics (httpcheck probes,
replication lag gauges) have no spans: naming one is a config error; with no
names they are skipped.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.pdata.anyvalue import any_value_to_python, label_text
from pipeline.slo.model import (
    DEFAULT_RED_CALLS,
    DEFAULT_RED_DURATION,
    SLO,
    Selector,
)

SPAN_KINDS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
              "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
STATUS_NAMES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
SPAN_METRICS = (DEFAULT_RED_CALLS, DEFAULT_RED_DURATION)
HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge,
    "eq": operator.eq, "ne": operator.ne}


def span_slos(slos: Sequence[SLO], named: bool) -> list[SLO]:
    """The SLOs whose events are spans; with `named`, every one must be."""
    out = []
    for s in slos:
        ok = all(sel.metric in SPAN_METRICS for _, sel in s.indicator.selectors())
        if ok:
            out.append(s)
        elif named:
            raise ValueError(f"SLO {s.name!r} counts {s.indicator.total.metric}, not spans: "
                             "the slo policy classifies spans (RED availability and latency "
                             "SLOs)")
    if not out:
        raise ValueError("none of these SLOs is defined over spans (RED metrics)")
    return out


class _Sel:
    __slots__ = ("match", "op", "value")

    def __init__(self, sel: Selector):
        self.match = tuple(sel.match.items())
        self.op = _OPS[sel.op] if sel.op is not None else None
        # Thresholds on time units are in seconds, as the span duration given to matches().
        self.value = sel.value

    def matches(self, dims: Callable[[str], str | None], observation: float) -> bool:
        for k, v in self.match:
            if dims(k) != v:
                return False
        if self.op is not None:
            assert self.value is not None
            return self.op(observation, self.value)
        return True


class _Rule:
    __slots__ = ("bad", "duration", "good", "name", "total")

    def __init__(self, slo: SLO):
        ind = slo.indicator
        self.name = slo.name
        self.total = _Sel(ind.total)
        self.good = _Sel(ind.good) if ind.good is not None else None
        self.bad = _Sel(ind.bad) if ind.bad is not None else None
        self.duration = ind.total.metric == DEFAULT_RED_DURATION


class SpanClassifier:
    """Tells whether a span is a bad event of any of the SLOs."""

    def __init__(self, slos: Sequence[SLO], http_5xx: bool = False):
        self.rules = [_Rule(s) for s in slos]
        self.http_5xx = http_5xx
        keys: set[str] = set()
        for r in self.rules:
            for sel in (r.total, r.good, r.bad):
                if sel is not None:
                    keys.update(k for k, _ in sel.match)
        self.keys = frozenset(keys - {"service.name", "span.name", "span.kind", "status.code"})

    def bad(self, span: Any, resource_attrs: dict[str, str]) -> str | None:
        """The name of the first SLO this span counts against, or None."""
        attrs: dict[str, str] | None = None
        code = span.status.code
        status = code if 0 <= code < 3 else 0

        def dims(key: str) -> str | None:
            nonlocal attrs
            if key == "span.name":
                return str(span.name)
            if key == "span.kind":
                k = span.kind
                return SPAN_KINDS[k] if 0 <= k < len(SPAN_KINDS) else SPAN_KINDS[0]
            if key == "status.code":
                return STATUS_NAMES[self._status(span, status)]
            if attrs is None:
                attrs = {}
                want = self.keys
                if want:
                    for kv in span.attributes:
                        if kv.key in want:
                            attrs[kv.key] = label_text(any_value_to_python(kv.value))
            v = attrs.get(key)
            return v if v is not None else resource_attrs.get(key)

        seconds = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
        for r in self.rules:
            obs = seconds if r.duration else 1.0
            if not r.total.matches(dims, obs):
                continue
            if r.bad is not None and r.bad.matches(dims, obs):
                return r.name
            if r.good is not None and not r.good.matches(dims, obs):
                return r.name
        return None

    def _status(self, span: Any, status: int) -> int:
        if status == 0 and self.http_5xx:
            for kv in span.attributes:
                if kv.key in HTTP_STATUS_KEYS:
                    try:
                        if int(any_value_to_python(kv.value)) >= 500:
                            return 2
                    except (TypeError, ValueError):
                        pass
        return status

    def resource_keys(self) -> frozenset[str]:
        """Resource attributes the selectors may read (service.name and the match keys)."""
        return self.keys | {"service.name"}
