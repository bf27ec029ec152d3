"""The `slo` connector driven by a simulated clock through 30 days of traffic:
alert timing, the budget, restarts with a state file, alert events refused downstream.

Real OTLP metrics batches go in through `consume`; `flush` is called once per
simulated minute (the flush interval); the injected clock is advanced in between.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from pipeline.config.loader import load_config
from pipeline.config.model import validate_config
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.connectors.slo.connector import SLOConnector
from pipeline.errors import ConfigError, RetryableError
from pipeline.registry import default_registry
from tests.support import REPO, Sink, connector_settings
from tests.unit.connectors.slo.support import (
    Sim,
    StaticHost,
    attrs,
    make,
    new_sim,
    remaining,
)
from tests.unit.slo.sim import DAY, HOUR, MINUTE, T0_S, Clock, RedTraffic

# --- alert timing --------------------------------------------------------------------


async def test_hard_outage_pages_within_the_short_window_and_resolves_after() -> None:
    logs = Sink()
    sim = new_sim(logs=logs)
    await sim.run(28 * 24 * 60, step=30)  # 28 quiet days, one batch per 30 minutes
    assert sim.events == []
    start = sim.minute
    await sim.run(10, error_ratio=1.0)  # every request fails for 10 minutes
    end = sim.minute
    await sim.run(8 * 60)  # 8 quiet hours

    # The 1h window passes 14.4x after 52 s of a full outage (1000x burn * 0.864/60):
    # the first evaluation (minute 1) sees it, `for: 2m` makes it fire at minute 3.
    assert sim.first("page", "firing") == start + 3
    # Resolves when the 30m window (of the 6h/30m rule) no longer holds any of the
    # outage: 30 minutes after it ended (the 1h/5m rule let go after 5).
    assert sim.first("page", "resolved") == end + 30
    # Ticket: 1d burn >= 3x after 4.32 outage minutes (evaluated at minute 5), plus
    # `for: 15m`; resolves when the 6h window (3d/6h rule) is clean: 6 h after the end.
    assert sim.first("ticket", "firing") == start + 20
    assert sim.first("ticket", "resolved") == end + 6 * 60
    assert [e[1:] for e in sim.events] == [("page", "firing"), ("ticket", "firing"),
                                           ("page", "resolved"), ("ticket", "resolved")]

    # Budget: 28 days + 490 minutes of 1000 requests/minute, 10,000 of them bad.
    total = 28 * 1440 * 1000 + (10 + 480) * 1000  # 40,810,000
    bad = 10 * 1000
    assert remaining(sim.conn) == pytest.approx(1 - (bad / total) / 0.001)  # 0.75496...

    # The alert events, as log records.
    records = [(r, attrs(r)) for b in logs.batches
               for rl in b.message.resource_logs for sl in rl.scope_logs
               for r in sl.log_records]
    assert [a["alert.state"] for _, a in records] == ["firing", "firing", "resolved",
                                                      "resolved"]
    rec, a = records[0]
    assert rec.severity_number == SeverityNumber.SEVERITY_NUMBER_WARN
    assert rec.severity_text == "WARN"
    assert a["slo.name"] == "api-availability"
    assert a["service.name"] == "api"
    assert a["alert.severity"] == "page"
    assert a["alert.windows"] == "1h,5m"
    assert a["alert.burn_rate.1h"] >= 14.4
    assert a["alert.burn_rate.5m"] >= 14.4
    assert a["alert.threshold"] == pytest.approx(14.4)
    assert a["alert.runbook_url"] == "docs/runbook.md#slo-burn-rate-page"
    assert a["alert.starts_at"].endswith("Z")
    resolved, ra = records[2]
    assert resolved.severity_number == SeverityNumber.SEVERITY_NUMBER_INFO
    assert ra["alert.severity"] == "page"
    assert "alert.ends_at" in ra


async def test_outage_burning_2_percent_per_hour_pages_when_the_hour_is_spent() -> None:
    # 1.5% errors = 15x burn: 2.08% of the 30-day budget per hour, just over the page
    # threshold (14.4x over 1h = 2%). The 1h window reaches 14.4x once 57.6 of its 60
    # minutes are outage: at minute 58, firing 2 minutes later (`for`).
    sim = new_sim()
    await sim.run(2 * 24 * 60, step=10)
    await sim.run(60)  # the hour before, minute by minute
    start = sim.minute
    await sim.run(120, error_ratio=0.015)
    end = sim.minute
    await sim.run(3 * 60)
    assert sim.first("page", "firing") == start + 60
    status = sim.conn.slo_status("api-availability")
    assert status.alerts[0].severity == "page"
    # 5m window clean after 5 minutes; the 6h/30m rule (6x) holds until the 30m window
    # drops under 6x: 30 * (1 - 6/15) = 18 minutes after the end (bucket edges: 19).
    # It resolves one minute after the end: at 15x, one clean minute among the 5m
    # window's five brings it to 12x < 14.4x; the 6h/30m rule never held (the 6h window
    # burned 15 * 120/360 = 5x < 6x).
    assert sim.first("page", "resolved") == end + 1


async def test_slow_burn_fires_only_the_ticket() -> None:
    sim = new_sim()
    await sim.run(10 * 24 * 60, step=10)
    start = sim.minute
    # 0.2% errors = 2x burn for 3 days: under both page thresholds (14.4x, 6x) and
    # under 3x (1d/2h); over 1x (3d/6h) once the 3d window holds 1.5 days of it.
    await sim.run(3 * 24 * 60, step=5, error_ratio=0.002)
    assert sim.first("page", "firing") is None
    fired = sim.first("ticket", "firing")
    assert fired is not None
    hours = (fired - start) / 60
    # 1.5 days (36 h) of burn, the 3d window's bucket edges (5 min), then `for: 15m`.
    assert 36.0 <= hours <= 36.6
    status = sim.conn.slo_status("api-availability")
    assert status.firing == ("ticket",)
    ticket = next(a for a in status.alerts if a.severity == "ticket")
    assert ticket.windows == ("3d", "6h")
    assert ticket.threshold == pytest.approx(1.0)
    assert status.burn_rates["6h"] == pytest.approx(2.0)


async def test_min_events_guard_suppresses_alerts_on_a_trickle() -> None:
    # 3 requests every 20 minutes, all failing: a burn rate of 1000x, but the page's
    # windows never hold 10 events (5m: 3, 1h: 9); min_events (10 per window, the
    # default) keeps the page quiet. Without the guard it pages.
    for min_events, pages in ((10, False), (0, True)):
        sim = new_sim(alerting={"min_events": min_events})
        await sim.run(6 * 60, step=20, rpm=0)
        await sim.run(6 * 60, step=20, per_step=3, error_ratio=1.0)
        fired = sim.first("page", "firing") is not None
        assert fired is pages, (min_events, sim.events)
        w = sim.conn.slo_status("api-availability")
        assert (w.window("5m").total, w.window("1h").total) == (3, 9)


# --- the budget and a restart --------------------------------------------------------


async def _month(sim: Sim, restart_at_day: int | None = None,
                 state_file: Path | None = None) -> Sim:
    """29 days: 1000 req/min (a batch per 30 minutes, per minute in the outage), one
    20-minute full outage on day 5 and 0.5% errors for 6 hours on day 20. Optionally a
    restart (a new connector loading the saved state; the source restarts too, its
    counters from 0) at the start of `restart_at_day`."""
    for day in range(29):
        if day == restart_at_day:
            assert state_file is not None
            await sim.conn.shutdown()  # saves
            sim.conn = make(sim.clock, state_file=str(state_file), state_save_interval="1d")
            sim.traffic.restart()
            sim.clock.advance(2 * MINUTE)  # down for two minutes, no traffic lost
        if day == 5:
            await sim.run(12 * 60, step=30)
            await sim.run(20, error_ratio=1.0)
            await sim.run(12 * 60 - 20, step=20)
        elif day == 20:
            await sim.run(6 * 60, step=30, error_ratio=0.005)
            await sim.run(18 * 60, step=30)
        else:
            await sim.run(24 * 60, step=30)
    return sim


async def test_remaining_budget_equals_the_hand_computation() -> None:
    sim = await _month(new_sim())
    # total: 29 days * 1440 min * 1000 = 41,760,000 requests
    # bad:   20 min * 1000 (outage) + 6 h * 60 * 1000 * 0.5% (= 1,800) = 21,800
    # error ratio 21,800 / 41,760,000 = 0.000522031; budget 0.001
    # remaining = 1 - 0.522031 = 0.477969
    total = 29 * 1440 * 1000
    bad = 20 * 1000 + 6 * 60 * 1000 * 0.005
    assert (total, bad) == (41_760_000, 21_800)
    status = sim.conn.slo_status("api-availability")
    assert status.window("30d").total == total
    assert status.window("30d").bad == bad
    assert status.error_budget_remaining == pytest.approx(1 - (bad / total) / 0.001)
    assert status.error_budget_remaining == pytest.approx(0.477969, abs=1e-6)
    assert status.sli == pytest.approx(1 - bad / total)
    # The burn-down series: one point per hour (the 30d window's buckets), falling at
    # the two incidents.
    hist = status.budget_history
    assert 29 * 24 - 2 <= len(hist) <= 29 * 24 + 2
    values = [v for _, v in hist]
    assert values[-1] == pytest.approx(status.error_budget_remaining)
    # Untouched until the outage (day 5, 12:00): 1.0; then spent relative to the events
    # seen so far (20,000 bad of 8.64M: -131%), recovering as good traffic accumulates.
    first_drop = next(t for t, v in hist if v < 1.0)
    assert first_drop - T0_S == pytest.approx(5 * DAY + 12 * HOUR, abs=HOUR)
    assert all(v == 1.0 for t, v in hist if t < first_drop)


async def test_restart_in_the_middle_keeps_the_budget(tmp_path: Path) -> None:
    state = tmp_path / "slo-state.json"
    clock = Clock()
    # (Saved daily here to keep the test fast; the default is every minute. Shutdown
    # saves too.)
    sim = Sim(make(clock, state_file=str(state), state_save_interval="1d"), clock,
              RedTraffic(clock))
    sim = await _month(sim, restart_at_day=15, state_file=state)
    assert state.exists()
    # Same figures as without the restart (the two minutes of downtime had no traffic).
    total = 29 * 1440 * 1000
    bad = 21_800
    status = sim.conn.slo_status("api-availability")
    assert status.window("30d").total == total
    assert status.error_budget_remaining == pytest.approx(1 - (bad / total) / 0.001)
    # The burn-down history survived too: it starts at day 0, not at the restart.
    assert status.budget_history[0][0] < T0_S + DAY

    # Without the state file the budget would have restarted from scratch.
    fresh = make(Clock(clock.ns))
    assert fresh.slo_status("api-availability").window("30d").total == 0


async def test_firing_alert_survives_a_restart_and_is_announced_again(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    logs = Sink()
    clock = Clock()
    sim = Sim(make(clock, state_file=str(state), logs=logs), clock, RedTraffic(clock))
    await sim.run(24 * 60, step=10)
    await sim.run(30, error_ratio=1.0)
    assert sim.first("ticket", "firing") is not None
    await sim.conn.shutdown()
    logs2 = Sink()
    conn2 = make(clock, state_file=str(state), logs=logs2)
    assert conn2.slo_status("api-availability").firing == ("page", "ticket")
    await conn2.start(StaticHost())
    try:
        await conn2.flush()
    finally:
        await conn2.shutdown()
    replayed = [attrs(r) for b in logs2.batches for rl in b.message.resource_logs
                for sl in rl.scope_logs for r in sl.log_records]
    assert {(a["alert.severity"], a["alert.state"], a.get("alert.replayed"))
            for a in replayed} == {("page", "firing", True), ("ticket", "firing", True)}


def test_corrupt_state_file_is_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    conn = make(Clock(), state_file=str(state))
    assert conn.slo_status("api-availability").window("30d").total == 0
    assert list(tmp_path.glob("state.json.corrupt-*"))


async def test_latency_threshold_checked_against_redmetrics_at_start() -> None:
    raw = load_config([REPO / "configs" / "slo.yaml"])
    raw["connectors"]["slo"]["slos"][1]["sli"]["threshold"] = "250ms"
    raw["connectors"]["slo"].pop("state_file")
    config = validate_config(raw, default_registry())
    from pipeline.component import ComponentID, Kind
    from pipeline.connectors.redmetrics import RedMetricsConfig, RedMetricsConnector

    red_config = config.components[Kind.CONNECTOR][ComponentID("redmetrics")]
    slo_config = config.components[Kind.CONNECTOR][ComponentID("slo")]
    assert isinstance(red_config, RedMetricsConfig)
    assert isinstance(slo_config, SLOConnectorConfig)
    red = RedMetricsConnector(connector_settings("redmetrics"), red_config)
    conn = SLOConnector(connector_settings("slo"), slo_config)

    host = StaticHost({(Kind.CONNECTOR, ComponentID("redmetrics")): red,
                       (Kind.CONNECTOR, ComponentID("slo")): conn})
    with pytest.raises(ConfigError) as err:
        await conn.start(host)
    assert "latency threshold 0.25 s is not a bucket bound" in str(err.value.problems[0])
    assert "connectors.redmetrics.histogram.explicit.buckets" in err.value.problems[0]


async def test_refused_alert_events_are_sent_again() -> None:
    logs = Sink()
    logs.refuse = RetryableError("queue full")
    sim = new_sim(logs=logs)
    await sim.run(60, step=10)
    await sim.run(5, error_ratio=1.0)
    assert sim.first("page", "firing") is not None
    assert not logs.batches
    assert sim.conn.pending_events
    logs.refuse = None
    await sim.conn.flush()
    states = [attrs(r)["alert.state"] for b in logs.batches for rl in b.message.resource_logs
              for sl in rl.scope_logs for r in sl.log_records]
    assert states == ["firing"]
    assert not sim.conn.pending_events


async def test_state_is_saved_at_the_interval(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    sim = new_sim(state_file=str(state), state_save_interval="5m")
    await sim.run(4)
    assert not state.exists()
    await sim.run(1)
    assert state.exists()
