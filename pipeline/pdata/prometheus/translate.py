"""OTLP `ExportMetricsServiceRequest`s → Prometheus `Series` (see the package docstring
for the translation rules)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pipeline.pdata.prometheus.names import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    INFO,
    SUMMARY,
    any_value_string,
    family_unit,
    label_name,
    metric_name,
)
from pipeline.pdata.prometheus.series import Exemplar, Labels, Series

# Resource attributes that become `job` / `instance` instead of target_info labels.
IDENTIFYING = ("service.name", "service.namespace", "service.instance.id")


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
            base, other = self._resource(rm.resource.attributes)
            if self.target_info and other and not self.resource_to_telemetry:
                yield self._target_info(rm, base, other, now)
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

    def _resource(self, res_attrs: Any) -> tuple[dict[str, str], list[Any]]:
        """(labels every series of the resource gets: const labels, `job`, `instance`,
        and with resource_to_telemetry all attributes; the non-identifying attributes)."""
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
        return base, other

    def _target_info(self, rm: Any, base: dict[str, str], other: list[Any],
                     now: int) -> Series:
        """The resource's `target_info` series, stamped with its latest data point."""
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
        return Series("target", INFO, "Target metadata", "", _sorted(labels),
                      latest or now, value=1.0)

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
    width: float = 2.0 ** -dp.scale  # log2 of the base
    bounds: list[float] = []
    counts: list[float] = []

    def edge(i: int) -> float:
        try:
            e: float = 2.0 ** (i * width)
        except OverflowError:
            return math.inf
        return e

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


def translator_for(config: Any) -> Translator:
    """The translator of an exporter config with the Collector's keys (`namespace`,
    `const_labels`, `resource_to_telemetry_conversion`, `target_info`,
    `add_scope_labels`)."""
    return Translator(namespace=config.namespace,
                      const_labels=getattr(config, "const_labels", None),
                      resource_to_telemetry=config.resource_to_telemetry_conversion.enabled,
                      target_info=config.target_info.enabled,
                      scope_labels=config.add_scope_labels)
