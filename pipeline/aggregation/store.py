"""The series store of one metric: cardinality limit, overflow, expiry, temporality.

`SeriesSet` holds the series of one metric (or of metrics that share their
series, like redmetrics' calls and duration):

- the *cardinality limit*: beyond it every new combination lands in one
  overflow series whose only attribute is `otel.metric.overflow="true"`;
- *per-series expiry*: a series that received nothing for `series_expiry` is
  dropped and no longer emitted;
- *temporality*: cumulative, a series' start time is its creation time; delta,
  every flush reports what arrived since the previous successful flush, whose
  time is the start time.

Hot-path contract for front ends: compute a cheap *raw key*, look it up in
`SeriesSet.cache`, and only on a miss call `SeriesSet.resolve(raw_key,
canonicalize, describe)`, which decodes the key once into the canonical series
identity. The cache is bounded and cleared when series expire, so memory stays
bounded by the cardinality limit.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from pipeline.aggregation.series import Attrs, Series
from pipeline.pdata.pacing import paced

Clock = Callable[[], int]
"""Wall-clock time in nanoseconds since the epoch (injectable for tests)."""


OVERFLOW_ATTRIBUTE = "otel.metric.overflow"
OVERFLOW_ATTRS: Attrs = ((OVERFLOW_ATTRIBUTE, "true"),)

DEFAULT_CARDINALITY_LIMIT = 5000
DEFAULT_SERIES_EXPIRY = 300.0
DEFAULT_FLUSH_INTERVAL = 15.0

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

    async def snapshot(self, now: int) -> Snapshot:
        """Marks series seen since the last flush, drops expired ones, and freezes
        what this flush reports (delta: only series with new data).

        In slices (`paced`): the caller keeps the series from changing meanwhile
        (`AggregatingConnector` holds its front end's consume() until it is done)."""
        delta = self.delta
        expiry = self.expiry_ns
        points: list[tuple[Series, Any]] = []
        expired: list[Hashable] = []
        items: list[tuple[Hashable, Series]] = list(self.series.items())
        if self.overflow is not None:
            items.append((None, self.overflow))
        async for key, s in paced(items):
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

    async def commit(self, snapshot: Snapshot, now: int) -> None:
        """The flush of `snapshot` succeeded (or was dropped for good): delta, what it
        reported is subtracted; the exemplars it carried are cleared. In slices, while
        data keeps arriving: both only remove what the snapshot holds."""
        delta = self.delta
        async for s, frozen in paced(snapshot.points):
            if delta:
                s.subtract(frozen)
            s.clear_exemplars(frozen)
        self.last_flush = now
