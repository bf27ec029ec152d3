from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.aggregation.store import OVERFLOW_ATTRIBUTE
from pipeline.component import Kind, Signal
from pipeline.connectors.logmetrics import LogMetricsConfig, LogMetricsConnector, factory
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.registry import default_registry
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, connector_settings
from tests.unit.connectors.spans import FakeClock, log_batch, metric_defs, metrics

CACHE = {"name": "cache.requests", "type": "counter",
         "when": {"attribute": "event", "in": ["cache.hit", "cache.miss"]},
         "dimensions": [{"name": "cache.name", "default": "unknown"}, {"name": "event"}]}
THROTTLED = {"name": "http.throttled", "type": "counter",
             "when": {"attribute": "http.response.status_code", "equals": 429},
             "dimensions": [{"name": "http.route"}]}
RATE_LIMIT = {"name": "ratelimit.decisions", "type": "counter",
              "when": {"attribute": "event", "matches": "^ratelimit\\.(hit|bypass)$"},
              "dimensions": [{"name": "event"}]}
POOL = {"name": "db.pool.exhausted", "type": "counter",
        "when": {"all": [{"severity_at_least": "WARN"},
                         {"field": "body", "matches": "pool exhausted"}]}}
QUERY = {"name": "db.query.duration", "type": "histogram", "unit": "ms",
         "value": "db.query.duration_ms", "buckets": [1, 5, 10, 50, 100],
         "dimensions": [{"name": "db.operation"}]}


def make(sink: Sink, clock: FakeClock | None = None, telemetry: Telemetry | None = None,
         **cfg: Any) -> LogMetricsConnector:
    settings = connector_settings("logmetrics", telemetry=telemetry,
                                  consumers={Signal.METRICS: sink})
    return LogMetricsConnector(settings, LogMetricsConfig.model_validate(cfg),
                               clock=clock or FakeClock())


def stream() -> list[dict[str, Any]]:
    """A known log stream: cache hits/misses, 429s, rate limiting, pool exhaustion."""
    recs: list[dict[str, Any]] = []
    for _ in range(7):
        recs.append({"attrs": {"event": "cache.hit", "cache.name": "sessions"}})
    for _ in range(3):
        recs.append({"attrs": {"event": "cache.miss", "cache.name": "sessions"}})
    for _ in range(2):
        recs.append({"attrs": {"event": "cache.miss", "cache.name": "products"}})
    recs.append({"attrs": {"event": "cache.miss"}})  # no cache.name: the default
    recs.append({"attrs": {"event": "cache.evict", "cache.name": "sessions"}})  # not counted
    for i in range(5):
        recs.append({"attrs": {"http.response.status_code": 429, "http.route": "/api/orders"}})
        recs.append({"attrs": {"http.response.status_code": 200, "http.route": "/api/orders"},
                     "body": f"ok {i}"})
    recs.append({"attrs": {"http.response.status_code": "429", "http.route": "/api/cart"}})
    recs += [{"attrs": {"event": "ratelimit.hit"}}] * 4
    recs += [{"attrs": {"event": "ratelimit.bypass"}}] * 2
    recs += [{"attrs": {"event": "ratelimit.hitx"}}]  # does not match the anchored regex
    recs.append({"body": "connection pool exhausted (max=20)", "severity": 13})
    recs.append({"body": "connection pool exhausted (max=20)", "severity": 17})
    recs.append({"body": "connection pool exhausted, retrying", "severity": 9})  # INFO: no
    recs.append({"body": "pool exhausted", "severity": 0, "severity_text": "ERROR"})
    return recs


async def test_counts_per_dimension_for_a_known_stream() -> None:
    sink = Sink()
    conn = make(sink, metrics=[CACHE, THROTTLED, RATE_LIMIT, POOL])
    await conn.consume(log_batch(stream()))
    assert await conn.flush()
    got = metrics(sink.batches)
    cache = {(a["cache.name"], a["event"]): dp.as_int for _, a, dp in got["cache.requests"]}
    assert cache == {("sessions", "cache.hit"): 7, ("sessions", "cache.miss"): 3,
                     ("products", "cache.miss"): 2, ("unknown", "cache.miss"): 1}
    throttled = {a["http.route"]: dp.as_int for _, a, dp in got["http.throttled"]}
    assert throttled == {"/api/orders": 5, "/api/cart": 1}  # 429 as int and as text
    rl = {a["event"]: dp.as_int for _, a, dp in got["ratelimit.decisions"]}
    assert rl == {"ratelimit.hit": 4, "ratelimit.bypass": 2}
    assert [(a, dp.as_int) for _, a, dp in got["db.pool.exhausted"]] == [({}, 3)]
    assert {tuple(r.items()) for r, _, _ in got["cache.requests"]} == {(("service.name",
                                                                          "api"),)}
    defs = metric_defs(sink.batches[0])
    assert defs["cache.requests"].sum.is_monotonic
    assert defs["cache.requests"].sum.aggregation_temporality == 2


async def test_histogram_of_a_numeric_attribute() -> None:
    sink = Sink()
    conn = make(sink, metrics=[QUERY])
    values = [0.5, 1, 3, 7, 12, 40, 99.9, 100, 250, "8.5"]  # a numeric string counts too
    recs: list[dict[str, Any]] = [
        {"attrs": {"db.query.duration_ms": v, "db.operation": "SELECT"}} for v in values]
    recs.append({"attrs": {"db.query.duration_ms": 4, "db.operation": "INSERT"},
                 "trace": b"\x07" * 16, "span": b"\x08" * 8})
    recs.append({"attrs": {"db.operation": "SELECT"}})  # no value: skipped
    recs.append({"attrs": {"db.query.duration_ms": "fast", "db.operation": "SELECT"}})
    tel = Telemetry()
    conn = make(sink, telemetry=tel, metrics=[QUERY])
    await conn.consume(log_batch(recs))
    await conn.flush()
    got = {a["db.operation"]: dp for _, a, dp in metrics(sink.batches)["db.query.duration"]}
    sel = got["SELECT"]
    assert list(sel.explicit_bounds) == [1, 5, 10, 50, 100]
    assert list(sel.bucket_counts) == [2, 1, 2, 2, 2, 1]
    assert sel.count == 10
    assert sel.sum == pytest.approx(0.5 + 1 + 3 + 7 + 12 + 40 + 99.9 + 100 + 250 + 8.5)
    ins = got["INSERT"]
    assert list(ins.bucket_counts) == [0, 1, 0, 0, 0, 0]
    assert [(e.trace_id, e.span_id, e.as_double) for e in ins.exemplars] == [
        (b"\x07" * 16, b"\x08" * 8, 4.0)]
    assert metric_defs(sink.batches[0])["db.query.duration"].unit == "ms"
    labels = {"connector": "logmetrics", "metric": "db.query.duration"}
    assert tel.registry.get_sample_value("otelpipe_connector_skipped_records_total",
                                         {**labels, "reason": "value_missing"}) == 1
    assert tel.registry.get_sample_value("otelpipe_connector_skipped_records_total",
                                         {**labels, "reason": "not_a_number"}) == 1


async def test_sum_and_gauge() -> None:
    sink = Sink()
    clock = FakeClock()
    conn = make(sink, clock, metrics=[
        {"name": "bytes.sent", "type": "sum", "value": "bytes", "unit": "By",
         "dimensions": [{"name": "route"}]},
        {"name": "pool.in_use", "type": "gauge", "value": "pool.in_use",
         "when": {"attribute": "pool.in_use", "exists": True}}])
    await conn.consume(log_batch([
        {"attrs": {"bytes": 100, "route": "/a"}}, {"attrs": {"bytes": 50.5, "route": "/a"}},
        {"attrs": {"bytes": 7, "route": "/b"}},
        {"attrs": {"pool.in_use": 3}, "time": 10}, {"attrs": {"pool.in_use": 9}, "time": 20}]))
    await conn.flush()
    got = metrics(sink.batches)
    assert {a["route"]: dp.as_double for _, a, dp in got["bytes.sent"]} == {"/a": 150.5,
                                                                            "/b": 7.0}
    [(_, _, gauge)] = got["pool.in_use"]
    assert gauge.as_double == 9.0
    assert gauge.time_unix_nano == clock.now
    assert metric_defs(sink.batches[0])["pool.in_use"].WhichOneof("data") == "gauge"


async def count_matching(when: dict[str, Any], recs: list[dict[str, Any]],
                         **kw: Any) -> int:
    sink = Sink()
    conn = make(sink, metrics=[{"name": "m", "when": when}])
    await conn.consume(log_batch(recs, **kw))
    await conn.flush()
    return sum(dp.as_int for _, _, dp in metrics(sink.batches).get("m", []))


async def test_conditions() -> None:
    recs = [{"attrs": {"code": 500, "user": "a"}, "severity": 17, "body": "failed: timeout"},
            {"attrs": {"code": 404}, "severity": 13, "body": "not found"},
            {"attrs": {"code": 200, "user": "b"}, "severity": 9, "body": "ok"},
            {"attrs": {"flag": True}, "severity": 5}]
    cases: list[tuple[dict[str, Any], int]] = [
        ({"attribute": "code", "gte": 400}, 2),
        ({"attribute": "code", "lt": 500, "gt": 200}, 1),
        ({"attribute": "user"}, 2),  # selector alone: exists
        ({"attribute": "user", "exists": False}, 2),
        ({"attribute": "code", "not_equals": 200}, 3),  # a missing attribute is "not equal"
        ({"attribute": "code", "in": [404, "500"]}, 2),
        ({"attribute": "flag", "equals": True}, 1),
        ({"field": "body", "matches": "time(out)?"}, 1),
        ({"severity_at_least": "WARN"}, 2),
        ({"severity_at_least": 17}, 1),
        ({"any": [{"attribute": "flag"}, {"attribute": "code", "equals": 404}]}, 2),
        ({"not": {"attribute": "code"}}, 1),
        ({"all": [{"severity_at_least": "INFO"}, {"not": {"field": "body", "equals": "ok"}}]},
         2),
        ({"resource_attribute": "region", "equals": "eu"}, 4),
        ({"attribute": "region", "equals": "eu"}, 4),  # falls back to the resource
    ]
    for when, expected in cases:
        assert await count_matching(when, recs, resource={"region": "eu"}) == expected, when


async def test_cardinality_limit_and_expiry_shared_with_redmetrics() -> None:
    sink = Sink()
    clock = FakeClock()
    conn = make(sink, clock, aggregation_cardinality_limit=10, series_expiry="1m",
                metrics=[{"name": "m", "dimensions": [{"name": "user"}]}])
    await conn.consume(log_batch([{"attrs": {"user": f"u{i}"}} for i in range(50)]))
    await conn.flush()
    pts = metrics(sink.batches)["m"]
    assert len(pts) == 11
    over = [dp.as_int for _, a, dp in pts if a == {OVERFLOW_ATTRIBUTE: "true"}]
    assert over == [40]
    for _ in range(3):
        clock.advance(40)
        await conn.consume(log_batch([{"attrs": {"user": "u0"}}]))
        await conn.flush()
    last = metrics(sink.batches[-1:])["m"]
    assert [(a, dp.as_int) for _, a, dp in last] == [({"user": "u0"}, 4)]


async def test_retryable_error_at_flush_keeps_state_and_delta_starts() -> None:
    sink = Sink()
    clock = FakeClock()
    t0 = clock.now
    conn = make(sink, clock, aggregation_temporality="delta", metrics=[{"name": "m"}])
    await conn.consume(log_batch([{}, {}]))
    clock.advance(10)
    sink.refuse = RetryableError("full")
    assert not await conn.flush()
    await conn.consume(log_batch([{}]))
    clock.advance(10)
    sink.refuse = None
    assert await conn.flush()
    # the refused request again, identical, then what came since (from its time)
    first, second = (metrics([b])["m"][0][2] for b in sink.batches)
    assert (first.as_int, first.start_time_unix_nano, first.time_unix_nano) == \
        (2, t0, t0 + 10 * 10**9)
    assert (second.as_int, second.start_time_unix_nano) == (1, first.time_unix_nano)
    assert metric_defs(sink.batches[0])["m"].sum.aggregation_temporality == 1


async def test_malformed_request_is_a_permanent_error() -> None:
    conn = make(Sink(), metrics=[{"name": "m"}])
    with pytest.raises(PermanentError):
        await conn.consume(Batch(Signal.LOGS, raw=b"\x0a\xff\xff"))


def test_config_validation() -> None:
    def bad(metric: dict[str, Any], match: str) -> None:
        with pytest.raises(ValidationError, match=match):
            LogMetricsConfig.model_validate({"metrics": [metric]})

    bad({"name": "m", "value": "x"}, "use type: sum")
    bad({"name": "m", "type": "histogram"}, "needs `value`")
    bad({"name": "m", "when": {"equals": 1}}, "operator needs")
    bad({"name": "m", "when": {"attribute": "a", "field": "body"}}, "one selector")
    bad({"name": "m", "when": {"attribute": "a", "matches": "("}}, "regular expression")
    bad({"name": "m", "when": {"severity_at_least": "LOUD"}}, "unknown severity")
    bad({"name": "m", "when": {"attribute": "a", "bogus": 1}}, "Extra inputs")
    bad({"name": "m", "type": "histogram", "value": "v", "buckets": [5, 1]}, "increasing")
    with pytest.raises(ValidationError):
        LogMetricsConfig.model_validate({"metrics": []})
    cfg = LogMetricsConfig.model_validate({"metrics": [
        {"name": "m", "attributes": [{"name": "a"}], "when": {"not": {"attribute": "b"}}}]})
    assert cfg.metrics[0].dimensions[0].name == "a"
    assert cfg.metrics[0].when is not None
    assert cfg.metrics[0].when.not_ is not None


def test_registered() -> None:
    assert default_registry().get(Kind.CONNECTOR, "logmetrics") is factory
    assert factory.connector_pairs == frozenset({(Signal.LOGS, Signal.METRICS)})


async def test_dimensions_match_deprecated_names_and_warn_when_absent(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sink = Sink()
    metric = {"name": "http.requests", "type": "counter",
              "when": {"attribute": "event", "equals": "request"},
              "dimensions": [{"name": "http.request.method"},
                             {"name": "http.response.status_code", "deprecated_names": False},
                             {"name": "db.collection.name", "default": "none"}]}
    conn = make(sink, metrics=[metric], warn_absent_after=30)
    old = {"event": "request", "http.method": "GET", "http.status_code": 200}
    await conn.consume(log_batch([{"attrs": old}] * 20
                                 + [{"attrs": {**old, "db.sql.table": "orders"}}]))
    await conn.consume(log_batch([{"attrs": {"event": "other"}}] * 50))  # not counted
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await conn.consume(log_batch([{"attrs": old}] * 10, resource={"db.name": "shop"}))
    await conn.flush()
    got = {tuple(sorted(a.items())): dp.as_int for _, a, dp in metrics(sink.batches)[
        "http.requests"]}
    assert got == {(("db.collection.name", "none"), ("http.request.method", "GET")): 30,
                   (("db.collection.name", "orders"), ("http.request.method", "GET")): 1}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "connector logmetrics: dimension 'http.request.method' is matched by the "
                 "deprecated name 'http.method' on records of metric 'http.requests' that "
                 "lack it (deprecated_names)"),
        ("INFO", "connector logmetrics: dimension 'db.collection.name' is matched by the "
                 "deprecated name 'db.sql.table' on records of metric 'http.requests' that "
                 "lack it (deprecated_names)"),
        ("WARNING", "connector logmetrics: dimension 'http.response.status_code' was absent "
                    "from 31 records of metric 'http.requests' in a row, so their series lack "
                    "it; the records carry the deprecated name 'http.status_code' instead: "
                    "put the semconv processor before this connector, or set "
                    "deprecated_names: true on it")]
