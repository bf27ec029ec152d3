"""`redmetrics` connector (alias `spanmetrics`): traces in, RED metrics out.

Emits, per series of (service.name, span.name, span.kind, status.code and the
configured `dimensions`):

- `<namespace>.calls`: monotonic Sum (int) of spans — the request and, with
  `status.code="STATUS_CODE_ERROR"`, the error count;
- `<namespace>.duration`: Histogram of span durations in seconds (or `ms`),
  explicit buckets (default edges include 0.2 s and 0.5 s, the ops SLOs) or an
  exponential histogram, with exemplars (trace id, span id, value).

With `exemplars.kept_by` (tail sampling after this connector), exemplars are
picked only from spans whose trace the mirrored tail_sampling policies keep
(`pipeline.aggregation.exemplars`), so each one resolves to a stored trace.

The namespace defaults to `traces.span.metrics`, as in the Collector. Each
distinct `service.name` becomes one ResourceMetrics whose resource holds only
`service.name` (data points carry it too, so Prometheus gets `service_name`).
Spans without a `service.name` are counted without it (the Collector drops
them).

Hot path: spans are read through a projection message type that declares only
the fields used; attributes are a `map<string, bytes>` over the KeyValues (same
wire form), so the wanted ones are looked up by key in C, and their serialized
`AnyValue` bytes form the series lookup key. Values are decoded only when a new
key is seen.
Aggregation, the cardinality limit, expiry and flushing live in
`pipeline.aggregation`, shared with `logmetrics`.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Hashable
from itertools import count, repeat
from operator import attrgetter, sub
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from pydantic import Field, field_validator, model_validator

from pipeline.aggregation.connector import AggregatingConnector, AggregationSettings
from pipeline.aggregation.emit import MetricSpec
from pipeline.aggregation.exemplars import KeptTraces
from pipeline.aggregation.histograms import ExpHistogramSeries, HistogramSeries
from pipeline.aggregation.keys import ABSENT, DimensionWatch, ValueCache
from pipeline.aggregation.series import Attrs, Series
from pipeline.aggregation.store import Canonicalize, Clock, Describe
from pipeline.component import (
    ComponentConfig,
    ConnectorCreateSettings,
    Factory,
    Kind,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.errors import PermanentError
from pipeline.pdata.anyvalue import label_text
from pipeline.pdata.batch import Batch
from pipeline.pdata.semconv import KINDS, aliases, deprecated_names, kind_category
from pipeline.proto.otelpipe import redmetrics_pb2

DEFAULT_BUCKETS_S = (0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.5, 0.8, 1.0,
                     1.4, 2.0, 5.0, 10.0, 15.0)
SPAN_KINDS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
              "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
STATUS_CODES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
STATUS_ERROR = 2
HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")

MAX_RESOURCES = 4096  # distinct (service.name, dimension values) of resources remembered

# proto/otelpipe/redmetrics.proto (proto2: attribute map keys are not UTF-8 checked while
# parsing; `get` by key never decodes stored keys)
TracesProjection = redmetrics_pb2.TracesRequest
# Column readers of the projected Span (C-level, for `map` over a scope's spans).
_NAME, _KIND, _STATUS, _ATTRIBUTES, _START, _END = map(
    attrgetter, ("name", "kind", "status", "attributes", "start", "end"))
_MAP_GET = type(redmetrics_pb2.Span().attributes).get


class DimensionConfig(ComponentConfig):
    name: str = Field(min_length=1, description="span attribute, else resource attribute")
    default: str | None = Field(None, description="value when neither has it; without a "
                                "default the dimension is left out of that series")
    deprecated_names: bool | None = Field(
        None, description="also match the deprecated semantic-convention names of this "
        "attribute when it is absent (default: the connector's deprecated_names)")


class ExplicitBucketsConfig(ComponentConfig):
    buckets: list[Duration] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS_S),
        description="upper bounds, as durations (2ms, 1.5s) or seconds")

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("at least one bucket bound is needed")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("bucket bounds must be strictly increasing")
        return v


class ExponentialConfig(ComponentConfig):
    max_size: int = Field(160, ge=2, le=16384, description="most buckets per data point")


class HistogramConfig(ComponentConfig):
    unit: str = Field("s", pattern="^(s|ms)$", description="unit of the duration histogram")
    explicit: ExplicitBucketsConfig | None = None
    exponential: ExponentialConfig | None = None
    disable: bool = Field(False, description="emit only the calls metric")

    @model_validator(mode="after")
    def _one_kind(self) -> HistogramConfig:
        if self.explicit is not None and self.exponential is not None:
            raise ValueError("choose explicit or exponential, not both")
        return self


class ProbabilisticMirror(ComponentConfig):
    sampling_percentage: float = Field(gt=0, le=100, description="the tail_sampling "
                                       "probabilistic policy's sampling_percentage")
    hash_salt: str = Field("", description="its hash_salt (empty: the Collector's default)")


class KeptByConfig(ComponentConfig):
    """The tail_sampling policies (OR-ed at its top level) that keep a trace, mirrored
    so that exemplars are picked only from spans whose trace is kept."""

    probabilistic: ProbabilisticMirror | None = None
    status_code_error: bool = Field(False, description="a status_code policy keeps traces "
                                    "with an ERROR span")
    latency_threshold_ms: int | None = Field(
        None, ge=0, description="a latency policy with this threshold_ms (and no "
        "upper_threshold_ms) keeps traces lasting longer")

    @model_validator(mode="after")
    def _some(self) -> KeptByConfig:
        if self.probabilistic is None and not self.status_code_error \
                and self.latency_threshold_ms is None:
            raise ValueError("name at least one policy (probabilistic, status_code_error, "
                             "latency_threshold_ms)")
        return self

    def predicate(self) -> KeptTraces:
        p = self.probabilistic
        return KeptTraces(sampling_percentage=p.sampling_percentage if p else None,
                          hash_salt=p.hash_salt if p else "",
                          status_code_error=self.status_code_error,
                          latency_threshold_ms=self.latency_threshold_ms)


class ExemplarsConfig(ComponentConfig):
    enabled: bool = Field(True, description="attach (trace id, span id, value) exemplars: "
                          "the first span per bucket in each flush interval")
    kept_by: KeptByConfig | None = Field(
        None, description="when tail sampling follows: pick exemplars only from spans "
        "whose trace these policies keep, so every exemplar resolves (docs/sampling.md)")


class ErrorsConfig(ComponentConfig):
    http_5xx: bool = Field(False, description="count spans with status UNSET and an HTTP "
                           "status code >= 500 as STATUS_CODE_ERROR")


class RedMetricsConfig(AggregationSettings):
    namespace: str = Field("traces.span.metrics", description="metric name prefix")
    dimensions: list[DimensionConfig] = Field(default_factory=list)
    histogram: HistogramConfig = Field(default_factory=HistogramConfig)
    exemplars: ExemplarsConfig = Field(default_factory=ExemplarsConfig)
    errors: ErrorsConfig = Field(default_factory=ErrorsConfig)
    deprecated_names: bool = Field(
        True, description="a dimension naming a stable semantic-convention attribute "
        "(http.response.status_code) also matches its deprecated names (http.status_code) "
        "on spans that lack it")
    warn_absent_after: int = Field(
        1000, ge=0, description="warn once about a dimension absent from this many spans "
        "in a row; 0: never")

    @field_validator("dimensions")
    @classmethod
    def _unique(cls, v: list[DimensionConfig]) -> list[DimensionConfig]:
        names = [d.name for d in v]
        reserved = {"service.name", "span.name", "span.kind", "status.code"}
        for n in names:
            if n in reserved:
                raise ValueError(f"{n} is always a dimension")
            if names.count(n) > 1:
                raise ValueError(f"dimension {n} is listed twice")
        return v


class RedMetricsConnector(AggregatingConnector):
    scope_name = "otelpipe/redmetrics"

    def __init__(self, settings: ConnectorCreateSettings, config: RedMetricsConfig,
                 clock: Clock | None = None):
        super().__init__(settings, flush_interval=config.metrics_flush_interval, clock=clock)
        self.config = config
        hist = config.histogram
        unit_ns = 1e9 if hist.unit == "s" else 1e6
        self.exponential = hist.exponential is not None
        self.exemplars = config.exemplars.enabled
        kept_by = config.exemplars.kept_by
        self.exemplar_ok = kept_by.predicate().keeps if kept_by is not None else None
        dims = [d.name for d in config.dimensions]
        self.dims = dims
        self.defaults = [d.default for d in config.dimensions]
        # Span attribute slots: the dimensions, then HTTP status probes (errors.http_5xx).
        keys = list(dims)
        self.probe_slots: list[int] = []
        if config.errors.http_5xx:
            for k in HTTP_STATUS_KEYS:
                if k not in keys:
                    keys.append(k)
                self.probe_slots.append(keys.index(k))
        self.keys = keys
        self.decode = ValueCache(any_value=True)
        self._init_dimension_matching(config)
        # (service.name, dimension values) of a resource ↔ a small int in the span keys.
        self.rids: dict[tuple[Any, ...], int] = {}
        self.resources: dict[int, tuple[Any, ...]] = {}
        self.next_rid = 0

        if self.exponential:
            assert hist.exponential is not None
            max_size = hist.exponential.max_size
            self.bounds_ns: list[int] = []
            bounds_out: tuple[float, ...] = ()
            new_series: Any = lambda: ExpHistogramSeries(max_size, unit_ns)  # noqa: E731
        else:
            bounds_s = (hist.explicit or ExplicitBucketsConfig()).buckets
            self.bounds_ns = [round(b * 1e9) for b in bounds_s]
            bounds_out = tuple(b if hist.unit == "s" else b * 1000 for b in bounds_s)
            n_buckets = len(self.bounds_ns) + 1
            new_series = lambda: HistogramSeries(n_buckets)  # noqa: E731
        self.series = config.series_set(f"{config.namespace}.calls", new_series, self.clock)
        self.sets = [self.series]
        self.specs = [MetricSpec(f"{config.namespace}.calls", "count", self.series,
                                 description="Spans (calls), by status: errors have "
                                             "status.code STATUS_CODE_ERROR", integer=True)]
        if not hist.disable:
            self.specs.append(MetricSpec(
                f"{config.namespace}.duration",
                "exponential_histogram" if self.exponential else "histogram", self.series,
                description="Span durations", unit=hist.unit, divisor=unit_ns,
                bounds=bounds_out))

    async def consume(self, batch: Batch) -> None:
        try:
            req = TracesProjection.FromString(batch.to_bytes())
        except DecodeError as exc:
            raise PermanentError(f"undecodable traces request: {exc}") from exc
        await self.settled()
        self.aggregate(req)

    def _init_dimension_matching(self, config: RedMetricsConfig) -> None:
        """Deprecated names per dimension (by span kind category) and the watch for
        dimensions that do not come. A span whose key lacks a dimension that either
        concerns takes `_detour` (marked by `DETOUR` in the series cache); the other
        spans pay one identity test."""
        self.use_aliases = [config.deprecated_names if d.deprecated_names is None
                            else d.deprecated_names for d in config.dimensions]
        self.aliases = [tuple(aliases(name, kind) for kind in KINDS) for name in self.dims]
        self.hints = [deprecated_names(name) for name in self.dims]
        self.watch = DimensionWatch(self.logger, self.id, "spans", self.dims, self.defaults,
                                    config.warn_absent_after, self.use_aliases)
        self._detour_slots()

    def _detour_slots(self) -> None:
        """Dimensions whose absence takes the detour: those with deprecated names to
        match, and those still watched."""
        self.detour_slots = [i for i in range(len(self.dims))
                             if (self.use_aliases[i] and any(self.aliases[i]))
                             or not self.watch.done[i]]

    def _resolve(self, raw_key: Hashable, canonicalize: Canonicalize,
                 describe: Describe) -> Series:
        """A cache miss: `DETOUR` for a key that lacks a dimension of `detour_slots`
        (remembered in the cache like a series), else the series."""
        key: Any = raw_key
        for i in self.detour_slots:
            if key[4 + i] is None:
                cache = self.series.cache
                if len(cache) >= self.series.cache_limit:
                    cache.clear()
                cache[key] = DETOUR
                return DETOUR
        return self.series.resolve(key, canonicalize, describe)

    def _detour(self, key: Any, sp: Any, rs: Any) -> Any:
        """The series of a span lacking a dimension: its deprecated names (span, then
        resource) fill in when allowed; what stays absent is counted for the watch."""
        vals = list(key[4:])
        kind = kind_category(sp.kind)
        watch = self.watch
        for i in self.detour_slots:
            if vals[i] is not None:
                continue
            names = self.aliases[i][kind] if self.use_aliases[i] else ()
            found = _first(names, sp.attributes.get, rs.resource.attributes.get)
            if found is not None:
                vals[i] = found[1]
                watch.note_matched(i, found[0])
                continue
            vals[i] = ABSENT
            if not watch.done[i]:
                watch.absent[i] += 1
                hint = _first(self.hints[i], sp.attributes.get, rs.resource.attributes.get)
                if hint is not None:
                    watch.seen_old[i] = hint[0]
        key = (*key[:4], *vals)
        s = self.series.cache.get(key)
        if s is None or s is DETOUR:
            s = self.series.resolve(key, self._canonical, self._describe)
        return s

    def _end_batch(self, spans: int) -> None:
        if self.watch.end_batch(spans):
            self._detour_slots()
            self.series.cache.clear()  # forget detours no longer needed

    def duration_bounds(self) -> dict[str, list[float]]:
        hist = self.config.histogram
        if hist.disable or hist.exponential is not None:
            return {}
        bounds = hist.explicit.buckets if hist.explicit is not None else DEFAULT_BUCKETS_S
        return {f"{self.config.namespace}.duration": list(bounds)}

    def _resource_id(self, resource: tuple[Any, ...]) -> int:
        """A small int naming (service.name, dimension values) of one resource.

        Ids are never reused: when the table is full it is cleared together with
        the series cache, so a stale id can never name another resource.
        """
        rid = self.rids.get(resource)
        if rid is None:
            if len(self.rids) >= MAX_RESOURCES:
                self.rids.clear()
                self.resources.clear()
                self.series.cache.clear()
            rid = self.rids[resource] = self.next_rid
            self.resources[rid] = resource
            self.next_rid += 1
        return rid

    def aggregate(self, req: Any) -> None:
        """Fold a projected request into the series.

        Per span: the lookup key is (resource id, name bytes, kind, status bytes,
        the serialized AnyValue of each wanted attribute, else the resource's);
        `attributes` is a map over the KeyValues, so only the wanted keys are
        looked up, in C. Decoding (status code, values, 5xx probes) happens only
        when a key is new (`_canonical`, `_describe`).

        The fields of a scope's spans are read column by column (`map` over the
        span list, `zip` into the keys, the series looked up with `map`), so the
        per-span Python is only the histogram update; spans are processed in order,
        so series creation, the cardinality limit and exemplars are as span by span.
        """
        cache_get = self.series.cache.get
        keys = self.keys
        resource_id = self._resource_id
        columns = self._columns
        n = 0
        for rs in req.resources:
            rget = rs.resource.attributes.get
            rdefs = [rget(k) for k in keys]
            rid = resource_id((rget("service.name"), *rdefs))
            for scope in rs.scopes:
                spans = list(scope.spans)
                if not spans:
                    continue
                n += len(spans)
                attrs = list(map(_ATTRIBUTES, spans))
                raw = list(zip(repeat(rid), map(_NAME, spans), map(_KIND, spans),
                               map(_STATUS, spans),
                               *[map(_MAP_GET, attrs, repeat(k), repeat(v))
                                 for k, v in zip(keys, rdefs, strict=True)]))
                ends = list(map(_END, spans))
                ds = list(map(sub, ends, map(_START, spans)))
                if min(ds) < 0:
                    ds = [d if d > 0 else 0 for d in ds]
                columns(rs, spans, raw, list(map(cache_get, raw)), ends, ds)
        if self.watch.active:
            self._end_batch(n)

    def _columns(self, rs: Any, spans: list[Any], raw: list[Any], found: list[Any],
                 ends: list[int], ds: list[int]) -> None:
        """Update the series of one scope's spans: `raw` keys, `found` their cached
        series (None: a miss, resolved here in span order), `ends` and clamped
        durations `ds`."""
        cache_get = self.series.cache.get
        resolve = self._resolve if self.detour_slots else self.series.resolve
        canonical = self._canonical
        describe = self._describe
        detour = DETOUR
        exemplars = self.exemplars
        ok = self.exemplar_ok
        if self.exponential:
            max_exp = ExpHistogramSeries.MAX_EXEMPLARS
            for j, key, s, d in zip(count(), raw, found, ds):
                if s is None:
                    s = cache_get(key)
                    if s is None:
                        s = resolve(key, canonical, describe)
                if s is detour:
                    s = self._detour(key, spans[j], rs)
                ex = None
                if exemplars and (ok is None or (len(s.exemplars) < max_exp
                                                 and ok(spans[j].trace_id, d, key[3]))):
                    sp = spans[j]
                    ex = (sp.trace_id, sp.span_id, d, ends[j])
                s.observe(d, ex)
            return
        for j, key, s, i, d in zip(count(), raw, found,
                                   map(bisect.bisect_left, repeat(self.bounds_ns), ds), ds):
            if s is None:
                s = cache_get(key)
                if s is None:
                    s = resolve(key, canonical, describe)
            if s is detour:
                s = self._detour(key, spans[j], rs)
            s.buckets[i] += 1
            s.sum += d
            if exemplars and s.exemplars[i] is None and (
                    ok is None or ok(spans[j].trace_id, d, key[3])):
                sp = spans[j]
                s.exemplars[i] = (sp.trace_id, sp.span_id, d, ends[j])

    def _code(self, status: bytes, vals: tuple[Any, ...]) -> int:
        if not status:
            code = 0
        elif status[0] == 0x18 and len(status) == 2:
            code = status[1]
        else:
            code = Status.FromString(status).code
        if code == 0 and self.probe_slots and self._http_error(vals):
            code = STATUS_ERROR
        return code

    def _http_error(self, vals: tuple[Any, ...]) -> bool:
        for slot in self.probe_slots:
            av = vals[slot]
            if av is not None:
                try:
                    return int(self.decode(av)) >= 500
                except (TypeError, ValueError):
                    return False
        return False

    def _canonical(self, key: Any) -> tuple[Any, ...]:
        rid, name, kind, status, *raw = key
        vals = tuple(None if v is ABSENT else v for v in raw)
        svc_av = self.resources[rid][0]
        decode = self.decode
        return (decode(svc_av) if svc_av is not None else None,
                name.decode("utf-8", "replace"), kind, self._code(status, vals),
                *[label_text(decode(av)) if av is not None else d
                  for av, d in zip(vals, self.defaults, strict=False)])

    def _describe(self, key: Any) -> tuple[Attrs, Attrs]:
        rid, name, kind, status, *raw = key
        vals = tuple(None if v is ABSENT else v for v in raw)
        svc_av = self.resources[rid][0]
        svc = self.decode(svc_av) if svc_av is not None else None
        code = self._code(status, vals)
        attrs: list[tuple[str, Any]] = []
        if svc is not None:
            attrs.append(("service.name", svc))
        attrs.append(("span.name", name.decode("utf-8", "replace")))
        attrs.append(("span.kind", SPAN_KINDS[kind] if 0 <= kind < len(SPAN_KINDS)
                      else SPAN_KINDS[0]))
        attrs.append(("status.code", STATUS_CODES[code] if 0 <= code < 3 else STATUS_CODES[0]))
        for dim, default, av in zip(self.dims, self.defaults, vals, strict=False):
            if av is not None:
                attrs.append((dim, self.decode(av)))
            elif default is not None:
                attrs.append((dim, default))
        resource: Attrs = (("service.name", svc),) if svc is not None else ()
        return tuple(attrs), resource


DETOUR = HistogramSeries(1)
"""Cached for a raw key that lacks a dimension: such spans take `_detour`."""


def _first(names: tuple[str, ...], get: Any, rget: Any) -> tuple[str, bytes] | None:
    """The first of `names` a span has, else the first its resource has: (name, value)."""
    for lookup in (get, rget):
        for name in names:
            av = lookup(name)
            if av is not None:
                return name, av
    return None


def _create(settings: ConnectorCreateSettings, config: RedMetricsConfig) -> RedMetricsConnector:
    return RedMetricsConnector(settings, config)


factory = Factory(type="redmetrics", kind=Kind.CONNECTOR, config_model=RedMetricsConfig,
                  create=_create, connector_pairs=frozenset({(Signal.TRACES, Signal.METRICS)}),
                  aliases=("spanmetrics",),
                  merges_per_worker=True,
                  description="RED metrics (calls, errors, duration histogram) from spans")
