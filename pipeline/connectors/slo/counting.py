"""Events of the SLOs counted from OTLP metrics: the `slo` connector's input.

How each metric type is counted is in the package docstring
(`pipeline.connectors.slo`). This is the connector's hot path: one pass over a
request's data points, the SLOs' selectors looked up by metric name.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.pdata.anyvalue import any_value_to_python, label_text
from pipeline.slo.engine import Engine
from pipeline.slo.model import SLO, TIME_UNITS, Selector

_OPS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "ge": operator.ge,
    "gte": operator.ge, "eq": operator.eq, "ne": operator.ne}
_ROLE = {"good": 0, "bad": 1, "total": 2}
SeriesKey = tuple[Any, ...]
Counts = dict[str, list[float]]  # slo -> [good, bad, total]


@dataclass
class _Entry:
    slo: str
    role: str  # good | bad | total
    selector: Selector
    match: tuple[tuple[str, str], ...]


class _Series:
    __slots__ = ("last_seen", "start", "value")

    def __init__(self, start: int, value: Any, last_seen: float):
        self.start = start
        self.value = value
        self.last_seen = last_seen


def _threshold_in(selector: Selector, unit: str) -> float:
    """The selector's threshold in the metric's unit (thresholds on time units are
    written in seconds)."""
    assert selector.value is not None
    scale = TIME_UNITS.get(unit.strip())
    if scale is None:
        return selector.value
    return selector.value / scale


def _number(dp: Any) -> float:
    value: float = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
    return value


class _Batch:
    """What one request adds up to: counts per SLO, and the SLOs with an input problem
    in it (skipped: a total without its good or bad count would skew the SLI)."""

    __slots__ = ("counts", "skip")

    def __init__(self) -> None:
        self.counts: Counts = {}
        self.skip: set[str] = set()

    def add(self, e: _Entry, n: float) -> None:
        self.counts.setdefault(e.slo, [0.0, 0.0, 0.0])[_ROLE[e.role]] += n


class EventCounter:
    """Counts the good, bad and total events of each SLO into the engine's trackers.

    Cumulative series are turned into deltas (`series`: the last value per series,
    at most `series_limit`); `watch_start` (ns) tells a series born while watching
    (counted in full) from one that existed before (its first value is a baseline).
    Input problems are logged once and kept per SLO in `problems`.
    """

    def __init__(self, slos: Iterable[SLO], engine: Engine, logger: logging.Logger,
                 series_limit: int, watch_start: int):
        self.engine = engine
        self.logger = logger
        self.series_limit = series_limit
        self.watch_start = watch_start
        self.index: dict[str, list[_Entry]] = {}
        self.problems: dict[str, list[str]] = {}
        for slo in slos:
            self.problems[slo.name] = []
            for role, sel in slo.indicator.selectors():
                self.index.setdefault(sel.metric, []).append(
                    _Entry(slo.name, role, sel, tuple(sorted(sel.match.items()))))
        self.series: dict[SeriesKey, _Series] = {}

    def ingest(self, req: ExportMetricsServiceRequest) -> None:
        """Count the events of one metrics request."""
        index = self.index
        now_s = self.engine.now()
        batch = _Batch()
        for rm in req.resource_metrics:
            res_attrs: dict[str, str] | None = None
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    entries = index.get(m.name)
                    if not entries:
                        continue
                    if res_attrs is None:
                        res_attrs = {kv.key: label_text(any_value_to_python(kv.value))
                                     for kv in rm.resource.attributes}
                    self._metric(m, entries, res_attrs, now_s, batch)
        for name, (good, bad, total) in batch.counts.items():
            if name in batch.skip:
                continue
            tracker = self.engine.trackers[name]
            if tracker.counts_good:
                tracker.record(now_s, total, good=good)
            else:
                tracker.record(now_s, total, bad=bad)

    def _metric(self, m: Any, entries: list[_Entry], res_attrs: dict[str, str], now_s: float,
                batch: _Batch) -> None:
        kind = m.WhichOneof("data")
        if kind is None:
            return
        data = getattr(m, kind)
        if kind == "sum" and data.is_monotonic:
            count = self._monotonic_sum
        elif kind in ("gauge", "sum"):
            count = self._sample
        elif kind == "histogram":
            count = self._histogram
        elif kind in ("exponential_histogram", "summary"):
            count = self._count_only
        else:
            return
        for dp in data.data_points:
            attrs = dict(res_attrs)
            for kv in dp.attributes:
                attrs[kv.key] = label_text(any_value_to_python(kv.value))
            matching = [e for e in entries
                        if all(attrs.get(k) == v for k, v in e.match)]
            if matching:
                count(m, kind, data, dp, (m.name, *sorted(attrs.items())), matching, now_s,
                      batch)

    def _monotonic_sum(self, m: Any, kind: str, data: Any, dp: Any, key: SeriesKey,
                       matching: list[_Entry], now_s: float, batch: _Batch) -> None:
        value = _number(dp)
        delta = (value if data.aggregation_temporality == 1
                 else self._cumulative(key, dp.start_time_unix_nano, value, now_s))
        for e in matching:
            if e.selector.op is not None:
                self._problem(e.slo, f"{m.name} is a counter: a threshold "
                                     "(op/value) cannot be applied to it")
                batch.skip.add(e.slo)
                continue
            batch.add(e, delta)

    def _sample(self, m: Any, kind: str, data: Any, dp: Any, key: SeriesKey,
                matching: list[_Entry], now_s: float, batch: _Batch) -> None:
        if not self._new_sample(key, dp.time_unix_nano, now_s):
            return
        value = _number(dp)
        for e in matching:
            sel = e.selector
            if sel.op is None or _OPS[sel.op](value, _threshold_in(sel, m.unit)):
                batch.add(e, 1)

    def _histogram(self, m: Any, kind: str, data: Any, dp: Any, key: SeriesKey,
                   matching: list[_Entry], now_s: float, batch: _Batch) -> None:
        bounds = list(dp.explicit_bounds)
        current = (dp.count, tuple(dp.bucket_counts))
        count: float
        buckets: tuple[float, ...]
        if data.aggregation_temporality == 1:
            count, buckets = current
        else:
            count, buckets = self._cumulative_hist(key, dp.start_time_unix_nano, current, now_s)
        for e in matching:
            sel = e.selector
            if sel.op is None:
                n: float = count
            else:
                i = self._bound_index(e, m.name, bounds, _threshold_in(sel, m.unit), m.unit)
                if i is None:
                    batch.skip.add(e.slo)
                    continue
                n = sum(buckets[:i + 1])
            batch.add(e, n)

    def _count_only(self, m: Any, kind: str, data: Any, dp: Any, key: SeriesKey,
                    matching: list[_Entry], now_s: float, batch: _Batch) -> None:
        """Exponential histograms and summaries: only their count can be used."""
        if getattr(data, "aggregation_temporality", 2) == 1:
            count: float = dp.count
        else:
            count = self._cumulative(key, dp.start_time_unix_nano, dp.count, now_s)
        for e in matching:
            if e.selector.op is not None:
                self._problem(e.slo, f"{m.name} is an {kind.replace('_', ' ')}: "
                                     "observations <= a threshold can only be read "
                                     "from explicit bucket bounds")
                batch.skip.add(e.slo)
                continue
            batch.add(e, count)

    def _bound_index(self, e: _Entry, metric: str, bounds: list[float], value: float,
                     unit: str) -> int | None:
        for i, b in enumerate(bounds):
            if math.isclose(b, value, rel_tol=1e-9, abs_tol=1e-12):
                return i
        shown = ", ".join(f"{b:g}" for b in bounds)
        self._problem(e.slo, f"threshold {e.selector.value:g} s ({value:g} {unit or 'units'}) "
                             f"is not a bucket bound of {metric} (bounds: {shown}); add it to "
                             "the histogram's buckets (redmetrics histogram.explicit.buckets)")
        return None

    def _problem(self, slo: str, text: str) -> None:
        found = self.problems.setdefault(slo, [])
        if text not in found:
            found.append(text)
            self.logger.error("SLO input problem", extra={"slo": slo, "problem": text})

    # --- series ---------------------------------------------------------------

    def _track(self, key: SeriesKey, series: _Series) -> bool:
        if len(self.series) >= self.series_limit:
            return False
        self.series[key] = series
        return True

    def _born_while_watching(self, start: int) -> bool:
        return bool(start) and start >= self.watch_start

    def _cumulative(self, key: SeriesKey, start: int, value: float, now_s: float) -> float:
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(start, value, now_s))
            return value if self._born_while_watching(start) else 0.0
        prev.last_seen = now_s
        reset = bool(start and start != prev.start) or value < prev.value
        delta = value if reset else value - prev.value  # a reset: restarted from 0
        prev.start, prev.value = start, value
        return delta

    def _cumulative_hist(self, key: SeriesKey, start: int,
                         current: tuple[int, tuple[int, ...]],
                         now_s: float) -> tuple[float, tuple[float, ...]]:
        count, buckets = current
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(start, current, now_s))
            if self._born_while_watching(start):
                return count, buckets
            return 0, (0,) * len(buckets)
        prev.last_seen = now_s
        p_count, p_buckets = prev.value
        prev.start, prev.value, old_start = start, current, prev.start
        if ((start and start != old_start) or count < p_count
                or len(p_buckets) != len(buckets)):
            return count, buckets
        return count - p_count, tuple(b - a for a, b in zip(p_buckets, buckets, strict=True))

    def _new_sample(self, key: SeriesKey, t: int, now_s: float) -> bool:
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(0, t, now_s))
            return True
        prev.last_seen = now_s
        if t and prev.value == t:
            return False  # the same sample delivered again
        prev.value = t
        return True

    def expire(self, cutoff: float) -> None:
        """Forget the series not seen since `cutoff` (engine seconds)."""
        stale = [k for k, s in self.series.items() if s.last_seen < cutoff]
        for k in stale:
            del self.series[k]

    # --- state ----------------------------------------------------------------

    def dump_series(self) -> list[list[Any]]:
        return [[[k[0], *(list(p) for p in k[1:])], s.start,
                 [s.value[0], list(s.value[1])] if isinstance(s.value, tuple) else s.value,
                 s.last_seen]
                for k, s in self.series.items()]

    def restore_series(self, rows: Iterable[Any]) -> None:
        for row in rows:
            try:
                name, *pairs = row[0]
                key = (str(name), *(tuple(p) for p in pairs))
                value = row[2]
                if isinstance(value, list):
                    value = (value[0], tuple(value[1]))
                self.series[key] = _Series(int(row[1]), value, float(row[3]))
            except (TypeError, ValueError, IndexError):
                continue
