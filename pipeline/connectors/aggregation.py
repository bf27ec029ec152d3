"""The one aggregation engine behind the metric-deriving connectors.

`redmetrics` (spans → RED metrics) and `logmetrics` (log records → counters,
sums, histograms, gauges) are two front ends over this module. It owns:

- **series**: one aggregate per distinct set of dimension values
  (`SumSeries`, `GaugeSeries`, `HistogramSeries`, `ExpHistogramSeries`);
- **`SeriesSet`**: the series of one metric, with the *cardinality limit*
  (beyond it every new combination lands in one overflow series whose only
  attribute is `otel.metric.overflow="true"`), *per-series expiry* (a series
  that received nothing for `series_expiry` is dropped and no longer emitted),
  and *temporality* (cumulative: a series' start time is its creation time;
  delta: every flush reports what arrived since the previous successful flush,
  whose time is the start time);
- **`AggregatingConnector`**: the flush loop. Every `metrics_flush_interval` it
  snapshots the sets, builds one OTLP metrics request (one `ResourceMetrics`
  per distinct resource, i.e. per `service.name`) and hands it to the metrics
  pipeline. Only when that succeeds are delta counts subtracted and exemplars
  cleared: a `RetryableError` downstream keeps the state, and the next flush
  sends it again (cumulative values stay right; delta values accumulate).

Hot-path contract for front ends: compute a cheap *raw key* (e.g. a tuple of
undecoded attribute bytes), look it up in `SeriesSet.cache`, and only on a
miss call `SeriesSet.resolve(raw_key, canonicalize)`, which decodes the key
once into the canonical series identity. The cache is bounded and cleared when
series expire, so memory stays bounded by the cardinality limit.

Acknowledgement: a batch is "delivered" once folded into the aggregates. A
crash loses what was aggregated since the last flush; that is inherent to
aggregation (the Collector's spanmetrics connector behaves the same).
"""

from __future__ import annotations

import abc
import asyncio
import bisect
import contextlib
import enum
import math
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from pydantic import BeforeValidator, Field

from pipeline import __version__
from pipeline.component import Component, ComponentConfig, Consumer, CreateSettings, Signal
from pipeline.config.types import Duration
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch

Clock = Callable[[], int]
"""Wall-clock time in nanoseconds since the epoch (injectable for tests)."""

Attrs = tuple[tuple[str, Any], ...]
"""Attributes as ((key, value), ...); values are str, int, float or bool."""

OVERFLOW_ATTRIBUTE = "otel.metric.overflow"
OVERFLOW_ATTRS: Attrs = ((OVERFLOW_ATTRIBUTE, "true"),)

DEFAULT_CARDINALITY_LIMIT = 5000
DEFAULT_SERIES_EXPIRY = 300.0
DEFAULT_FLUSH_INTERVAL = 15.0
# Exponential histograms start at the finest scale and downscale to fit max_size.
EXP_MAX_SCALE = 20


class Temporality(enum.StrEnum):
    CUMULATIVE = "cumulative"
    DELTA = "delta"

    @classmethod
    def parse(cls, value: object) -> Temporality:
        """`cumulative`/`delta`, or the Collector's `AGGREGATION_TEMPORALITY_*` spelling."""
        text = str(value).strip().lower().removeprefix("aggregation_temporality_")
        try:
            return cls(text)
        except ValueError:
            raise ValueError("expected cumulative or delta (or AGGREGATION_TEMPORALITY_"
                             "CUMULATIVE / AGGREGATION_TEMPORALITY_DELTA)") from None

    @property
    def otlp(self) -> int:
        if self is Temporality.DELTA:
            return AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
        return AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


TemporalityField = Annotated[Temporality, BeforeValidator(Temporality.parse)]


class AggregationSettings(ComponentConfig):
    """The aggregation keys every aggregating connector's config has."""

    aggregation_temporality: TemporalityField = Temporality.CUMULATIVE
    metrics_flush_interval: Duration = Field(DEFAULT_FLUSH_INTERVAL, gt=0)
    aggregation_cardinality_limit: int = Field(
        DEFAULT_CARDINALITY_LIMIT, ge=1,
        description="series per metric; further combinations go to one overflow series "
                    "with otel.metric.overflow=\"true\"")
    series_expiry: Duration = Field(
        DEFAULT_SERIES_EXPIRY, description="drop a series nothing updated for this long; 0: "
                                           "never")

    def series_set(self, name: str, new_series: Callable[[], Series],
                   clock: Clock) -> SeriesSet:
        """The series of one metric, under these settings."""
        return SeriesSet(name, new_series, limit=self.aggregation_cardinality_limit,
                         expiry=self.series_expiry, temporality=self.aggregation_temporality,
                         clock=clock)


# --------------------------------------------------------------------------------------
# Attribute values


def any_value_to_python(value: AnyValue) -> Any:
    """A scalar for an OTLP AnyValue: str, bool, int or float (others as text)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "array_value":
        return "[" + ",".join(str(label_text(any_value_to_python(v)))
                              for v in value.array_value.values) + "]"
    return "{" + ",".join(f"{kv.key}:{label_text(any_value_to_python(kv.value))}"
                          for kv in value.kvlist_value.values) + "}"


def label_text(value: Any) -> str:
    """The text form used to identify a series (the Collector's `AsString`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def key_prefix(key: str) -> bytes:
    """Wire bytes every serialized `KeyValue` with this key starts with.

    Field 1 (`key`, tag 0x0a), its varint length, the UTF-8 key. Encoders write
    fields in field-number order, so testing `kv_bytes.startswith(prefix)`
    selects an attribute without decoding it.
    """
    raw = key.encode()
    n = len(raw)
    varint = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            varint.append(byte | 0x80)
        else:
            varint.append(byte)
            break
    return b"\x0a" + bytes(varint) + raw


class KeyTable:
    """Selects the serialized KeyValues whose key is one of `keys`.

    `table[kv[1]]` (the first byte of the key length) is None for almost every
    attribute, so the cost per unwanted attribute is one index and one test.
    """

    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)
        table: list[list[tuple[bytes, int]] | None] = [None] * 256
        for slot, key in enumerate(self.keys):
            prefix = key_prefix(key)
            entry = table[prefix[1]]
            if entry is None:
                entry = table[prefix[1]] = []
            entry.append((prefix, slot))
        self.table: list[tuple[tuple[bytes, int], ...] | None] = [
            tuple(e) if e else None for e in table]

    def scan(self, attributes: Iterable[bytes], out: list[Any]) -> None:
        """Store each wanted KeyValue's bytes into `out[slot]` (robust slow path)."""
        table = self.table
        for kv in attributes:
            if len(kv) < 2:
                continue
            entry = table[kv[1]]
            if entry is not None:
                for prefix, slot in entry:
                    if kv.startswith(prefix):
                        out[slot] = kv
                        break


class ValueCache:
    """Decodes serialized KeyValues (or, with `any_value=True`, serialized
    AnyValues) once per distinct bytes value (bounded)."""

    def __init__(self, max_size: int = 10_000, *, any_value: bool = False):
        self.max_size = max_size
        self.any_value = any_value
        self.values: dict[bytes, Any] = {}

    def __call__(self, kv: bytes) -> Any:
        value = self.values.get(kv)
        if value is None:
            if len(self.values) >= self.max_size:
                self.values.clear()
            av = AnyValue.FromString(kv) if self.any_value else KeyValue.FromString(kv).value
            value = self.values[kv] = any_value_to_python(av)
        return value


def to_key_values(attrs: Attrs) -> list[KeyValue]:
    out = []
    for key, value in attrs:
        if isinstance(value, bool):
            out.append(KeyValue(key=key, value=AnyValue(bool_value=value)))
        elif isinstance(value, int):
            out.append(KeyValue(key=key, value=AnyValue(int_value=value)))
        elif isinstance(value, float):
            out.append(KeyValue(key=key, value=AnyValue(double_value=value)))
        else:
            out.append(KeyValue(key=key, value=AnyValue(string_value=str(value))))
    return out


# --------------------------------------------------------------------------------------
# Projection message types


def build_projection(file_name: str, messages: dict[str, list[tuple[str, int, str]]],
                     syntax: str = "proto3") -> dict[str, Any]:
    """Message classes declaring only the fields a component reads.

    `messages` maps a message name to (field, number, type) triples; type is a
    scalar type name (`bytes`, `string`, `int32`, `uint32`, `fixed64`) or
    another message's name, prefixed with `repeated ` for repeated fields, or
    `attrmap`: a `map<string, bytes>` over a repeated `KeyValue` field (a map
    entry has KeyValue's wire form: key = 1, value = 2), so `field.get(key)`
    returns one attribute's serialized `AnyValue` without touching the others
    (duplicate keys: the last wins). With `syntax="proto2"` string map keys are
    not UTF-8 checked at parse time (`get` by key never decodes stored keys).
    Undeclared fields are skipped by the parser without building objects.
    """
    T = descriptor_pb2.FieldDescriptorProto
    scalars = {"bytes": T.TYPE_BYTES, "string": T.TYPE_STRING, "int32": T.TYPE_INT32,
               "uint32": T.TYPE_UINT32, "fixed64": T.TYPE_FIXED64}
    package = "otelpipe." + file_name.replace("/", "_").removesuffix(".proto")
    fdp = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax=syntax)
    for name, fields in messages.items():
        m = fdp.message_type.add(name=name)
        for fname, number, type_name in fields:
            if type_name == "attrmap":
                entry = m.nested_type.add(name=fname.title().replace("_", "") + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=T.TYPE_STRING,
                                label=T.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=T.TYPE_BYTES,
                                label=T.LABEL_OPTIONAL)
                m.field.add(name=fname, number=number, type=T.TYPE_MESSAGE,
                            label=T.LABEL_REPEATED,
                            type_name=f".{package}.{name}.{entry.name}")
                continue
            repeated = type_name.startswith("repeated ")
            type_name = type_name.removeprefix("repeated ")
            f = m.field.add(name=fname, number=number)
            f.label = T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL
            if type_name in scalars:
                f.type = scalars[type_name]
            else:
                f.type = T.TYPE_MESSAGE
                f.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{package}.{name}")) for name in messages}


# --------------------------------------------------------------------------------------
# Series

Exemplar = tuple[bytes, bytes, float, int]
"""(trace id, span id, value in the series' input unit, time in ns)."""


class Series:
    """One aggregate. `count()` is the number of observations (cumulative, or in
    delta mode since the last successful flush)."""

    __slots__ = ("attrs", "kvs", "last_seen", "mark", "resource", "start")

    def __init__(self) -> None:
        self.attrs: Attrs = ()
        self.resource: Attrs = ()
        self.start = 0
        self.last_seen = 0
        self.mark = 0
        self.kvs: list[KeyValue] | None = None

    @abc.abstractmethod
    def count(self) -> int: ...

    @abc.abstractmethod
    def freeze(self) -> Any:
        """An immutable copy of the current state (what a flush reports)."""

    @abc.abstractmethod
    def subtract(self, frozen: Any) -> None:
        """Delta mode, after a successful flush: remove what that flush reported."""

    def clear_exemplars(self) -> None:
        return None

    def key_values(self) -> list[KeyValue]:
        if self.kvs is None:
            self.kvs = to_key_values(self.attrs)
        return self.kvs


class SumSeries(Series):
    __slots__ = ("n", "value")

    def __init__(self) -> None:
        super().__init__()
        self.value: float = 0
        self.n = 0

    def add(self, value: float) -> None:
        self.value += value
        self.n += 1

    def count(self) -> int:
        return self.n

    def freeze(self) -> tuple[float, int]:
        return self.value, self.n

    def subtract(self, frozen: tuple[float, int]) -> None:
        self.value -= frozen[0]
        self.n -= frozen[1]


class GaugeSeries(Series):
    __slots__ = ("n", "time", "value")

    def __init__(self) -> None:
        super().__init__()
        self.value: float = 0
        self.n = 0
        self.time = 0

    def set(self, value: float, time_ns: int) -> None:
        self.value = value
        self.time = time_ns
        self.n += 1

    def count(self) -> int:
        return self.n

    def freeze(self) -> tuple[float, int, int]:
        return self.value, self.n, self.time

    def subtract(self, frozen: tuple[float, int, int]) -> None:
        self.n -= frozen[1]


class HistogramSeries(Series):
    """Explicit-bucket histogram; `buckets[i]` counts values in (bounds[i-1], bounds[i]].

    Front ends may update `buckets`, `sum` and `exemplars` directly (hot path).
    Exemplars: the first observation per bucket since the last flush.
    """

    __slots__ = ("buckets", "exemplars", "sum")

    def __init__(self, n_buckets: int) -> None:
        super().__init__()
        self.buckets = [0] * n_buckets
        self.sum: float = 0
        self.exemplars: list[Exemplar | None] = [None] * n_buckets

    def observe(self, value: float, bounds: Sequence[float],
                exemplar: Exemplar | None = None) -> None:
        i = bisect.bisect_left(bounds, value)
        self.buckets[i] += 1
        self.sum += value
        if exemplar is not None and self.exemplars[i] is None:
            self.exemplars[i] = exemplar

    def count(self) -> int:
        return sum(self.buckets)

    def freeze(self) -> tuple[int, float, tuple[int, ...], tuple[Exemplar, ...]]:
        buckets = tuple(self.buckets)
        return (sum(buckets), self.sum, buckets,
                tuple(e for e in self.exemplars if e is not None))

    def subtract(self, frozen: tuple[int, float, tuple[int, ...], Any]) -> None:
        self.sum -= frozen[1]
        b = self.buckets
        for i, n in enumerate(frozen[2]):
            b[i] -= n

    def clear_exemplars(self) -> None:
        self.exemplars = [None] * len(self.buckets)


@dataclass(frozen=True)
class ExpFrozen:
    count: int
    sum: float
    zero_count: int
    scale: int
    counts: dict[int, int]
    exemplars: tuple[Exemplar, ...]


class ExpHistogramSeries(Series):
    """Base-2 exponential histogram of non-negative values (OTLP semantics: bucket
    `i` at scale `s` holds values in (2^(i·2^-s), 2^((i+1)·2^-s)]). Starts at scale
    20 and halves its resolution whenever more than `max_size` buckets would be
    needed. Keeps at most `MAX_EXEMPLARS` exemplars per flush interval.

    Bucket indices depend on the unit: values are recorded in the input unit
    (e.g. ns) and indexed as `value / divisor` (the emitted unit, e.g. s)."""

    __slots__ = ("counts", "divisor", "exemplars", "hi", "lo", "max_size", "n", "scale",
                 "sum", "zero_count")
    MAX_EXEMPLARS = 5

    def __init__(self, max_size: int, divisor: float = 1.0) -> None:
        super().__init__()
        self.max_size = max_size
        self.divisor = divisor
        self.reset()
        self.exemplars: list[Exemplar] = []

    def reset(self) -> None:
        self.scale = EXP_MAX_SCALE
        self.counts: dict[int, int] = {}
        self.lo = self.hi = 0
        self.n = 0
        self.zero_count = 0
        self.sum: float = 0

    @staticmethod
    def index(value: float, scale: int) -> int:
        if scale > 0:
            return math.ceil(math.log2(value) * (1 << scale)) - 1
        mantissa, exp = math.frexp(value)
        idx = exp - 2 if mantissa == 0.5 else exp - 1
        return idx >> -scale

    def observe(self, value: float, exemplar: Exemplar | None = None) -> None:
        self.n += 1
        self.sum += value
        if exemplar is not None and len(self.exemplars) < self.MAX_EXEMPLARS:
            self.exemplars.append(exemplar)
        if value <= 0:
            self.zero_count += 1
            return
        idx = self.index(value / self.divisor, self.scale)
        if not self.counts:
            self.lo = self.hi = idx
        else:
            lo, hi = min(self.lo, idx), max(self.hi, idx)
            if hi - lo + 1 > self.max_size:
                change = 0
                while (hi >> change) - (lo >> change) + 1 > self.max_size:
                    change += 1
                self._downscale(change)
                idx >>= change
                lo, hi = lo >> change, hi >> change
            self.lo, self.hi = lo, hi
        counts = self.counts  # after a downscale: the merged dict
        counts[idx] = counts.get(idx, 0) + 1

    def _downscale(self, change: int) -> None:
        merged: dict[int, int] = {}
        for i, c in self.counts.items():
            j = i >> change
            merged[j] = merged.get(j, 0) + c
        self.counts = merged
        self.scale -= change
        self.lo >>= change
        self.hi >>= change

    def count(self) -> int:
        return self.n

    def freeze(self) -> ExpFrozen:
        return ExpFrozen(self.n, self.sum, self.zero_count, self.scale, dict(self.counts),
                         tuple(self.exemplars))

    def subtract(self, frozen: ExpFrozen) -> None:
        change = frozen.scale - self.scale  # scale only decreases
        for i, c in frozen.counts.items():
            j = i >> change
            left = self.counts.get(j, 0) - c
            if left > 0:
                self.counts[j] = left
            else:
                self.counts.pop(j, None)
        self.n -= frozen.count
        self.sum -= frozen.sum
        self.zero_count -= frozen.zero_count
        if self.n == 0:
            self.reset()
        elif self.counts:
            self.lo, self.hi = min(self.counts), max(self.counts)

    def clear_exemplars(self) -> None:
        self.exemplars = []


# --------------------------------------------------------------------------------------
# Series sets: cardinality limit, overflow, expiry, temporality


Canonicalize = Callable[[Hashable], Hashable]
"""raw key → canonical key (the series identity; cheap: runs on every cache miss)."""
Describe = Callable[[Hashable], tuple[Attrs, Attrs]]
"""raw key → (data point attributes, resource attributes); runs when a series is made."""


@dataclass
class Snapshot:
    points: list[tuple[Series, Any]]
    start: int  # delta: time of the previous successful flush
    expired: int


class SeriesSet:
    """The series of one metric (or of metrics that share their series, like
    redmetrics' calls and duration)."""

    def __init__(self, name: str, new_series: Callable[[], Series], *,
                 limit: int = DEFAULT_CARDINALITY_LIMIT,
                 expiry: float = DEFAULT_SERIES_EXPIRY,
                 temporality: Temporality = Temporality.CUMULATIVE,
                 clock: Clock = time.time_ns):
        self.name = name
        self.new_series = new_series
        self.limit = limit
        self.expiry_ns = int(expiry * 1e9)
        self.delta = temporality is Temporality.DELTA
        self.clock = clock
        self.series: dict[Hashable, Series] = {}
        self.overflow: Series | None = None
        # raw key → series; a bounded lookup cache in front of `series`.
        self.cache: dict[Hashable, Series] = {}
        self.cache_limit = 2 * limit + 1024
        self.last_flush = clock()
        self.overflowed = 0  # distinct raw keys sent to the overflow series

    def __len__(self) -> int:
        """Series held, the overflow series included."""
        return len(self.series) + (self.overflow is not None)

    def resolve(self, raw_key: Hashable, canonicalize: Canonicalize,
                describe: Describe) -> Series:
        """The series for `raw_key` (a cache miss): creates it, or the overflow series
        when the limit is reached."""
        ckey = canonicalize(raw_key)
        series = self.series.get(ckey)
        if series is None:
            if len(self.series) < self.limit:
                series = self._new(*describe(raw_key))
                self.series[ckey] = series
            else:
                series = self.overflow
                if series is None:
                    series = self.overflow = self._new(OVERFLOW_ATTRS, ())
                self.overflowed += 1
        if len(self.cache) >= self.cache_limit:
            self.cache.clear()
        self.cache[raw_key] = series
        return series

    def _new(self, attrs: Attrs, resource: Attrs) -> Series:
        s = self.new_series()
        s.attrs = attrs
        s.resource = resource
        s.start = s.last_seen = self.clock()
        return s

    def snapshot(self, now: int) -> Snapshot:
        """Marks series seen since the last flush, drops expired ones, and freezes
        what this flush reports (delta: only series with new data)."""
        delta = self.delta
        expiry = self.expiry_ns
        points: list[tuple[Series, Any]] = []
        expired: list[Hashable] = []
        items: list[tuple[Hashable, Series]] = list(self.series.items())
        if self.overflow is not None:
            items.append((None, self.overflow))
        for key, s in items:
            n = s.count()
            if n != s.mark:
                s.last_seen = now
                if not delta:
                    s.mark = n
            elif expiry and now - s.last_seen >= expiry:
                expired.append(key)
                continue
            if delta and n == 0:
                continue
            points.append((s, s.freeze()))
        for key in expired:
            if key is None:
                self.overflow = None
            else:
                del self.series[key]
        if expired:
            self.cache.clear()
        return Snapshot(points, self.last_flush, len(expired))

    def commit(self, snapshot: Snapshot, now: int) -> None:
        """The flush of `snapshot` succeeded (or was dropped for good)."""
        for s, frozen in snapshot.points:
            if self.delta:
                s.subtract(frozen)
            s.clear_exemplars()
        self.last_flush = now


# --------------------------------------------------------------------------------------
# Emission


@dataclass
class MetricSpec:
    """How one OTLP metric is rendered from a series set.

    kind: `sum` (SumSeries), `gauge` (GaugeSeries), `count` (a monotonic int sum of
    a histogram set's observation counts), `histogram`, `exponential_histogram`.
    Recorded values are divided by `divisor` to get the emitted unit (ns → s:
    1e9); `bounds` are the emitted explicit bounds (already in that unit).
    """

    name: str
    kind: str
    series: SeriesSet
    description: str = ""
    unit: str = ""
    monotonic: bool = True
    integer: bool = False
    divisor: float = 1.0
    bounds: tuple[float, ...] = ()


def build_request(specs: Sequence[MetricSpec], snapshots: dict[int, Snapshot], now: int,
                  scope_name: str) -> tuple[ExportMetricsServiceRequest, int]:
    """One request, one ResourceMetrics per distinct resource; returns (request, points)."""
    req = ExportMetricsServiceRequest()
    scopes: dict[Attrs, Any] = {}
    points = 0
    for spec in specs:
        snap = snapshots[id(spec.series)]
        if not snap.points:
            continue
        containers: dict[Attrs, Any] = {}
        delta = spec.series.delta
        temporality = (Temporality.DELTA if delta else Temporality.CUMULATIVE).otlp
        div = spec.divisor
        kind = spec.kind
        for s, frozen in snap.points:
            res = s.resource
            container = containers.get(res)
            if container is None:
                sm = scopes.get(res)
                if sm is None:
                    rm = req.resource_metrics.add()
                    rm.resource.attributes.extend(to_key_values(res))
                    sm = scopes[res] = rm.scope_metrics.add()
                    sm.scope.name = scope_name
                    sm.scope.version = __version__
                m = sm.metrics.add(name=spec.name, description=spec.description, unit=spec.unit)
                if kind in ("sum", "count"):
                    container = m.sum
                    container.is_monotonic = spec.monotonic
                    container.aggregation_temporality = temporality
                elif kind == "gauge":
                    container = m.gauge
                elif kind == "histogram":
                    container = m.histogram
                    container.aggregation_temporality = temporality
                else:
                    container = m.exponential_histogram
                    container.aggregation_temporality = temporality
                containers[res] = container
            dp = container.data_points.add()
            dp.attributes.extend(s.key_values())
            dp.time_unix_nano = now
            if kind != "gauge":
                dp.start_time_unix_nano = snap.start if delta else s.start
            points += 1
            if kind == "count":
                dp.as_int = frozen[0] if isinstance(frozen, tuple) else frozen.count
            elif kind in ("sum", "gauge"):
                if spec.integer:
                    dp.as_int = int(frozen[0] / div)
                else:
                    dp.as_double = frozen[0] / div
            elif kind == "histogram":
                count, total, buckets, exemplars = frozen
                dp.count = count
                dp.sum = total / div
                dp.explicit_bounds.extend(spec.bounds)
                dp.bucket_counts.extend(buckets)
                _add_exemplars(dp, exemplars, div)
            else:
                dp.count = frozen.count
                dp.sum = frozen.sum / div
                dp.scale = frozen.scale
                dp.zero_count = frozen.zero_count
                if frozen.counts:
                    lo, hi = min(frozen.counts), max(frozen.counts)
                    dp.positive.offset = lo
                    get = frozen.counts.get
                    dp.positive.bucket_counts.extend(get(i, 0) for i in range(lo, hi + 1))
                _add_exemplars(dp, frozen.exemplars, div)
    return req, points


def _add_exemplars(dp: Any, exemplars: Iterable[Exemplar], divisor: float) -> None:
    for trace_id, span_id, value, time_ns in exemplars:
        ex = dp.exemplars.add()
        ex.time_unix_nano = time_ns
        ex.as_double = value / divisor
        if trace_id:
            ex.trace_id = trace_id
        if span_id:
            ex.span_id = span_id


# --------------------------------------------------------------------------------------
# The flushing connector


class AggregatingConnector(Component, Consumer):
    """Base of the metric-deriving connectors: folds data into series sets (the
    subclass's `consume`) and emits them every `flush_interval` seconds."""

    scope_name = "otelpipe"

    def __init__(self, settings: CreateSettings, *, flush_interval: float,
                 clock: Clock | None = None):
        self.id = str(settings.id)
        self.logger = settings.logger
        self.next = settings.consumers.get(Signal.METRICS)
        self.flush_interval = flush_interval
        self.clock: Clock = clock or time.time_ns
        self.sets: list[SeriesSet] = []
        self.specs: list[MetricSpec] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        tel = settings.telemetry
        self._series_gauge = tel.connector_series
        self._expired = tel.connector_expired_series.labels(self.id)
        self._flushes = {o: tel.connector_flushes.labels(self.id, o)
                         for o in ("ok", "retry", "dropped", "failed")}
        self._points = tel.connector_emitted_points.labels(self.id)

    async def start(self, host: Any) -> None:
        if self.flush_interval > 0:
            self._task = asyncio.create_task(self._loop(), name=f"flush {self.id}")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.flush_interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if loop.time() - deadline > self.flush_interval:
                deadline = loop.time()  # fell behind (a slow flush): do not burst
            try:
                await self.flush()
            except Exception:  # never let the loop die
                self.logger.exception("metrics flush failed")

    async def flush(self) -> bool:
        """Emit the current aggregates; True when the metrics pipeline accepted them."""
        async with self._lock:
            now = self.clock()
            snapshots = {id(s): s.snapshot(now) for s in self.sets}
            for s in self.sets:
                self._series_gauge.labels(self.id, s.name).set(len(s))
                expired = snapshots[id(s)].expired
                if expired:
                    self._expired.inc(expired)
            req, points = build_request(self.specs, snapshots, now, self.scope_name)
            if points and self.next is not None:
                try:
                    await self.next.consume(Batch(Signal.METRICS, message=req, items=points))
                except RetryableError as exc:
                    self._flushes["retry"].inc()
                    self.logger.warning("metrics pipeline refused the flush; keeping the "
                                        "aggregates for the next one",
                                        extra={"error": str(exc), "data_points": points})
                    return False
                except PermanentError as exc:
                    self._flushes["dropped"].inc()
                    self.logger.error("metrics pipeline rejected the flush permanently",
                                      extra={"error": str(exc), "data_points": points})
                    self._commit(snapshots, now)
                    return False
                except Exception as exc:
                    self._flushes["failed"].inc()
                    self.logger.error("metrics flush failed; keeping the aggregates",
                                      extra={"error": str(exc), "data_points": points})
                    return False
            self._commit(snapshots, now)
            self._flushes["ok"].inc()
            self._points.inc(points)
            return True

    def _commit(self, snapshots: dict[int, Snapshot], now: int) -> None:
        for s in self.sets:
            s.commit(snapshots[id(s)], now)

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()  # a last flush: what was aggregated since the previous one
