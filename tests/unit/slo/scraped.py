"""The app's vital signs as the `prometheus` receiver hands them over, for SLO tests.

Names, labels and shapes of `tests/apps/promapp.py` scraped by the `prometheus`
receiver: gauges `db_pool_size`, `db_pool_checked_out` {pool}; cumulative monotonic
sums `cache_hits_total`, `cache_misses_total` {cache}, `http_requests_total`,
`rate_limit_rejections_total` {route}, started at their first sample (start time =
time of the first point); resource `service.name` = job, `service.instance.id` =
instance. `stale()` is a staleness marker (NO_RECORDED_VALUE).
"""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from tests.unit.slo.sim import Clock, kv

NO_RECORDED_VALUE = 1
CUMULATIVE = 2


class App:
    """Counters and gauges of one scraped target."""

    def __init__(self, clock: Clock, job: str = "api", instance: str = "127.0.0.1:8000"):
        self.clock = clock
        self.job, self.instance = job, instance
        self.gauges: dict[tuple[str, str, str], float | None] = {}
        self.counters: dict[tuple[str, str, str], tuple[int, float]] = {}

    def set(self, name: str, label: str, value: str, v: float | None) -> None:
        """A gauge value (None: gone, a staleness marker is sent once)."""
        self.gauges[(name, label, value)] = v

    def inc(self, name: str, label: str, value: str, by: float) -> None:
        start, v = self.counters.get((name, label, value), (self.clock(), 0.0))
        self.counters[(name, label, value)] = (start, v + by)

    def pool(self, checked_out: float, size: float = 20, pool: str = "main") -> None:
        self.set("db_pool_checked_out", "pool", pool, checked_out)
        self.set("db_pool_size", "pool", pool, size)

    def request(self) -> ExportMetricsServiceRequest:
        now = self.clock()
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        rm.resource.attributes.extend([kv("service.name", self.job),
                                       kv("service.instance.id", self.instance)])
        sm = rm.scope_metrics.add()
        sm.scope.name = "otelpipe/prometheus"
        metrics: dict[str, object] = {}
        for (name, label, value), v in sorted(self.gauges.items(),
                                              key=lambda x: x[0]):
            m = metrics.get(name)
            if m is None:
                m = metrics[name] = sm.metrics.add(name=name)
            dp = m.gauge.data_points.add(time_unix_nano=now)  # type: ignore[attr-defined]
            dp.attributes.append(kv(label, value))
            if v is None:
                dp.flags = NO_RECORDED_VALUE
            else:
                dp.as_double = v
        self.gauges = {k: v for k, v in self.gauges.items() if v is not None}
        for (name, label, value), (start, v) in sorted(self.counters.items()):
            m = metrics.get(name)
            if m is None:
                m = metrics[name] = sm.metrics.add(name=name)
                m.sum.is_monotonic = True
                m.sum.aggregation_temporality = CUMULATIVE
            dp = m.sum.data_points.add(  # type: ignore[attr-defined]
                start_time_unix_nano=start, time_unix_nano=now, as_double=v)
            dp.attributes.append(kv(label, value))
        return req

    def batch(self) -> Batch:
        return Batch(Signal.METRICS, message=self.request())
