"""`redmetrics` connector (alias `spanmetrics`): traces in, RED metrics out.

Emits, per series of (service.name, span.name, span.kind, status.code and the
configured `dimensions`):

- `<namespace>.calls`: monotonic Sum (int) of spans — the request and, with
  `status.code="STATUS_CODE_ERROR"`, the error count;
- `<namespace>.duration`: Histogram of span durations in seconds (or `ms`),
  explicit buckets (default edges include 0.2 s and 0.5 s, the ops SLOs) or an
  exponential histogram, with exemplars (trace id, span id, value).

The namespace defaults to `traces.span.metrics`, as in the Collector. Each
distinct `service.name` becomes one ResourceMetrics whose resource holds only
`service.name` (data points carry it too, so Prometheus gets `service_name`).
Spans without a `service.name` are counted without it (the Collector drops
them).

Hot path: spans are read through a projection message type that declares only
the fields used; attributes stay serialized `KeyValue` bytes and are selected by
a bytes-prefix test on their key, and the raw bytes of the selected ones form
the series lookup key. Values are decoded only when a new key is seen.
Aggregation, the cardinality limit, expiry and flushing live in
`pipeline.connectors.aggregation`, shared with `logmetrics`.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from pydantic import Field, field_validator, model_validator

from pipeline.component import (
    ComponentConfig,
    CreateSettings,
    Factory,
    Kind,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.connectors.aggregation import (
    AggregatingConnector,
    AggregationSettings,
    Attrs,
    Clock,
    ExpHistogramSeries,
    HistogramSeries,
    KeyTable,
    MetricSpec,
    ValueCache,
    build_projection,
    label_text,
)
from pipeline.errors import PermanentError
from pipeline.pdata.batch import Batch

DEFAULT_BUCKETS_S = (0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.5, 0.8, 1.0,
                     1.4, 2.0, 5.0, 10.0, 15.0)
SPAN_KINDS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
              "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
STATUS_CODES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
STATUS_ERROR = 2
HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")

_P = build_projection("otelpipe_redmetrics.proto", {
    "Span": [("trace_id", 1, "bytes"), ("span_id", 2, "bytes"), ("name", 5, "bytes"),
             ("kind", 6, "int32"), ("start", 7, "fixed64"), ("end", 8, "fixed64"),
             ("attributes", 9, "repeated bytes"), ("status", 15, "bytes")],
    "ScopeSpans": [("spans", 2, "repeated Span")],
    "Resource": [("attributes", 1, "repeated bytes")],
    "ResourceSpans": [("resource", 1, "Resource"), ("scopes", 2, "repeated ScopeSpans")],
    "TracesRequest": [("resources", 1, "repeated ResourceSpans")],
})
TracesProjection = _P["TracesRequest"]


class DimensionConfig(ComponentConfig):
    name: str = Field(min_length=1, description="span attribute, else resource attribute")
    default: str | None = Field(None, description="value when neither has it; without a "
                                "default the dimension is left out of that series")


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


class ExemplarsConfig(ComponentConfig):
    enabled: bool = Field(True, description="attach (trace id, span id, value) exemplars: "
                          "the first span per bucket in each flush interval")


class ErrorsConfig(ComponentConfig):
    http_5xx: bool = Field(False, description="count spans with status UNSET and an HTTP "
                           "status code >= 500 as STATUS_CODE_ERROR")


class RedMetricsConfig(AggregationSettings):
    namespace: str = Field("traces.span.metrics", description="metric name prefix")
    dimensions: list[DimensionConfig] = Field(default_factory=list)
    histogram: HistogramConfig = Field(default_factory=HistogramConfig)
    exemplars: ExemplarsConfig = Field(default_factory=ExemplarsConfig)
    errors: ErrorsConfig = Field(default_factory=ErrorsConfig)

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

    def __init__(self, settings: CreateSettings, config: RedMetricsConfig,
                 clock: Clock | None = None):
        super().__init__(settings, flush_interval=config.metrics_flush_interval, clock=clock)
        self.config = config
        hist = config.histogram
        unit_ns = 1e9 if hist.unit == "s" else 1e6
        self.exponential = hist.exponential is not None
        self.exemplars = config.exemplars.enabled
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
        self.span_keys = KeyTable(keys)
        self.resource_keys = KeyTable([*keys, "service.name"])
        self.decode = ValueCache()

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
        self.aggregate(req)

    def aggregate(self, req: Any) -> None:
        sset = self.series
        cache: dict[Any, Any] = sset.cache
        resolve = sset.resolve
        canonical = self._canonical
        describe = self._describe
        table = self.span_keys.table
        n_slots = len(self.span_keys.keys)
        n_dims = len(self.dims)
        probes = self.probe_slots
        bounds = self.bounds_ns
        bisect_left = bisect.bisect_left
        exponential = self.exponential
        exemplars = self.exemplars
        for rs in req.resources:
            rvals: list[Any] = [None] * (n_slots + 1)
            self.resource_keys.scan(rs.resource.attributes, rvals)
            svc_kv = rvals.pop()
            svc = self.decode(svc_kv) if svc_kv is not None else None
            for scope in rs.scopes:
                for sp in scope.spans:
                    vals = rvals.copy()
                    try:
                        for kv in sp.attributes:
                            entry = table[kv[1]]
                            if entry is not None:
                                for prefix, slot in entry:
                                    if kv.startswith(prefix):
                                        vals[slot] = kv
                                        break
                    except IndexError:  # an empty KeyValue: take the careful path
                        vals = rvals.copy()
                        self.span_keys.scan(sp.attributes, vals)
                    st = sp.status
                    if not st:
                        code = 0
                    elif st[0] == 0x18 and len(st) == 2:
                        code = st[1]
                    else:
                        code = Status.FromString(st).code
                    if probes:
                        if code == 0 and self._http_error(vals):
                            code = STATUS_ERROR
                        key = (svc, sp.name, sp.kind, code, *vals[:n_dims])
                    else:
                        key = (svc, sp.name, sp.kind, code, *vals)
                    s: Any = cache.get(key)
                    if s is None:
                        s = resolve(key, canonical, describe)
                    end = sp.end
                    d = end - sp.start
                    if d < 0:
                        d = 0
                    if exponential:
                        s.observe(d, (sp.trace_id, sp.span_id, d, end) if exemplars else None)
                        continue
                    i = bisect_left(bounds, d)
                    s.buckets[i] += 1
                    s.sum += d
                    if exemplars and s.exemplars[i] is None:
                        s.exemplars[i] = (sp.trace_id, sp.span_id, d, end)

    def _http_error(self, vals: list[Any]) -> bool:
        for slot in self.probe_slots:
            kv = vals[slot]
            if kv is not None:
                try:
                    return int(self.decode(kv)) >= 500
                except (TypeError, ValueError):
                    return False
        return False

    def _canonical(self, key: Any) -> tuple[Any, ...]:
        svc, name, kind, code, *vals = key
        decode = self.decode
        return (svc, name.decode("utf-8", "replace"), kind, code,
                *[label_text(decode(kv)) if kv is not None else d
                  for kv, d in zip(vals, self.defaults, strict=False)])

    def _describe(self, key: Any) -> tuple[Attrs, Attrs]:
        svc, name, kind, code, *vals = key
        attrs: list[tuple[str, Any]] = []
        if svc is not None:
            attrs.append(("service.name", svc))
        attrs.append(("span.name", name.decode("utf-8", "replace")))
        attrs.append(("span.kind", SPAN_KINDS[kind] if 0 <= kind < len(SPAN_KINDS)
                      else SPAN_KINDS[0]))
        attrs.append(("status.code", STATUS_CODES[code] if 0 <= code < 3 else STATUS_CODES[0]))
        for dim, default, kv in zip(self.dims, self.defaults, vals, strict=False):
            if kv is not None:
                attrs.append((dim, self.decode(kv)))
            elif default is not None:
                attrs.append((dim, default))
        resource: Attrs = (("service.name", svc),) if svc is not None else ()
        return tuple(attrs), resource


def _create(settings: CreateSettings, config: Any) -> RedMetricsConnector:
    return RedMetricsConnector(settings, config)


factory = Factory(type="redmetrics", kind=Kind.CONNECTOR, config_model=RedMetricsConfig,
                  create=_create, connector_pairs=frozenset({(Signal.TRACES, Signal.METRICS)}),
                  aliases=("spanmetrics",),
                  description="RED metrics (calls, errors, duration histogram) from spans")
