"""`deltatocumulative` processor: real OTLP metric requests in, the Collector's cases
(timestamps, limit, histogram bounds change) and exactness against sums computed here,
exponential histograms against a direct bucketing of the same values."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.pdata import pacing
from pipeline.pdata.batch import Batch
from pipeline.pdata.wire import varint
from pipeline.processors.deltatocumulative import factory
from pipeline.processors.deltatocumulative.config import DeltaToCumulativeConfig
from pipeline.processors.deltatocumulative.processor import CHUNK, DeltaToCumulativeProcessor
from pipeline.telemetry.metrics import Telemetry
from tests.builders import T0, kv, metrics_request
from tests.support import LoopTurns, Sink, processor_settings

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE

Attrs = dict[str, str | int | float | bool]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**config: Any) -> tuple[DeltaToCumulativeProcessor, Sink, Telemetry, Clock]:
    sink, telemetry, clock = Sink(), Telemetry(), Clock()
    cfg = DeltaToCumulativeConfig.model_validate(config)
    proc = DeltaToCumulativeProcessor(
        processor_settings("deltatocumulative", telemetry, next_consumer=sink,
                           signal=Signal.METRICS), cfg, clock=clock)
    return proc, sink, telemetry, clock


def request(*metrics: Metric, resource: Attrs | None = None,
            scope: tuple[str, str] = ("test", "1.2.3")) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in (resource if resource is not None else {"service.name": "api"}).items():
        rm.resource.attributes.append(kv(k, v))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = scope
    sm.metrics.extend(metrics)
    return req


def sum_metric(points: Sequence[tuple[Any, ...]], *, name: str = "calls", unit: str = "",
               temporality: int = DELTA, monotonic: bool = True) -> Metric:
    m = Metric(name=name, unit=unit)
    m.sum.aggregation_temporality = temporality  # type: ignore[assignment]
    m.sum.is_monotonic = monotonic
    for p in points:
        dp = m.sum.data_points.add(start_time_unix_nano=p[0], time_unix_nano=p[1])
        if isinstance(p[2], int):
            dp.as_int = p[2]
        else:
            dp.as_double = p[2]
        for k, v in (p[3] if len(p) > 3 else {}).items():
            dp.attributes.append(kv(k, v))
    return m


def histogram_metric(points: Sequence[dict[str, Any]], *, name: str = "duration",
                     temporality: int = DELTA) -> Metric:
    m = Metric(name=name, unit="s")
    m.histogram.aggregation_temporality = temporality  # type: ignore[assignment]
    for p in points:
        dp = m.histogram.data_points.add()
        attrs = p.pop("attrs", {})
        for k, v in p.items():
            if k in ("explicit_bounds", "bucket_counts"):
                getattr(dp, k).extend(v)
            else:
                setattr(dp, k, v)
        for k, v in attrs.items():
            dp.attributes.append(kv(k, v))
    return m


async def run(proc: DeltaToCumulativeProcessor, sink: Sink,
              req: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest | None:
    """Send one request through; what the next consumer got (None: nothing)."""
    before = len(sink.batches)
    await proc.consume(Batch(Signal.METRICS, raw=req.SerializeToString()))
    if len(sink.batches) == before:
        return None
    out = ExportMetricsServiceRequest()
    out.ParseFromString(sink.batches[-1].to_bytes())
    return out


def points(out: ExportMetricsServiceRequest | None, index: int = 0) -> list[Any]:
    assert out is not None
    m = out.resource_metrics[0].scope_metrics[0].metrics[index]
    return list(getattr(m, m.WhichOneof("data")).data_points)


def value(dp: Any) -> int | float:
    return dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double  # type: ignore[no-any-return]


def counted(telemetry: Telemetry, outcome: str) -> float:
    got = telemetry.registry.get_sample_value(
        "otelpipe_processor_deltatocumulative_datapoints_total",
        {"processor": "deltatocumulative", "pipeline": "metrics", "outcome": outcome})
    return got or 0.0


# --- the Collector's cases ------------------------------------------------------------


async def test_timestamps_gap_accepted_out_of_order_and_older_start_dropped() -> None:
    proc, sink, tel, _ = make()
    out = await run(proc, sink, request(sum_metric([
        (1000, 1100, 1), (1100, 1200, 2),
        (1300, 1400, 4),   # gap (1200-1300 missing): accepted
        (1200, 1300, 8),   # out of order: dropped
        (500, 550, 16),    # belongs to an older series: dropped
    ])))
    m = out.resource_metrics[0].scope_metrics[0].metrics[0] if out else None
    assert m is not None
    assert m.sum.aggregation_temporality == CUMULATIVE
    assert m.sum.is_monotonic
    got = [(dp.start_time_unix_nano, dp.time_unix_nano, value(dp)) for dp in points(out)]
    assert got == [(1000, 1100, 1), (1000, 1200, 3), (1000, 1400, 7)]
    assert counted(tel, "started") == 1
    assert counted(tel, "accumulated") == 2
    assert counted(tel, "out_of_order") == 1
    assert counted(tel, "older_start") == 1
    # A duplicate of the last request (a retry) adds nothing.
    again = await run(proc, sink, request(sum_metric([(1300, 1400, 4)])))
    assert again is None
    assert counted(tel, "out_of_order") == 2


async def test_limit_drops_new_streams_and_tracked_ones_go_on() -> None:
    proc, sink, tel, _ = make(max_streams=10)
    first = [(0, 1, 1, {"series": str(i)}) for i in range(10)]
    out = await run(proc, sink, request(sum_metric(first)))
    assert [value(dp) for dp in points(out)] == [1] * 10
    second = [(0, 2, 1, {"series": s}) for s in [*map(str, range(10)), "x"]]
    out = await run(proc, sink, request(sum_metric(second)))
    got = {dp.attributes[0].value.string_value: value(dp) for dp in points(out)}
    assert got == {str(i): 2 for i in range(10)}  # "x" dropped
    assert counted(tel, "limit") == 1
    streams = tel.registry.get_sample_value(
        "otelpipe_processor_deltatocumulative_streams",
        {"processor": "deltatocumulative", "pipeline": "metrics"})
    assert streams == 10


async def test_histograms_add_and_restart_when_bounds_change() -> None:
    proc, sink, tel, _ = make()
    bounds = [0.01, 0.1, 1, 10, 100]
    out = await run(proc, sink, request(histogram_metric([
        {"time_unix_nano": 10, "explicit_bounds": bounds, "bucket_counts": [1, 2, 3, 4, 5, 0],
         "count": 15, "sum": 100.0, "min": 0.005, "max": 90.0},
        {"time_unix_nano": 20, "explicit_bounds": bounds, "bucket_counts": [1, 0, 1, 0, 1, 1],
         "count": 4, "sum": 300.0, "min": 0.5, "max": 150.0},
        {"time_unix_nano": 30, "explicit_bounds": bounds[1:], "bucket_counts": [1, 2, 3, 4, 0],
         "count": 10, "sum": 7.0},
        {"time_unix_nano": 40, "explicit_bounds": bounds[1:], "bucket_counts": [0, 0, 0, 0, 1],
         "count": 1, "sum": 500.0, "min": 500.0, "max": 500.0},
    ])))
    got = points(out)
    assert list(got[1].bucket_counts) == [2, 2, 4, 4, 6, 1]
    assert (got[1].count, got[1].sum, got[1].min, got[1].max) == (19, 400.0, 0.005, 150.0)
    assert got[1].time_unix_nano == 20
    # Bounds changed: the stream starts over from that point, which passes as it is.
    assert list(got[2].bucket_counts) == [1, 2, 3, 4, 0]
    assert list(got[2].explicit_bounds) == bounds[1:]
    # min/max missing on one side: dropped, as the Collector does; sum kept.
    assert list(got[3].bucket_counts) == [1, 2, 3, 4, 1]
    assert (got[3].count, got[3].sum) == (11, 507.0)
    assert not got[3].HasField("min")
    assert not got[3].HasField("max")
    assert counted(tel, "reset") == 1
    assert counted(tel, "accumulated") == 2


# --- pass-through and identity --------------------------------------------------------


async def test_non_delta_metrics_pass_unchanged_and_keep_their_bytes() -> None:
    proc, sink, _, _ = make()
    req = metrics_request([3, 3, 3])  # gauge, cumulative-less sum, histogram: no delta
    raw = req.SerializeToString()
    batch = Batch(Signal.METRICS, raw=raw)
    await proc.consume(batch)
    assert sink.batches[-1].has_raw
    assert sink.batches[-1].to_bytes() == raw
    cumulative = request(sum_metric([(0, 5, 1), (0, 6, 1)], temporality=CUMULATIVE))
    out = await run(proc, sink, cumulative)
    assert out == cumulative
    assert not proc.streams


async def test_stream_identity() -> None:
    proc, sink, _, _ = make()
    a: Attrs = {"http.route": "/a", "code": 200}
    a_reordered: Attrs = {"code": 200, "http.route": "/a"}
    await run(proc, sink, request(sum_metric([(0, 1, 1, a)])))
    out = await run(proc, sink, request(sum_metric([(0, 2, 10, a_reordered)])))
    assert [value(dp) for dp in points(out)] == [11]  # same stream
    # Another resource, scope, name, unit or monotonicity: another stream.
    for req in (request(sum_metric([(0, 3, 100, a)]), resource={"service.name": "web"}),
                request(sum_metric([(0, 3, 100, a)]), scope=("other", "1")),
                request(sum_metric([(0, 3, 100, a)], name="other")),
                request(sum_metric([(0, 3, 100, a)], unit="ms")),
                request(sum_metric([(0, 3, 100, a)], monotonic=False)),
                request(sum_metric([(0, 3, 100, {**a, "code": "200"})]))):
        out = await run(proc, sink, req)
        assert [value(dp) for dp in points(out)] == [100]
    assert len(proc.streams) == 7


async def test_ints_stay_ints_doubles_and_int64_overflow() -> None:
    proc, sink, _, _ = make()
    out = await run(proc, sink, request(sum_metric([(0, 1, 2), (0, 2, 3)])))
    assert [(dp.WhichOneof("value"), value(dp)) for dp in points(out)] == [
        ("as_int", 2), ("as_int", 5)]
    out = await run(proc, sink, request(sum_metric([(0, 3, 0.5)])))
    assert [(dp.WhichOneof("value"), value(dp)) for dp in points(out)] == [("as_double", 5.5)]
    out = await run(proc, sink, request(sum_metric([(0, 4, 1)])))
    assert [(dp.WhichOneof("value"), value(dp)) for dp in points(out)] == [("as_double", 6.5)]
    big = 2**63 - 1
    out = await run(proc, sink, request(sum_metric([(0, 1, big), (0, 2, big)], name="big")))
    assert [value(dp) for dp in points(out)] == [big, float(2 * big)]


async def test_exact_over_many_batches() -> None:
    """Random deltas over 50 streams: every output equals the running sum computed here."""
    rnd = random.Random(7)
    proc, sink, _, _ = make()
    totals: dict[str, int] = {}
    for step in range(1, 40):
        pts: list[tuple[int, int, int, Attrs]] = []
        for _ in range(30):
            s = str(rnd.randrange(50))
            pts.append((T0, T0 + step, rnd.randrange(1000), {"s": s}))
        # one point per stream per request (the time must advance within a stream)
        seen: dict[str, tuple[int, int, int, Attrs]] = {}
        for p in pts:
            seen.setdefault(str(p[3]["s"]), p)
        out = await run(proc, sink, request(sum_metric(list(seen.values()))))
        for dp in points(out):
            s = dp.attributes[0].value.string_value
            totals[s] = totals.get(s, 0) + seen[s][2]
            assert value(dp) == totals[s]
            assert dp.start_time_unix_nano == T0


# --- staleness, drops, accumulate mode ------------------------------------------------


async def test_max_stale_forgets_streams_and_a_returning_one_starts_over() -> None:
    proc, sink, tel, clock = make(max_stale="1m")
    await run(proc, sink, request(sum_metric([(0, 1, 5, {"s": "old"}), (0, 1, 5, {"s": "b"})])))
    clock.now += 40
    await run(proc, sink, request(sum_metric([(0, 2, 1, {"s": "b"})])))
    clock.now += 30  # "old": 70 s without a point; "b": 30 s
    out = await run(proc, sink, request(sum_metric([(10, 20, 7, {"s": "old"})])))
    assert [(dp.start_time_unix_nano, value(dp)) for dp in points(out)] == [(10, 7)]
    expired = tel.registry.get_sample_value(
        "otelpipe_processor_deltatocumulative_streams_expired_total",
        {"processor": "deltatocumulative", "pipeline": "metrics"})
    assert expired == 1
    assert len(proc.streams) == 2
    clock.now += 61
    assert proc.expire(clock.now) == 2
    assert not proc.streams


async def test_a_metric_whose_points_all_drop_is_removed_and_an_empty_batch_not_sent() -> None:
    proc, sink, _, _ = make()
    await run(proc, sink, request(sum_metric([(0, 10, 1)])))
    out = await run(proc, sink, request(sum_metric([(0, 5, 1)]),
                                        ))
    assert out is None
    mixed = request(sum_metric([(0, 5, 1)]), sum_metric([(0, 1, 1)], name="g",
                                                         temporality=CUMULATIVE))
    out = await run(proc, sink, mixed)
    assert out is not None
    assert [m.name for m in out.resource_metrics[0].scope_metrics[0].metrics] == ["g"]


async def test_accumulate_sums_interleaved_producers_exactly() -> None:
    """Two producers' deltas of one stream interleave (windows out of phase): `drop`
    loses some, `accumulate` adds every one."""
    rnd = random.Random(3)
    a = [(T0 + 10 * k, T0 + 10 * (k + 1), rnd.randrange(100)) for k in range(20)]
    b = [(T0 + 10 * k + 5, T0 + 10 * (k + 1) + 5, rnd.randrange(100)) for k in range(20)]
    arrivals = sorted(a + b, key=lambda p: (p[1] + rnd.randrange(-12, 12)))
    for mode in ("drop", "accumulate"):
        proc, sink, tel, _ = make(out_of_order=mode)
        last = None
        for p in arrivals:
            out = await run(proc, sink, request(sum_metric([p])))
            last = points(out)[-1] if out is not None else last
        assert last is not None
        if mode == "accumulate":
            assert value(last) == sum(p[2] for p in arrivals)
            assert last.start_time_unix_nano == T0
            assert last.time_unix_nano == max(p[1] for p in arrivals)
        else:
            assert counted(tel, "out_of_order") + counted(tel, "older_start") > 0
            assert value(last) < sum(p[2] for p in arrivals)


# --- exponential histograms -----------------------------------------------------------


def expo_index(v: float, scale: int) -> int:
    """The bucket of |v| at `scale`: bucket i holds (base**i, base**(i+1)]."""
    return math.ceil(math.log2(abs(v)) * 2.0 ** scale) - 1


def zero_bound(width: float, scale: int) -> float:
    """The upper bound of the bucket holding `width`."""
    return float(2.0 ** ((expo_index(width, scale) + 1) / 2.0 ** scale))


def expo_point(values: Sequence[float], scale: int, *, zero_threshold: float = 0.0,
               t: int = 1) -> dict[str, Any]:
    pos: dict[int, int] = {}
    neg: dict[int, int] = {}
    zero = 0
    for v in values:
        if abs(v) <= zero_threshold:
            zero += 1
        else:
            side = pos if v > 0 else neg
            i = expo_index(v, scale)
            side[i] = side.get(i, 0) + 1
    def dense(side: dict[int, int]) -> tuple[int, list[int]]:
        if not side:
            return 0, []
        lo = min(side)
        return lo, [side.get(i, 0) for i in range(lo, max(side) + 1)]
    return {"count": len(values), "sum": sum(values), "min": min(values), "max": max(values),
            "scale": scale, "zero_count": zero, "zero_threshold": zero_threshold,
            "positive": dense(pos), "negative": dense(neg), "time_unix_nano": t}


def expo_metric(pts: Sequence[dict[str, Any]]) -> Metric:
    m = Metric(name="latency", unit="s")
    m.exponential_histogram.aggregation_temporality = DELTA
    for p in pts:
        dp = m.exponential_histogram.data_points.add()
        for k in ("count", "sum", "min", "max", "scale", "zero_count", "zero_threshold",
                  "time_unix_nano"):
            setattr(dp, k, p[k])
        dp.positive.offset, counts = p["positive"]
        dp.positive.bucket_counts.extend(counts)
        dp.negative.offset, counts = p["negative"]
        dp.negative.bucket_counts.extend(counts)
    return m


def trimmed(offset: int, counts: Sequence[int]) -> tuple[int, list[int]]:
    counts = list(counts)
    while counts and not counts[0]:
        offset, counts = offset + 1, counts[1:]
    while counts and not counts[-1]:
        counts.pop()
    return (offset, counts) if counts else (0, [])


@pytest.mark.parametrize("seed", range(6))
async def test_exponential_histograms_equal_a_direct_bucketing(seed: int) -> None:
    """Deltas at several scales (and one with a wider zero bucket) add up to the
    histogram of all their values at the final scale and zero threshold."""
    rnd = random.Random(seed)
    proc, sink, _, _ = make()
    all_values: list[float] = []
    pts = []
    for step in range(1, 6):
        values = [rnd.choice((1, -1)) * rnd.lognormvariate(0, 1.5) for _ in range(50)]
        values += [0.0] * rnd.randrange(3)
        all_values += values
        pts.append(expo_point(values, rnd.choice((3, 5, 8)),
                              zero_threshold=0.01 if step == 4 else 0.0, t=step))
    out = await run(proc, sink, request(expo_metric(pts)))
    last = points(out)[-1]
    expected = expo_point(all_values, last.scale, zero_threshold=last.zero_threshold)
    # The coarsest scale sent, or coarser so that a side holds at most 160 buckets.
    assert last.scale <= min(p["scale"] for p in pts)
    assert len(last.positive.bucket_counts) <= 160
    assert len(last.negative.bucket_counts) <= 160
    # Widened to the upper bound of the bucket holding 0.01 (no bucket straddles it).
    assert last.zero_threshold == zero_bound(0.01, last.scale)
    assert last.count == len(all_values)
    assert last.zero_count == expected["zero_count"]
    assert trimmed(last.positive.offset, last.positive.bucket_counts) == expected["positive"]
    assert trimmed(last.negative.offset, last.negative.bucket_counts) == expected["negative"]
    assert last.sum == pytest.approx(sum(all_values))
    assert (last.min, last.max) == (min(all_values), max(all_values))


async def test_exponential_histograms_stay_within_160_buckets() -> None:
    proc, sink, _, _ = make()
    low = [1.0 + k / 100 for k in range(50)]
    high = [1e6 * (1.0 + k / 100) for k in range(50)]
    out = await run(proc, sink, request(expo_metric([expo_point(low, 8, t=1),
                                                      expo_point(high, 8, t=2)])))
    last = points(out)[-1]
    assert len(last.positive.bucket_counts) <= 160
    assert last.scale < 8
    expected = expo_point(low + high, last.scale)
    assert trimmed(last.positive.offset, last.positive.bucket_counts) == expected["positive"]


# --- config, cost, loop ---------------------------------------------------------------


def test_config() -> None:
    cfg = DeltaToCumulativeConfig.model_validate({})
    assert (cfg.max_stale, cfg.max_streams, cfg.out_of_order) == (300.0, 100_000, "drop")
    assert DeltaToCumulativeConfig.model_validate({"max_stale": "90s"}).max_stale == 90.0
    for bad, where in (({"max_stale": 0}, "max_stale"), ({"max_streams": 0}, "max_streams"),
                       ({"out_of_order": "keep"}, "out_of_order"), ({"interval": "1m"},
                                                                    "interval")):
        with pytest.raises(ValidationError, match=where):
            DeltaToCumulativeConfig.model_validate(bad)
    assert factory.supports(Signal.METRICS)
    assert not factory.supports(Signal.TRACES)


async def test_a_big_batch_lets_the_loop_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted, not timed: with a turn of the loop after every slice, one per chunk."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    proc, sink, _, _ = make()
    req = request(sum_metric([(0, 1, 1, {"s": str(i)}) for i in range(10_000)]))
    async with LoopTurns() as turns:
        await run(proc, sink, req)
    assert turns.count >= 10_000 // CHUNK - 1


def in_bucket(i: int, scale: int) -> float:
    return float(2.0 ** ((i + 0.5) / 2.0 ** scale))


@pytest.mark.parametrize(("top", "scale"), [(159, 4), (160, 3)])
async def test_160_buckets_exactly_fit_and_161_downscale(top: int, scale: int) -> None:
    proc, sink, _, _ = make()
    out = await run(proc, sink, request(expo_metric([
        expo_point([in_bucket(0, 4)], 4, t=1), expo_point([in_bucket(top, 4)], 4, t=2)])))
    last = points(out)[-1]
    assert last.scale == scale
    assert sum(last.positive.bucket_counts) == 2
    assert len(last.positive.bucket_counts) == (160 if scale == 4 else 81)


async def test_a_wider_zero_bucket_takes_the_buckets_it_covers() -> None:
    """Values on both sides of the wider threshold: the zero bucket grows to the upper
    bound of the bucket holding the threshold, and the result is the direct bucketing
    with that threshold."""
    proc, sink, _, _ = make()
    near = [0.0093, 0.0097, 0.0099, 0.0101, 0.0104, 0.011, 0.012, 0.5, 3.0]
    values_a = near + [-v for v in near]
    values_b = [0.0098, 0.0, 0.02, -0.0102, 7.0]
    out = await run(proc, sink, request(expo_metric([
        expo_point(values_a, 6, t=1), expo_point(values_b, 6, zero_threshold=0.01, t=2)])))
    last = points(out)[-1]
    assert last.zero_threshold == zero_bound(0.01, last.scale)
    everything = values_a + values_b
    expected = expo_point(everything, last.scale, zero_threshold=last.zero_threshold)
    assert last.zero_count == expected["zero_count"]
    assert expected["zero_count"] > 6  # the straddling bucket's values went to zero too
    assert trimmed(last.positive.offset, last.positive.bucket_counts) == expected["positive"]
    assert trimmed(last.negative.offset, last.negative.bucket_counts) == expected["negative"]
    assert last.count == len(everything)


async def test_accumulate_drops_a_redelivered_window_of_the_last_eight() -> None:
    proc, sink, tel, _ = make(out_of_order="accumulate")
    windows = [(T0 + 10 * k + (k % 2) * 3, T0 + 10 * (k + 1) + (k % 2) * 3) for k in range(12)]
    total = 0
    for k, (start, end) in enumerate(windows):
        out = await run(proc, sink, request(sum_metric([(start, end, k + 1)])))
        total += k + 1
        assert [value(dp) for dp in points(out)] == [total]
    # A retry of each of the last 8 windows: dropped; the 9th back is not remembered.
    for start, end in windows[-8:]:
        assert await run(proc, sink, request(sum_metric([(start, end, 1000)]))) is None
    assert counted(tel, "duplicate") == 8
    start, end = windows[-9]
    out = await run(proc, sink, request(sum_metric([(start, end, 1000)])))
    assert [value(dp) for dp in points(out)] == [total + 1000]
    # Same start, another end (or the reverse): not a repeat.
    out = await run(proc, sink, request(sum_metric([(windows[-1][0], windows[-1][1] + 1, 1)])))
    assert [value(dp) for dp in points(out)] == [total + 1001]


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


async def test_histogram_buckets_written_unpacked_are_read_too() -> None:
    """A sender may write repeated numbers unpacked (one tag per element): the bytes the
    projection reads are then empty and the decoded point is used."""
    proc, sink, _, _ = make()

    def unpacked(t: int, counts: list[int]) -> bytes:
        dp = struct.pack("<BQ", 3 << 3 | 1, t) + struct.pack("<BQ", 4 << 3 | 1, sum(counts))
        dp += b"".join(struct.pack("<Bd", 7 << 3 | 1, b) for b in (1.0, 2.0))
        dp += b"".join(struct.pack("<BQ", 6 << 3 | 1, c) for c in counts)
        histogram = field(1, dp) + bytes([2 << 3]) + varint(DELTA)
        metric = field(1, b"latency") + field(9, histogram)
        return field(1, field(2, field(2, metric)))

    for t, counts, total in ((1, [1, 2, 3], [1, 2, 3]), (2, [4, 0, 1], [5, 2, 4])):
        await proc.consume(Batch(Signal.METRICS, raw=unpacked(t, counts)))
        out = ExportMetricsServiceRequest.FromString(sink.batches[-1].to_bytes())
        dp = points(out)[-1]
        assert list(dp.explicit_bounds) == [1.0, 2.0]
        assert list(dp.bucket_counts) == total
        assert dp.count == sum(total)
    # The same stream written packed: one layout, it adds up.
    out = await run(proc, sink, ExportMetricsServiceRequest.FromString(unpacked(3, [1, 1, 1])))
    assert list(points(out)[-1].bucket_counts) == [6, 3, 5]


@pytest.mark.parametrize(("scale", "zero"), [(21, 0.0), (-11, 0.0), (1000, 0.0),
                                             (3, math.nan), (3, -1.0), (3, math.inf)])
async def test_an_exponential_histogram_out_of_the_data_model_is_dropped(
        scale: int, zero: float) -> None:
    proc, sink, tel, _ = make()
    good = expo_point([1.5, 2.5], 3, t=1)
    bad = {**expo_point([1.5, 2.5], 3, t=2), "scale": scale, "zero_threshold": zero}
    later = expo_point([1.5], 3, t=3)
    out = await run(proc, sink, request(expo_metric([good, bad, later])))
    assert [dp.count for dp in points(out)] == [2, 3]
    assert counted(tel, "invalid") == 1
