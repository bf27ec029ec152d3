"""`deltatocumulative` processor: delta sums, histograms and exponential histograms become
cumulative, by adding up each stream's deltas in memory (the Collector contrib's
`deltatocumulative`, with its keys).

```yaml
processors:
  deltatocumulative:
    max_stale: 5m          # forget a stream that received nothing for this long
    max_streams: 100000    # streams tracked at most; a new stream beyond: its points dropped
    out_of_order: drop     # drop (the Collector's) | accumulate (several producers per stream)
```

A *stream* is what the Collector identifies as one: resource attributes, scope (name,
version, attributes), metric (name, unit, type, monotonicity) and the point's attributes;
attribute order does not matter. For each delta point of a stream:

- the first one starts the stream and passes unchanged (its start time is the stream's);
- a later one is added to the stream and leaves as the running total, with the stream's
  start time and its own time. Sums add their values (an int stream stays an int until a
  double arrives; a total beyond int64 becomes a double); histograms add `count`, `sum`
  (dropped once a point has none), bucket counts, and keep the least `min` and greatest
  `max`; a histogram whose explicit bounds change starts over from that point (the
  Collector's reset). Exponential histograms are merged bucket by bucket after bringing
  both to the coarser scale, downscaled further so that each side holds at most 160
  buckets (the Collector's limit), and, when their zero thresholds differ, with the zero
  bucket widened to the upper bound of the bucket holding the wider threshold;
- with `out_of_order: drop` (default, the Collector's): a point whose start time is before
  the stream's is dropped (`older_start`: it belongs to an older series), and a point whose
  time is not after the stream's last time is dropped (`out_of_order`; so an exact
  duplicate, e.g. a retried request, is not added twice). A gap (start after the last
  time) is accepted.
- with `out_of_order: accumulate`: every point is added whatever its times (the stream's
  time is the latest seen, its start the earliest), except one with the same start and
  time as one of the stream's last 8 points (`duplicate`: a redelivered delta; two
  producers never close a window at the same nanosecond). This is for one stream fed by
  several producers whose deltas interleave, as the worker processes of `otelpipe run
  --workers N` that each aggregate part of the spans. A redelivery older than the
  stream's last 8 points is counted twice (at-least-once).

Metrics that are not delta (gauges, summaries, cumulative sums and histograms) pass
unchanged, and a batch without delta metrics keeps its bytes. A metric whose points were
all dropped is removed.

Limits (`max_streams`): a point of a new stream when `max_streams` streams are tracked is
dropped and counted (`outcome="limit"`), as in the Collector; tracked streams go on.
Streams not updated for `max_stale` are forgotten (checked on every batch, oldest first:
the streams are kept in update order, so this costs one look per batch plus one per
expired stream), which makes room again; a forgotten stream that comes back starts over.
Unlike the Collector (`max_streams` unlimited by default) the default is 100000: memory
is bounded (≈ 0.45 KB a sum stream, ≈ 0.7 KB a 17-bucket histogram stream, with 5
point attributes: `python -m benchmarks.deltatocumulative`).
`otelpipe_processor_deltatocumulative_datapoints{outcome=...}` counts points by outcome
(`started`, `accumulated`, `reset`, `limit`, `out_of_order`, `older_start`, `duplicate`,
`invalid`: an exponential histogram point with a scale outside the data model's -10..20
or a zero threshold that is not a finite number >= 0, dropped),
`otelpipe_processor_deltatocumulative_streams` is the number tracked.

Cost: the request is decoded once, and read once more through a projection
(proto/otelpipe/deltatocumulative.proto) that keeps attributes serialized and a
histogram's bounds and bucket counts as packed bytes; per delta point the stream key is
the sorted serialized attributes, then one dict lookup and a few field writes. A big batch yields
to the event loop every 2000 points (a big metric is handled in slices).
"""

from __future__ import annotations

import array
import asyncio
import math
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from pydantic import Field

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.pdata.batch import Batch
from pipeline.proto.otelpipe import deltatocumulative_pb2
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DEFAULT_MAX_STREAMS = 100_000
MAX_EXPO_BUCKETS = 160
YIELD_EVERY = 2000
INT64_MAX = 2**63 - 1

DATAPOINTS = CounterSpec(
    "otelpipe_processor_deltatocumulative_datapoints",
    "Delta data points a deltatocumulative processor handled, by outcome: started (a new "
    "stream), accumulated, reset (histogram bounds changed), or dropped: limit "
    "(max_streams), out_of_order, older_start, duplicate, invalid (an exponential "
    "histogram with a scale outside -10..20 or a zero threshold not finite and >= 0).",
    ("processor", "pipeline", "outcome"))
STREAMS = GaugeSpec(
    "otelpipe_processor_deltatocumulative_streams",
    "Streams a deltatocumulative processor tracks.", ("processor", "pipeline"))
EXPIRED = CounterSpec(
    "otelpipe_processor_deltatocumulative_streams_expired",
    "Streams forgotten after max_stale without a point.", ("processor", "pipeline"))

OUTCOMES = ("started", "accumulated", "reset", "limit", "out_of_order", "older_start",
            "duplicate", "invalid")
# The scales the data model allows an exponential histogram.
MIN_SCALE, MAX_SCALE = -10, 20
# accumulate: the (start, time) of each stream's last 8 points, to drop a delta seen again.
_SEEN = struct.Struct("<QQ")
_SEEN_KEEP = 8 * _SEEN.size


class DeltaToCumulativeConfig(ComponentConfig):
    max_stale: Duration = Field(
        300.0, gt=0, description="forget a stream that received no point for this long "
                                 "(the Collector's key and default, 5m)")
    max_streams: int = Field(
        DEFAULT_MAX_STREAMS, ge=1,
        description="streams tracked at most; a point of a new stream beyond is dropped and "
                    "counted (the Collector's default is unlimited, otelpipe's 100000)")
    out_of_order: Literal["drop", "accumulate"] = Field(
        "drop", description="drop: a point older than its stream's last one (or starting "
        "before the stream) is dropped, as the Collector does; accumulate: every point is "
        "added (but a repeat of one of the stream's last 8 windows), for streams fed by "
        "several producers (otelpipe's workers)")


Key = tuple[bytes, bytes]


def _serialized(kvs: Any) -> bytes:
    """Attributes (serialized KeyValues, read through the projection) as one canonical
    bytes value: sorted (their order does not make another stream) and concatenated
    (serialized KeyValues delimit themselves)."""
    n = len(kvs)
    if n > 1:
        return b"".join(sorted(kvs))
    return kvs[0] if n else b""


def _pack(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "little") + p for p in parts)


def _scope_key(rkey: bytes, scope: Any, projected: Any) -> bytes:
    return _pack(rkey, scope.name.encode(), scope.version.encode(),
                 _serialized(projected.attributes))


_DELTA_KINDS = frozenset({"sum", "histogram", "exponential_histogram"})
# The projection's field for each kind (proto/otelpipe/deltatocumulative.proto).
_PROJ_FIELD = {"sum": "sum", "histogram": "histogram",
               "exponential_histogram": "exponential_histogram"}


def _has_delta(msg: Any) -> bool:
    for rm in msg.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind in _DELTA_KINDS and getattr(m, kind).aggregation_temporality == DELTA:
                    return True
    return False


class _Counts:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = dict.fromkeys(OUTCOMES, 0)


class DeltaToCumulativeProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: DeltaToCumulativeConfig,
                 *, clock: Callable[[], float] = time.monotonic):
        self.next = settings.next_consumer
        self.log = settings.logger
        self.clock = clock
        self.max_stale = config.max_stale
        self.max_streams = config.max_streams
        self.drop_late = config.out_of_order == "drop"
        # Stream key -> state (a list, see _number / _histogram / _expo); in update order,
        # so the stalest stream is first.
        self.streams: OrderedDict[Key, list[Any]] = OrderedDict()
        labels = (str(settings.id), settings.pipeline_id)
        t = settings.telemetry
        self._points = {o: t.counter(DATAPOINTS).labels(*labels, o) for o in OUTCOMES}
        self._streams_gauge = t.gauge(STREAMS).labels(*labels)
        self._expired = t.counter(EXPIRED).labels(*labels)
        self._limit_logged = float("-inf")

    async def consume(self, batch: Batch) -> None:
        if await self.apply(batch):
            await self.next.consume(batch)

    # Batch ------------------------------------------------------------------------------

    async def apply(self, batch: Batch) -> bool:
        """Turn the batch's delta metrics cumulative, in place; False if nothing is left
        to send (every point was a dropped delta)."""
        if not _has_delta(batch.message):
            return True  # nothing to do: the batch keeps its bytes
        # The same request through a projection that keeps attributes serialized (the
        # stream keys are built from those bytes) and histogram buckets and bounds as
        # packed bytes; its indexes match the decoded request's.
        proj = deltatocumulative_pb2.MetricsRequest.FromString(batch.to_bytes())
        msg = batch.mutable()
        now = self.clock()
        self.expire(now)
        counts = _Counts()
        try:
            for rm, prm in zip(msg.resource_metrics, proj.resources, strict=True):
                rkey: bytes | None = None
                for sm, psm in zip(rm.scope_metrics, prm.scopes, strict=True):
                    skey: bytes | None = None
                    metrics = sm.metrics
                    pmetrics = psm.metrics
                    empty: list[int] = []
                    for mi, m in enumerate(metrics):
                        kind = m.WhichOneof("data")
                        if kind not in _DELTA_KINDS:
                            continue
                        c = getattr(m, kind)
                        if c.aggregation_temporality != DELTA:
                            continue
                        if skey is None:
                            if rkey is None:
                                rkey = _serialized(prm.resource.attributes)
                            skey = _scope_key(rkey, sm.scope, psm.scope)
                        keys = getattr(pmetrics[mi], _PROJ_FIELD[kind]).points
                        await self._metric(skey, m, kind, c, keys, now, counts)
                        if not c.data_points:
                            empty.append(mi)
                    for mi in reversed(empty):
                        del metrics[mi]
        finally:
            self._count(counts, now)
        return any(sm.metrics for rm in msg.resource_metrics for sm in rm.scope_metrics)

    async def _metric(self, skey: bytes, m: Any, kind: str, c: Any, keys: Any, now: float,
                      counts: _Counts) -> None:
        """Accumulate one delta metric's points (dropped ones removed), yielding to the
        event loop every YIELD_EVERY points."""
        mono = b"1" if kind == "sum" and c.is_monotonic else b"0"
        mkey = _pack(skey, m.name.encode(), m.unit.encode(), kind.encode(), mono)
        points = c.data_points
        step = (self._numbers if kind == "sum" else self._histograms if kind == "histogram"
                else self._expos)
        n = len(points)
        drops: list[int] = []
        for lo in range(0, n, YIELD_EVERY):
            if lo:
                await asyncio.sleep(0)
            drops += step(mkey, points, keys, lo, min(n, lo + YIELD_EVERY), now, counts)
        c.aggregation_temporality = CUMULATIVE
        for i in reversed(drops):
            del points[i]

    def _count(self, counts: _Counts, now: float) -> None:
        for outcome, n in counts.n.items():
            if n:
                self._points[outcome].inc(n)
        self._streams_gauge.set(len(self.streams))
        if counts.n["limit"] and now - self._limit_logged >= 60:
            self._limit_logged = now
            self.log.warning("deltatocumulative: max_streams reached, points of new streams "
                             "dropped", extra={"max_streams": self.max_streams,
                                               "dropped": counts.n["limit"]})

    def expire(self, now: float) -> int:
        """Forget the streams not updated for max_stale; how many."""
        streams = self.streams
        deadline = now - self.max_stale
        n = 0
        while streams:
            state = next(iter(streams.values()))
            if state[-1] > deadline:
                break
            streams.popitem(last=False)
            n += 1
        if n:
            self._expired.inc(n)
            self._streams_gauge.set(len(streams))
        return n

    # One stream at a time ---------------------------------------------------------------

    def _order(self, state: list[Any], start: int, t: int, counts: _Counts) -> bool:
        """Update the stream's start and time for a point; False if the point is dropped.
        `state[-2]` holds the (start, time) of the stream's last points (accumulate)."""
        if self.drop_late:
            if start < state[0]:
                counts.n["older_start"] += 1
                return False
            if t <= state[1]:
                counts.n["out_of_order"] += 1
                return False
            state[1] = t
            return True
        entry = _SEEN.pack(start, t)
        seen: bytes = state[-2]
        i = seen.find(entry)
        while i >= 0 and i % _SEEN.size:
            i = seen.find(entry, i + 1)
        if i >= 0:  # the same window again: a redelivered delta
            counts.n["duplicate"] += 1
            return False
        state[-2] = (seen + entry)[-_SEEN_KEEP:]
        if start < state[0]:
            state[0] = start
        if t > state[1]:
            state[1] = t
        return True

    def _seen(self, start: int, t: int) -> bytes:
        return _SEEN.pack(start, t) if not self.drop_late else b""

    def _room(self, counts: _Counts) -> bool:
        if len(self.streams) >= self.max_streams:
            counts.n["limit"] += 1
            return False
        counts.n["started"] += 1
        return True

    def _numbers(self, mkey: bytes, points: Any, keys: Any, lo: int, hi: int, now: float,
                 counts: _Counts) -> list[int]:
        # state: [start, time, total (int or float), seen, last update]
        streams = self.streams
        drops: list[int] = []
        for i in range(lo, hi):
            dp = points[i]
            key = (mkey, _serialized(keys[i].attributes))
            which = dp.WhichOneof("value")
            v: int | float = dp.as_int if which == "as_int" else dp.as_double
            start = dp.start_time_unix_nano
            t = dp.time_unix_nano
            state = streams.get(key)
            if state is None:
                if self._room(counts):
                    streams[key] = [start, t, v, self._seen(start, t), now]
                else:
                    drops.append(i)
                continue
            if not self._order(state, start, t, counts):
                drops.append(i)
                continue
            total = state[2] + v
            if isinstance(total, int) and not -INT64_MAX - 1 <= total <= INT64_MAX:
                total = float(total)
            state[2] = total
            state[-1] = now
            streams.move_to_end(key)
            counts.n["accumulated"] += 1
            dp.start_time_unix_nano = state[0]
            dp.time_unix_nano = state[1]
            if isinstance(total, int):
                dp.as_int = total
            else:
                dp.as_double = total
        return drops

    def _histograms(self, mkey: bytes, points: Any, keys: Any, lo: int, hi: int, now: float,
                    counts: _Counts) -> list[int]:
        # state: [start, time, count, sum, min, max, bounds, buckets, seen, last update];
        # sum/min/max None when absent.
        streams = self.streams
        drops: list[int] = []
        for i in range(lo, hi):
            dp = points[i]
            key = (mkey, _serialized(keys[i].attributes))
            start = dp.start_time_unix_nano
            t = dp.time_unix_nano
            bounds, incoming = _layout(dp, keys[i])
            state = streams.get(key)
            if state is None:
                if self._room(counts):
                    streams[key] = _histogram_state(dp, start, t, bounds, incoming,
                                                    self._seen(start, t), now)
                else:
                    drops.append(i)
                continue
            if not self._order(state, start, t, counts):
                drops.append(i)
                continue
            if state[6] != bounds:
                # Bounds changed: no way to add; the stream starts over from this point.
                counts.n["reset"] += 1
                streams[key] = _histogram_state(dp, start, t, bounds, incoming, state[-2],
                                                now)
                streams.move_to_end(key)
                continue
            state[2] += dp.count
            if state[3] is not None and dp.HasField("sum"):
                state[3] += dp.sum
            else:
                state[3] = None
            state[4] = min(state[4], dp.min) if state[4] is not None and dp.HasField(
                "min") else None
            state[5] = max(state[5], dp.max) if state[5] is not None and dp.HasField(
                "max") else None
            buckets = state[7]
            if len(incoming) == len(buckets):
                buckets = state[7] = [a + b for a, b in zip(buckets, incoming, strict=True)]
            else:  # malformed: add what both have (the Collector's best effort)
                for b in range(min(len(buckets), len(incoming))):
                    buckets[b] += incoming[b]
            state[-1] = now
            streams.move_to_end(key)
            counts.n["accumulated"] += 1
            dp.start_time_unix_nano = state[0]
            dp.time_unix_nano = state[1]
            dp.count = state[2]
            _set_optional(dp, "sum", state[3])
            _set_optional(dp, "min", state[4])
            _set_optional(dp, "max", state[5])
            dp.bucket_counts[:] = buckets
        return drops

    def _expos(self, mkey: bytes, points: Any, keys: Any, lo: int, hi: int, now: float,
               counts: _Counts) -> list[int]:
        # state: [start, time, Expo, seen, last update]
        streams = self.streams
        drops: list[int] = []
        for i in range(lo, hi):
            dp = points[i]
            zero = dp.zero_threshold
            if not (MIN_SCALE <= dp.scale <= MAX_SCALE and 0 <= zero < math.inf):
                counts.n["invalid"] += 1  # no bucket math on it: dropped
                drops.append(i)
                continue
            key = (mkey, _serialized(keys[i].attributes))
            start = dp.start_time_unix_nano
            t = dp.time_unix_nano
            state = streams.get(key)
            if state is None:
                if self._room(counts):
                    streams[key] = [start, t, Expo.of(dp), self._seen(start, t), now]
                else:
                    drops.append(i)
                continue
            if not self._order(state, start, t, counts):
                drops.append(i)
                continue
            total: Expo = state[2]
            total.add(Expo.of(dp))
            state[-1] = now
            streams.move_to_end(key)
            counts.n["accumulated"] += 1
            dp.start_time_unix_nano = state[0]
            dp.time_unix_nano = state[1]
            total.write(dp)
        return drops


_BOUNDS: dict[bytes, bytes] = {}
_BOUNDS_LIMIT = 1000
_LITTLE = sys.byteorder == "little"


def _layout(dp: Any, projected: Any) -> tuple[bytes, Sequence[int]]:
    """A histogram point's explicit bounds as packed doubles (compared as bytes) and its
    bucket counts, read from the projection's packed payloads; from the decoded point
    when the sender wrote them unpacked (the projection's bytes then disagree with the
    decoded lengths). Streams of one histogram share one bounds value (at most 1000
    distinct ones are shared)."""
    bounds: bytes = projected.explicit_bounds
    raw: bytes = projected.bucket_counts
    if len(bounds) != 8 * len(dp.explicit_bounds):
        bounds = struct.pack(f"<{len(dp.explicit_bounds)}d", *dp.explicit_bounds)
    if len(raw) == 8 * len(dp.bucket_counts):
        counts = array.array("Q", raw)
        if not _LITTLE:
            counts.byteswap()
    else:
        counts = array.array("Q", dp.bucket_counts)
    known = _BOUNDS.get(bounds)
    if known is not None:
        return known, counts
    if len(_BOUNDS) < _BOUNDS_LIMIT:
        _BOUNDS[bounds] = bounds
    return bounds, counts


def _histogram_state(dp: Any, start: int, t: int, bounds: bytes, counts: Sequence[int],
                     seen: bytes, now: float) -> list[Any]:
    return [start, t, dp.count, dp.sum if dp.HasField("sum") else None,
            dp.min if dp.HasField("min") else None, dp.max if dp.HasField("max") else None,
            bounds, list(counts), seen, now]


def _set_optional(dp: Any, name: str, value: float | None) -> None:
    if value is None:
        dp.ClearField(name)
    else:
        setattr(dp, name, value)


# Exponential histograms ---------------------------------------------------------------


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
        _set_optional(dp, "sum", self.sum)
        _set_optional(dp, "min", self.min)
        _set_optional(dp, "max", self.max)
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


def _create(settings: ProcessorCreateSettings,
            config: DeltaToCumulativeConfig) -> DeltaToCumulativeProcessor:
    return DeltaToCumulativeProcessor(settings, config)


factory = Factory(type="deltatocumulative", kind=Kind.PROCESSOR,
                  config_model=DeltaToCumulativeConfig, create=_create,
                  signals=frozenset({Signal.METRICS}),
                  description="delta sums and histograms to cumulative, per stream "
                              "(max_stale, max_streams)")
