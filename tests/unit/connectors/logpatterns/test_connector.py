from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from pydantic import ValidationError

from pipeline.aggregation.store import OVERFLOW_ATTRIBUTE
from pipeline.component import Kind, Signal
from pipeline.connectors.logpatterns import factory
from pipeline.connectors.logpatterns.config import LogPatternsConfig, LogsProjection
from pipeline.connectors.logpatterns.connector import LogPatternsConnector
from pipeline.errors import RetryableError
from pipeline.exporters.alertmanager.events import events_from_batch
from pipeline.pdata.batch import Batch
from pipeline.registry import default_registry
from tests.support import Sink, connector_settings
from tests.unit.connectors.spans import FakeClock, attrs_of, log_batch, metrics

TEMPLATES = {"login": "user <*> logged in", "fail": "connection to <*> failed after <*> ms",
             "disk": "disk <*> is <*> full"}


def rec(tid: str, n: int = 0, *, severity: int = 9) -> dict[str, Any]:
    body = TEMPLATES.get(tid, f"message {tid} <*>").replace("<*>", str(n), 1).replace(
        "<*>", "7")
    template = TEMPLATES.get(tid, f"message {tid} <*>")
    return {"attrs": {"log.template_id": tid, "log.template": template},
            "body": body, "severity": severity}


def make(clock: FakeClock, logs: Sink | None = None, mets: Sink | None = None,
         **cfg: Any) -> LogPatternsConnector:
    consumers = {}
    if logs is not None:
        consumers[Signal.LOGS] = logs
    if mets is not None:
        consumers[Signal.METRICS] = mets
    settings = connector_settings("logpatterns", consumers=consumers)
    return LogPatternsConnector(settings, LogPatternsConfig.model_validate(cfg), clock=clock)


def events(sink: Sink) -> list[dict[str, Any]]:
    out = []
    for b in sink.batches:
        req = ExportLogsServiceRequest.FromString(b.to_bytes())
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    a = attrs_of(lr)
                    a["_body"] = lr.body.string_value
                    a["_severity"] = lr.severity_text
                    out.append(a)
    return out


async def feed(c: LogPatternsConnector, records: list[dict[str, Any]],
               service: str | None = "api") -> None:
    await c.consume(log_batch(records, service=service))


def test_registered_with_both_pairs() -> None:
    assert default_registry().get(Kind.CONNECTOR, "logpatterns") is factory
    assert factory.connector_pairs == frozenset({(Signal.LOGS, Signal.METRICS),
                                                 (Signal.LOGS, Signal.LOGS)})


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError, match="factor"):
        LogPatternsConfig.model_validate({"rate_change": {"factor": 1}})
    with pytest.raises(ValidationError, match="max_patterns"):
        LogPatternsConfig.model_validate({"max_patterns": 0})
    with pytest.raises(ValidationError, match="kinds"):
        LogPatternsConfig.model_validate({"alerts": {"kinds": ["bogus"]}})


async def test_exact_counts_per_template_service_and_severity() -> None:
    clock = FakeClock()
    mets = Sink()
    c = make(clock, mets=mets)
    await feed(c, [rec("login", i) for i in range(7)] + [rec("fail", i) for i in range(3)]
               + [rec("fail", 1, severity=17)] * 2)
    await feed(c, [rec("login", 1)] * 4, service="web")
    await feed(c, [{"body": "no template here"}] * 5)
    assert await c.flush()
    got = {(res.get("service.name"), a["log.template_id"], a.get("severity_text")):
           (dp.as_int, a.get("log.template")) for res, a, dp in metrics(mets.batches)[
               "log.pattern.count"]}
    assert got == {
        ("api", "login", "INFO"): (7, "user <*> logged in"),
        ("api", "fail", "INFO"): (3, TEMPLATES["fail"]),
        ("api", "fail", "ERROR"): (2, TEMPLATES["fail"]),
        ("web", "login", "INFO"): (4, "user <*> logged in"),
        ("api", "none", "INFO"): (5, None),
    }


async def test_overflow_beyond_cardinality_limit() -> None:
    clock = FakeClock()
    mets = Sink()
    c = make(clock, mets=mets, aggregation_cardinality_limit=3)
    await feed(c, [rec(f"t{i}") for i in range(5)] + [rec("t4")] * 10)
    await c.flush()
    pts = metrics(mets.batches)["log.pattern.count"]
    regular = [(a["log.template_id"], dp.as_int) for _, a, dp in pts
               if OVERFLOW_ATTRIBUTE not in a]
    overflow = [dp.as_int for _, a, dp in pts if a.get(OVERFLOW_ATTRIBUTE) == "true"]
    assert sorted(regular) == [("t0", 1), ("t1", 1), ("t2", 1)]
    assert overflow == [1 + 11]
    # Patterns (events, status page) are bounded separately by max_patterns.
    assert len(c.patterns) == 5


async def test_warmup_then_new_pattern_event() -> None:
    clock = FakeClock()
    logs = Sink()
    c = make(clock, logs=logs, warmup="10m")
    await feed(c, [rec("login", 1), rec("fail", 2)])
    clock.advance(599)
    await feed(c, [rec("disk", 3)])  # still warming up: baseline
    assert events(logs) == []
    clock.advance(1)  # warm-up over
    await feed(c, [rec("login", 5)])  # known: nothing
    assert events(logs) == []
    await feed(c, [rec("boom", 9), rec("boom", 10)], service="web")
    evs = events(logs)
    assert len(evs) == 1
    ev = evs[0]
    assert ev["log.pattern.event"] == "new"
    assert ev["log.template_id"] == "boom"
    assert ev["log.template"] == "message boom <*>"
    assert ev["service.name"] == "web"
    assert ev["log.pattern.first_line"] == "message boom 9"
    assert ev["event.name"] == "log.pattern"
    assert ev["_severity"] == "WARN"
    assert "web" in ev["_body"]
    assert "message boom <*>" in ev["_body"]
    assert "message boom 9" in ev["_body"]
    assert "slo.name" not in ev  # alerts are off
    # Same template in another service is another pattern.
    await feed(c, [rec("boom", 1)], service="api")
    assert [e["service.name"] for e in events(logs)] == ["web", "api"]


async def test_reappeared_after_long_absence_exactly() -> None:
    clock = FakeClock()
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, reappear_after="24h",
             rate_change={"enabled": False})
    await feed(c, [rec("login", 1)])
    assert [e["log.pattern.event"] for e in events(logs)] == ["new"]
    clock.advance(86400 - 1)
    await feed(c, [rec("login", 2)])  # 1 s short of 24 h: nothing
    assert len(events(logs)) == 1
    clock.advance(86400)
    await feed(c, [rec("login", 3)])
    evs = events(logs)
    assert [e["log.pattern.event"] for e in evs] == ["new", "reappeared"]
    assert evs[1]["log.pattern.count"] == 3
    assert evs[1]["log.pattern.first_line"] == "user 1 logged in"


async def test_reappear_zero_never() -> None:
    clock = FakeClock()
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, reappear_after=0)
    await feed(c, [rec("login", 1)])
    clock.advance(10 * 86400)
    await feed(c, [rec("login", 2)])
    assert [e["log.pattern.event"] for e in events(logs)] == ["new"]


RATE = {"factor": 10, "window": "1m", "baseline": "5m", "min_count": 20}


async def windows(c: LogPatternsConnector, clock: FakeClock, counts: list[int],
                  tid: str = "login") -> None:
    """One window per count: `count` records, then the clock moves to the next window."""
    for n in counts:
        if n:
            await feed(c, [rec(tid, i) for i in range(n)])
        clock.advance(60)


def rate_events(sink: Sink) -> list[dict[str, Any]]:
    return [e for e in events(sink) if e["log.pattern.event"] == "rate_change"]


@pytest.mark.parametrize(("last", "fires"), [(20, False), (21, True)])
async def test_rate_up_threshold_is_exact(last: int, fires: bool) -> None:
    clock = FakeClock(0)  # windows aligned at 0
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, rate_change=RATE)
    await windows(c, clock, [2, 2, 2, 2, 2, last])  # baseline 2/window; x10 = 20
    await c.tick()
    evs = rate_events(logs)
    if not fires:
        assert evs == []
        return
    assert len(evs) == 1
    ev = evs[0]
    assert ev["log.pattern.rate.direction"] == "up"
    assert ev["log.pattern.rate.window_count"] == 21
    assert ev["log.pattern.rate.baseline_count"] == 2.0
    assert ev["log.pattern.rate.factor"] == 10.0
    assert "up" in ev["_body"]


@pytest.mark.parametrize(("last", "fires"), [(19, False), (20, True)])
async def test_rate_up_needs_min_count(last: int, fires: bool) -> None:
    clock = FakeClock(0)
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, rate_change=RATE)
    await windows(c, clock, [1, 0, 0, 0, 0, last])  # baseline 0.2/window
    await c.tick()
    assert len(rate_events(logs)) == int(fires)


@pytest.mark.parametrize(("last", "fires"), [(3, False), (2, True)])
async def test_rate_down_threshold_is_exact(last: int, fires: bool) -> None:
    clock = FakeClock(0)
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, rate_change=RATE)
    await windows(c, clock, [30, 30, 30, 30, 30, last])  # 30/window; /10 = 3
    await c.tick()
    evs = rate_events(logs)
    assert len(evs) == int(fires)
    if fires:
        assert evs[0]["log.pattern.rate.direction"] == "down"
        assert evs[0]["log.pattern.rate.window_count"] == 2


async def test_quiet_pattern_does_not_flap_and_silence_is_a_drop() -> None:
    clock = FakeClock(0)
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, rate_change=RATE)
    # A quiet pattern (below min_count both ways) going from 1 to 15 and to 0: nothing.
    await windows(c, clock, [1, 1, 1, 1, 1, 15, 0, 1, 1, 15], tid="disk")
    # A busy one that stops: one drop event at the first silent window, not one per window.
    await windows(c, clock, [40] * 6 + [0] * 4, tid="fail")
    await c.tick()
    evs = rate_events(logs)
    assert [(e["log.template_id"], e["log.pattern.rate.direction"]) for e in evs] == [
        ("fail", "down")]


async def test_a_burst_is_one_event_and_a_later_one_is_another() -> None:
    clock = FakeClock(0)
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, rate_change=RATE)
    # 2/window, a burst of 100, quiet windows (which the burst makes look like a drop:
    # 0 vs 20.8 average), back to normal, then a second burst.
    await windows(c, clock, [2] * 5 + [100] + [0, 2, 2, 2, 2, 2, 2] + [100])
    await c.tick()
    assert [(e["log.pattern.rate.direction"], e["log.pattern.rate.window_count"])
            for e in rate_events(logs)] == [("up", 100), ("up", 100)]


async def test_rate_change_needs_a_full_baseline() -> None:
    clock = FakeClock(0)
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, rate_change=RATE)
    await windows(c, clock, [1, 1, 1, 1, 100])  # only 4 windows of history
    await c.tick()
    assert rate_events(logs) == []


async def test_persistence_across_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "patterns.json")
    clock = FakeClock()
    logs = Sink()
    c = make(clock, logs=logs, warmup="1m", state_file=state)
    await feed(c, [rec("login", 1), rec("fail", 1)])  # baseline
    clock.advance(120)
    await feed(c, [rec("disk", 1)])  # new
    await c.shutdown()
    assert [e["log.template_id"] for e in events(logs)] == ["disk"]

    clock.advance(5)
    logs2 = Sink()
    c2 = make(clock, logs=logs2, warmup="1m", state_file=state)
    assert set(c2.patterns) == {("api", "login"), ("api", "fail"), ("api", "disk")}
    await feed(c2, [rec("login", 2), rec("fail", 2), rec("disk", 2)])
    assert events(logs2) == []  # known, and no second warm-up
    await feed(c2, [rec("boom", 2)])
    assert [e["log.template_id"] for e in events(logs2)] == ["boom"]
    st = c2.pattern_status()
    assert [p["count"] for p in st["top"]["api"] if p["template_id"] == "login"] == [2]
    assert [ev["template_id"] for ev in st["new"]] == ["boom", "disk"]


def test_corrupt_state_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "patterns.json"
    path.write_text("{not json")
    c = make(FakeClock(), state_file=str(path))
    assert c.patterns == {}
    assert list(tmp_path.glob("patterns.json.corrupt-*"))
    path.write_text('{"version": 1, "patterns": [[1]]}')
    c = make(FakeClock(), state_file=str(path))
    assert c.patterns == {}


async def test_max_patterns_forgets_least_recently_seen() -> None:
    clock = FakeClock()
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, max_patterns=2)
    await feed(c, [rec("a")])
    clock.advance(1)
    await feed(c, [rec("b")])
    clock.advance(1)
    await feed(c, [rec("a")])  # a is now the most recent
    clock.advance(1)
    await feed(c, [rec("c")])  # evicts b
    assert list(c.patterns) == [("api", "a"), ("api", "c")]


async def test_alert_shape_is_what_the_alertmanager_exporter_reads() -> None:
    clock = FakeClock()
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, alerts={"enabled": True, "resolve_after": "1h"})
    await feed(c, [rec("boom", 1)])
    [batch] = logs.batches
    [fired] = events_from_batch(Batch(Signal.LOGS, raw=batch.to_bytes()), now=time.time())
    assert fired.firing
    assert fired.slo == "logpattern:api:boom"
    assert fired.service == "api"
    assert fired.severity == "ticket"
    assert "message boom <*>" in fired.summary
    clock.advance(3599)
    await c.tick()
    assert len(logs.batches) == 1
    clock.advance(1)
    await c.tick()
    [resolved] = events_from_batch(Batch(Signal.LOGS, raw=logs.batches[1].to_bytes()),
                                   now=time.time())
    assert not resolved.firing
    assert resolved.slo == fired.slo
    assert resolved.started_at == fired.started_at
    assert events(logs)[1]["log.pattern.event"] == "resolved"


async def test_refused_events_are_sent_again() -> None:
    clock = FakeClock()
    logs = Sink()
    c = make(clock, logs=logs, warmup=0)
    logs.refuse = RetryableError("full")
    await feed(c, [rec("a"), rec("b")])
    assert c.pending
    logs.refuse = None
    await c.tick()
    assert sorted(e["log.template_id"] for e in events(logs)) == ["a", "b"]
    assert c.pending == []


def test_cost_per_record_is_small() -> None:
    """µs per record on the hot path (known patterns): printed, and bounded loosely."""
    clock = FakeClock()
    c = make(clock, warmup=0)
    batch = log_batch([rec(f"t{i % 50}", i) for i in range(2000)])
    req = LogsProjection.FromString(batch.to_bytes())
    c.aggregate(req)
    start = time.process_time()
    rounds = 20
    for _ in range(rounds):
        clock.advance(1)
        c.aggregate(req)
    us = (time.process_time() - start) / (rounds * 2000) * 1e6
    print(f"logpatterns: {us:.2f} µs per record")
    assert us < 20


async def test_series_label_follows_the_generalised_template() -> None:
    clock = FakeClock()
    mets = Sink()
    c = make(clock, mets=mets)
    first = {"attrs": {"log.template_id": "x", "log.template": "user u0 logged in"},
             "body": "user u0 logged in"}
    later = {"attrs": {"log.template_id": "x", "log.template": "user <*> logged in"},
             "body": "user u1 logged in"}
    await feed(c, [first, later, later])
    await c.flush()
    [(_, a, dp)] = metrics(mets.batches)["log.pattern.count"]
    assert (a["log.template"], dp.as_int) == ("user <*> logged in", 3)
    assert c.patterns[("api", "x")].template == "user <*> logged in"
    assert c.patterns[("api", "x")].first_line == "user u0 logged in"


async def test_state_is_saved_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "patterns.json"
    clock = FakeClock()
    c = make(clock, warmup=0, state_file=str(path), state_save_interval="1m")
    await feed(c, [rec("login", 1)])
    clock.advance(59)
    await c.tick()
    assert not path.exists()
    clock.advance(1)
    await c.tick()
    c2 = make(clock, state_file=str(path))
    assert list(c2.patterns) == [("api", "login")]


async def test_client_sent_giant_ids_and_templates_are_cut() -> None:
    clock = FakeClock()
    mets = Sink()
    logs = Sink()
    c = make(clock, mets=mets, logs=logs, warmup=0)
    await feed(c, [{"attrs": {"log.template_id": "i" * 100_000, "log.template": "t" * 1_000_000},
                    "body": "b" * 1_000_000}])
    await c.flush()
    [(_, a, dp)] = metrics(mets.batches)["log.pattern.count"]
    assert (len(a["log.template_id"]), len(a["log.template"]), dp.as_int) == (128, 2048, 1)
    [ev] = events(logs)
    assert len(ev["log.pattern.first_line"]) == 512
    assert len(ev["_body"]) < 3000


async def test_after_a_long_silence_a_burst_is_a_rate_change_again() -> None:
    clock = FakeClock(0)
    logs = Sink()
    c = make(clock, logs=logs, warmup=0, reappear_after=0, rate_change=RATE)
    # Busy, then silent (one "down"), silent for longer than the baseline, then a burst.
    await windows(c, clock, [30] * 6 + [0] * 20 + [25])
    await c.tick()
    assert [e["log.pattern.rate.direction"] for e in rate_events(logs)] == ["down", "up"]


async def test_python_record_batches_count_like_otlp_ones() -> None:
    from pipeline.pdata.logrecords import LogGroup, LogRecord

    def group(records: list[dict[str, Any]]) -> Batch:
        recs = [LogRecord(r.get("body"), dict(r.get("attrs", {})),
                          severity_number=r.get("severity", 9)) for r in records]
        return Batch(Signal.LOGS, logs=[LogGroup(recs, resource={"service.name": "api"})])

    stream = [rec("login", i) for i in range(7)] + [rec("fail", 1, severity=17)] * 2 \
        + [{"body": "untemplated"}]
    results = []
    for make_batch in (group, lambda rs: log_batch(rs, service="api")):
        clock = FakeClock()
        mets, logs = Sink(), Sink()
        c = make(clock, mets=mets, logs=logs, warmup=0)
        await c.consume(make_batch(stream))
        await c.flush()
        got = sorted((a["log.template_id"], a.get("severity_text"), a.get("log.template"),
                      dp.as_int) for _, a, dp in metrics(mets.batches)["log.pattern.count"])
        evs = sorted((e["log.template_id"], e["log.pattern.first_line"]) for e in events(logs))
        results.append((got, evs))
    assert results[0] == results[1]
    assert results[0][1] == [("fail", "connection to 1 failed after 7 ms"),
                             ("login", "user 0 logged in")]
