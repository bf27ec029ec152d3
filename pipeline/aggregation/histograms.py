"""Histogram series: explicit buckets, and base-2 exponential buckets."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.aggregation.series import Exemplar, Series

# Exponential histograms start at the finest scale and downscale to fit max_size.
EXP_MAX_SCALE = 20


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

    def clear_exemplars(self, frozen: tuple[int, float, tuple[int, ...], tuple[Exemplar, ...]]
                        ) -> None:
        sent = frozen[3]
        if sent:
            self.exemplars = [None if e in sent else e for e in self.exemplars]


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

    def clear_exemplars(self, frozen: ExpFrozen) -> None:
        sent = frozen.exemplars
        if sent:
            self.exemplars = [e for e in self.exemplars if e not in sent]

