"""The `slo` connector driven by a simulated clock through 30 days of traffic.

Real OTLP metrics batches (cumulative counters and histograms as `redmetrics`
emits them, gauges as `httpcheck` / `replication_lag` emit them) go in through
`consume`; `flush` is called once per simulated minute (the flush interval);
the injected clock is advanced in between. 30 days run in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from pipeline.component import Signal
from pipeline.config.loader import load_config
from pipeline.config.model import validate_config
from pipeline.connectors.slo import SLOConnector, SLOConnectorConfig, factory
from pipeline.errors import ConfigError, RetryableError
from pipeline.pdata.anyvalue import any_value_to_python
from pipeline.registry import default_registry
from tests.support import REPO, Sink, create_settings
from tests.unit.slo.sim import DAY, HOUR, MINUTE, T0_S, Clock, RedTraffic, gauge_batch

RPM = 1000  # requests per minute

AVAILABILITY = {"name": "api-availability", "service": "api", "objective": 99.9,
                "window": "30d",
                "sli": {"type": "availability", "match": {"service.name": "api"}}}
LATENCY = {"name": "api-latency-p95", "service": "api", "objective": 95, "window": "30d",
           "sli": {"type": "latency", "threshold": "200ms",
                   "match": {"service.name": "api", "span.kind": "SPAN_KIND_SERVER"}}}


def make(clock: Clock, *, slos: list[dict[str, Any]] | None = None,
         logs: Sink | None = None, metrics: Sink | None = None, **cfg: Any) -> SLOConnector:
    consumers: dict[Signal, Any] = {}
    if logs is not None:
        consumers[Signal.LOGS] = logs
    if metrics is not None:
        consumers[Signal.METRICS] = metrics
    config = SLOConnectorConfig.model_validate(
        {"slos": slos or [AVAILABILITY], "flush_interval": "1m", **cfg})
    return SLOConnector(create_settings("connector", "slo", consumers=consumers), config,
                        clock=clock)


class Sim:
    """Traffic, clock and connector; records alert transitions by minute."""

    def __init__(self, conn: SLOConnector, clock: Clock, traffic: RedTraffic):
        self.conn, self.clock, self.traffic = conn, clock, traffic
        self.events: list[tuple[float, str, str]] = []  # (minute since T0, severity, state)

    @property
    def minute(self) -> float:
        return (self.clock.s - T0_S) / MINUTE

    async def run(self, minutes: int, *, step: int = 1, error_ratio: float = 0.0,
                  rpm: int = RPM, slow_ratio: float = 0.0,
                  per_step: int | None = None) -> None:
        """`minutes` of traffic in steps of `step` minutes (one batch and one flush per
        step)."""
        for _ in range(minutes // step):
            n = rpm * step if per_step is None else per_step
            self.traffic.requests(n, errors=round(n * error_ratio), slow=round(n * slow_ratio))
            self.clock.advance(step * MINUTE)
            await self.conn.consume(self.traffic.batch())
            for tr in await self.conn.flush():
                self.events.append((self.minute, tr.severity, tr.state))

    def first(self, severity: str, state: str, after: float = 0) -> float | None:
        return next((m for m, sev, st in self.events if sev == severity and st == state
                     and m >= after), None)


def new_sim(**kw: Any) -> Sim:
    clock = Clock()
    return Sim(make(clock, **kw), clock, RedTraffic(clock))


def remaining(conn: SLOConnector, name: str = "api-availability") -> float:
    return conn.slo_status(name).error_budget_remaining


def attrs(record: Any) -> dict[str, Any]:
    return {kv.key: any_value_to_python(kv.value) for kv in record.attributes}


# --- alert timing --------------------------------------------------------------------


async def test_hard_outage_pages_within_the_short_window_and_resolves_after() -> None:
    logs = Sink()
    sim = new_sim(logs=logs)
    await sim.run(28 * 24 * 60, step=10)  # 28 quiet days, one batch per 10 minutes
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
    """29 days: 1000 req/min, one 20-minute full outage on day 5 and 0.5% errors for
    6 hours on day 20. Optionally a restart (a new connector loading the saved state;
    the source restarts too, its counters from 0) at the start of `restart_at_day`."""
    for day in range(29):
        if day == restart_at_day:
            assert state_file is not None
            await sim.conn.shutdown()  # saves
            sim.conn = make(sim.clock, state_file=str(state_file), state_save_interval="1d")
            sim.traffic.restart()
            sim.clock.advance(2 * MINUTE)  # down for two minutes, no traffic lost
        if day == 5:
            await sim.run(12 * 60, step=10)
            await sim.run(20, error_ratio=1.0)
            await sim.run(12 * 60 - 20, step=10)
        elif day == 20:
            await sim.run(6 * 60, step=10, error_ratio=0.005)
            await sim.run(18 * 60, step=10)
        else:
            await sim.run(24 * 60, step=10)
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
    await conn2.start(None)
    try:
        await conn2.flush()
    finally:
        await conn2.shutdown()
    replayed = [attrs(r) for b in logs2.batches for rl in b.message.resource_logs
                for sl in rl.scope_logs for r in sl.log_records]
    assert {(a["alert.severity"], a["alert.state"], a.get("alert.replayed"))
            for a in replayed} == {("page", "firing", True), ("ticket", "firing", True)}


async def test_corrupt_state_file_is_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    conn = make(Clock(), state_file=str(state))
    assert conn.slo_status("api-availability").window("30d").total == 0
    assert list(tmp_path.glob("state.json.corrupt-*"))


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


async def test_latency_threshold_checked_against_redmetrics_at_start() -> None:
    raw = load_config([REPO / "configs" / "slo.yaml"])
    raw["connectors"]["slo"]["slos"][1]["sli"]["threshold"] = "250ms"
    raw["connectors"]["slo"].pop("state_file")
    config = validate_config(raw, default_registry())
    from pipeline.component import ComponentID, Kind
    from pipeline.connectors.redmetrics import RedMetricsConnector

    red = RedMetricsConnector(create_settings("connector", "redmetrics"),
                              config.components[Kind.CONNECTOR][ComponentID("redmetrics")])
    conn = SLOConnector(create_settings("connector", "slo"),
                        config.components[Kind.CONNECTOR][ComponentID("slo")])

    class Host:
        def components(self) -> dict[Any, Any]:
            return {(Kind.CONNECTOR, ComponentID("redmetrics")): red,
                    (Kind.CONNECTOR, ComponentID("slo")): conn}

    with pytest.raises(ConfigError) as err:
        await conn.start(Host())
    assert "latency threshold 0.25 s is not a bucket bound" in str(err.value.problems[0])
    assert "connectors.redmetrics.histogram.explicit.buckets" in err.value.problems[0]


async def test_counter_resets_and_new_series() -> None:
    clock = Clock()
    conn = make(clock)
    traffic = RedTraffic(clock)
    traffic.requests(100)
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


# --- output ---------------------------------------------------------------------------


async def test_emitted_metrics() -> None:
    metrics = Sink()
    sim = new_sim(slos=[AVAILABILITY, LATENCY], metrics=metrics)
    await sim.run(60, step=10)
    await sim.run(10, error_ratio=1.0)
    last = metrics.batches[-1].message
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    for rm in last.resource_metrics:
        assert [(kv.key, kv.value.string_value) for kv in rm.resource.attributes] == [
            ("service.name", "api")]
        for m in rm.scope_metrics[0].metrics:
            for dp in m.gauge.data_points:
                points[(m.name, tuple(sorted(attrs(dp).items())))] = dp.as_double
    base = (("service.name", "api"), ("slo.name", "api-availability"))

    def get(name: str, *extra: tuple[str, str]) -> float:
        return points[(name, tuple(sorted((*base, *extra))))]

    assert get("slo.sli", ("slo.window", "5m")) == 0.0
    assert get("slo.burn_rate", ("slo.window", "5m")) == pytest.approx(1000.0)
    # 1h window at minute 70: the quiet batches of minutes 20..60 (50,000) + the outage
    assert get("slo.sli", ("slo.window", "1h")) == pytest.approx(50 / 60)
    assert get("slo.alert.firing", ("alert.severity", "page")) == 1.0
    assert get("slo.alert.firing", ("alert.severity", "ticket")) == 0.0
    assert get("slo.objective") == 0.999
    assert get("slo.error_budget.remaining") == pytest.approx(1 - (10 / 70) / 0.001)
    windows = {dict(k[1])["slo.window"] for k in points if k[0] == "slo.sli"
               and dict(k[1])["slo.name"] == "api-availability"}
    assert windows == {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}


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


def test_factory_pairs_and_registry() -> None:
    assert factory.connector_pairs == {(Signal.METRICS, Signal.METRICS),
                                       (Signal.METRICS, Signal.LOGS)}
    from pipeline.component import Kind

    assert default_registry().get(Kind.CONNECTOR, "slo") is factory


def test_configs_slo_yaml_is_valid_and_matches_the_openslo_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = validate_config(load_config([REPO / "configs" / "slo.yaml"]), default_registry())
    from pipeline.component import ComponentID, Kind
    from pipeline.slo.model import load_slo_file

    slo_cfg = config.components[Kind.CONNECTOR][ComponentID("slo")]
    assert isinstance(slo_cfg, SLOConnectorConfig)
    assert slo_cfg.definitions == load_slo_file(REPO / "configs" / "slo-definitions.yaml")
    via_files = SLOConnectorConfig.model_validate(
        {"slo_files": [str(REPO / "configs" / "slo-definitions.yaml")]})
    assert via_files.definitions == slo_cfg.definitions


def test_config_errors_point_at_the_slo() -> None:
    raw = load_config([REPO / "configs" / "slo.yaml"])
    raw["connectors"]["slo"]["slos"][2]["objective"] = 100
    raw["connectors"]["slo"]["slos"][3]["sli"]["op"] = "below"
    with pytest.raises(ConfigError) as err:
        validate_config(raw, default_registry())
    text = "\n".join(err.value.problems)
    assert "connectors.slo.slos.2.objective: input should be less than 100" in text
    assert "connectors.slo.slos.3.sli.threshold.op" in text


def test_missing_slo_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        SLOConnectorConfig.model_validate({"slo_files": [str(tmp_path / "none.yaml")]})
    with pytest.raises(ValueError, match="no SLOs"):
        SLOConnectorConfig.model_validate({})


async def test_state_is_saved_at_the_interval(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    sim = new_sim(state_file=str(state), state_save_interval="5m")
    await sim.run(4)
    assert not state.exists()
    await sim.run(1)
    assert state.exists()
