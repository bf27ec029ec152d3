"""`logmetrics` connector: logs in, counters / sums / histograms / gauges out.

For what an application reports in its logs rather than in spans: cache hits
and misses, rate-limit hits and bypasses, 429 responses, connection-pool
exhaustion, query latency. Each configured metric counts (or sums, histograms,
gauges) the log records that match its `when` condition, by its dimensions:

```yaml
connectors:
  logmetrics:
    metrics:
      - name: cache.requests
        type: counter
        when: {attribute: event, in: [cache.hit, cache.miss]}
        dimensions: [{name: cache.name, default: unknown}, {name: event}]
      - name: db.query.duration
        type: histogram
        unit: ms
        value: db.query.duration_ms
        buckets: [1, 5, 10, 50, 100, 500, 1000]
```

Conditions (`when`) are YAML mappings; every part present must hold:

- a selector — `attribute: NAME` (the record's attribute, else the resource's),
  `resource_attribute: NAME`, or `field: body | severity_text | event_name` —
  with operators `equals`, `not_equals`, `in: [..]`, `matches: REGEX` (search),
  `exists: true|false`, `gt`, `gte`, `lt`, `lte` (numbers; numeric strings
  count); a selector alone means `exists: true`;
- `severity_at_least: WARN` (or a severity number; a record without a severity
  number is judged by its severity text);
- `all: [conditions]`, `any: [conditions]`, `not: condition`.

`equals`/`in` compare numbers as numbers and everything else as text
(`429` matches the int 429 and the string "429"; booleans as true/false).

The condition model lives in `pipeline.pdata.conditions`, shared with the
`filter` processor, which adds span fields (`name`, `kind`, `status_code`,
`status_message`, `duration_ms`) and metric fields (`name`, `type`, `unit`)
through `ConditionCompiler(fields=...)`; here only the log fields above are
accepted (`LOG_FIELDS`).

Every metric shares the engine of `redmetrics` (`pipeline.aggregation`): the
cardinality limit applies per metric, series expire after `series_expiry`,
temporality and `metrics_flush_interval` as there. Each distinct `service.name`
of the logs' resources becomes one ResourceMetrics (resource = {service.name});
data points carry only the configured dimensions.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any, Literal

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import (
    AliasChoices,
    Field,
    field_validator,
    model_validator,
)

from pipeline.aggregation.connector import AggregatingConnector, AggregationSettings
from pipeline.aggregation.emit import MetricSpec
from pipeline.aggregation.histograms import HistogramSeries
from pipeline.aggregation.keys import DimensionWatch, KeyTable, ValueCache
from pipeline.aggregation.series import Attrs, GaugeSeries, Series, SumSeries
from pipeline.aggregation.store import Clock, SeriesSet
from pipeline.component import (
    ComponentConfig,
    ConnectorCreateSettings,
    Factory,
    Kind,
    Signal,
)
from pipeline.errors import PermanentError
from pipeline.pdata.anyvalue import any_value_to_python, label_text
from pipeline.pdata.batch import Batch
from pipeline.pdata.conditions import (
    LOG_FIELDS,
    Condition,
    ConditionCompiler,
    Predicate,
    as_number,
)
from pipeline.pdata.semconv import aliases, deprecated_names
from pipeline.proto.otelpipe import logmetrics_pb2
from pipeline.telemetry.metrics import CounterSpec

# The OpenTelemetry SDKs' default explicit bounds (suit millisecond values).
DEFAULT_BUCKETS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0,
                   2500.0, 5000.0, 7500.0, 10000.0)

LogsProjection = logmetrics_pb2.LogsRequest  # proto/otelpipe/logmetrics.proto

SKIPPED_RECORDS = CounterSpec(
    "otelpipe_connector_skipped_records",
    "Records that matched a logmetrics metric but could not be used (value missing or "
    "not a number).", ("connector", "metric", "reason"))


class DimensionConfig(ComponentConfig):
    name: str = Field(min_length=1, description="record attribute, else resource attribute")
    default: str | None = None
    deprecated_names: bool | None = Field(
        None, description="also match the deprecated semantic-convention names of this "
        "attribute when it is absent (default: the connector's deprecated_names)")


class LogMetricConfig(ComponentConfig):
    name: str = Field(min_length=1)
    description: str = ""
    unit: str = ""
    type: Literal["counter", "sum", "histogram", "gauge"] = "counter"
    when: Condition | None = Field(None, description="records counted; all when absent")
    value: str | None = Field(None, description="attribute holding the number (sum, "
                                                "histogram, gauge)")
    dimensions: list[DimensionConfig] = Field(
        default_factory=list, validation_alias=AliasChoices("dimensions", "attributes"))
    buckets: list[float] | None = Field(None, description="histogram upper bounds")
    monotonic: bool = Field(True, description="sum: values only add up (a counter)")

    @model_validator(mode="after")
    def _check(self) -> LogMetricConfig:
        if self.type == "counter" and self.value is not None:
            raise ValueError("a counter counts records; use type: sum to add up `value`")
        if self.type != "counter" and not self.value:
            raise ValueError(f"type {self.type} needs `value`: the attribute holding the number")
        if self.buckets is not None:
            if self.type != "histogram":
                raise ValueError("buckets apply to histograms only")
            b = self.buckets
            if not b or any(y <= x for x, y in itertools.pairwise(b)):
                raise ValueError("buckets must be non-empty and strictly increasing")
        names = [d.name for d in self.dimensions]
        if len(set(names)) != len(names):
            raise ValueError("a dimension is listed twice")
        if self.when is not None:
            other = self.when.fields_used() - LOG_FIELDS
            if other:
                raise ValueError(f"field {sorted(other)[0]!r} is not a log record field "
                                 f"(use one of {', '.join(sorted(LOG_FIELDS))})")
        return self


class LogMetricsConfig(AggregationSettings):
    metrics: list[LogMetricConfig] = Field(min_length=1)
    deprecated_names: bool = Field(
        True, description="a dimension naming a stable semantic-convention attribute "
        "(http.response.status_code) also matches its deprecated names (http.status_code) "
        "on records that lack it")
    warn_absent_after: int = Field(
        1000, ge=0, description="warn once about a dimension absent from this many "
        "records in a row (records the metric counted); 0: never")

    @field_validator("metrics")
    @classmethod
    def _unique(cls, v: list[LogMetricConfig]) -> list[LogMetricConfig]:
        names = [m.name for m in v]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"metric {n} is defined twice")
        return v


class _Metric:
    """One configured metric: its predicate, dimension slots and series set."""

    def __init__(self, cfg: LogMetricConfig, predicate: Predicate | None, dim_slots: list[int],
                 value_slot: int | None, sset: SeriesSet, bounds: tuple[float, ...]):
        self.cfg = cfg
        self.name = cfg.name
        self.type = cfg.type
        self.when = predicate
        self.dim_slots = dim_slots
        self.dim_names = [d.name for d in cfg.dimensions]
        self.defaults = [d.default for d in cfg.dimensions]
        self.value_slot = value_slot
        self.series = sset
        self.bounds = bounds
        # Deprecated-name slots per dimension (empty: none, or not allowed), hint slots
        # (every deprecated name, for the warning), set by the connector.
        self.alias_slots: list[tuple[tuple[str, int], ...]] = []
        self.hint_slots: list[tuple[tuple[str, int], ...]] = []
        self.watch: DimensionWatch | None = None
        self.matched = 0  # records counted in the current batch

    def canonical(self, key: Any) -> tuple[Any, ...]:
        svc, *vals = key
        return (svc, *[label_text(v) if v is not None else d
                       for v, d in zip(vals, self.defaults, strict=False)])

    def describe(self, key: Any) -> tuple[Attrs, Attrs]:
        svc, *vals = key
        attrs = tuple((n, v if v is not None else d)
                      for n, d, v in zip(self.dim_names, self.defaults, vals, strict=False)
                      if v is not None or d is not None)
        resource: Attrs = (("service.name", svc),) if svc is not None else ()
        return attrs, resource


class LogMetricsConnector(AggregatingConnector):
    scope_name = "otelpipe/logmetrics"

    def __init__(self, settings: ConnectorCreateSettings, config: LogMetricsConfig,
                 clock: Clock | None = None):
        super().__init__(settings, flush_interval=config.metrics_flush_interval, clock=clock)
        self.config = config
        self.decode = ValueCache()
        self._body_cache: dict[bytes, Any] = {}
        skipped = settings.telemetry.counter(SKIPPED_RECORDS)
        self._skipped_missing: dict[str, Any] = {}
        self._skipped_nan: dict[str, Any] = {}
        slots: dict[str, int] = {}
        resource_slots: dict[str, int] = {}
        compiler = ConditionCompiler(slots, resource_slots, self._decode_body)
        self.metrics: list[_Metric] = []
        for m in config.metrics:
            predicate = compiler.compile(m.when) if m.when is not None else None
            dim_slots = [compiler.slot(d.name) for d in m.dimensions]
            value_slot = compiler.slot(m.value) if m.value else None
            bounds = tuple(m.buckets) if m.buckets is not None else DEFAULT_BUCKETS
            new_series: Callable[[], Series]
            if m.type in ("counter", "sum"):
                new_series = SumSeries
            elif m.type == "gauge":
                new_series = GaugeSeries
            else:
                new_series = functools.partial(HistogramSeries, len(bounds) + 1)
            sset = config.series_set(m.name, new_series, self.clock)
            self.sets.append(sset)
            kind = {"counter": "sum", "sum": "sum", "gauge": "gauge",
                    "histogram": "histogram"}[m.type]
            self.specs.append(MetricSpec(m.name, kind, sset, description=m.description,
                                         unit=m.unit, monotonic=m.monotonic or m.type == "counter",
                                         integer=m.type == "counter", bounds=bounds))
            metric = _Metric(m, predicate, dim_slots, value_slot, sset, bounds)
            self._init_dimension_matching(metric, compiler, config)
            self.metrics.append(metric)
            self._skipped_missing[m.name] = skipped.labels(
                self.id, m.name, "value_missing")
            self._skipped_nan[m.name] = skipped.labels(
                self.id, m.name, "not_a_number")
        self.n_slots = len(slots)
        keys = sorted(slots, key=slots.__getitem__)
        self.record_keys = KeyTable(keys)
        # Resource: the same keys (fallback), then resource_attribute keys, then service.name.
        rkeys = sorted(resource_slots, key=resource_slots.__getitem__)
        self.n_resource_only = len(rkeys)
        self.resource_keys = KeyTable([*keys, *rkeys, "service.name"])

    def _init_dimension_matching(self, m: _Metric, compiler: ConditionCompiler,
                                 config: LogMetricsConfig) -> None:
        """Slots for the deprecated names of m's dimensions, and m's absence watch."""
        dims = m.cfg.dimensions
        use = [config.deprecated_names if d.deprecated_names is None else d.deprecated_names
               for d in dims]
        m.alias_slots = [tuple((a, compiler.slot(a)) for a in aliases(d.name)) if u else ()
                         for d, u in zip(dims, use, strict=True)]
        m.hint_slots = [tuple((a, compiler.slot(a)) for a in deprecated_names(d.name))
                        if config.warn_absent_after else () for d in dims]
        watch = DimensionWatch(self.logger, self.id, f"records of metric {m.name!r}",
                               m.dim_names, m.defaults, config.warn_absent_after, use)
        m.watch = watch if watch.active else None

    def _absent(self, m: _Metric, dims: list[Any], vals: list[Any]) -> None:
        """Fill absent dimensions from their deprecated names; count what stays absent."""
        watch = m.watch
        for i, v in enumerate(dims):
            if v is not None:
                continue
            for name, slot in m.alias_slots[i]:
                if vals[slot] is not None:
                    dims[i] = vals[slot]
                    if watch is not None:
                        watch.note_matched(i, name)
                    break
            else:
                if watch is not None and not watch.done[i]:
                    watch.absent[i] += 1
                    for name, slot in m.hint_slots[i]:
                        if vals[slot] is not None:
                            watch.seen_old[i] = name
                            break

    def _end_batch(self) -> None:
        for m in self.metrics:
            if m.watch is not None and m.watch.active:
                m.watch.end_batch(m.matched)
            m.matched = 0

    def _decode_body(self, raw: bytes) -> Any:
        cache = self._body_cache
        value = cache.get(raw)
        if value is None:
            if len(cache) >= 1000:
                cache.clear()
            value = cache[raw] = any_value_to_python(AnyValue.FromString(raw))
        return value

    async def consume(self, batch: Batch) -> None:
        try:
            req = LogsProjection.FromString(batch.to_bytes())
        except DecodeError as exc:
            raise PermanentError(f"undecodable logs request: {exc}") from exc
        await self.settled()
        self.aggregate(req)

    def aggregate(self, req: Any) -> None:
        decode = self.decode
        n = self.n_slots
        table = self.record_keys.table
        metrics = self.metrics
        for rl in req.resources:
            raw: list[Any] = [None] * (n + self.n_resource_only + 1)
            self.resource_keys.scan(rl.resource.attributes, raw)
            rvals = [decode(kv) if kv is not None else None for kv in raw]
            svc = rvals[-1]
            base = rvals[:n]
            base.append(rvals[n:-1])  # resource_attribute values, for vals[-1]
            for scope in rl.scopes:
                for rec in scope.records:
                    vals = base.copy()
                    try:
                        for kv in rec.attributes:
                            entry = table[kv[1]]
                            if entry is not None:
                                for prefix, slot in entry:
                                    if kv.startswith(prefix):
                                        vals[slot] = decode(kv)
                                        break
                    except IndexError:
                        vals = base.copy()
                        found: list[Any] = [None] * n
                        self.record_keys.scan(rec.attributes, found)
                        for slot, kv in enumerate(found):
                            if kv is not None:
                                vals[slot] = decode(kv)
                    for m in metrics:
                        if m.when is None or m.when(vals, rec):
                            self._record(m, vals, rec, svc)
        self._end_batch()

    def _record(self, m: _Metric, vals: list[Any], rec: Any, svc: Any) -> None:
        value: Any = None
        if m.value_slot is not None:
            raw = vals[m.value_slot]
            if raw is None:
                self._skipped_missing[m.name].inc()
                return
            value = raw if isinstance(raw, int | float) and not isinstance(raw, bool) \
                else as_number(raw)
            if value is None or value != value:  # NaN
                self._skipped_nan[m.name].inc()
                return
        dims = [vals[s] for s in m.dim_slots]
        m.matched += 1
        if None in dims:
            self._absent(m, dims, vals)
        key = (svc, *dims)
        sset = m.series
        s = sset.cache.get(key)
        if s is None:
            s = sset.resolve(key, m.canonical, m.describe)
        t = m.type
        if t == "counter":
            s.add(1)  # type: ignore[attr-defined]
        elif t == "sum":
            s.add(value)  # type: ignore[attr-defined]
        elif t == "gauge":
            s.set(value, rec.time or rec.observed_time or self.clock())  # type: ignore[attr-defined]
        else:
            ex = (rec.trace_id, rec.span_id, value, rec.time or rec.observed_time) \
                if rec.trace_id else None
            s.observe(value, m.bounds, ex)  # type: ignore[attr-defined]


def _create(settings: ConnectorCreateSettings, config: LogMetricsConfig) -> LogMetricsConnector:
    return LogMetricsConnector(settings, config)


factory = Factory(type="logmetrics", kind=Kind.CONNECTOR, config_model=LogMetricsConfig,
                  create=_create, connector_pairs=frozenset({(Signal.LOGS, Signal.METRICS)}),
                  merges_per_worker=True,
                  description="counters, sums, histograms and gauges from matching log records")

