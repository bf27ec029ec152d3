"""Exponential histogram arithmetic of the `deltatocumulative` processor: the
accumulated state of a stream (`Expo`) and adding a delta to it, as the Collector's
`deltatocumulative` does: bring both to the coarser scale, downscale further so that a
side holds at most 160 buckets, widen the zero bucket to the upper bound of the bucket
holding the wider threshold (no bucket straddles it), then add bucket by bucket."""

from __future__ import annotations

import math
from typing import Any

MAX_EXPO_BUCKETS = 160
# The scales the data model allows an exponential histogram.
MIN_SCALE, MAX_SCALE = -10, 20


def set_optional(dp: Any, name: str, value: float | None) -> None:
    """Set an optional field of a point, or clear it for None."""
    if value is None:
        dp.ClearField(name)
    else:
        setattr(dp, name, value)




class Expo:
    """The accumulated state of an exponential histogram stream: scale, zero bucket and
    the positive and negative buckets as (offset, dense counts)."""

    __slots__ = ("count", "max", "min", "neg", "neg_offset", "pos", "pos_offset", "scale",
                 "sum", "zero_count", "zero_threshold")

    def __init__(self, count: int, total: float | None, lo: float | None, hi: float | None,
                 scale: int, zero_count: int, zero_threshold: float,
                 pos: tuple[int, list[int]], neg: tuple[int, list[int]]):
        self.count, self.sum, self.min, self.max = count, total, lo, hi
        self.scale, self.zero_count, self.zero_threshold = scale, zero_count, zero_threshold
        self.pos_offset, self.pos = pos
        self.neg_offset, self.neg = neg

    @classmethod
    def of(cls, dp: Any) -> Expo:
        return cls(dp.count, dp.sum if dp.HasField("sum") else None,
                   dp.min if dp.HasField("min") else None,
                   dp.max if dp.HasField("max") else None, dp.scale, dp.zero_count,
                   dp.zero_threshold,
                   (dp.positive.offset, list(dp.positive.bucket_counts)),
                   (dp.negative.offset, list(dp.negative.bucket_counts)))

    def add(self, other: Expo) -> None:
        # The coarser scale, at most 160 buckets a side, then the wider zero bucket.
        if other.scale < self.scale:
            self.downscale(self.scale - other.scale)
        elif other.scale > self.scale:
            other.downscale(other.scale - self.scale)
        extra = max(_extra_scale(self.pos_offset, self.pos, other.pos_offset, other.pos),
                    _extra_scale(self.neg_offset, self.neg, other.neg_offset, other.neg))
        if extra:
            self.downscale(extra)
            other.downscale(extra)
        if other.zero_threshold != self.zero_threshold:
            # The zero bucket widens to the upper bound of the bucket holding the wider
            # threshold, so that no bucket straddles it (the Collector's WidenZero).
            width = max(self.zero_threshold, other.zero_threshold)
            index = _index(width, self.scale)
            threshold = 2.0 ** ((index + 1) / 2.0 ** self.scale)
            self.widen_zero(index, threshold)
            other.widen_zero(index, threshold)
        self.pos_offset, self.pos = _merge(self.pos_offset, self.pos, other.pos_offset,
                                           other.pos)
        self.neg_offset, self.neg = _merge(self.neg_offset, self.neg, other.neg_offset,
                                           other.neg)
        self.count += other.count
        self.zero_count += other.zero_count
        self.sum = self.sum + other.sum if self.sum is not None and other.sum is not None \
            else None
        self.min = min(self.min, other.min) if self.min is not None and other.min is not None \
            else None
        self.max = max(self.max, other.max) if self.max is not None and other.max is not None \
            else None

    def negated(self) -> Expo:
        """The opposite of this histogram (adding it takes this one back; min and max
        are left out: they cannot be taken back)."""
        return Expo(-self.count, None if self.sum is None else -self.sum, None, None,
                    self.scale, -self.zero_count, self.zero_threshold,
                    (self.pos_offset, [-c for c in self.pos]),
                    (self.neg_offset, [-c for c in self.neg]))

    def downscale(self, by: int) -> None:
        self.pos_offset, self.pos = _downscale(self.pos_offset, self.pos, by)
        self.neg_offset, self.neg = _downscale(self.neg_offset, self.neg, by)
        self.scale -= by

    def widen_zero(self, last: int, threshold: float) -> None:
        """Count the buckets up to index `last` (both signs) as zeros; the zero bucket is
        now [-threshold, threshold], threshold being bucket `last`'s upper bound."""
        for side in ("pos", "neg"):
            offset: int = getattr(self, side + "_offset")
            counts: list[int] = getattr(self, side)
            cut = min(max(last - offset + 1, 0), len(counts))
            if cut:
                self.zero_count += sum(counts[:cut])
                setattr(self, side, counts[cut:])
                setattr(self, side + "_offset", offset + cut)
        self.zero_threshold = threshold

    def write(self, dp: Any) -> None:
        dp.count = self.count
        set_optional(dp, "sum", self.sum)
        set_optional(dp, "min", self.min)
        set_optional(dp, "max", self.max)
        dp.scale = self.scale
        dp.zero_count = self.zero_count
        dp.zero_threshold = self.zero_threshold
        dp.positive.offset = self.pos_offset
        dp.positive.bucket_counts[:] = self.pos
        dp.negative.offset = self.neg_offset
        dp.negative.bucket_counts[:] = self.neg


def _index(value: float, scale: int) -> int:
    """The bucket holding `value` > 0 at `scale`: bucket i holds (base**i, base**(i+1)],
    base = 2**(2**-scale)."""
    return math.ceil(math.log2(value) * 2.0 ** scale) - 1


def _span(offset: int, counts: list[int]) -> tuple[int, int] | None:
    """(first, last) index of the non-zero buckets, or None."""
    lo = next((i for i, c in enumerate(counts) if c), None)
    if lo is None:
        return None
    hi = next(i for i in range(len(counts) - 1, -1, -1) if counts[i])
    return offset + lo, offset + hi


def _extra_scale(a_off: int, a: list[int], b_off: int, b: list[int]) -> int:
    """How much further to downscale so that the merged non-zero buckets fit in 160."""
    spans = [s for s in (_span(a_off, a), _span(b_off, b)) if s is not None]
    if not spans:
        return 0
    lo = min(s[0] for s in spans)
    hi = max(s[1] for s in spans)
    by = 0
    while (hi >> by) - (lo >> by) + 1 > MAX_EXPO_BUCKETS:
        by += 1
    return by


def _downscale(offset: int, counts: list[int], by: int) -> tuple[int, list[int]]:
    """Buckets at scale s to scale s - by: index i goes to i >> by (floor: also for
    negative indexes)."""
    span = _span(offset, counts)
    if by <= 0 or span is None:
        return (offset, counts) if span is not None or by <= 0 else (0, [])
    lo = span[0] >> by
    out = [0] * ((span[1] >> by) - lo + 1)
    for i, c in enumerate(counts):
        if c:
            out[((offset + i) >> by) - lo] += c
    return lo, out


def _merge(a_off: int, a: list[int], b_off: int, b: list[int]) -> tuple[int, list[int]]:
    """The bucket-wise sum of two (offset, counts) at one scale, without zero ends."""
    spans = [s for s in (_span(a_off, a), _span(b_off, b)) if s is not None]
    if not spans:
        return 0, []
    lo = min(s[0] for s in spans)
    out = [0] * (max(s[1] for s in spans) - lo + 1)
    for off, counts in ((a_off, a), (b_off, b)):
        base = off - lo
        for i, c in enumerate(counts):
            if c:
                out[base + i] += c
    return lo, out
