"""OTLP metrics as Prometheus series, shared by the `prometheus` and
`prometheusremotewrite` exporters.

Translation follows the OpenTelemetry "Prometheus and OpenMetrics
compatibility" spec and the Collector's `otlptranslator`:

- Metric names: the OTLP name split on every non-alphanumeric character and
  joined with `_` (`traces.span.metrics.calls` → `traces_span_metrics_calls`),
  the unit appended as a word unless already part of the name (`s` →
  `_seconds`, `By` → `_bytes`, `ms` → `_milliseconds`, `m/s` →
  `_meters_per_second`; `{requests}` annotations dropped), `_ratio` for
  gauges of unit `1`, `_total` for monotonic sums (counters), an optional
  `namespace_` prefix, and `_` before a leading digit.
- Label names: invalid characters become `_` (`service.name` →
  `service_name`), a leading digit gets `key_`, a single leading `_` gets
  `key`; attributes that collide after sanitizing are joined with `;` in key
  order.
- Resources: `job` = `service.namespace/service.name`, `instance` =
  `service.instance.id` on every series; the other resource attributes go to
  one `target_info` series per resource, or onto every series with
  `resource_to_telemetry_conversion`. Data point attributes win over resource
  ones on conflicts. The instrumentation scope adds `otel_scope_name` /
  `otel_scope_version` (`add_scope_labels`).
- Types: gauge → gauge; monotonic sum → counter; non-monotonic sum → gauge;
  histogram → `_bucket{le}` (cumulative) / `_sum` / `_count`; exponential
  histogram → the same classic form with one `le` per exponential bucket
  (lossless: the bucket edges are `base**i`); summary → `{quantile}` /
  `_sum` / `_count`.
- Data points flagged NO_RECORDED_VALUE become staleness markers.

`Accumulator` keeps the latest state of every series: cumulative points are
stored as they come (an older point than the stored one is ignored), delta
sums and histograms are added up into cumulative ones, and series not
updated for `expiration` seconds are dropped.

The remote-write 1.0 protobuf types (`WriteRequest` …) are built at import
from descriptors, as `pipeline.pdata.otlp` builds its projections; the schema
is the one in prometheus/prompb `remote.proto` and `types.proto`.
"""

from __future__ import annotations

import base64
import functools
import math
import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from prometheus_client.utils import floatToGoString

# --- names ---------------------------------------------------------------------

UNIT_WORDS = {
    # time
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    # bytes
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes",
    # SI
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    # misc
    "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}
PER_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week",
                  "mo": "month", "y": "year"}

_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_ANNOTATION = re.compile(r"\{[^}]*\}")

COUNTER, GAUGE, HISTOGRAM, SUMMARY, INFO = "counter", "gauge", "histogram", "summary", "info"

# Prometheus' staleness marker: a NaN with this exact bit pattern.
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

# Resource attributes that become `job` / `instance` instead of target_info labels.
IDENTIFYING = ("service.name", "service.namespace", "service.instance.id")


def _unit_word(unit: str, table: Mapping[str, str]) -> str:
    unit = unit.strip()
    if unit in table:
        return table[unit]
    return "_".join(t for t in _NON_ALNUM.split(unit) if t)


def unit_suffix(unit: str) -> list[str]:
    """Name tokens for an OTLP (UCUM) unit: `s` → [seconds], `m/s` → [meters, per, second]."""
    unit = _ANNOTATION.sub("", unit).strip()
    if not unit:
        return []
    main, _, per = unit.partition("/")
    tokens: list[str] = []
    word = _unit_word(main, UNIT_WORDS)
    if word:
        tokens.append(word)
    per_word = _unit_word(per, PER_UNIT_WORDS) if per.strip() else ""
    if per_word:
        tokens += ["per", per_word]
    return tokens


def metric_name(name: str, unit: str, kind: str, *, namespace: str = "",
                gauge_ratio: bool = False) -> str:
    """The Prometheus family name (counters without `_total`: see `sample_name`)."""
    tokens = [t for t in _NON_ALNUM.split(name) if t]
    for word in "_".join(unit_suffix(unit)).split("_"):
        if word and word not in tokens:
            tokens.append(word)
    if gauge_ratio and unit.strip() == "1" and "ratio" not in tokens:
        tokens.append("ratio")
    if kind == COUNTER:
        tokens = [t for t in tokens if t != "total"]
    if namespace:
        tokens = [t for t in _NON_ALNUM.split(namespace) if t] + tokens
    out = "_".join(tokens) or "_"
    if out[0].isdigit():
        out = "_" + out
    return out


def family_unit(family: str, unit: str) -> str:
    """The OpenMetrics UNIT of a family: the unit word when the name ends with it."""
    words = unit_suffix(unit)
    if not words:
        return ""
    word = "_".join(words)
    return word if family.endswith("_" + word) else ""


def sample_name(family: str, kind: str) -> str:
    return family + "_total" if kind == COUNTER else family


def label_name(key: str) -> str:
    out = _INVALID_LABEL_CHARS.sub("_", key)
    if not out:
        return "key_"
    if out[0].isdigit():
        return "key_" + out
    if out[0] == "_" and not out.startswith("__"):
        return "key" + out
    return out


def any_value_string(v: Any) -> str:
    """An OTLP AnyValue as a label value (arrays and maps as JSON)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return _format_float(v.double_value)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind is None:
        return ""
    return orjson.dumps(_any_value_py(v)).decode()


def _any_value_py(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_any_value_py(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value_py(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind == "double_value":
        d = v.double_value
        return d if math.isfinite(d) else _format_float(d)
    return getattr(v, kind) if kind else None


def _format_float(d: float) -> str:
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if d == int(d) and abs(d) < 1e15:
        return str(int(d))
    return repr(d)


# --- series --------------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Exemplar:
    value: float
    timestamp_ns: int
    labels: Labels  # trace_id / span_id (hex) first, then filtered attributes


@dataclass(slots=True)
class Series:
    """One Prometheus series (a histogram or summary counts as one)."""

    family: str
    kind: str
    help: str
    unit: str
    labels: Labels
    timestamp_ns: int
    start_ns: int = 0
    delta: bool = False
    stale: bool = False
    value: float = 0.0  # counter, gauge, info
    bounds: tuple[float, ...] = ()  # histogram upper bounds without +Inf
    counts: list[float] = field(default_factory=list)  # per bucket (not cumulative), +Inf last
    sum: float = 0.0
    count: float = 0.0
    quantiles: tuple[tuple[float, float], ...] = ()
    exemplars: list[Exemplar | None] = field(default_factory=list)  # per bucket / one for sums

    @property
    def key(self) -> tuple[str, Labels]:
        return self.family, self.labels

    def cumulative_buckets(self) -> list[tuple[float, float]]:
        """(le, cumulative count) pairs ending with +Inf."""
        out: list[tuple[float, float]] = []
        acc = 0.0
        for bound, c in zip((*self.bounds, math.inf), self.counts, strict=False):
            acc += c
            out.append((bound, acc))
        if not out or out[-1][0] != math.inf:
            out.append((math.inf, self.count))
        return out


class Translator:
    """Turns OTLP `ExportMetricsServiceRequest`s into `Series`."""

    def __init__(self, *, namespace: str = "", const_labels: Mapping[str, str] | None = None,
                 resource_to_telemetry: bool = False, target_info: bool = True,
                 scope_labels: bool = True, now_ns: Callable[[], int] = time.time_ns):
        self.namespace = namespace
        self.const_labels = {label_name(k): v for k, v in (const_labels or {}).items()}
        self.resource_to_telemetry = resource_to_telemetry
        self.target_info = target_info
        self.scope_labels = scope_labels
        self.now_ns = now_ns
        self._names: dict[tuple[str, str, str], str] = {}
        self._label_names: dict[str, str] = {}

    def _label(self, key: str) -> str:
        name = self._label_names.get(key)
        if name is None:
            if len(self._label_names) > 10_000:
                self._label_names.clear()
            name = self._label_names[key] = label_name(key)
        return name

    def _family(self, name: str, unit: str, kind: str, gauge: bool) -> str:
        key = (name, unit, kind if not gauge else "gauge-ratio")
        out = self._names.get(key)
        if out is None:
            if len(self._names) > 10_000:
                self._names.clear()
            out = self._names[key] = metric_name(name, unit, kind, namespace=self.namespace,
                                                 gauge_ratio=gauge)
        return out

    def _attrs(self, kvs: Iterable[Any], into: dict[str, str],
               originals: dict[str, str] | None = None) -> None:
        """Sanitized attributes into `into`; colliding keys joined with `;` in key order."""
        seen: dict[str, list[tuple[str, str]]] = {}
        for kv in kvs:
            seen.setdefault(self._label(kv.key), []).append((kv.key, any_value_string(kv.value)))
        for name, pairs in seen.items():
            if len(pairs) == 1:
                into[name] = pairs[0][1]
            else:
                into[name] = ";".join(v for _, v in sorted(pairs))

    def series(self, request: Any) -> Iterator[Series]:
        """Every series of one request, in request order (target_info first per resource)."""
        now = self.now_ns()
        for rm in request.resource_metrics:
            res_attrs = rm.resource.attributes
            ident: dict[str, str] = {}
            other = []
            for kv in res_attrs:
                if kv.key in IDENTIFYING:
                    ident[kv.key] = any_value_string(kv.value)
                else:
                    other.append(kv)
            base: dict[str, str] = dict(self.const_labels)
            if self.resource_to_telemetry:
                self._attrs(res_attrs, base)
            name = ident.get("service.name")
            ns = ident.get("service.namespace")
            if name:
                base["job"] = f"{ns}/{name}" if ns else name
            if ident.get("service.instance.id"):
                base["instance"] = ident["service.instance.id"]
            if self.target_info and other and not self.resource_to_telemetry:
                labels: dict[str, str] = dict(self.const_labels)
                self._attrs(other, labels)
                for k in ("job", "instance"):
                    if k in base:
                        labels[k] = base[k]
                latest = 0
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        if kind:
                            for dp in getattr(m, kind).data_points:
                                latest = max(latest, dp.time_unix_nano)
                yield Series("target", INFO, "Target metadata", "", _sorted(labels),
                             latest or now, value=1.0)
            for sm in rm.scope_metrics:
                scope_base = base
                if self.scope_labels and (sm.scope.name or sm.scope.version):
                    scope_base = dict(base)
                    if sm.scope.name:
                        scope_base["otel_scope_name"] = sm.scope.name
                    if sm.scope.version:
                        scope_base["otel_scope_version"] = sm.scope.version
                for m in sm.metrics:
                    yield from self._metric(m, scope_base, now)

    def _metric(self, m: Any, base: dict[str, str], now: int) -> Iterator[Series]:
        data = m.WhichOneof("data")
        if data is None:
            return
        unit = m.unit
        help_ = m.description or m.name
        if data == "gauge":
            family = self._family(m.name, unit, GAUGE, True)
            for dp in m.gauge.data_points:
                yield self._number(family, GAUGE, help_, unit, dp, base, now, False)
        elif data == "sum":
            s = m.sum
            kind = COUNTER if s.is_monotonic else GAUGE
            delta = s.aggregation_temporality == 1
            family = self._family(m.name, unit, kind, False)
            for dp in s.data_points:
                yield self._number(family, kind, help_, unit, dp, base, now, delta)
        elif data == "histogram":
            h = m.histogram
            delta = h.aggregation_temporality == 1
            family = self._family(m.name, unit, HISTOGRAM, False)
            for dp in h.data_points:
                yield self._histogram(family, help_, unit, dp, base, now, delta)
        elif data == "exponential_histogram":
            e = m.exponential_histogram
            delta = e.aggregation_temporality == 1
            family = self._family(m.name, unit, HISTOGRAM, False)
            for dp in e.data_points:
                yield self._exponential(family, help_, unit, dp, base, now, delta)
        elif data == "summary":
            family = self._family(m.name, unit, SUMMARY, False)
            for dp in m.summary.data_points:
                yield Series(family, SUMMARY, help_, family_unit(family, unit),
                             self._labels(dp, base, "quantile"),
                             dp.time_unix_nano or now, dp.start_time_unix_nano,
                             stale=bool(dp.flags & 1), sum=dp.sum, count=dp.count,
                             quantiles=tuple((q.quantile, q.value)
                                             for q in dp.quantile_values))

    def _labels(self, dp: Any, base: dict[str, str], reserved: str = "") -> Labels:
        """Series labels; `__name__` and the sample label of the type (`le`,
        `quantile`) belong to the exporter, so attributes of those names are dropped."""
        labels = dict(base)
        self._attrs(dp.attributes, labels)
        labels.pop("__name__", None)
        if reserved:
            labels.pop(reserved, None)
        return _sorted(labels)

    def _number(self, family: str, kind: str, help_: str, unit: str, dp: Any,
                base: dict[str, str], now: int, delta: bool) -> Series:
        value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
        s = Series(family, kind, help_, family_unit(family, unit), self._labels(dp, base),
                   dp.time_unix_nano or now, dp.start_time_unix_nano, delta=delta,
                   stale=bool(dp.flags & 1), value=value)
        if dp.exemplars:
            s.exemplars = [_exemplar(dp.exemplars[-1])]
        return s

    def _histogram(self, family: str, help_: str, unit: str, dp: Any, base: dict[str, str],
                   now: int, delta: bool) -> Series:
        bounds = tuple(dp.explicit_bounds)
        counts = [float(c) for c in dp.bucket_counts]
        if len(counts) != len(bounds) + 1:  # malformed or no buckets: keep count and sum only
            bounds, counts = (), [float(dp.count)]
        s = Series(family, HISTOGRAM, help_, family_unit(family, unit),
                   self._labels(dp, base, "le"),
                   dp.time_unix_nano or now, dp.start_time_unix_nano, delta=delta,
                   stale=bool(dp.flags & 1), bounds=bounds, counts=counts,
                   sum=dp.sum, count=float(dp.count))
        if dp.exemplars:
            s.exemplars = _bucket_exemplars(bounds, dp.exemplars)
        return s

    def _exponential(self, family: str, help_: str, unit: str, dp: Any, base: dict[str, str],
                     now: int, delta: bool) -> Series:
        bounds, counts = exponential_to_explicit(dp)
        s = Series(family, HISTOGRAM, help_, family_unit(family, unit),
                   self._labels(dp, base, "le"),
                   dp.time_unix_nano or now, dp.start_time_unix_nano, delta=delta,
                   stale=bool(dp.flags & 1), bounds=bounds, counts=counts,
                   sum=dp.sum, count=float(dp.count))
        if dp.exemplars:
            s.exemplars = _bucket_exemplars(bounds, dp.exemplars)
        return s


def _sorted(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def _exemplar(e: Any) -> Exemplar:
    value = e.as_double if e.WhichOneof("value") == "as_double" else float(e.as_int)
    labels: list[tuple[str, str]] = []
    if e.trace_id:
        labels.append(("trace_id", e.trace_id.hex()))
    if e.span_id:
        labels.append(("span_id", e.span_id.hex()))
    for kv in e.filtered_attributes:
        labels.append((label_name(kv.key), any_value_string(kv.value)))
    return Exemplar(value, e.time_unix_nano, tuple(labels))


def _bucket_exemplars(bounds: tuple[float, ...], exemplars: Iterable[Any]) -> list[Exemplar | None]:
    """The latest exemplar of each bucket (bucket i holds values in (bounds[i-1], bounds[i]])."""
    out: list[Exemplar | None] = [None] * (len(bounds) + 1)
    for e in exemplars:
        ex = _exemplar(e)
        i = _bucket_index(bounds, ex.value)
        cur = out[i]
        if cur is None or ex.timestamp_ns >= cur.timestamp_ns:
            out[i] = ex
    return out


def _bucket_index(bounds: tuple[float, ...], value: float) -> int:
    lo, hi = 0, len(bounds)
    while lo < hi:
        mid = (lo + hi) // 2
        if value <= bounds[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def exponential_to_explicit(dp: Any) -> tuple[tuple[float, ...], list[float]]:
    """An exponential histogram point as explicit upper bounds and per-bucket counts.

    Bucket `i` of scale `s` covers (base**i, base**(i+1)] with base = 2**(2**-s);
    negative buckets mirror it. The zero bucket becomes the bound `zero_threshold`
    (0 when unset). The last count is the +Inf bucket (always 0 here).
    """
    width = 2.0 ** -dp.scale  # log2 of the base
    bounds: list[float] = []
    counts: list[float] = []

    def edge(i: int) -> float:
        try:
            return 2.0 ** (i * width)
        except OverflowError:
            return math.inf

    neg = dp.negative
    for k in range(len(neg.bucket_counts) - 1, -1, -1):
        i = neg.offset + k
        # covers [-base**(i+1), -base**i): its upper bound is -base**i
        bounds.append(-edge(i))
        counts.append(float(neg.bucket_counts[k]))
    zero_bound = dp.zero_threshold if dp.zero_threshold > 0 else 0.0
    if not bounds or bounds[-1] < zero_bound:
        bounds.append(zero_bound)
        counts.append(float(dp.zero_count))
    else:
        counts[-1] += dp.zero_count
    pos = dp.positive
    for k, c in enumerate(pos.bucket_counts):
        b = edge(pos.offset + k + 1)
        if bounds and b <= bounds[-1]:  # inside the zero bucket's range: merge
            counts[-1] += c
            continue
        bounds.append(b)
        counts.append(float(c))
    # Edges beyond the float range belong to the +Inf bucket.
    finite = [(b, c) for b, c in zip(bounds, counts, strict=True) if not math.isinf(b)]
    overflow = sum(c for b, c in zip(bounds, counts, strict=True) if math.isinf(b))
    return tuple(b for b, _ in finite), [c for _, c in finite] + [overflow]


# --- accumulation ----------------------------------------------------------------


class Accumulator:
    """Latest state per series; delta points summed into cumulative ones.

    `clock` (seconds, monotonic) decides expiry; tests inject a fake one.
    """

    def __init__(self, expiration: float, clock: Callable[[], float] = time.monotonic):
        self.expiration = expiration
        self.clock = clock
        self.series: dict[tuple[str, Labels], tuple[Series, float]] = {}
        self.types: dict[str, str] = {}  # family -> kind of its first series
        self.version = 0  # bumped on every change, for caching renderings

    def add(self, s: Series) -> Series | None:
        """Store `s`; returns the series as now held (cumulative), or None if ignored."""
        kind = self.types.setdefault(s.family, s.kind)
        if kind != s.kind:
            return None  # one family, one type: the first one wins
        key = s.key
        now = self.clock()
        self.version += 1
        if s.stale:
            self.series.pop(key, None)
            return s
        held = self.series.get(key)
        cur = held[0] if held else None
        if cur is not None and s.timestamp_ns < cur.timestamp_ns and not s.delta:
            return None  # an older cumulative point than the one we hold
        if s.delta and cur is not None and s.kind in (COUNTER, GAUGE, HISTOGRAM):
            merged = _merge_delta(cur, s)
            if merged is not None:
                self.series[key] = (merged, now)
                return merged
        if s.delta:
            s.delta = False  # the first delta starts a cumulative series
        if cur is not None and cur.exemplars and cur.bounds == s.bounds:
            s.exemplars = _keep_exemplars(cur.exemplars, s.exemplars)
        self.series[key] = (s, now)
        return s

    def expire(self) -> int:
        """Drop series not updated for `expiration` seconds; returns how many."""
        if not self.expiration:
            return 0
        limit = self.clock() - self.expiration
        old = [k for k, (_, t) in self.series.items() if t < limit]
        for k in old:
            del self.series[k]
        if old:
            self.version += 1
            live = {k[0] for k in self.series}
            for fam in [f for f in self.types if f not in live]:
                del self.types[fam]
        return len(old)

    def __len__(self) -> int:
        return len(self.series)

    def values(self) -> Iterator[Series]:
        for s, _ in self.series.values():
            yield s


def _keep_exemplars(old: list[Exemplar | None], new: list[Exemplar | None]
                    ) -> list[Exemplar | None]:
    """Per bucket, the new exemplar if there is one, else the one held: a point
    without exemplars (a connector's next flush) does not erase the last ones."""
    if not new:
        return list(old)
    return [n if n is not None else (old[i] if i < len(old) else None)
            for i, n in enumerate(new)]


def _merge_delta(cur: Series, d: Series) -> Series | None:
    """`cur` plus the delta point `d`, as a new cumulative series (None: start over)."""
    ts = max(cur.timestamp_ns, d.timestamp_ns)
    if d.kind == HISTOGRAM:
        if cur.bounds != d.bounds:
            return None  # bucket layout changed: restart from this point
        counts = [a + b for a, b in zip(cur.counts, d.counts, strict=True)]
        exemplars = _keep_exemplars(cur.exemplars, d.exemplars)
        return Series(cur.family, cur.kind, d.help, cur.unit, cur.labels, ts, cur.start_ns,
                      bounds=cur.bounds, counts=counts, sum=cur.sum + d.sum,
                      count=cur.count + d.count, exemplars=exemplars)
    return Series(cur.family, cur.kind, d.help, cur.unit, cur.labels, ts, cur.start_ns,
                  value=cur.value + d.value, exemplars=d.exemplars or cur.exemplars)


# --- remote write protobuf ----------------------------------------------------------


def _build_remote_write_types() -> dict[str, Any]:
    T = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="otelpipe/prometheus_remote_write.proto", package="prometheus", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, str | None, bool]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, type_name, repeated in fields:
            f = m.field.add(name=fname, number=number, type=ftype)
            f.label = T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL
            if type_name:
                f.type_name = type_name

    msg, dbl, i64, string = T.TYPE_MESSAGE, T.TYPE_DOUBLE, T.TYPE_INT64, T.TYPE_STRING
    message("Label", ("name", 1, string, None, False), ("value", 2, string, None, False))
    message("Sample", ("value", 1, dbl, None, False), ("timestamp", 2, i64, None, False))
    message("Exemplar", ("labels", 1, msg, ".prometheus.Label", True),
            ("value", 2, dbl, None, False), ("timestamp", 3, i64, None, False))
    message("TimeSeries", ("labels", 1, msg, ".prometheus.Label", True),
            ("samples", 2, msg, ".prometheus.Sample", True),
            ("exemplars", 3, msg, ".prometheus.Exemplar", True))
    mm = fdp.message_type.add(name="MetricMetadata")
    enum = mm.enum_type.add(name="MetricType")
    for i, n in enumerate(("UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM",
                           "SUMMARY", "INFO", "STATESET")):
        enum.value.add(name=n, number=i)
    f = mm.field.add(name="type", number=1, type=T.TYPE_ENUM,
                     type_name=".prometheus.MetricMetadata.MetricType")
    f.label = T.LABEL_OPTIONAL
    for fname, number in (("metric_family_name", 2), ("help", 4), ("unit", 5)):
        mm.field.add(name=fname, number=number, type=string).label = T.LABEL_OPTIONAL
    message("WriteRequest", ("timeseries", 1, msg, ".prometheus.TimeSeries", True),
            ("metadata", 3, msg, ".prometheus.MetricMetadata", True))
    wr = fdp.message_type[-1]
    wr.reserved_range.add(start=2, end=3)
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name])
            for name in fd.message_types_by_name}


_RW = _build_remote_write_types()
WriteRequest: Any = _RW["WriteRequest"]
TimeSeries: Any = _RW["TimeSeries"]
MetricMetadata: Any = _RW["MetricMetadata"]


@functools.lru_cache(maxsize=4096)
def format_le(bound: float) -> str:
    """A bucket bound as the Prometheus client libraries write it (`0.5`, `1.0`, `+Inf`).

    Both exporters use this form, so a series has the same `le` whether it was
    scraped or remote-written."""
    return str(floatToGoString(bound))


Extra = tuple[str, str] | None  # the `le` / `quantile` label of a sample, if any


def sample_parts(s: Series) -> Iterator[tuple[str, Extra, float, Exemplar | None]]:
    """(sample name, extra label, value, exemplar) of every Prometheus sample of a series;
    the sample's labels are the series' labels plus the extra one."""
    if s.kind == COUNTER:
        yield s.family + "_total", None, s.value, s.exemplars[0] if s.exemplars else None
    elif s.kind == GAUGE:
        yield s.family, None, s.value, None
    elif s.kind == INFO:
        yield s.family + "_info", None, s.value, None
    elif s.kind == HISTOGRAM:
        ex = s.exemplars
        bucket = s.family + "_bucket"
        for i, (le, c) in enumerate(s.cumulative_buckets()):
            yield bucket, ("le", format_le(le)), c, ex[i] if i < len(ex) else None
        yield s.family + "_sum", None, s.sum, None
        yield s.family + "_count", None, s.count, None
    elif s.kind == SUMMARY:
        for q, v in s.quantiles:
            yield s.family, ("quantile", format_le(q)), v, None
        yield s.family + "_sum", None, s.sum, None
        yield s.family + "_count", None, s.count, None


def flat_samples(s: Series) -> Iterator[tuple[str, Labels, float, Exemplar | None]]:
    """(sample name, sorted labels, value, exemplar) of every Prometheus sample of a series."""
    for name, extra, value, ex in sample_parts(s):
        labels = s.labels if extra is None else tuple(sorted((*s.labels, extra)))
        yield name, labels, value, ex
