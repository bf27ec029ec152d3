"""`prometheus` exporter: a scrape endpoint serving the latest state of every series.

```yaml
exporters:
  prometheus:
    endpoint: localhost:8889        # GET /metrics
    namespace: ""                   # prefix of every metric name
    const_labels: {}                # added to every series
    metric_expiration: 5m           # series not updated for this long disappear
    resource_to_telemetry_conversion: {enabled: false}
    target_info: {enabled: true}
    add_scope_labels: true          # otel_scope_name / otel_scope_version
    send_timestamps: false
    max_series: 100000              # cardinality cap; 0: none
```

Translation (names, units, labels, resources, types) is the OpenTelemetry
Prometheus compatibility spec, implemented in `pipeline.pdata.prometheus`.
Cumulative points are stored as they arrive; delta sums and histograms are
added up into cumulative series (the first delta point starts the series).
A series not updated for `metric_expiration` disappears from the scrape (and
Prometheus marks it stale); so does a series whose data point carries the
NO_RECORDED_VALUE flag.

The scrape negotiates the format on `Accept`: OpenMetrics 1.0
(`application/openmetrics-text`, what Prometheus asks for first), with
exemplars (trace_id, span_id) on histogram buckets and counters, or the
Prometheus text format 0.0.4. Both are rendered by prometheus_client from
metric families this exporter builds; a rendering is cached until the
series change. `Accept-Encoding: gzip` is honoured.

Cardinality: at most `max_series` series are held (default 100,000). A point
of a new series beyond that goes to its metric's one overflow series, labelled
`otel_metric_overflow="true"` (as the connectors' `otel.metric.overflow`),
whose value counts the points that did not fit (the `_count` of a histogram or
summary); a metric that holds no series at all when the limit is reached is
dropped. Both are counted in `otelpipe_prometheus_exporter_overflow_points`,
and the first overflow is logged. Expired series make room again. The
default: about 0.8 KB of memory per series (1.6 GB measured for 2M) and about
6 µs of rendering per series, so 100,000 series hold under 100 MB and render
in well under a second -- far inside Prometheus' default 10 s scrape timeout --
while a runaway label (a user id, a URL) stops there instead of growing the
process and every scrape without bound. Memory and the scrape body are then
bounded by `max_series` times the size of a series' labels.

Delivery: a batch counts as delivered once its points are in memory; this
exporter holds state, not a queue, so there is nothing to retry. A restart
loses the state (Prometheus sees counter resets, which `rate()` handles).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.samples import Timestamp
from pydantic import Field, field_validator

from pipeline.component import ComponentConfig, ExporterCreateSettings, Factory, Host, Kind, Signal
from pipeline.config.prometheus import Enabled, TargetInfo
from pipeline.config.types import Duration, Endpoint
from pipeline.exporterhelper import Exporter
from pipeline.pdata.batch import Batch
from pipeline.pdata.prometheus.accumulator import Accumulator
from pipeline.pdata.prometheus.names import COUNTER, HISTOGRAM
from pipeline.pdata.prometheus.series import Exemplar, Series, flat_samples
from pipeline.pdata.prometheus.translate import translator_for
from pipeline.receiverhelper.http import HTTPServer
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

if TYPE_CHECKING:
    from aiohttp import web

SERIES = GaugeSpec(
    "otelpipe_prometheus_exporter_series",
    "Series a prometheus exporter currently serves.", ("exporter",))

EXPIRED_SERIES = CounterSpec(
    "otelpipe_prometheus_exporter_expired_series",
    "Series dropped because they were not updated for metric_expiration.",
    ("exporter",))

DROPPED_POINTS = CounterSpec(
    "otelpipe_prometheus_exporter_dropped_points",
    "Data points ignored: older than the point held for their series, or of another "
    "type than the metric family's first series.", ("exporter",))

OVERFLOW_POINTS = CounterSpec(
    "otelpipe_prometheus_exporter_overflow_points",
    "Data points of new series beyond max_series: counted in their metric's overflow "
    "series (otel_metric_overflow=\"true\"), or dropped when the metric held no series.",
    ("exporter",))

# A safe default: < 100 MB and < 1 s per scrape (see the module docstring).
DEFAULT_MAX_SERIES = 100_000
# OpenMetrics: an exemplar's label set is at most 128 UTF-8 characters.
MAX_EXEMPLAR_LABEL_CHARS = 128
# Scrapes of more series than this are rendered in a worker thread.
RENDER_INLINE_SERIES = 500


class PrometheusConfig(ComponentConfig):
    endpoint: Endpoint = Field("localhost:8889", description="address of the scrape endpoint")
    path: str = Field("/metrics", description="HTTP path of the scrape endpoint")
    namespace: str = Field("", description="prefix of every metric name (`namespace_name`)")
    const_labels: dict[str, str] = Field(default_factory=dict,
                                         description="labels added to every series")
    metric_expiration: Duration = Field(
        300.0, description="series not updated for this long disappear; 0 keeps them forever")
    resource_to_telemetry_conversion: Enabled = Field(
        default_factory=Enabled,
        description="put every resource attribute on every series as a label")
    target_info: TargetInfo = Field(
        default_factory=TargetInfo,
        description="one target_info series per resource with its non-identifying attributes")
    add_scope_labels: bool = Field(True, description="add otel_scope_name / otel_scope_version")
    send_timestamps: bool = Field(False, description="write each sample's OTLP timestamp")
    max_series: int = Field(
        DEFAULT_MAX_SERIES, ge=0,
        description="most series held; points of further series go to one overflow series "
                    "per metric (otel_metric_overflow=\"true\"); 0: no limit")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must start with /")
        return v


def _prom_exemplar(e: Exemplar | None) -> PromExemplar | None:
    if e is None:
        return None
    labels = dict(e.labels)
    if sum(len(k) + len(v) for k, v in labels.items()) > MAX_EXEMPLAR_LABEL_CHARS:
        labels = {k: v for k, v in labels.items() if k in ("trace_id", "span_id")}
    return PromExemplar(labels, e.value, e.timestamp_ns / 1e9 if e.timestamp_ns else None)


class SeriesCollector:
    """A prometheus_client collector yielding a snapshot of series as metric families.

    Series objects are never changed once stored (the accumulator replaces them),
    so a snapshot can be rendered in a worker thread while the event loop goes on."""

    def __init__(self, series: list[Series], send_timestamps: bool):
        self.series = series
        self.send_timestamps = send_timestamps

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for s in sorted(self.series, key=lambda s: s.key):
            fam = families.get(s.family)
            if fam is None:
                fam = families[s.family] = Metric(s.family, s.help, s.kind, s.unit)
            self._add(fam, s)
        yield from families.values()

    def _add(self, fam: Metric, s: Series) -> None:
        ts = Timestamp(s.timestamp_ns // 1_000_000_000, s.timestamp_ns % 1_000_000_000) \
            if self.send_timestamps else None
        exemplars = s.kind in (COUNTER, HISTOGRAM)
        for name, labels, value, ex in flat_samples(s):
            fam.add_sample(name, dict(labels), value, ts,
                           _prom_exemplar(ex) if exemplars else None)


class PrometheusExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: PrometheusConfig,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(settings)
        self.config = config
        self.translator = translator_for(config)
        self.acc = Accumulator(config.metric_expiration, clock, config.max_series)
        self._cache: dict[str, tuple[int, bytes]] = {}  # content type -> (version, body)
        self._next_expiry = 0.0
        self._server: HTTPServer | None = None
        t = settings.telemetry
        self._series_gauge = t.gauge(SERIES).labels(self.id)
        self._expired = t.counter(EXPIRED_SERIES).labels(self.id)
        self._dropped = t.counter(DROPPED_POINTS).labels(self.id)
        self._overflow = t.counter(OVERFLOW_POINTS).labels(self.id)
        self._overflow_logged = False

    async def start_exporter(self, host: Host) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get(self.config.path, self._handle)
        self._server = HTTPServer(app, self.config.endpoint, self.log)
        await self._server.start()

    async def shutdown_exporter(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def send(self, batch: Batch) -> None:
        self.consume_request(batch.message)

    def consume_request(self, request: Any) -> None:
        """Store every point of an OTLP metrics request."""
        acc = self.acc
        add = acc.add
        dropped = 0
        overflow, overflow_dropped = acc.overflow_points, acc.overflow_dropped
        for s in self.translator.series(request):
            if add(s) is None:
                dropped += 1
        if acc.overflow_points != overflow:
            self._note_overflow(acc.overflow_points - overflow)
            dropped -= acc.overflow_dropped - overflow_dropped
        if dropped:
            self._dropped.inc(dropped)
        # Expire on the data path too (at most every tenth of the expiration), so
        # churning series do not pile up in memory while nobody scrapes.
        now = self.acc.clock()
        if now >= self._next_expiry:
            self._next_expiry = now + max(self.config.metric_expiration / 10, 1.0)
            self._expire()
        self._series_gauge.set(len(self.acc))

    def _note_overflow(self, points: int) -> None:
        self._overflow.inc(points)
        if not self._overflow_logged:
            self._overflow_logged = True
            self.log.warning("max_series reached: points of further series go to their "
                             "metric's overflow series (otel_metric_overflow=\"true\")",
                             extra={"max_series": self.config.max_series})

    def _expire(self) -> None:
        expired = self.acc.expire()
        if expired:
            self._expired.inc(expired)
            self._series_gauge.set(len(self.acc))

    def _prepare(self, accept: str) -> tuple[bytes | None, Callable[[Any], bytes], str]:
        """Expire, negotiate the format; the cached body if nothing changed since."""
        self._expire()
        encoder, content_type = choose_encoder(accept)
        cached = self._cache.get(content_type)
        if cached is not None and cached[0] == self.acc.version:
            return cached[1], encoder, content_type
        return None, encoder, content_type

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type for an `Accept` header."""
        body, encoder, content_type = self._prepare(accept)
        if body is None:
            version = self.acc.version
            body = encoder(SeriesCollector(list(self.acc.values()), self.config.send_timestamps))
            self._cache[content_type] = (version, body)
        return body, content_type

    async def render_async(self, accept: str = "") -> tuple[bytes, str]:
        """As `render`; large scrapes are rendered in a worker thread (≈10 µs per
        sample), so receivers keep answering meanwhile."""
        body, encoder, content_type = self._prepare(accept)
        if body is None:
            version = self.acc.version
            collector = SeriesCollector(list(self.acc.values()), self.config.send_timestamps)
            if len(collector.series) > RENDER_INLINE_SERIES:
                body = await asyncio.get_running_loop().run_in_executor(None, encoder, collector)
            else:
                body = encoder(collector)
            self._cache[content_type] = (version, body)
        return body, content_type

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        body, content_type = await self.render_async(request.headers.get("Accept", ""))
        resp = web.Response(body=body, headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            resp.enable_compression(web.ContentCoding.gzip)
        return resp


def _create(settings: ExporterCreateSettings, config: PrometheusConfig) -> PrometheusExporter:
    return PrometheusExporter(settings, config)


factory = Factory(type="prometheus", kind=Kind.EXPORTER, config_model=PrometheusConfig,
                  create=_create, signals=frozenset({Signal.METRICS}),
                  runs_once=lambda config: True,  # one scrape endpoint
                  description="serves received metrics on a Prometheus scrape endpoint "
                              "(text format and OpenMetrics with exemplars)")
