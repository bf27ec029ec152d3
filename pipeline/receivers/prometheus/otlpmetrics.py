"""The OTLP side of a scrape: metrics, series (one data point stream each, with
what is kept between scrapes: start time, previous value) and their protobuf encoding.

The OTLP bytes are written by hand (`pipeline.pdata.wire`), one
`ResourceMetrics` per target: `service.name` = job, `service.instance.id` =
instance, `server.address`, `server.port`, `url.scheme`. A point of a counter
without `_created` or exemplars is written straight from the series' encoded
prefix; the others (histograms, summaries, stale markers) by the functions below.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Sequence

from pipeline import __version__
from pipeline.pdata.wire import ld, varint

SCOPE = "otelpipe/receiver/prometheus"
GAUGE, SUM, HISTOGRAM, SUMMARY = 1, 2, 3, 4
VALUE, BUCKET, QUANTILE, P_SUM, P_COUNT, CREATED = 0, 1, 2, 3, 4, 5

NUMBER_GAUGE = struct.Struct("<BQBd").pack           # time, as_double
NUMBER_SUM = struct.Struct("<BQBQBd").pack           # start, time, as_double
_START_TIME = struct.Struct("<BQBQ").pack             # start, time
_FIXED = struct.Struct("<BQ").pack
_DOUBLE = struct.Struct("<Bd").pack
_STALE_NUMBER = b"\x40\x01"       # NumberDataPoint.flags = NO_RECORDED_VALUE
_STALE_HIST = b"\x50\x01"         # HistogramDataPoint.flags
_STALE_SUMMARY = b"\x40\x01"      # SummaryDataPoint.flags
_SUM_TAIL = b"\x10\x02\x18\x01"   # cumulative, monotonic
_HIST_TAIL = b"\x10\x02"          # cumulative

_DATA_TAGS = {GAUGE: b"\x2a", SUM: b"\x3a", HISTOGRAM: b"\x4a", SUMMARY: b"\x5a"}
_TAILS = {GAUGE: b"", SUM: _SUM_TAIL, HISTOGRAM: _HIST_TAIL, SUMMARY: b""}


def kv_body(key: str, value: str) -> bytes:
    """The body of a KeyValue message with a string AnyValue."""
    return ld(b"\x0a", key.encode()) + ld(b"\x12", ld(b"\x0a", value.encode()))


@functools.lru_cache(maxsize=65536)
def _attr(tag: bytes, key: str, value: str) -> bytes:
    return ld(tag, kv_body(key, value))


def attrs_bytes(labels: Sequence[tuple[str, str]], tag: bytes = b"\x3a") -> bytes:
    """Encoded attributes: field 7 (0x3a) of Number/Summary points, 9 (0x4a) of
    HistogramDataPoint, 1 (0x0a) of Resource."""
    return b"".join([_attr(tag, k, v) for k, v in labels])


class Metric:
    __slots__ = ("header", "kind", "name", "points")

    def __init__(self, name: str, kind: int, help_: str, unit: str):
        self.name = name
        self.kind = kind
        self.header = ld(b"\x0a", name.encode()) + (ld(b"\x12", help_.encode()) if help_ else b"") \
            + (ld(b"\x1a", unit.encode()) if unit else b"")
        self.points: list[bytes] = []

    def encode(self) -> bytes:
        out: list[bytes] = []
        self.frame_into(out)
        return b"".join(out)

    def frame_into(self, out: list[bytes]) -> int:
        """Append this metric as a `ScopeMetrics.metrics` field (tag, length, body) to
        `out` without copying the points; returns the bytes appended."""
        pts = self.points
        tail = _TAILS[self.kind]
        dlen = sum(map(len, pts)) + len(tail)
        data_hdr = _DATA_TAGS[self.kind] + varint(dlen)
        mlen = len(self.header) + len(data_hdr) + dlen
        mhdr = b"\x12" + varint(mlen)
        out.append(mhdr)
        out.append(self.header)
        out.append(data_hdr)
        out.extend(pts)
        if tail:
            out.append(tail)
        return len(mhdr) + mlen


_NO_PAIRS: list[tuple[float, float]] = []
NO_EXEMPLARS: list[bytes] = []


class Series:
    """One OTLP data point stream (a family member without le/quantile)."""

    __slots__ = ("attrs", "bound", "buckets", "count", "created", "dirty", "exemplars", "metric",
                 "prefix", "prev", "prev_sum", "quantiles", "role", "seen", "series", "start",
                 "sum", "t", "value")

    def __init__(self, metric: Metric, attrs: bytes):
        # A series is its own cache entry for its plain samples (role VALUE): one
        # object per counter or gauge series instead of two.
        self.series = self
        self.role = VALUE
        self.bound = 0.0
        self.metric = metric
        self.attrs = attrs
        self.start = 0
        self.prev = -1.0
        self.prev_sum = -math.inf
        self.seen = 0
        self.t = 0
        self.value = 0.0
        self.created = 0.0
        self.sum: float | None = None
        self.count = 0.0
        # Shared empty lists until needed (few GC-tracked objects per series: the first
        # scrape of a big target must not make the collector's full passes long).
        # `begin` gives histograms and summaries their own lists before any append.
        self.buckets: list[tuple[float, float]] = _NO_PAIRS
        self.quantiles: list[tuple[float, float]] = _NO_PAIRS
        self.exemplars: list[bytes] = NO_EXEMPLARS
        # Per-scrape state to reset before the series' first sample of a scrape:
        # histograms and summaries always, numbers once they had _created or exemplars.
        self.dirty = metric.kind >= HISTOGRAM
        # The encoded start of a number point of fixed size (no exemplars): the
        # NumberDataPoint field tag and length, then the attributes.
        fixed = 18 if metric.kind == GAUGE else 27
        self.prefix = b"\x0a" + varint(len(attrs) + fixed) + attrs

    def begin(self) -> None:
        self.created = 0.0
        if self.metric.kind >= HISTOGRAM:
            self.sum = None
            self.count = math.nan
            self.buckets = []
            self.quantiles = []
        else:
            self.dirty = False
        if self.exemplars:
            self.exemplars = NO_EXEMPLARS


class Entry:
    """What a series text becomes; `role` DROP when metric relabelling dropped it."""

    __slots__ = ("bound", "role", "series")

    def __init__(self, series: Series, role: int, bound: float):
        self.series = series
        self.role = role
        self.bound = bound


DROP = -1
DROPPED = Entry(Series(Metric("", 1, "", ""), b""), DROP, 0.0)


def _trace_id(value: str, size: int) -> bytes | None:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    if len(raw) != size:
        return None
    return raw


def encode_exemplar(labels: list[tuple[str, str]], value: float, ts_ns: int) -> bytes:
    out = [_FIXED(0x11, ts_ns), _DOUBLE(0x19, value)]
    for k, v in labels:
        raw = None
        if k == "trace_id":
            raw = _trace_id(v, 16)
            if raw is not None:
                out.append(ld(b"\x2a", raw))
        elif k == "span_id":
            raw = _trace_id(v, 8)
            if raw is not None:
                out.append(ld(b"\x22", raw))
        if raw is None:
            out.append(ld(b"\x3a", kv_body(k, v)))
    return b"".join(out)


class ScrapeResult:
    __slots__ = ("added", "parts", "points", "samples", "samples_post", "size")

    def __init__(self) -> None:
        self.samples = 0          # scrape_samples_scraped
        self.samples_post = 0     # scrape_samples_post_metric_relabeling
        self.added = 0            # scrape_series_added
        self.points = 0           # OTLP data points emitted (incl. stale markers)
        self.parts: list[bytes] = []  # encoded ScopeMetrics.metrics fields, in pieces
        self.size = 0                 # their total length

    @property
    def payload(self) -> bytes:
        return b"".join(self.parts)

    def collect(self, metrics: Iterable[Metric]) -> None:
        parts = self.parts
        for m in metrics:
            if m.points:
                self.size += m.frame_into(parts)
                m.points = []

    def add(self, field: bytes) -> None:
        self.parts.append(field)
        self.size += len(field)


def stale_point(s: Series, now_ns: int) -> None:
    m = s.metric
    k = m.kind
    if k == GAUGE:
        m.points.append(ld(b"\x0a", s.attrs + _FIXED(0x19, now_ns) + _STALE_NUMBER))
    elif k == SUM:
        m.points.append(ld(b"\x0a", s.attrs + _START_TIME(0x11, s.start, 0x19, now_ns)
                           + _STALE_NUMBER))
    elif k == HISTOGRAM:
        m.points.append(ld(b"\x0a", s.attrs + _START_TIME(0x11, s.start, 0x19, now_ns)
                           + _STALE_HIST))
    else:
        m.points.append(ld(b"\x0a", s.attrs + _START_TIME(0x11, s.start, 0x19, now_ns)
                           + _STALE_SUMMARY))


def _start(s: Series, reset: bool) -> int:
    if s.created:
        s.start = int(s.created * 1e9)
    elif s.start == 0 or reset:
        s.start = s.t
    return s.start


def sum_point(s: Series) -> bytes:
    v = s.value
    start = _start(s, v < s.prev)
    s.prev = v
    out = s.attrs + NUMBER_SUM(0x11, start, 0x19, s.t, 0x21, v)
    if s.exemplars:
        out += b"".join(ld(b"\x2a", x) for x in s.exemplars)
    return out


def hist_point(s: Series) -> bytes:
    buckets = sorted(s.buckets)
    bounds: list[float] = []
    counts: list[int] = []
    prev = 0.0
    inf_count = 0.0
    for bound, c in buckets:
        if bound == math.inf:
            inf_count = c
            continue
        bounds.append(bound)
        counts.append(max(0, int(c - prev)))
        prev = c
    count = s.count if not math.isnan(s.count) else inf_count
    if inf_count < count:
        inf_count = count
    counts.append(max(0, int(inf_count - prev)))
    ssum = s.sum if s.sum is not None else 0.0
    reset = count < s.prev or ssum < s.prev_sum
    start = _start(s, reset)
    s.prev = count
    s.prev_sum = ssum
    out = [s.attrs, _START_TIME(0x11, start, 0x19, s.t),
           _FIXED(0x21, int(count))]
    if s.sum is not None:
        out.append(_DOUBLE(0x29, s.sum))
    out.append(ld(b"\x32", struct.pack(f"<{len(counts)}Q", *counts)))
    if bounds:
        out.append(ld(b"\x3a", struct.pack(f"<{len(bounds)}d", *bounds)))
    for x in s.exemplars:
        out.append(ld(b"\x42", x))
    return b"".join(out)


def summary_point(s: Series) -> bytes:
    count = 0.0 if math.isnan(s.count) else s.count
    ssum = s.sum if s.sum is not None else 0.0
    reset = (count != 0 and s.prev > 0 and count < s.prev) or \
        (ssum != 0 and s.prev_sum > 0 and ssum < s.prev_sum)
    start = _start(s, reset)
    s.prev = count
    s.prev_sum = ssum
    out = [s.attrs, _START_TIME(0x11, start, 0x19, s.t), _FIXED(0x21, int(count)),
           _DOUBLE(0x29, ssum)]
    for q, v in sorted(s.quantiles):
        out.append(ld(b"\x32", _DOUBLE(0x09, q) + _DOUBLE(0x11, v)))
    return b"".join(out)


def gauge_metric(name: str, help_: str, unit: str, value: float, now_ns: int,
                 attrs: bytes) -> bytes:
    """A one-point gauge (the scrape's own up/scrape_* metrics)."""
    m = Metric(name, GAUGE, help_, unit)
    m.points.append(ld(b"\x0a", attrs + NUMBER_GAUGE(0x19, now_ns, 0x21, value)))
    return m.encode()


def resource_metrics(resource_attrs: list[tuple[str, str]], metrics: bytes | ScrapeResult
                     ) -> bytes:
    """A `ResourceMetrics` field (of ExportMetricsServiceRequest) holding one scope: an
    export request of one resource. The metrics are joined once, never copied twice."""
    if isinstance(metrics, bytes):
        parts, size = [metrics], len(metrics)
    else:
        parts, size = metrics.parts, metrics.size
    resource = ld(b"\x0a", attrs_bytes(resource_attrs, b"\x0a"))
    scope = _SCOPE
    sm_len = len(scope) + size
    sm_hdr = b"\x12" + varint(sm_len)
    rm_len = len(resource) + len(sm_hdr) + sm_len
    return b"".join([b"\x0a" + varint(rm_len), resource, sm_hdr, scope, *parts])


_SCOPE = ld(b"\x0a", ld(b"\x0a", SCOPE.encode()) + ld(b"\x12", __version__.encode()))
