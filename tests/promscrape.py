"""Helpers for the prometheus receiver's tests: decode what it emits into plain
points, and run a TargetState over an exposition body."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.receivers.prometheus.config import RelabelConfig
from pipeline.receivers.prometheus.otlpmetrics import ScrapeResult, resource_metrics
from pipeline.receivers.prometheus.relabel import compile_rules
from pipeline.receivers.prometheus.target import TargetState

NO_RECORDED_VALUE = 1


@dataclass
class Point:
    resource: dict[str, str]
    name: str
    kind: str                       # gauge, sum, histogram, summary
    attrs: dict[str, str]
    value: float | None = None      # number points
    start: int = 0
    time: int = 0
    flags: int = 0
    monotonic: bool = False
    count: int = 0
    sum: float = 0.0
    buckets: list[int] = field(default_factory=list)
    bounds: list[float] = field(default_factory=list)
    quantiles: list[tuple[float, float]] = field(default_factory=list)
    exemplars: list[Any] = field(default_factory=list)
    description: str = ""
    unit: str = ""

    @property
    def stale(self) -> bool:
        return bool(self.flags & NO_RECORDED_VALUE)


def _attrs(kvs: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


def points(raw: bytes | ExportMetricsServiceRequest) -> list[Point]:
    if isinstance(raw, bytes | bytearray):
        req = ExportMetricsServiceRequest()
        req.ParseFromString(bytes(raw))
    else:
        req = raw
    out: list[Point] = []
    for rm in req.resource_metrics:
        res = _attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                common = {"resource": res, "name": m.name, "kind": kind,
                          "description": m.description, "unit": m.unit}
                if kind in ("gauge", "sum"):
                    data = getattr(m, kind)
                    for dp in data.data_points:
                        out.append(Point(**common, attrs=_attrs(dp.attributes),
                                         value=dp.as_double, start=dp.start_time_unix_nano,
                                         time=dp.time_unix_nano, flags=dp.flags,
                                         monotonic=kind == "sum" and m.sum.is_monotonic,
                                         exemplars=list(dp.exemplars)))
                elif kind == "histogram":
                    for hp in m.histogram.data_points:
                        out.append(Point(**common, attrs=_attrs(hp.attributes),
                                         start=hp.start_time_unix_nano,
                                         time=hp.time_unix_nano, flags=hp.flags,
                                         count=hp.count, sum=hp.sum,
                                         buckets=list(hp.bucket_counts),
                                         bounds=list(hp.explicit_bounds),
                                         exemplars=list(hp.exemplars)))
                elif kind == "summary":
                    for sp in m.summary.data_points:
                        out.append(Point(**common, attrs=_attrs(sp.attributes),
                                         start=sp.start_time_unix_nano,
                                         time=sp.time_unix_nano, flags=sp.flags,
                                         count=sp.count, sum=sp.sum,
                                         quantiles=[(q.quantile, q.value)
                                                    for q in sp.quantile_values]))
    return out


def batch_points(batches: list[Any]) -> list[Point]:
    return [p for b in batches for p in points(b.to_bytes())]


def state(*, labels: dict[str, str] | None = None, rules: list[dict[str, Any]] | None = None,
          honor_labels: bool = False, honor_timestamps: bool = True, sample_limit: int = 0,
          max_series: int = 1_000_000) -> TargetState:
    return TargetState(
        target_labels=labels if labels is not None else {"job": "app", "instance": "h:1"},
        rules=compile_rules([RelabelConfig.model_validate(r) for r in rules or []]),
        honor_labels=honor_labels, honor_timestamps=honor_timestamps,
        sample_limit=sample_limit, max_series=max_series)


def scrape(st: TargetState, body: str, now_ns: int, *, om: bool = False
           ) -> tuple[ScrapeResult, list[Point]]:
    lines = body.split("\n")
    st.begin(om)
    i = 0
    while i < len(lines) and not st.eof:
        i = st.feed(lines, i, len(lines), now_ns)
    st.encode(0, st.touched)
    res = st.finish(now_ns)
    return res, points(resource_metrics([("service.name", "app")], res))


def by_name(pts: list[Point], name: str) -> list[Point]:
    return [p for p in pts if p.name == name]


def one(pts: list[Point], name: str, **attrs: str) -> Point:
    found = [p for p in pts if p.name == name and all(p.attrs.get(k) == v
                                                       for k, v in attrs.items())]
    assert len(found) == 1, (name, attrs, [(p.name, p.attrs) for p in pts if p.name == name])
    return found[0]
