"""replication_lag: config, the heartbeat bookkeeping (with a fake clock), and
behaviour with no database at all. The real-PostgreSQL tests are in
tests/integration/test_replication_lag.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.component import Kind, Signal
from pipeline.errors import RetryableError
from pipeline.receivers.replication_lag import factory
from pipeline.receivers.replication_lag.config import ReplicationLagConfig
from pipeline.receivers.replication_lag.receiver import MAX_REMEMBERED, ReplicationLagReceiver
from pipeline.registry import default_registry
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, aeventually, free_port, receiver_settings


class Clock:
    def __init__(self, mono: float = 1000.0, wall: float = 1_700_000_000.0):
        self.mono = mono
        self.wall = wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def make(config: dict[str, Any], clock: Clock | None = None, sink: Sink | None = None,
         telemetry: Telemetry | None = None, max_remembered: int = MAX_REMEMBERED
         ) -> tuple[ReplicationLagReceiver, Sink]:
    sink = sink or Sink()
    clock = clock or Clock()
    cfg = ReplicationLagConfig.model_validate(config)
    rcv = ReplicationLagReceiver(
        receiver_settings("replication_lag", telemetry=telemetry,
                          consumers={Signal.METRICS: sink}),
        cfg, clock=lambda: clock.mono, wall_clock=lambda: clock.wall,
          max_remembered=max_remembered)
    return rcv, sink


def gauges(batch: Any) -> dict[tuple[str, str, str], float]:
    out = {}
    for rm in batch.message.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for dp in m.gauge.data_points:
                    a = {kv.key: kv.value.string_value for kv in dp.attributes}
                    who = a.get("db.replica") or a.get("db.instance", "")
                    what = a.get("method") or a.get("db.role", "")
                    out[(m.name, who, what)] = (dp.as_double if dp.HasField("as_double")
                                                else dp.as_int)
    return out


# -- config ------------------------------------------------------------------------

def test_config_defaults_names_and_secrets() -> None:
    cfg = ReplicationLagConfig.model_validate({
        "primary": "postgresql://mon:pw1@db0:5432/app",
        "replicas": ["postgresql://mon:pw2@db1:5433/app",
                     "host=db2 port=5434 user=mon password=pw3",
                     {"dsn": "host=db3 password=pw4"},
                     {"name": "r4", "dsn": "postgresql:///app?host=/run/pg",
                      "application_name": "walrcv4"}],
    })
    assert cfg.interval == pytest.approx(0.1)
    assert cfg.heartbeat_table == "otelpipe_heartbeat"
    assert [r.name for r in cfg.replicas] == ["db1:5433", "db2:5434", "db3", "r4"]
    assert [r.match_name for r in cfg.replicas] == ["db1:5433", "db2:5434", "db3", "walrcv4"]
    text = repr(cfg) + str(cfg.model_dump())
    for secret in ("pw1", "pw2", "pw3", "pw4"):
        assert secret not in text


@pytest.mark.parametrize(("config", "match"), [
    ({"replicas": []}, "primary"),
    ({"primary": "x", "heartbeat_table": "bad-name"}, "identifier"),
    ({"primary": "x", "heartbeat_table": 'a"; drop table x; --'}, "identifier"),
    ({"primary": "x", "replicas": ["host=a", "host=a"]}, "unique"),
    ({"primary": "x", "interval": 0}, "greater than 0"),
    ({"primary": "x", "interval": "fast"}, "invalid duration"),
    ({"primary": "x", "reconnect_backoff": "2s", "max_reconnect_backoff": "1s"}, ">="),
    ({"primary": "x", "replica": ["host=a"]}, "extra"),
])
def test_config_errors(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ReplicationLagConfig.model_validate(config)


def test_registered() -> None:
    assert default_registry().get(Kind.RECEIVER, "replication_lag") is factory
    assert factory.supports(Signal.METRICS)


def test_heartbeat_id_default_and_schema_table() -> None:
    rcv, _ = make({"primary": "host=x", "heartbeat_table": "mon.hb"})
    assert rcv.heartbeat_id.endswith("/replication_lag")
    assert '"mon"."hb"' in rcv._sql_write


# -- heartbeat bookkeeping -----------------------------------------------------------

def two_replicas(clock: Clock, max_remembered: int = MAX_REMEMBERED) -> ReplicationLagReceiver:
    rcv, _ = make({"primary": "host=p", "replicas": [{"name": "a", "dsn": "host=a"},
                                                      {"name": "b", "dsn": "host=b"}]}, clock,
                  max_remembered=max_remembered)
    return rcv


def test_lag_is_age_of_oldest_unapplied_heartbeat() -> None:
    clock = Clock()
    rcv = two_replicas(clock)
    a, b = rcv._replicas
    rcv._remember(1, clock.mono)            # heartbeat 1 written at t=1000
    clock.advance(0.002)
    # a shows 1 (the latest): lag = read time - its write time (an upper bound).
    assert rcv._confirm(a, 1, clock.mono) == pytest.approx(0.002)
    clock.advance(0.098)
    rcv._remember(2, clock.mono)            # t=1000.100
    clock.advance(0.001)
    # a has not applied 2 yet, read 1 ms after 2 was written: 1 ms, not ~100 ms.
    assert rcv._confirm(a, 1, clock.mono) == pytest.approx(0.001)
    # Replay stops: heartbeats 3.. are written, a keeps showing 1: lag grows from 2's write.
    for seq in range(3, 13):
        clock.advance(0.1)
        rcv._remember(seq, clock.mono)
        assert rcv._confirm(a, 1, clock.mono + 0.001) == pytest.approx(
            clock.mono + 0.001 - 1000.100)
    # b never answered and has no row: missing everything since heartbeat 1.
    assert rcv._confirm(b, None, clock.mono) == pytest.approx(clock.mono - 1000.0)
    # a catches up.
    assert rcv._confirm(a, 12, clock.mono + 0.003) == pytest.approx(0.003)


async def test_unanswered_replica_lag_keeps_growing_in_emissions() -> None:
    clock = Clock()
    rcv, sink = make({"primary": "host=p", "replicas": [{"name": "a", "dsn": "host=a"},
                                                         {"name": "b", "dsn": "host=b"}]}, clock)
    a, b = rcv._replicas
    rcv._primary_up = True
    rcv._remember(1, clock.mono)
    for r in (a, b):
        r.up = r.answered = True
        r.sample = rcv._confirm(r, 1, clock.mono + 0.001)
    lags = []
    for _ in range(5):
        clock.advance(0.1)
        seq = int(clock.wall * 1e6)
        rcv._remember(seq, clock.mono)
        a.sample = rcv._confirm(a, seq, clock.mono + 0.001)
        b.up = False  # b stopped answering after heartbeat 1
        rcv._emit()
        await asyncio.sleep(0)
        g = gauges(sink.batches[-1])
        assert g[("db.replication.up", "b", "replica")] == 0
        assert g[("db.replication.lag", "a", "heartbeat")] == pytest.approx(0.001)
        lags.append(g[("db.replication.lag", "b", "heartbeat")])
    # First the sample of b's last read (1 ms), then the age of heartbeat 2, the oldest
    # one b is not known to have: 0.1, 0.2, ... growing with every emission.
    assert lags == pytest.approx([0.001, 0.1, 0.2, 0.3, 0.4])


def test_memory_is_bounded_while_a_replica_is_far_behind() -> None:
    clock = Clock()
    rcv = two_replicas(clock, max_remembered=50)
    a, b = rcv._replicas
    rcv._remember(1, clock.mono)
    rcv._confirm(a, 1, clock.mono)
    rcv._confirm(b, 1, clock.mono)
    first_missing = None
    for seq in range(2, 500):
        clock.advance(0.1)
        rcv._remember(seq, clock.mono)
        first_missing = first_missing or clock.mono
        rcv._confirm(a, seq, clock.mono)       # a keeps up, b is stuck at 1
    assert len(rcv._seqs) <= 50
    assert rcv._missing_since(b) == pytest.approx(first_missing)
    assert first_missing is not None
    assert rcv._confirm(b, 1, clock.mono) == pytest.approx(clock.mono - first_missing)
    assert rcv._confirm(b, 499, clock.mono + 0.001) == pytest.approx(0.001)
    assert b.floor is None


def test_heartbeat_from_before_a_restart_uses_the_wall_clock() -> None:
    clock = Clock()
    rcv = two_replicas(clock)
    a, _ = rcv._replicas
    old_seq = int((clock.wall - 30) * 1e6)   # written 30 s ago by a previous process
    assert rcv._confirm(a, old_seq, clock.mono) == pytest.approx(30, abs=1e-3)
    rcv._remember(int(clock.wall * 1e6), clock.mono)
    clock.advance(0.05)
    # Now this process wrote one the replica lacks: measured on the monotonic clock.
    assert rcv._confirm(a, old_seq, clock.mono) == pytest.approx(0.05)


# -- no database -----------------------------------------------------------------------

async def test_unreachable_databases_up_0_no_crash_backoff_and_refusals_dropped() -> None:
    dead = free_port()
    sink = Sink()
    telemetry = Telemetry()
    cfg = ReplicationLagConfig.model_validate({
        "primary": f"postgresql://postgres@127.0.0.1:{dead}/postgres",
        "replicas": [{"name": "r1", "dsn": f"postgresql://postgres@127.0.0.1:{dead}/x"}],
        "interval": "20ms", "reconnect_backoff": "10ms", "max_reconnect_backoff": "80ms"})
    rcv = ReplicationLagReceiver(receiver_settings("replication_lag",
                                                   telemetry=telemetry,
                                                   consumers={Signal.METRICS: sink}), cfg)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await aeventually(lambda: len(sink.batches) >= 20, timeout=5, what="20 batches")
        sink.refuse = RetryableError("queue full")
        refused_from = len(sink.batches)
        await asyncio.sleep(0.1)
        assert len(sink.batches) == refused_from
        assert rcv._loop_task is not None
        assert not rcv._loop_task.done()
        health = rcv.health()
        assert not health.healthy
        assert "password" not in (health.last_error or "")
    finally:
        await rcv.shutdown()
    last = gauges(sink.batches[-1])
    assert last == {("db.replication.up", "primary", "primary"): 0,
                    ("db.replication.up", "r1", "replica"): 0}  # never answered: no lag
    text = telemetry.render().decode()
    # Backoff: far fewer connection attempts than ticks (~25 ticks, attempts 10,20,40,80 ms).
    attempts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("otelpipe_replication_lag_probe_errors_total{")]
    assert attempts, attempts
    assert all(n < 15 for n in attempts), attempts
    assert 'otelpipe_receiver_refused_items_total{receiver="replication_lag",' \
           'signal="metrics",transport="postgresql"}' in text
