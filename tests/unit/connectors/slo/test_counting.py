"""Events counted from each metric type: histogram buckets, counter resets and
baselines, gauges, thresholds in the metric's unit."""

from __future__ import annotations

import pytest

from tests.unit.connectors.slo.support import (
    LATENCY,
    make,
)
from tests.unit.slo.sim import Clock, RedTraffic, gauge_batch

# --- inputs ---------------------------------------------------------------------------


async def test_latency_from_histogram_bucket_at_the_threshold() -> None:
    clock = Clock()
    conn = make(clock, slos=[LATENCY])
    traffic = RedTraffic(clock)
    traffic.requests(1000, slow=30)
    clock.advance(60)
    await conn.consume(traffic.batch())
    traffic.requests(1000, errors=10, slow=70)  # errors are fast: good for latency
    clock.advance(60)
    await conn.consume(traffic.batch())
    w = conn.slo_status("api-latency-p95").window("5m")
    assert (w.total, w.bad) == (2000, 100)
    assert w.sli == pytest.approx(0.95)
    assert w.burn_rate == pytest.approx(1.0)  # 5% slow = exactly the 5% budget


async def test_latency_threshold_not_a_bucket_bound_is_reported() -> None:
    clock = Clock()
    slo = {**LATENCY, "sli": {**LATENCY["sli"], "threshold": "250ms"}}
    conn = make(clock, slos=[slo])
    traffic = RedTraffic(clock)
    traffic.requests(100)
    await conn.consume(traffic.batch())
    assert conn.slo_status("api-latency-p95").window("5m").total == 0
    [problem] = conn.problems["api-latency-p95"]
    assert "0.25 s" in problem
    assert "not a bucket bound" in problem
    assert "0.05, 0.1, 0.2, 0.5, 1" in problem


async def test_counter_resets_and_new_series() -> None:
    clock = Clock()
    conn = make(clock)
    traffic = RedTraffic(clock)
    traffic.requests(100)
    clock.advance(1)  # redmetrics flushes after the first span (start < point time)
    await conn.consume(traffic.batch())  # born after the connector: counted in full
    traffic.requests(50, errors=5)  # the error series appears with the first error
    clock.advance(30)
    await conn.consume(traffic.batch())
    await conn.consume(traffic.batch())  # the same values again: no increase
    traffic.restart()  # the source restarts: counters from 0, new start times
    clock.advance(30)
    traffic.requests(20, errors=2)
    await conn.consume(traffic.batch())
    w = conn.slo_status("api-availability").window("5m")
    assert (w.total, w.bad) == (170, 7)


async def test_a_first_point_starting_at_its_own_time_is_a_baseline() -> None:
    """What a scraper sends for a counter it sees for the first time (no `_created`):
    start time = point time. It may hold years of counts: a baseline, never a burst."""
    clock = Clock()
    conn = make(clock)
    traffic = RedTraffic(clock)
    clock.advance(60)
    traffic.requests(100, errors=40)  # series created now, sent at the same instant
    await conn.consume(traffic.batch())
    clock.advance(30)
    traffic.requests(10, errors=1)
    await conn.consume(traffic.batch())
    w = conn.slo_status("api-availability").window("5m")
    assert (w.total, w.bad) == (10, 1)


async def test_series_older_than_the_connector_start_are_a_baseline() -> None:
    clock = Clock()
    traffic = RedTraffic(clock)
    traffic.requests(5000, errors=500)  # counted before otelpipe watched
    clock.advance(60)
    conn = make(clock)
    await conn.consume(traffic.batch())
    traffic.requests(100, errors=1)
    clock.advance(60)
    await conn.consume(traffic.batch())
    w = conn.slo_status("api-availability").window("5m")
    assert (w.total, w.bad) == (100, 1)


async def test_httpcheck_availability_and_replication_lag_consistency() -> None:
    clock = Clock()
    url = "http://127.0.0.1:8000/health"
    conn = make(clock, slos=[
        {"name": "api-availability", "service": "api", "objective": 99.9,
         "sli": {"type": "availability", "source": "httpcheck", "match": {"http.url": url}}},
        {"name": "data-consistency", "service": "postgresql", "objective": 99.99,
         "sli": {"type": "threshold", "metric": "db.replication.lag", "op": "lt",
                 "threshold": "100ms", "match": {"method": "heartbeat"}}},
    ])
    probe = {"http.url": url, "http.method": "GET"}
    other = {"http.url": "http://other/health", "http.method": "GET"}
    for i in range(10):
        clock.advance(10)
        ok = 0 if i in (3, 4) else 1
        await conn.consume(gauge_batch(clock, "httpcheck.success",
                                       [(probe, ok), (other, 0)], unit="1"))
        lag = 0.25 if i == 7 else 0.004
        batch = gauge_batch(clock, "db.replication.lag", [
            ({"db.system": "postgresql", "db.replica": "r1", "method": "heartbeat"}, lag),
            ({"db.system": "postgresql", "db.replica": "r1", "method": "replay"}, 9.0)],
            unit="s")
        await conn.consume(batch)
        if i == 5:
            await conn.consume(batch)  # delivered twice (at-least-once): counted once
    avail = conn.slo_status("api-availability").window("5m")
    assert (avail.total, avail.bad) == (10, 2)
    lag_w = conn.slo_status("data-consistency").window("5m")
    assert (lag_w.total, lag_w.bad) == (10, 1)


async def test_threshold_in_seconds_is_converted_to_the_metric_unit() -> None:
    clock = Clock()
    conn = make(clock, slos=[
        {"name": "probe-latency", "service": "api", "objective": 99,
         "sli": {"type": "threshold", "metric": "httpcheck.duration", "op": "lte",
                 "threshold": "200ms"}}])
    for ms in (50, 150, 200, 350):
        clock.advance(10)
        await conn.consume(gauge_batch(clock, "httpcheck.duration", [({}, ms)], unit="ms"))
    w = conn.slo_status("probe-latency").window("5m")
    assert (w.total, w.bad) == (4, 1)
