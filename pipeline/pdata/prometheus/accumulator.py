"""`Accumulator`: the latest state of every series (what a scrape or a remote write sends)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from pipeline.pdata.prometheus.names import COUNTER, GAUGE, HISTOGRAM
from pipeline.pdata.prometheus.series import Exemplar, Labels, Series


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
