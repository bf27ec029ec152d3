"""The `deltatocumulative` processor: streams, their state and the batch walk (see the
package's docstring for the behaviour)."""

from __future__ import annotations

import array
import math
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from pipeline.component import Component, Consumer, ProcessorCreateSettings
from pipeline.errors import PermanentError
from pipeline.pdata.batch import Batch
from pipeline.pdata.pacing import paced
from pipeline.processors.deltatocumulative.config import DeltaToCumulativeConfig
from pipeline.processors.deltatocumulative.expo import MAX_SCALE, MIN_SCALE, Expo, set_optional
from pipeline.proto.otelpipe import deltatocumulative_pb2
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
CHUNK = 256  # points per call of a step function (≈ 10 µs a histogram point)
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
# accumulate: the (start, time) of each stream's last 8 points, to drop a delta seen again.
_SEEN = struct.Struct("<QQ")
_SEEN_KEEP = 8 * _SEEN.size


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
    """One batch's outcome counts and its undo log: per point added, (key, state, start,
    time, the stream's time before, the fresh state's seen (a new or reset stream) or
    None, the state it replaced (reset) or None, what was added)."""

    __slots__ = ("n", "undo")

    def __init__(self) -> None:
        self.n = dict.fromkeys(OUTCOMES, 0)
        self.undo: list[tuple[Key, list[Any], int, int, int, bytes | None,
                              list[Any] | None, Any]] = []


class DeltaToCumulativeProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: DeltaToCumulativeConfig,
                 *, clock: Callable[[], float] = time.monotonic):
        self.next = settings.next_consumer
        self.log = settings.logger
        self.clock = clock
        self.max_stale = config.max_stale
        self.max_streams = config.max_streams
        self.drop_late = config.out_of_order == "drop"
        self.emit_delta = config.emit == "delta"
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
        counts = _Counts()
        if await self.apply(batch, counts):
            try:
                await self.next.consume(batch)
            except PermanentError:
                raise  # rejected for good: the totals keep it (not sent again)
            except Exception:
                # Refused (retryable): the sender sends it again, so what this batch
                # added is taken back (sums, counts and buckets commute; other batches
                # may have added since).
                self.rollback(counts)
                raise

    # Batch ------------------------------------------------------------------------------

    async def apply(self, batch: Batch, counts: _Counts | None = None) -> bool:
        """Turn the batch's delta metrics cumulative, in place; False if nothing is left
        to send (every point was a dropped delta). `counts` gets the undo log."""
        if not _has_delta(batch.message):
            return True  # nothing to do: the batch keeps its bytes
        # The same request through a projection that keeps attributes serialized (the
        # stream keys are built from those bytes) and histogram buckets and bounds as
        # packed bytes; its indexes match the decoded request's.
        proj = deltatocumulative_pb2.MetricsRequest.FromString(batch.to_bytes())
        msg = batch.mutable()
        now = self.clock()
        self.expire(now)
        if counts is None:
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
        event loop between slices (`paced`, over chunks of CHUNK points)."""
        mono = b"1" if kind == "sum" and c.is_monotonic else b"0"
        mkey = _pack(skey, m.name.encode(), m.unit.encode(), kind.encode(), mono)
        points = c.data_points
        step = (self._numbers if kind == "sum" else self._histograms if kind == "histogram"
                else self._expos)
        n = len(points)
        drops: list[int] = []
        async for lo in paced(range(0, n, CHUNK)):
            drops += step(mkey, points, keys, lo, min(n, lo + CHUNK), now, counts)
        if not self.emit_delta:
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

    def rollback(self, counts: _Counts) -> None:
        """Take back what a batch added (its `apply` filled `counts.undo`), the batch
        having been refused downstream: it will be sent again. A stream the batch started
        (or reset) and nothing updated since is forgotten (or restored); otherwise its
        totals lose what the batch added: sums, counts, histogram sums and buckets
        (other batches may have added since; addition commutes). Not taken back: a min or
        max the batch lowered or raised, an earlier start it brought (the same batch sent
        again brings them back), a histogram sum dropped because the point had none."""
        streams = self.streams
        drop_late = self.drop_late
        for key, mine, start, t, before, fresh, old, added in reversed(counts.undo):
            state = streams.get(key)
            if state is None or state is not mine:
                continue  # expired or reset since: nothing of it left to take back
            if fresh is not None and (state[1] == t if drop_late else state[-2] is fresh):
                if old is None:
                    del streams[key]
                else:
                    streams[key] = old
                    self._unorder(old, start, t, before)
                continue
            self._unorder(state, start, t, before)
            total = state[2]
            if isinstance(total, Expo):
                lo, hi = total.min, total.max
                total.add(added.negated())
                total.min, total.max = lo, hi
            elif isinstance(added, tuple):
                count, added_sum, incoming = added
                state[2] -= count
                if state[3] is not None and added_sum is not None:
                    state[3] -= added_sum
                buckets = state[7]
                for b in range(min(len(buckets), len(incoming))):
                    buckets[b] -= incoming[b]
            else:
                state[2] = total - added
        self._streams_gauge.set(len(streams))

    def _unorder(self, state: list[Any], start: int, t: int, before: int) -> None:
        """Forget a taken-back point's window, so that it is not a duplicate when it comes
        again (accumulate), or restore the stream's time before it (drop)."""
        if self.drop_late:
            if state[1] == t:
                state[1] = before
            return
        seen: bytes = state[-2]
        entry = _SEEN.pack(start, t)
        i = seen.find(entry)
        while i >= 0 and i % _SEEN.size:
            i = seen.find(entry, i + 1)
        if i >= 0:
            state[-2] = seen[:i] + seen[i + _SEEN.size:]

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

    @staticmethod
    def _rewindow(dp: Any, state: list[Any], before: int) -> None:
        """emit: delta: the point leaves as its stream's next window, from the end of the
        previous one (at least 1 ns long), so that the stream has one writer."""
        end = max(state[1], before + 1)
        state[1] = end
        dp.start_time_unix_nano = before
        dp.time_unix_nano = end

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
        undo = counts.undo
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
                    state = streams[key] = [start, t, v, self._seen(start, t), now]
                    undo.append((key, state, start, t, t, state[-2], None, v))
                else:
                    drops.append(i)
                continue
            before = state[1]
            if not self._order(state, start, t, counts):
                drops.append(i)
                continue
            undo.append((key, state, start, t, before, None, None, v))
            total = state[2] + v
            if isinstance(total, int) and not -INT64_MAX - 1 <= total <= INT64_MAX:
                total = float(total)
            state[2] = total
            state[-1] = now
            streams.move_to_end(key)
            counts.n["accumulated"] += 1
            if self.emit_delta:
                self._rewindow(dp, state, before)
                continue
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
        undo = counts.undo
        drops: list[int] = []
        for i in range(lo, hi):
            dp = points[i]
            key = (mkey, _serialized(keys[i].attributes))
            start = dp.start_time_unix_nano
            t = dp.time_unix_nano
            bounds, incoming = _layout(dp, keys[i])
            added = (dp.count, dp.sum if dp.HasField("sum") else None, incoming)
            state = streams.get(key)
            if state is None:
                if self._room(counts):
                    state = streams[key] = _histogram_state(dp, start, t, bounds, incoming,
                                                            self._seen(start, t), now)
                    undo.append((key, state, start, t, t, state[-2], None, added))
                else:
                    drops.append(i)
                continue
            before = state[1]
            if not self._order(state, start, t, counts):
                drops.append(i)
                continue
            if state[6] != bounds:
                # Bounds changed: no way to add; the stream starts over from this point.
                counts.n["reset"] += 1
                fresh = streams[key] = _histogram_state(dp, start, t, bounds, incoming,
                                                        state[-2], now)
                undo.append((key, fresh, start, t, before, fresh[-2], state, added))
                streams.move_to_end(key)
                continue
            undo.append((key, state, start, t, before, None, None, added))
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
            if self.emit_delta:
                self._rewindow(dp, state, before)
                continue
            dp.start_time_unix_nano = state[0]
            dp.time_unix_nano = state[1]
            dp.count = state[2]
            set_optional(dp, "sum", state[3])
            set_optional(dp, "min", state[4])
            set_optional(dp, "max", state[5])
            dp.bucket_counts[:] = buckets
        return drops

    def _expos(self, mkey: bytes, points: Any, keys: Any, lo: int, hi: int, now: float,
               counts: _Counts) -> list[int]:
        # state: [start, time, Expo, seen, last update]
        streams = self.streams
        undo = counts.undo
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
                    state = streams[key] = [start, t, Expo.of(dp), self._seen(start, t), now]
                    undo.append((key, state, start, t, t, state[-2], None, Expo.of(dp)))
                else:
                    drops.append(i)
                continue
            before = state[1]
            if not self._order(state, start, t, counts):
                drops.append(i)
                continue
            undo.append((key, state, start, t, before, None, None, Expo.of(dp)))
            total: Expo = state[2]
            total.add(Expo.of(dp))
            state[-1] = now
            streams.move_to_end(key)
            counts.n["accumulated"] += 1
            if self.emit_delta:
                self._rewindow(dp, state, before)
                continue
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
