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


NO_RECORDED_VALUE = 1  # DataPointFlags: a staleness marker (the series went away)
STALE_AFTER = 300.0  # a sampled gauge series unseen this long is gone (Prometheus' lookback)


@dataclass
class _Entry:
    slo: str
    role: str  # good | bad | total
    selector: Selector
    match: tuple[tuple[str, str], ...]
    part: str = "value"  # value | den (the divide_by gauge of a sampled selector)
    sampled: bool = False


class _Gauge:
    """Latest value (and when it arrived) of one sampled series and of its divisor."""

    __slots__ = ("den", "den_seen", "num", "num_seen")

    def __init__(self) -> None:
        self.num: float | None = None
        self.num_seen = 0.0
        self.den: float | None = None
        self.den_seen = 0.0


def _quotient(num: float, den: float) -> float:
    """num / den as PromQL computes it (x/0 is +-Inf, 0/0 NaN)."""
    if den == 0:
        if num == 0 or math.isnan(num):
            return math.nan
        return math.copysign(math.inf, num)
    return num / den


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


def _first_counts(dp: Any) -> bool:
    """Whether a cumulative series first seen with this point may count in full (when
    born while the connector watches). Not when its start time equals the point's
    time: a scraper's first sight of a counter (the Collector's prometheus receiver,
    and otelpipe's, start such a series at its first sample) is a baseline."""
    return bool(dp.start_time_unix_nano != dp.time_unix_nano)


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
        # Time-slice SLOs: interval, the last slice sampled, latest values per role.
        self.intervals: dict[str, float] = {}
        self.last_slice: dict[str, int] = {}
        self.gauges: dict[tuple[str, str], dict[SeriesKey, _Gauge]] = {}
        self.sampled_selectors: dict[tuple[str, str], Selector] = {}
        for slo in slos:
            self.problems[slo.name] = []
            interval = slo.indicator.interval
            if interval is not None:
                self.intervals[slo.name] = interval
            for role, sel in slo.indicator.selectors():
                match = tuple(sorted(sel.match.items()))
                sampled = interval is not None
                if sampled:
                    self.gauges[(slo.name, role)] = {}
                    self.sampled_selectors[(slo.name, role)] = sel
                for metric in (sel.metric, *sel.plus):
                    self.index.setdefault(metric, []).append(
                        _Entry(slo.name, role, sel, match, "value", sampled))
                if sel.divide_by is not None:
                    self.index.setdefault(sel.divide_by, []).append(
                        _Entry(slo.name, role, sel, match, "den", sampled))
        self.series: dict[SeriesKey, _Series] = {}
        self.gauge_count = 0

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
            if not matching:
                continue
            if any(e.sampled for e in matching):
                plain = [e for e in matching if not e.sampled]
                self._keep_latest(m, kind, dp, attrs, [e for e in matching if e.sampled],
                                  now_s)
                if not plain:
                    continue
                matching = plain
            if dp.flags & NO_RECORDED_VALUE:
                continue  # a staleness marker: no value (the series went away)
            count(m, kind, data, dp, (m.name, *sorted(attrs.items())), matching, now_s, batch)

    def _monotonic_sum(self, m: Any, kind: str, data: Any, dp: Any, key: SeriesKey,
                       matching: list[_Entry], now_s: float, batch: _Batch) -> None:
        value = _number(dp)
        delta = (value if data.aggregation_temporality == 1
                 else self._cumulative(key, dp.start_time_unix_nano, value, now_s,
                                       _first_counts(dp)))
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
            count, buckets = self._cumulative_hist(key, dp.start_time_unix_nano, current,
                                                   now_s, _first_counts(dp))
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
            count = self._cumulative(key, dp.start_time_unix_nano, dp.count, now_s,
                                     _first_counts(dp))
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

    # --- time slices (sampled gauges) -------------------------------------------

    def _keep_latest(self, m: Any, kind: str, dp: Any, attrs: dict[str, str],
                     entries: list[_Entry], now_s: float) -> None:
        """Keep the latest value of a sampled gauge series (or of its divisor)."""
        if kind not in ("gauge", "sum"):
            for e in entries:
                self._problem(e.slo, f"{m.name} is a {kind.replace('_', ' ')}: time slices "
                                     "sample gauges")
            return
        stale = bool(dp.flags & NO_RECORDED_VALUE)
        value = _number(dp)
        # Thresholds are in seconds for time units; a quotient has no unit.
        scale = 1.0 if entries[0].selector.divide_by else TIME_UNITS.get(m.unit.strip(), 1.0)
        key: SeriesKey = tuple(sorted(attrs.items()))
        for e in entries:
            store = self.gauges[(e.slo, e.role)]
            g = store.get(key)
            if g is None:
                if stale or self.gauge_count >= self.series_limit:
                    continue
                g = store[key] = _Gauge()
                self.gauge_count += 1
            if e.part == "den":
                g.den, g.den_seen = (None, 0.0) if stale else (value, now_s)
            else:
                g.num, g.num_seen = (None, 0.0) if stale else (value * scale, now_s)

    def sample(self) -> None:
        """Count one event per fresh series of each time-slice SLO whose interval has
        begun a new slice since the last call (the connector calls it every flush)."""
        now_s = self.engine.now()
        for name, interval in self.intervals.items():
            idx = int(now_s // interval)
            last = self.last_slice.get(name)
            if last is not None and idx <= last:
                continue
            self.last_slice[name] = idx
            counts = {"good": 0.0, "bad": 0.0, "total": 0.0}
            for role in ("good", "bad", "total"):
                store = self.gauges.get((name, role))
                if store is not None:
                    counts[role] = self._slice(store, self.sampled_selectors[(name, role)],
                                               now_s)
            tracker = self.engine.trackers[name]
            if tracker.counts_good:
                tracker.record(now_s, counts["total"], good=counts["good"])
            else:
                tracker.record(now_s, counts["total"], bad=counts["bad"])

    def _slice(self, store: dict[SeriesKey, _Gauge], sel: Selector, now_s: float) -> float:
        """Series of `store` fresh now that satisfy `sel` (all of them without a
        threshold)."""
        n = 0.0
        divided = sel.divide_by is not None
        op = _OPS[sel.op] if sel.op is not None else None
        threshold = sel.value if sel.value is not None else 0.0
        for g in store.values():
            if g.num is None or now_s - g.num_seen > STALE_AFTER:
                continue
            value = g.num
            if divided:
                if g.den is None or now_s - g.den_seen > STALE_AFTER:
                    continue
                value = _quotient(value, g.den)
            if op is None or op(value, threshold):
                n += 1
        return n

    # --- series ---------------------------------------------------------------

    def _track(self, key: SeriesKey, series: _Series) -> bool:
        if len(self.series) >= self.series_limit:
            return False
        self.series[key] = series
        return True

    def _born_while_watching(self, start: int) -> bool:
        return bool(start) and start >= self.watch_start

    def _cumulative(self, key: SeriesKey, start: int, value: float, now_s: float,
                    first_counts: bool = True) -> float:
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(start, value, now_s))
            return value if first_counts and self._born_while_watching(start) else 0.0
        prev.last_seen = now_s
        reset = bool(start and start != prev.start) or value < prev.value
        delta = value if reset else value - prev.value  # a reset: restarted from 0
        prev.start, prev.value = start, value
        return delta

    def _cumulative_hist(self, key: SeriesKey, start: int,
                         current: tuple[int, tuple[int, ...]], now_s: float,
                         first_counts: bool = True) -> tuple[float, tuple[float, ...]]:
        count, buckets = current
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(start, current, now_s))
            if first_counts and self._born_while_watching(start):
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
        for store in self.gauges.values():
            gone = [k for k, g in store.items() if max(g.num_seen, g.den_seen) < cutoff]
            for k in gone:
                del store[k]
            self.gauge_count -= len(gone)

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
