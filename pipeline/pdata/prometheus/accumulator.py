"""`Accumulator`: the latest state of every series (what a scrape or a remote write sends).

Cardinality: with `max_series` set, at most that many series are held. A point
of a new series beyond the limit goes to its family's one overflow series
(label `otel_metric_overflow="true"`, as the connectors' `otel.metric.overflow`),
which counts the points that did not fit: the value of a counter, gauge or info
series, the `_count` (and +Inf bucket) of a histogram, the `_count` of a
summary. Cumulative points of distinct series cannot be added up without
keeping each series, which is what the limit prevents, so the overflow series
says how much was left out, not what it was. A point of a family that holds no
series at all when the limit is reached is dropped (and counted): overflow
series never outnumber families already held, so at most `2 * max_series`
series live. Series freed by expiry or staleness make room again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from pipeline.pdata.prometheus.names import COUNTER, GAUGE, HISTOGRAM, SUMMARY
from pipeline.pdata.prometheus.series import Exemplar, Labels, Series

OVERFLOW_LABEL = "otel_metric_overflow"
OVERFLOW_LABELS: Labels = ((OVERFLOW_LABEL, "true"),)


class Accumulator:
    """Latest state per series; delta points summed into cumulative ones.

    `clock` (seconds, monotonic) decides expiry; tests inject a fake one.
    `max_series` (0: no limit) caps the series held, overflow series aside.
    """

    def __init__(self, expiration: float, clock: Callable[[], float] = time.monotonic,
                 max_series: int = 0):
        self.expiration = expiration
        self.clock = clock
        self.max_series = max_series
        self.series: dict[tuple[str, Labels], tuple[Series, float]] = {}
        self.overflow: dict[str, tuple[Series, float]] = {}  # family -> its overflow series
        self.types: dict[str, str] = {}  # family -> kind of its first series
        self.per_family: dict[str, int] = {}  # family -> series held (overflow aside)
        self.version = 0  # bumped on every change, for caching renderings
        self.overflow_points = 0  # points beyond max_series (in an overflow series or dropped)
        self.overflow_dropped = 0  # of those, dropped: their family held no series

    def add(self, s: Series) -> Series | None:
        """Store `s`; returns the series as now held (cumulative), or None if ignored."""
        kind = self.types.get(s.family)
        if kind is not None and kind != s.kind:
            return None  # one family, one type: the first one wins
        key = s.key
        held = self.series.get(key)
        if held is None and not s.stale and self.max_series \
                and len(self.series) >= self.max_series:
            return self._overflow(s)
        now = self.clock()
        self.version += 1
        if s.stale:
            if self.series.pop(key, None) is not None:
                self._forget(s.family)
            return s
        if kind is None:
            self.types[s.family] = s.kind
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
        if held is None:
            self.per_family[s.family] = self.per_family.get(s.family, 0) + 1
        self.series[key] = (s, now)
        return s

    def _overflow(self, s: Series) -> Series | None:
        """Count `s` in its family's overflow series (None: the family holds nothing)."""
        self.overflow_points += 1
        held = self.overflow.get(s.family)
        if held is None and s.family not in self.per_family:
            self.overflow_dropped += 1
            return None
        n = held[0].count + 1 if held else 1.0
        start = held[0].start_ns if held else s.timestamp_ns
        ts = max(s.timestamp_ns, held[0].timestamp_ns) if held else s.timestamp_ns
        if s.kind == HISTOGRAM:
            o = Series(s.family, s.kind, s.help, s.unit, OVERFLOW_LABELS, ts, start,
                       counts=[n], count=n)
        elif s.kind == SUMMARY:
            o = Series(s.family, s.kind, s.help, s.unit, OVERFLOW_LABELS, ts, start, count=n)
        else:
            o = Series(s.family, s.kind, s.help, s.unit, OVERFLOW_LABELS, ts, start,
                       value=n, count=n)
        self.overflow[s.family] = (o, self.clock())
        self.version += 1
        return o

    def _forget(self, family: str) -> None:
        left = self.per_family.get(family, 0) - 1
        if left > 0:
            self.per_family[family] = left
        else:
            self.per_family.pop(family, None)

    def expire(self) -> int:
        """Drop series not updated for `expiration` seconds; returns how many."""
        if not self.expiration:
            return 0
        limit = self.clock() - self.expiration
        old = [k for k, (_, t) in self.series.items() if t < limit]
        for k in old:
            del self.series[k]
            self._forget(k[0])
        old_overflow = [f for f, (_, t) in self.overflow.items() if t < limit]
        for f in old_overflow:
            del self.overflow[f]
        if old or old_overflow:
            self.version += 1
            for fam in [f for f in self.types
                        if f not in self.per_family and f not in self.overflow]:
                del self.types[fam]
        return len(old) + len(old_overflow)

    def __len__(self) -> int:
        """Series held, overflow series included."""
        return len(self.series) + len(self.overflow)

    def values(self) -> Iterator[Series]:
        for s, _ in self.series.values():
            yield s
        for s, _ in self.overflow.values():
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
