"""SLOs on the app's own metrics: a gauge quotient sampled per minute (time slices),
a ratio of two counters (`plus`), a counter-rate ratio -- counted exactly."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pipeline.component import Signal
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.pdata.batch import Batch
from pipeline.slo.model import Indicator
from tests.unit.connectors.slo.support import make
from tests.unit.slo.scraped import App
from tests.unit.slo.sim import Clock

POOL: dict[str, Any] = {
    "name": "db-pool-headroom", "service": "api", "objective": 99,
    "sli": {"type": "threshold", "metric": "db_pool_checked_out", "divide_by": "db_pool_size",
            "op": "lt", "threshold": 0.8}}
CACHE: dict[str, Any] = {
    "name": "cache-hit-ratio", "service": "api", "objective": 90,
    "sli": {"type": "ratio", "good": {"metric": "cache_hits_total"},
            "total": {"metric": "cache_hits_total", "plus": ["cache_misses_total"]}}}
RATE: dict[str, Any] = {
    "name": "rate-limiting", "service": "api", "objective": 99,
    "sli": {"type": "ratio", "bad": {"metric": "rate_limit_rejections_total"},
            "total": {"metric": "http_requests_total"}}}


def window(conn: Any, slo: str, name: str = "1h") -> tuple[float, float]:
    w = conn.slo_status(slo).window(name)
    return w.good, w.total


async def test_pool_is_sampled_once_a_minute_per_pool() -> None:
    clock = Clock()
    conn = make(clock, slos=[POOL])
    app = App(clock)
    # 10 minutes, scraped every 15 s; minutes 3..5 the main pool runs at 95%.
    for minute in range(10):
        for _ in range(4):
            clock.advance(15)
            app.pool(19 if minute in (3, 4, 5) else 5)
            app.pool(1, size=10, pool="replica")
            await conn.consume(app.batch())
            await conn.flush()  # every 15 s: one sample per minute only
    good, total = window(conn, "db-pool-headroom")
    # One slice at the first flush (15 s), then one at each minute boundary (60 s ...
    # 600 s): 11 slices x 2 pools; the main pool's samples at 240, 300 and 360 s are bad.
    assert (good, total) == (22 - 3, 22)
    assert conn.slo_status("db-pool-headroom").window("1h").sli == pytest.approx(19 / 22)


async def test_pool_stale_series_and_empty_pool() -> None:
    clock = Clock()
    conn = make(clock, slos=[POOL])
    app = App(clock)
    app.pool(1)
    app.pool(0, size=0, pool="empty")  # 0/0 is NaN: not < 0.8, a bad slice (as PromQL)
    await conn.consume(app.batch())
    await conn.flush()
    assert window(conn, "db-pool-headroom") == (1, 2)
    # The empty pool goes away: a staleness marker for both of its gauges.
    app.set("db_pool_checked_out", "pool", "empty", None)
    app.set("db_pool_size", "pool", "empty", None)
    clock.advance(60)
    await conn.consume(app.batch())
    await conn.flush()
    assert window(conn, "db-pool-headroom") == (2, 3)
    # The target stops answering (last sample at 60 s): a sample up to 5 minutes old
    # still counts (Prometheus' lookback, [t - 5m, t]); at 420 s it is gone.
    for _ in range(5):
        clock.advance(60)
        await conn.flush()
    assert window(conn, "db-pool-headroom") == (7, 8)  # 120 ... 360 s
    clock.advance(60)
    await conn.flush()
    assert window(conn, "db-pool-headroom") == (7, 8)


async def test_a_quotient_needs_both_series() -> None:
    clock = Clock()
    conn = make(clock, slos=[POOL])
    app = App(clock)
    app.set("db_pool_checked_out", "pool", "main", 3)  # no db_pool_size yet
    await conn.consume(app.batch())
    await conn.flush()
    assert window(conn, "db-pool-headroom") == (0, 0)


async def test_cache_hit_ratio_adds_the_misses_to_the_total() -> None:
    clock = Clock()
    conn = make(clock, slos=[CACHE])
    app = App(clock)
    app.inc("cache_hits_total", "cache", "redis", 5000)  # before otelpipe watched
    app.inc("cache_misses_total", "cache", "redis", 300)
    await conn.consume(app.batch())  # first sight: a baseline (start time = point time)
    clock.advance(60)
    app.inc("cache_hits_total", "cache", "redis", 900)
    app.inc("cache_misses_total", "cache", "redis", 100)
    await conn.consume(app.batch())
    clock.advance(60)
    app.inc("cache_hits_total", "cache", "redis", 400)
    app.inc("cache_misses_total", "cache", "redis", 600)  # Redis down: misses
    await conn.consume(app.batch())
    await conn.flush()
    assert window(conn, "cache-hit-ratio") == (1300, 2000)
    st = conn.slo_status("cache-hit-ratio")
    assert st.window("1h").burn_rate == pytest.approx((700 / 2000) / 0.1)


async def test_rate_limiting_counts_rejections_among_requests() -> None:
    clock = Clock()
    conn = make(clock, slos=[RATE])
    app = App(clock)
    app.inc("http_requests_total", "route", "/api", 0)
    await conn.consume(app.batch())
    for minute in range(6):
        clock.advance(60)
        app.inc("http_requests_total", "route", "/api", 600)
        if minute >= 4:
            app.inc("rate_limit_rejections_total", "route", "/api", 60)
        await conn.consume(app.batch())
    await conn.flush()
    good, total = window(conn, "rate-limiting")
    # The rejection series' first point (start == time, as a scraper reports a series
    # it sees for the first time) is a baseline; the next minute's 60 count.
    assert (total - good, total) == (60, 3600)


async def test_counter_staleness_markers_are_not_resets() -> None:
    clock = Clock()
    conn = make(clock, slos=[RATE])
    app = App(clock)
    app.inc("http_requests_total", "route", "/api", 100)
    app.inc("rate_limit_rejections_total", "route", "/api", 1)
    await conn.consume(app.batch())
    req = app.request()
    for m in req.resource_metrics[0].scope_metrics[0].metrics:
        for dp in m.sum.data_points:
            dp.flags = 1
            dp.as_double = math.nan
    clock.advance(60)
    await conn.consume(Batch(Signal.METRICS, message=req))
    clock.advance(60)
    app.inc("http_requests_total", "route", "/api", 50)
    await conn.consume(app.batch())
    await conn.flush()
    assert window(conn, "rate-limiting") == (50, 50)


def test_native_and_model() -> None:
    cfg = SLOConnectorConfig.model_validate({"slos": [POOL, CACHE, RATE]})
    pool, cache, rate = cfg.definitions
    assert pool.indicator.interval == 60.0  # divide_by: sampled per minute by default
    assert pool.indicator.total.divide_by == "db_pool_size"
    assert cache.indicator.total.plus == ["cache_misses_total"]
    assert rate.indicator.interval is None


@pytest.mark.parametrize(("indicator", "error"), [
    ({"total": {"metric": "a", "divide_by": "b"}, "good": {"metric": "a", "divide_by": "b",
                                                             "op": "lt", "value": 1}},
     "divide_by needs an interval"),
    ({"total": {"metric": "a", "plus": ["b"]}, "good": {"metric": "a"}, "interval": "1m"},
     "interval samples gauges"),
    ({"total": {"metric": "a", "plus": ["a"]}, "good": {"metric": "a"}},
     "plus names a metric twice"),
    ({"total": {"metric": "a", "plus": ["b"], "op": "lt", "value": 1}, "good": {"metric": "a"}},
     r"a threshold \(op/value\) does not apply"),
    ({"total": {"metric": "traces.span.metrics.calls", "divide_by": "b"},
      "good": {"metric": "a"}, "interval": "1m"}, "divide_by joins gauges"),
    ({"total": {"metric": "a", "op": "lt", "value": 1}, "good": {"metric": "a"},
      "interval": "7m"}, "interval must divide an hour"),
])
def test_bad_indicators(indicator: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Indicator.model_validate(indicator)
