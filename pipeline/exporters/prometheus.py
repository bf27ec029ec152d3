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
metric families this exporter builds, on the event loop in chunks of about
`CHUNK_SAMPLES` samples with a turn of the loop between slices (`paced`), and
streamed; the chunks are cached until the series change. A family split across
chunks keeps one header and OpenMetrics' `# EOF` ends the last chunk only, so
the body is byte for byte prometheus_client's rendering of all series at once.
`Accept-Encoding: gzip` is honoured.

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
process and every scrape without bound. (Histograms of 17 buckets with
exemplars, ≈ 4 KB of body each, measured 0.35-0.5 ms of CPU per series: 100,000
of them take 35-50 s, see docs/metrics.md.) Memory and the scrape body are then
bounded by `max_series` times the size of a series' labels.

Delivery: a batch counts as delivered once its points are in memory; this
exporter holds state, not a queue, so there is nothing to retry. A restart
loses the state (Prometheus sees counter resets, which `rate()` handles).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator
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
from pipeline.pdata.pacing import paced
from pipeline.pdata.prometheus.accumulator import Accumulator
from pipeline.pdata.prometheus.names import COUNTER, HISTOGRAM, SUMMARY
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
# Samples per rendered chunk of a scrape (≈ 10-20 ms of encoding at 10-20 µs a sample).
CHUNK_SAMPLES = 1000
# Series per sorted run of a paced sort (one sort of 20,000 series holds the loop 40 ms).
SORT_RUN = 2000

Encoder = Callable[[Any], bytes]


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
    so a snapshot can be rendered in slices while the event loop goes on."""

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


class _Families:
    """A collector yielding given metric families (header-only ones included)."""

    def __init__(self, families: Iterable[Metric]):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _samples(s: Series) -> int:
    """About the number of samples a series renders to."""
    if s.kind == HISTOGRAM:
        return len(s.counts) + 3
    if s.kind == SUMMARY:
        return len(s.quantiles) + 2
    return 1


def render_chunks(series: list[Series], encoder: Encoder,
                  send_timestamps: bool) -> Iterator[bytes]:
    """`encoder`'s rendering of `series` (sorted by key, so a family's series are
    contiguous) in chunks of about CHUNK_SAMPLES samples; joined, byte for byte
    `encoder(SeriesCollector(series, send_timestamps))`. A chunk continuing the
    previous chunk's family loses its repeated header (HELP, TYPE, UNIT); the
    trailer of an empty rendering (OpenMetrics' `# EOF`) comes once, last."""
    trailer = encoder(_Families(()))
    start, n = 0, len(series)
    previous = ""
    while start < n:
        end, samples = start, 0
        while end < n and samples < CHUNK_SAMPLES:
            samples += _samples(series[end])
            end += 1
        body = encoder(SeriesCollector(series[start:end], send_timestamps))
        if trailer:
            body = body[:-len(trailer)]
        first = series[start]
        if first.family == previous:
            header = encoder(_Families(
                [Metric(first.family, first.help, first.kind, first.unit)]))
            header = header[:len(header) - len(trailer)]
            assert body.startswith(header), (header, body[:len(header)])
            body = body[len(header):]
        previous = series[end - 1].family
        start = end
        yield body
    if trailer:
        yield trailer


def _key(s: Series) -> tuple[str, tuple[tuple[str, str], ...]]:
    return s.family, s.labels


async def paced_sorted(series: list[Series]) -> list[Series]:
    """`sorted(series, key=_key)` in slices: runs of SORT_RUN series sorted one at a
    time, then merged lazily, with turns of the event loop in between (a sort of
    100,000 series, whose keys share long prefixes, is 0.2 s in one piece)."""
    runs = []
    async for i in paced(range(0, len(series), SORT_RUN)):
        runs.append(sorted(series[i:i + SORT_RUN], key=_key))
    return [s async for s in paced(heapq.merge(*runs, key=_key))]


class PrometheusExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: PrometheusConfig,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(settings)
        self.config = config
        self.translator = translator_for(config)
        self.acc = Accumulator(config.metric_expiration, clock, config.max_series)
        # content type -> (version, body in chunks)
        self._cache: dict[str, tuple[int, list[bytes]]] = {}
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

    def _prepare(self, accept: str
                 ) -> tuple[list[bytes] | None, Encoder, str, int, list[Series]]:
        """Expire, negotiate the format; the cached chunks if nothing changed since,
        else the accumulator's version and its series to render."""
        self._expire()
        encoder, content_type = choose_encoder(accept)
        version = self.acc.version
        cached = self._cache.get(content_type)
        if cached is not None and cached[0] == version:
            return cached[1], encoder, content_type, version, []
        return None, encoder, content_type, version, list(self.acc.values())

    def render_chunks(self, accept: str = "") -> tuple[list[bytes], str]:
        """The scrape body in chunks and its content type for an `Accept` header."""
        chunks, encoder, content_type, version, series = self._prepare(accept)
        if chunks is None:
            chunks = list(render_chunks(sorted(series, key=_key), encoder,
                                        self.config.send_timestamps))
            self._cache[content_type] = (version, chunks)
        return chunks, content_type

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape body and its content type for an `Accept` header."""
        chunks, content_type = self.render_chunks(accept)
        return b"".join(chunks), content_type

    async def render_async(self, accept: str = "") -> tuple[list[bytes], str]:
        """As `render_chunks`, giving the event loop a turn between slices of the
        rendering (≈ 10 µs per sample), so receivers keep answering meanwhile."""
        chunks, encoder, content_type, version, series = self._prepare(accept)
        if chunks is None:  # cached under the snapshot's version: a change meanwhile is not
            chunks = [c async for c in paced(render_chunks(
                await paced_sorted(series), encoder, self.config.send_timestamps))]
            self._cache[content_type] = (version, chunks)
        return chunks, content_type

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        chunks, content_type = await self.render_async(request.headers.get("Accept", ""))
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            resp.enable_compression(web.ContentCoding.gzip)
        else:
            resp.content_length = sum(len(c) for c in chunks)
        await resp.prepare(request)
        async for chunk in paced(chunks):
            await resp.write(chunk)
        await resp.write_eof()
        return resp


def _create(settings: ExporterCreateSettings, config: PrometheusConfig) -> PrometheusExporter:
    return PrometheusExporter(settings, config)


factory = Factory(type="prometheus", kind=Kind.EXPORTER, config_model=PrometheusConfig,
                  create=_create, signals=frozenset({Signal.METRICS}),
                  runs_once=lambda config: True,  # one scrape endpoint
                  description="serves received metrics on a Prometheus scrape endpoint "
                              "(text format and OpenMetrics with exemplars)")
