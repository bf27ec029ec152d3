"""`Series`: one Prometheus series (a histogram or summary counts as one), and its samples."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipeline.pdata.prometheus.names import COUNTER, GAUGE, HISTOGRAM, INFO, SUMMARY, format_le

# Prometheus' staleness marker: a NaN with this exact bit pattern.
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

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
