"""A simulated clock and the metrics otelpipe's sources emit, for SLO tests.

`RedTraffic` keeps cumulative counters the way the `redmetrics` connector
does (one series per status code, created when its first span arrives, with
that time as its start time) and renders them as a real OTLP metrics batch.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.component import Signal
from pipeline.pdata.batch import Batch

# A day boundary (so hour and day buckets line up with the simulation).
T0_S = 19675 * 86400
T0 = T0_S * 1_000_000_000
MINUTE = 60
HOUR = 3600
DAY = 86400
BOUNDS = (0.05, 0.1, 0.2, 0.5, 1.0)
CUMULATIVE = 2


class Clock:
    def __init__(self, start_ns: int = T0):
        self.ns = start_ns

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)

    @property
    def s(self) -> float:
        return self.ns / 1e9


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


class _Series:
    def __init__(self, start_ns: int):
        self.start = start_ns
        self.calls = 0
        self.buckets = [0] * (len(BOUNDS) + 1)


class RedTraffic:
    """Cumulative `traces.span.metrics.calls` / `.duration` of one service."""

    def __init__(self, clock: Clock, service: str = "api"):
        self.clock = clock
        self.service = service
        self.series: dict[str, _Series] = {}

    def requests(self, n: int, errors: int = 0, slow: int = 0) -> None:
        """n requests: `errors` of them errors, `slow` of them (non-errors) take 0.3 s
        (over 200 ms, under 500 ms); the rest 0.08 s."""
        ok = n - errors
        if ok:
            s = self._get("STATUS_CODE_UNSET")
            s.calls += ok
            s.buckets[3] += slow  # (0.2, 0.5]
            s.buckets[1] += ok - slow  # (0.05, 0.1]
        if errors:
            s = self._get("STATUS_CODE_ERROR")
            s.calls += errors
            s.buckets[1] += errors

    def _get(self, code: str) -> _Series:
        s = self.series.get(code)
        if s is None:
            s = self.series[code] = _Series(self.clock())
        return s

    def restart(self) -> None:
        """The source restarted: counters start again from 0 with new start times."""
        self.series = {}

    def request(self) -> ExportMetricsServiceRequest:
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        rm.resource.attributes.append(kv("service.name", self.service))
        sm = rm.scope_metrics.add()
        sm.scope.name = "otelpipe/redmetrics"
        calls = sm.metrics.add(name="traces.span.metrics.calls")
        calls.sum.is_monotonic = True
        calls.sum.aggregation_temporality = CUMULATIVE
        duration = sm.metrics.add(name="traces.span.metrics.duration", unit="s")
        duration.histogram.aggregation_temporality = CUMULATIVE
        now = self.clock()
        for code, s in self.series.items():
            attrs = [kv("service.name", self.service), kv("span.name", "GET /items"),
                     kv("span.kind", "SPAN_KIND_SERVER"), kv("status.code", code)]
            dp = calls.sum.data_points.add(start_time_unix_nano=s.start, time_unix_nano=now,
                                           as_int=s.calls)
            dp.attributes.extend(attrs)
            h = duration.histogram.data_points.add(start_time_unix_nano=s.start,
                                                   time_unix_nano=now, count=s.calls,
                                                   sum=0.1 * s.calls)
            h.attributes.extend(attrs)
            h.explicit_bounds.extend(BOUNDS)
            h.bucket_counts.extend(s.buckets)
        return req

    def batch(self) -> Batch:
        return Batch(Signal.METRICS, message=self.request())


def gauge_batch(clock: Clock, name: str, points: list[tuple[dict[str, Any], float]],
                unit: str = "", service: str = "otelpipe") -> Batch:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", service))
    m = rm.scope_metrics.add().metrics.add(name=name, unit=unit)
    for attrs, value in points:
        dp = m.gauge.data_points.add(time_unix_nano=clock())
        if isinstance(value, int):
            dp.as_int = value
        else:
            dp.as_double = value
        dp.attributes.extend(kv(k, v) for k, v in attrs.items())
    return Batch(Signal.METRICS, message=req)
