"""SeriesSet: temporality, the cardinality limit and its overflow series, expiry."""

from __future__ import annotations

import tracemalloc

import pytest

from pipeline.aggregation.series import SumSeries
from pipeline.aggregation.store import OVERFLOW_ATTRIBUTE, OVERFLOW_ATTRS, SeriesSet, Temporality
from tests.support import Sink
from tests.unit.aggregation.support import CALLS, DURATION, by_name, make
from tests.unit.connectors.spans import (
    FakeClock,
    metric_defs,
    metrics,
    named_spans_batch,
    span_batch,
)


async def test_overflow_series_beyond_the_limit_and_expiry() -> None:
    clock = FakeClock()
    sset = SeriesSet("m", SumSeries, limit=2, expiry=60, clock=clock)

    def describe(key: object) -> tuple[tuple[tuple[str, object], ...], tuple[()]]:
        return (("k", key),), ()

    for key in ("a", "b", "c", "d"):
        s = sset.resolve(key, lambda k: k, describe)
        assert isinstance(s, SumSeries)
        s.add(1)
    assert len(sset) == 3  # a, b and the overflow series
    assert sset.overflow is not None
    assert sset.overflow.attrs == OVERFLOW_ATTRS
    assert sset.overflowed == 2
    snap = await sset.snapshot(clock())
    assert sorted(f for _, f in snap.points) == [(1, 1), (1, 1), (2, 2)]
    await sset.commit(snap, clock())
    clock.advance(61)
    snap = await sset.snapshot(clock())
    assert (snap.expired, len(sset), sset.cache) == (3, 0, {})


def test_temporality_accepts_the_collector_spelling() -> None:
    assert Temporality.parse("AGGREGATION_TEMPORALITY_DELTA") is Temporality.DELTA
    assert Temporality.parse("cumulative") is Temporality.CUMULATIVE
    with pytest.raises(ValueError, match="cumulative or delta"):
        Temporality.parse("both")


async def test_cumulative_start_is_series_creation_time() -> None:
    sink = Sink()
    clock = FakeClock()
    conn = make(sink, clock)
    clock.advance(5)
    created = clock.now
    await conn.consume(span_batch([{"name": "a"}]))
    clock.advance(10)
    await conn.flush()
    clock.advance(2)
    await conn.consume(span_batch([{"name": "b"}]))
    clock.advance(13)
    second = clock.now
    await conn.consume(span_batch([{"name": "a"}]))
    await conn.flush()
    pts = by_name(metrics(sink.batches[1:])[CALLS])
    assert pts["a"][2].start_time_unix_nano == created
    assert pts["a"][2].time_unix_nano == second
    assert pts["a"][2].as_int == 2
    assert pts["b"][2].start_time_unix_nano == created + 12 * 10**9
    assert pts["b"][2].as_int == 1


async def test_delta_reports_since_previous_flush() -> None:
    sink = Sink()
    clock = FakeClock()
    conn = make(sink, clock, aggregation_temporality="AGGREGATION_TEMPORALITY_DELTA")
    t_start = clock.now
    await conn.consume(span_batch([{"name": "a"}, {"name": "a"}, {"name": "b"}]))
    clock.advance(15)
    t1 = clock.now
    await conn.flush()
    await conn.consume(span_batch([{"name": "a", "ms": 300}]))
    clock.advance(15)
    t2 = clock.now
    await conn.flush()
    first = by_name(metrics(sink.batches[:1])[CALLS])
    assert {n: p[2].as_int for n, p in first.items()} == {"a": 2, "b": 1}
    assert {p[2].start_time_unix_nano for p in first.values()} == {t_start}
    assert {p[2].time_unix_nano for p in first.values()} == {t1}
    second = metrics(sink.batches[1:2])
    assert [(p[1]["span.name"], p[2].as_int) for p in second[CALLS]] == [("a", 1)]  # b: no data
    dp = second[DURATION][0][2]
    assert (dp.start_time_unix_nano, dp.time_unix_nano) == (t1, t2)
    assert dp.count == 1
    assert dp.sum == pytest.approx(0.3)
    assert metric_defs(sink.batches[1])[CALLS].sum.aggregation_temporality == 1  # delta


async def test_cardinality_limit_one_overflow_series_and_bounded_memory() -> None:
    sink = Sink()
    conn = make(sink, aggregation_cardinality_limit=1000, dimensions=[{"name": "http.route"}])
    batches = [span_batch([{"name": f"span-{i}", "attrs": {"http.route": "/x"}}
                           for i in range(start, start + 1000)]) for start in range(0, 20_000,
                                                                                      1000)]
    for b in batches[:5]:  # warm up: caches fill
        await conn.consume(b)
    # 80 more batches of 1000 fresh names → 100,000 distinct names in all.
    fresh = [named_spans_batch([f"n{n}-{i}" for i in range(1000)]) for n in range(80)]
    for b in batches[5:] + fresh[:70]:
        await conn.consume(b)
    # The state does not grow over the last 10,000 names: under 1 MiB, ~100 bytes a name
    # (tracemalloc slows the connector ~8x, so it watches the last 10 batches only).
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for b in fresh[70:]:
        await conn.consume(b)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 1024 * 1024, f"state grew by {grown} bytes"
    assert len(conn.series.series) == 1000
    assert conn.series.overflow is not None
    assert len(conn.series.cache) <= conn.series.cache_limit
    await conn.flush()
    got = metrics(sink.batches)
    calls = got[CALLS]
    assert len(calls) == 1001
    overflow = [p for p in calls if OVERFLOW_ATTRIBUTE in p[1]]
    assert len(overflow) == 1
    assert overflow[0][1] == {OVERFLOW_ATTRIBUTE: "true"}  # no other dimension
    assert overflow[0][0] == {}  # and no service resource
    assert overflow[0][2].as_int == 99_000
    assert sum(p[2].as_int for p in calls) == 100_000
    assert len(got[DURATION]) == 1001


async def test_expiry_drops_stale_series() -> None:
    sink = Sink()
    clock = FakeClock()
    conn = make(sink, clock, series_expiry="5m")
    await conn.consume(span_batch([{"name": "old"}, {"name": "live"}]))
    for _ in range(10):  # 10 flushes, 1 minute apart; only "live" keeps getting spans
        clock.advance(60)
        await conn.consume(span_batch([{"name": "live"}]))
        await conn.flush()
    last = by_name(metrics(sink.batches[-1:])[CALLS])
    assert set(last) == {"live"}
    assert last["live"][2].as_int == 11
    # Expiry counts from the flush that last saw new data for a series ("old": the
    # first, at +1 min), so it is reported through +5 min and gone from +6 min on.
    seen_old = [i for i, b in enumerate(sink.batches) if "old" in by_name(metrics([b])[CALLS])]
    assert seen_old == [0, 1, 2, 3, 4]
    assert len(conn.series) == 1
    # It comes back as a new series, with a new start time.
    await conn.consume(span_batch([{"name": "old"}]))
    clock.advance(1)
    await conn.flush()
    old = by_name(metrics(sink.batches[-1:])[CALLS])["old"][2]
    assert old.as_int == 1
    assert old.start_time_unix_nano == clock.now - 10**9

