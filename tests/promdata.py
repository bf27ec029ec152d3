"""Builders of OTLP metrics requests and readers of Prometheus text, for the
`prometheus` / `prometheusremotewrite` tests (unit and integration)."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    Metric,
    NumberDataPoint,
)

from tests.support import TIMEOUT, eventually

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def attrs(values: Mapping[str, Any]) -> list[KeyValue]:
    out = []
    for k, v in values.items():
        if isinstance(v, bool):
            av = AnyValue(bool_value=v)
        elif isinstance(v, int):
            av = AnyValue(int_value=v)
        elif isinstance(v, float):
            av = AnyValue(double_value=v)
        else:
            av = AnyValue(string_value=str(v))
        out.append(KeyValue(key=k, value=av))
    return out


def request(metrics: Iterable[Metric], resource: Mapping[str, Any] | None = None,
            scope: str = "", scope_version: str = "") -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(attrs(resource or {}))
    sm = rm.scope_metrics.add()
    sm.scope.name = scope
    sm.scope.version = scope_version
    sm.metrics.extend(metrics)
    return req


def sum_metric(name: str, points: Iterable[tuple[Mapping[str, Any], float]], *, ts: int,
               start: int = 1, unit: str = "", monotonic: bool = True,
               temporality: int = CUMULATIVE, description: str = "",
               exemplar: tuple[float, bytes, bytes] | None = None) -> Metric:
    m = Metric(name=name, unit=unit, description=description)
    m.sum.is_monotonic = monotonic
    m.sum.aggregation_temporality = temporality  # type: ignore[assignment]
    for labels, value in points:
        dp = m.sum.data_points.add(time_unix_nano=ts, start_time_unix_nano=start)
        dp.attributes.extend(attrs(labels))
        if isinstance(value, int):
            dp.as_int = value
        else:
            dp.as_double = value
        if exemplar:
            dp.exemplars.add(as_double=exemplar[0], time_unix_nano=ts, trace_id=exemplar[1],
                             span_id=exemplar[2])
    return m


def gauge_metric(name: str, points: Iterable[tuple[Mapping[str, Any], float]], *, ts: int,
                 unit: str = "", description: str = "", stale: bool = False) -> Metric:
    m = Metric(name=name, unit=unit, description=description)
    for labels, value in points:
        dp: NumberDataPoint = m.gauge.data_points.add(time_unix_nano=ts, as_double=value)
        dp.attributes.extend(attrs(labels))
        if stale:
            dp.flags = 1
    return m


def histogram_metric(name: str, points: Iterable[tuple[Mapping[str, Any], list[int], float]],
                     *, bounds: list[float], ts: int, start: int = 1, unit: str = "s",
                     temporality: int = CUMULATIVE, description: str = "",
                     exemplars: Iterable[tuple[float, bytes, bytes]] = ()) -> Metric:
    m = Metric(name=name, unit=unit, description=description)
    m.histogram.aggregation_temporality = temporality  # type: ignore[assignment]
    exemplars = list(exemplars)
    for labels, counts, total in points:
        assert len(counts) == len(bounds) + 1
        dp = m.histogram.data_points.add(time_unix_nano=ts, start_time_unix_nano=start,
                                         count=sum(counts), sum=total,
                                         explicit_bounds=bounds, bucket_counts=counts)
        dp.attributes.extend(attrs(labels))
        for value, trace_id, span_id in exemplars:
            dp.exemplars.append(Exemplar(as_double=value, time_unix_nano=ts,
                                         trace_id=trace_id, span_id=span_id))
    return m


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(\S+))?')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_text(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a Prometheus text / OpenMetrics body: (name, labels) -> value."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        line = line.split(" # ", 1)[0]  # OpenMetrics exemplar
        m = _SAMPLE.match(line)
        assert m, f"unparsable sample line {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def sample(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float | None:
    """The value of the one sample named `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples.items()
             if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, f"{len(found)} samples match {name} {labels}"
    return found[0] if found else None


class PrometheusServer:
    """The Prometheus started by `scripts/prometheus.sh`: PromQL over the HTTP API and
    file_sd scrape targets."""

    def __init__(self, url: str, state_dir: Path):
        self.url = url
        self.state_dir = state_dir
        self.targets_dir = state_dir / "targets"
        self.remote_write_url = f"{url}/api/v1/write"

    def api(self, path: str, **params: str) -> Any:
        qs = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{qs}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; each result is {"metric": {...}, "value": [ts, "v"]}."""
        return list(self.api("/api/v1/query", query=promql)["result"])

    def values(self, promql: str, by: str) -> dict[str, float]:
        """An instant query's results keyed by the value of label `by`."""
        return {r["metric"].get(by, ""): float(r["value"][1]) for r in self.query(promql)}

    def wait_for(self, promql: str, check: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Polls an instant query until `check(result)` holds and returns the result; fails
        naming the query and the last result (an empty result can satisfy `check`)."""

        def checked() -> tuple[list[dict[str, Any]]]:
            result = self.query(promql)
            assert check(result), f"result {result}"
            return (result,)  # truthy even when the result is []

        (result,) = eventually(checked, timeout=timeout, interval=0.2,
                               what=f"{promql} to satisfy the check")
        return result

    def add_target(self, name: str, port: int, labels: Mapping[str, str] | None = None) -> Path:
        """Scrape 127.0.0.1:port from now on (Prometheus notices within ~1 s)."""
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        path = self.targets_dir / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"],
                                    "labels": dict(labels or {})}]))
        tmp.rename(path)  # atomic: Prometheus never reads half a file
        return path

    def remove_target(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    def scraping(self, port: int) -> bool:
        active = self.api("/api/v1/targets", state="active")["activeTargets"]
        return any(t["scrapeUrl"].startswith(f"http://127.0.0.1:{port}/")
                   and t["health"] == "up" for t in active)
