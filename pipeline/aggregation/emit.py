"""Emission: one OTLP metrics request from the snapshots of a flush.

One `ResourceMetrics` per distinct resource (i.e. per `service.name`), one
metric per `MetricSpec` and resource, one data point per series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline import __version__
from pipeline.aggregation.series import Attrs, Exemplar, to_key_values
from pipeline.aggregation.store import SeriesSet, Snapshot, Temporality
from pipeline.pdata.pacing import paced


@dataclass
class MetricSpec:
    """How one OTLP metric is rendered from a series set.

    kind: `sum` (SumSeries), `gauge` (GaugeSeries), `count` (a monotonic int sum of
    a histogram set's observation counts), `histogram`, `exponential_histogram`.
    Recorded values are divided by `divisor` to get the emitted unit (ns → s:
    1e9); `bounds` are the emitted explicit bounds (already in that unit).
    """

    name: str
    kind: str
    series: SeriesSet
    description: str = ""
    unit: str = ""
    monotonic: bool = True
    integer: bool = False
    divisor: float = 1.0
    bounds: tuple[float, ...] = ()


async def build_request(specs: Sequence[MetricSpec], snapshots: dict[int, Snapshot], now: int,
                        scope_name: str) -> tuple[ExportMetricsServiceRequest, int]:
    """One request, one ResourceMetrics per distinct resource; returns (request, points).

    In slices (`paced`, ≈ 20 µs a point): reads only the frozen snapshot and what a
    series never changes (attributes, resource, start), so data arriving meanwhile
    does not show."""
    req = ExportMetricsServiceRequest()
    scopes: dict[Attrs, Any] = {}
    points = 0
    for spec in specs:
        snap = snapshots[id(spec.series)]
        if not snap.points:
            continue
        containers: dict[Attrs, Any] = {}
        delta = spec.series.delta
        temporality = (Temporality.DELTA if delta else Temporality.CUMULATIVE).otlp
        div = spec.divisor
        kind = spec.kind
        async for s, frozen in paced(snap.points):
            res = s.resource
            container = containers.get(res)
            if container is None:
                sm = scopes.get(res)
                if sm is None:
                    rm = req.resource_metrics.add()
                    rm.resource.attributes.extend(to_key_values(res))
                    sm = scopes[res] = rm.scope_metrics.add()
                    sm.scope.name = scope_name
                    sm.scope.version = __version__
                m = sm.metrics.add(name=spec.name, description=spec.description, unit=spec.unit)
                if kind in ("sum", "count"):
                    container = m.sum
                    container.is_monotonic = spec.monotonic
                    container.aggregation_temporality = temporality
                elif kind == "gauge":
                    container = m.gauge
                elif kind == "histogram":
                    container = m.histogram
                    container.aggregation_temporality = temporality
                else:
                    container = m.exponential_histogram
                    container.aggregation_temporality = temporality
                containers[res] = container
            dp = container.data_points.add()
            dp.attributes.extend(s.key_values())
            dp.time_unix_nano = now
            if kind != "gauge":
                dp.start_time_unix_nano = snap.start if delta else s.start
            points += 1
            if kind == "count":
                dp.as_int = frozen[0] if isinstance(frozen, tuple) else frozen.count
            elif kind in ("sum", "gauge"):
                if spec.integer:
                    dp.as_int = int(frozen[0] / div)
                else:
                    dp.as_double = frozen[0] / div
            elif kind == "histogram":
                count, total, buckets, exemplars = frozen
                dp.count = count
                dp.sum = total / div
                dp.explicit_bounds.extend(spec.bounds)
                dp.bucket_counts.extend(buckets)
                _add_exemplars(dp, exemplars, div)
            else:
                dp.count = frozen.count
                dp.sum = frozen.sum / div
                dp.scale = frozen.scale
                dp.zero_count = frozen.zero_count
                if frozen.counts:
                    lo, hi = min(frozen.counts), max(frozen.counts)
                    dp.positive.offset = lo
                    get = frozen.counts.get
                    dp.positive.bucket_counts.extend(get(i, 0) for i in range(lo, hi + 1))
                _add_exemplars(dp, frozen.exemplars, div)
    return req, points


def _add_exemplars(dp: Any, exemplars: Iterable[Exemplar], divisor: float) -> None:
    for trace_id, span_id, value, time_ns in exemplars:
        ex = dp.exemplars.add()
        ex.time_unix_nano = time_ns
        ex.as_double = value / divisor
        if trace_id:
            ex.trace_id = trace_id
        if span_id:
            ex.span_id = span_id
