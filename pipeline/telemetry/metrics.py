"""The pipeline's own metrics, served on the health extension's /metrics.

Names follow the Collector's (`otelcol_receiver_accepted_spans` …) with one
`signal` label instead of one metric per signal.

Each component declares the metrics it writes at the top of its own module, as
specs (`FILES_WATCHED = GaugeSpec(...)`), and gets the instrument from the
service's `Telemetry` when it is created (`telemetry.gauge(FILES_WATCHED)`):
get-or-create, so two components of one type share one metric family, and this
module knows no component.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pipeline import __version__


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is: its name (without `_total`), help text and label names."""

    name: str
    documentation: str
    labels: Sequence[str] = ()


@dataclass(frozen=True)
class CounterSpec(MetricSpec):
    pass


@dataclass(frozen=True)
class GaugeSpec(MetricSpec):
    pass


@dataclass(frozen=True)
class HistogramSpec(MetricSpec):
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS


_M = TypeVar("_M", Counter, Gauge, Histogram)


class Telemetry:
    """One registry per service, so tests can run several services in one process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._instruments: dict[str, tuple[MetricSpec, Counter | Gauge | Histogram]] = {}
        ProcessCollector(namespace="otelpipe", registry=r)
        PlatformCollector(registry=r)
        Info("otelpipe_build", "otelpipe build information", registry=r).info(
            {"version": __version__}
        )

    def counter(self, spec: CounterSpec) -> Counter:
        return self._get_or_create(spec, Counter, lambda: Counter(
            spec.name, spec.documentation, list(spec.labels), registry=self.registry))

    def gauge(self, spec: GaugeSpec) -> Gauge:
        return self._get_or_create(spec, Gauge, lambda: Gauge(
            spec.name, spec.documentation, list(spec.labels), registry=self.registry))

    def histogram(self, spec: HistogramSpec) -> Histogram:
        return self._get_or_create(spec, Histogram, lambda: Histogram(
            spec.name, spec.documentation, list(spec.labels), buckets=spec.buckets,
            registry=self.registry))

    def _get_or_create(self, spec: MetricSpec, kind: type[_M], make: Callable[[], _M]) -> _M:
        found = self._instruments.get(spec.name)
        if found is None:
            instrument = make()
            self._instruments[spec.name] = (spec, instrument)
            return instrument
        known, existing = found
        if not isinstance(existing, kind) or _shape(known) != _shape(spec):
            raise ValueError(f"metric {spec.name} declared twice with different shapes: "
                             f"{known} and {spec}")
        return existing

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _shape(spec: MetricSpec) -> tuple[object, ...]:
    buckets = tuple(spec.buckets) if isinstance(spec, HistogramSpec) else ()
    return type(spec), tuple(spec.labels), buckets
