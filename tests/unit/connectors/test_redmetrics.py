from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from pipeline.component import Kind, Signal
from pipeline.connectors.redmetrics import (
    DEFAULT_BUCKETS_S,
    RedMetricsConfig,
    RedMetricsConnector,
    factory,
)
from pipeline.errors import PermanentError
from pipeline.pdata.batch import Batch
from pipeline.registry import default_registry
from tests.support import Sink
from tests.unit.aggregation.support import CALLS, DURATION, by_name, make
from tests.unit.connectors.spans import (
    FLASK_REQUESTS,
    T0,
    attrs_of,
    flask_span,
    metric_defs,
    metrics,
    span_batch,
)


async def test_exact_calls_errors_and_buckets() -> None:
    sink = Sink()
    conn = make(sink)
    # 0.2 s and 0.5 s are bucket edges: values on an edge fall in the bucket it closes.
    durations = [1, 3, 150, 200, 300, 500, 700, 20_000]
    await conn.consume(span_batch([{"name": "GET /a", "ms": ms} for ms in durations]
                                  + [{"name": "GET /a", "ms": 250, "status": 2},
                                     {"name": "GET /b", "ms": 5, "kind": 3, "status": 1}]))
    assert await conn.flush()
    got = metrics(sink.batches)
    calls = {(a["span.name"], a["status.code"]): dp.as_int for _, a, dp in got[CALLS]}
    assert calls == {("GET /a", "STATUS_CODE_UNSET"): 8, ("GET /a", "STATUS_CODE_ERROR"): 1,
                     ("GET /b", "STATUS_CODE_OK"): 1}
    hist = {(a["span.name"], a["status.code"]): dp for _, a, dp in got[DURATION]}
    ok = hist[("GET /a", "STATUS_CODE_UNSET")]
    assert list(ok.explicit_bounds) == list(DEFAULT_BUCKETS_S)
    edges = list(DEFAULT_BUCKETS_S)
    expected = [0] * (len(edges) + 1)
    for ms in durations:
        expected[next((i for i, b in enumerate(edges) if ms / 1000 <= b), len(edges))] += 1
    assert list(ok.bucket_counts) == expected
    assert ok.bucket_counts[edges.index(0.2)] == 2  # 150 ms and exactly 200 ms
    assert ok.bucket_counts[edges.index(0.5)] == 1  # exactly 500 ms
    assert ok.bucket_counts[-1] == 1  # 20 s: above the last bound
    assert ok.count == 8
    assert ok.sum == pytest.approx(sum(durations) / 1000)
    _, attrs, _ = got[CALLS][0]
    assert attrs["service.name"] == "checkout"
    assert attrs["span.kind"] == "SPAN_KIND_SERVER"
    assert by_name(got[CALLS])["GET /b"][1]["span.kind"] == "SPAN_KIND_CLIENT"
    defs = metric_defs(sink.batches[0])
    assert defs[CALLS].sum.is_monotonic
    assert defs[CALLS].sum.aggregation_temporality == 2  # cumulative
    assert defs[DURATION].unit == "s"
    assert defs[DURATION].histogram.aggregation_temporality == 2


async def test_one_resource_per_service() -> None:
    sink = Sink()
    conn = make(sink)
    await conn.consume(span_batch([{"name": "a"}], service="cart",
                                  resource={"host.name": "h1"}))
    await conn.consume(span_batch([{"name": "b"}, {"name": "c"}], service="orders"))
    await conn.flush()
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    req = ExportMetricsServiceRequest.FromString(sink.batches[0].to_bytes())
    resources = sorted(tuple(attrs_of(rm.resource).items()) for rm in req.resource_metrics)
    assert resources == [(("service.name", "cart"),), (("service.name", "orders"),)]
    for rm in req.resource_metrics:
        assert [m.name for m in rm.scope_metrics[0].metrics] == [CALLS, DURATION]
        assert rm.scope_metrics[0].scope.name == "otelpipe/redmetrics"


async def test_dimensions_defaults_and_resource_fallback() -> None:
    sink = Sink()
    conn = make(sink, dimensions=[{"name": "http.route"},
                                  {"name": "http.request.method", "default": "UNKNOWN"},
                                  {"name": "http.response.status_code"},
                                  {"name": "deployment.environment"}])
    await conn.consume(span_batch([
        {"name": "s1", "attrs": {"http.route": "/a", "http.request.method": "GET",
                                 "http.response.status_code": 200, "app.other": "x"}},
        {"name": "s2", "attrs": {"http.route": "/b", "deployment.environment": "canary"}},
        {"name": "s3", "attrs": {}},
    ], resource={"deployment.environment": "prod"}))
    await conn.flush()
    pts = by_name(metrics(sink.batches)[CALLS])
    assert pts["s1"][1] == {"service.name": "checkout", "span.name": "s1",
                            "span.kind": "SPAN_KIND_SERVER", "status.code": "STATUS_CODE_UNSET",
                            "http.route": "/a", "http.request.method": "GET",
                            "http.response.status_code": 200,  # the type is kept
                            "deployment.environment": "prod"}  # from the resource
    assert pts["s2"][1]["http.request.method"] == "UNKNOWN"  # default
    assert pts["s2"][1]["deployment.environment"] == "canary"  # span wins over resource
    assert "http.route" not in pts["s3"][1]  # no default: left out
    assert "http.response.status_code" not in pts["s3"][1]
    assert "app.other" not in pts["s1"][1]


async def test_same_value_text_is_one_series() -> None:
    """As in the Collector, series are identified by the text of the values: an int
    200 and a string "200" are one series (Prometheus could not tell them apart)."""
    sink = Sink()
    conn = make(sink, dimensions=[{"name": "http.response.status_code"}])
    await conn.consume(span_batch([{"attrs": {"http.response.status_code": 200}},
                                   {"attrs": {"http.response.status_code": "200"}}]))
    await conn.flush()
    pts = metrics(sink.batches)[CALLS]
    assert [(p[1]["http.response.status_code"], p[2].as_int) for p in pts] == [(200, 2)]


async def test_exemplars_first_per_bucket_and_cleared_after_flush() -> None:
    sink = Sink()
    conn = make(sink)
    t1, t2, t3 = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
    await conn.consume(span_batch([
        {"ms": 3, "trace": t1, "span": b"\x11" * 8},
        {"ms": 3.5, "trace": t2, "span": b"\x12" * 8},  # same bucket: not an exemplar
        {"ms": 300, "trace": t3, "span": b"\x13" * 8},
    ]))
    await conn.flush()
    dp = metrics(sink.batches)[DURATION][0][2]
    ex = sorted((e.as_double, e.trace_id, e.span_id) for e in dp.exemplars)
    assert ex == [(0.003, t1, b"\x11" * 8), (0.3, t3, b"\x13" * 8)]
    assert all(e.time_unix_nano > T0 for e in dp.exemplars)
    await conn.flush()  # nothing new: the series is reported, without exemplars
    dp = metrics(sink.batches[1:])[DURATION][0][2]
    assert dp.count == 3
    assert len(dp.exemplars) == 0


async def test_exemplars_can_be_disabled() -> None:
    sink = Sink()
    conn = make(sink, exemplars={"enabled": False})
    await conn.consume(span_batch([{"ms": 3}]))
    await conn.flush()
    assert len(metrics(sink.batches)[DURATION][0][2].exemplars) == 0



async def test_http_5xx_counts_as_error_when_enabled() -> None:
    spans: list[dict[str, Any]] = [
             {"name": "a", "attrs": {"http.response.status_code": 503}},
             {"name": "a", "attrs": {"http.status_code": "500"}},
             {"name": "a", "attrs": {"http.response.status_code": 503}, "status": 1},
             {"name": "a", "attrs": {"http.response.status_code": 404}}]
    for enabled, expected in ((False, {"STATUS_CODE_UNSET": 3, "STATUS_CODE_OK": 1}),
                              (True, {"STATUS_CODE_ERROR": 2, "STATUS_CODE_OK": 1,
                                      "STATUS_CODE_UNSET": 1})):
        sink = Sink()
        conn = make(sink, errors={"http_5xx": enabled})
        await conn.consume(span_batch(spans))
        await conn.flush()
        got = {p[1]["status.code"]: p[2].as_int for p in metrics(sink.batches)[CALLS]}
        assert got == expected
        assert all("http.response.status_code" not in p[1] for p in metrics(sink.batches)[CALLS])


async def test_status_with_message_and_odd_encodings() -> None:
    sink = Sink()
    conn = make(sink, dimensions=[{"name": "k"}])
    req = ExportTraceServiceRequest.FromString(span_batch([
        {"name": "a", "status": 2, "message": "boom"},
        {"name": "a", "status": 2, "message": "other"},
        {"name": "b", "attrs": {"k": "v"}}]).to_bytes())
    req.resource_spans[0].scope_spans[0].spans[2].attributes.add()  # an empty KeyValue
    await conn.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    await conn.flush()
    got = {(p[1]["span.name"], p[1]["status.code"], p[1].get("k")): p[2].as_int
           for p in metrics(sink.batches)[CALLS]}
    assert got == {("a", "STATUS_CODE_ERROR", None): 2, ("b", "STATUS_CODE_UNSET", "v"): 1}


async def test_spans_without_service_name_and_negative_durations() -> None:
    sink = Sink()
    conn = make(sink)
    await conn.consume(span_batch([{"name": "a", "ms": -5}], service=None))
    await conn.flush()
    res, attrs, dp = metrics(sink.batches)[DURATION][0]
    assert res == {}
    assert "service.name" not in attrs
    assert dp.bucket_counts[0] == 1
    assert dp.sum == 0


async def test_malformed_request_is_a_permanent_error() -> None:
    conn = make(Sink())
    with pytest.raises(PermanentError):
        await conn.consume(Batch(Signal.TRACES, raw=b"\x0a\xff\xff\xff"))


async def test_exponential_histogram() -> None:
    sink = Sink()
    conn = make(sink, histogram={"exponential": {"max_size": 20}})
    durations_ms = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987]
    await conn.consume(span_batch([{"ms": ms} for ms in durations_ms] + [{"ms": 0}]))
    await conn.flush()
    got = metrics(sink.batches)
    dp = got[DURATION][0][2]
    assert metric_defs(sink.batches[0])[DURATION].WhichOneof("data") == "exponential_histogram"
    assert dp.count == 16
    assert dp.zero_count == 1
    assert dp.sum == pytest.approx(sum(durations_ms) / 1000)
    counts = list(dp.positive.bucket_counts)
    assert len(counts) <= 20
    assert sum(counts) == 15
    base = 2 ** (2 ** -dp.scale)
    for ms in durations_ms:  # every value lies in the bucket that counts it
        v = ms / 1000
        i = math.ceil(math.log(v, base)) - 1 - dp.positive.offset
        assert counts[i] >= 1
        assert base ** (dp.positive.offset + i) < v * (1 + 1e-9)
        assert v <= base ** (dp.positive.offset + i + 1) * (1 + 1e-9)
    assert got[CALLS][0][2].as_int == 16
    assert 1 <= len(dp.exemplars) <= 5


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="not both"):
        RedMetricsConfig.model_validate({"histogram": {"explicit": {}, "exponential": {}}})
    with pytest.raises(ValidationError, match="strictly increasing"):
        RedMetricsConfig.model_validate({"histogram": {"explicit": {"buckets": [1, 1]}}})
    with pytest.raises(ValidationError, match="always a dimension"):
        RedMetricsConfig.model_validate({"dimensions": [{"name": "span.name"}]})
    with pytest.raises(ValidationError):
        RedMetricsConfig.model_validate({"aggregation_temporality": "sometimes"})
    with pytest.raises(ValidationError):
        RedMetricsConfig.model_validate({"unknown": 1})
    cfg = RedMetricsConfig.model_validate({"histogram": {"explicit": {
        "buckets": ["2ms", "100ms", 0.5, "1s"]}}})
    assert cfg.histogram.explicit is not None
    assert cfg.histogram.explicit.buckets == [0.002, 0.1, 0.5, 1.0]


async def test_milliseconds_unit_and_custom_buckets() -> None:
    sink = Sink()
    conn = make(sink, histogram={"unit": "ms", "explicit": {"buckets": ["10ms", "100ms"]}})
    await conn.consume(span_batch([{"ms": 5}, {"ms": 50}, {"ms": 500}]))
    await conn.flush()
    dp = metrics(sink.batches)[DURATION][0][2]
    assert list(dp.explicit_bounds) == [10.0, 100.0]
    assert list(dp.bucket_counts) == [1, 1, 1]
    assert dp.sum == pytest.approx(555.0)
    assert metric_defs(sink.batches[0])[DURATION].unit == "ms"


def test_registered_with_spanmetrics_alias() -> None:
    reg = default_registry()
    assert reg.get(Kind.CONNECTOR, "redmetrics") is factory
    assert reg.get(Kind.CONNECTOR, "spanmetrics") is factory
    assert factory.connector_pairs == frozenset({(Signal.TRACES, Signal.METRICS)})


async def test_in_a_service_from_config(tmp_path: Any) -> None:
    """traces → spanmetrics (the alias) → metrics → file, built by the service."""
    import json

    from pipeline.component import ComponentID
    from pipeline.config.model import validate_config
    from pipeline.service import Service
    from tests.support import free_port

    out = tmp_path / "metrics.jsonl"
    raw = {"receivers": {"otlp": {"protocols": {
               "http": {"endpoint": f"127.0.0.1:{free_port()}"}}}},
           "connectors": {"spanmetrics": {"dimensions": [{"name": "http.route"}],
                                          "metrics_flush_interval": "1h"}},
           "exporters": {"file": {"path": str(out)}},
           "service": {"pipelines": {
               "traces": {"receivers": ["otlp"], "exporters": ["spanmetrics"]},
               "metrics": {"receivers": ["spanmetrics"], "exporters": ["file"]}}}}
    service = Service(validate_config(raw, default_registry()))
    conn = service.components()[(Kind.CONNECTOR, ComponentID("spanmetrics"))]
    assert isinstance(conn, RedMetricsConnector)
    await service.start()
    try:
        await conn.consume(span_batch([{"name": "a", "attrs": {"http.route": "/r"}}]))
    finally:
        await service.shutdown(drain_seconds=10)  # the connector's last flush reaches the file
    text = out.read_text()
    doc = json.loads(text.splitlines()[0])
    names = {m["name"] for rm in doc["resourceMetrics"] for sm in rm["scopeMetrics"]
             for m in sm["metrics"]}
    assert names == {CALLS, DURATION}


# Deprecated semantic-convention names and absent dimensions -----------------------------

RED_DIMS = [{"name": "http.route"}, {"name": "http.request.method"},
            {"name": "http.response.status_code"}]


def calls_by(sink: Sink, *keys: str) -> dict[tuple[Any, ...], int]:
    out: dict[tuple[Any, ...], int] = {}
    for _, a, dp in metrics(sink.batches)[CALLS]:
        k = tuple(a.get(key) for key in keys)
        out[k] = out.get(k, 0) + dp.as_int
    return out


async def test_old_names_give_series_with_the_status_code() -> None:
    sink = Sink()
    conn = make(sink, dimensions=RED_DIMS)
    old = {"http.route": "/boom", "http.method": "GET", "http.status_code": 500}
    new = {"http.route": "/boom", "http.request.method": "GET",
           "http.response.status_code": 500}
    await conn.consume(span_batch([{"attrs": old}, {"attrs": new}, {"attrs": old}]))
    await conn.flush()
    (_, attrs, dp), = metrics(sink.batches)[CALLS]
    assert dp.as_int == 3
    assert attrs == {"service.name": "checkout", "span.name": "GET /a",
                     "span.kind": "SPAN_KIND_SERVER", "status.code": "STATUS_CODE_UNSET",
                     "http.route": "/boom", "http.request.method": "GET",
                     "http.response.status_code": 500}


async def test_deprecated_names_off_per_connector_or_per_dimension() -> None:
    old = {"http.route": "/a", "http.method": "GET", "http.status_code": 404}
    keys = ("http.request.method", "http.response.status_code")
    sink = Sink()
    conn = make(sink, dimensions=RED_DIMS, deprecated_names=False)
    await conn.consume(span_batch([{"attrs": old}]))
    await conn.flush()
    assert calls_by(sink, *keys) == {(None, None): 1}
    sink = Sink()
    conn = make(sink, deprecated_names=False, dimensions=[
        {"name": "http.request.method"},
        {"name": "http.response.status_code", "deprecated_names": True}])
    await conn.consume(span_batch([{"attrs": old}]))
    await conn.flush()
    assert calls_by(sink, *keys) == {(None, 404): 1}
    sink = Sink()
    conn = make(sink, dimensions=[{"name": "http.request.method", "deprecated_names": False},
                                  {"name": "http.response.status_code"}])
    await conn.consume(span_batch([{"attrs": old}]))
    await conn.flush()
    assert calls_by(sink, *keys) == {(None, 404): 1}


async def test_stable_names_win_span_then_resource() -> None:
    sink = Sink()
    conn = make(sink, dimensions=[{"name": "deployment.environment.name"},
                                  {"name": "http.response.status_code", "default": "none"}])
    await conn.consume(span_batch(
        [{"name": "a", "attrs": {"http.status_code": 200, "http.response.status_code": 201}},
         {"name": "b", "attrs": {"deployment.environment": "span-old"}},
         {"name": "c", "attrs": {}}],
        resource={"deployment.environment": "res-old"}))
    await conn.consume(span_batch(
        [{"name": "d", "attrs": {"deployment.environment": "span-old"}}],
        resource={"deployment.environment.name": "res-new"}))
    await conn.flush()
    got = calls_by(sink, "span.name", "deployment.environment.name",
                   "http.response.status_code")
    assert got == {("a", "res-old", 201): 1, ("b", "span-old", "none"): 1,
                   ("c", "res-old", "none"): 1, ("d", "res-new", "none"): 1}


async def test_deprecated_names_follow_the_span_kind() -> None:
    sink = Sink()
    conn = make(sink, dimensions=[{"name": "server.address"}])
    await conn.consume(span_batch([
        {"name": "client", "kind": 3, "attrs": {"net.peer.name": "db.internal"}},
        {"name": "server", "kind": 2, "attrs": {"net.peer.name": "laptop.example",
                                                 "net.host.name": "api.example"}}]))
    await conn.flush()
    assert calls_by(sink, "span.name", "server.address") == {
        ("client", "db.internal"): 1, ("server", "api.example"): 1}


async def test_absent_dimension_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sink = Sink()
    conn = make(sink, dimensions=RED_DIMS, deprecated_names=False)
    old = [{"attrs": {"http.route": "/a", "http.method": "GET", "http.status_code": 200}}
           for _ in range(100)]
    for _ in range(9):
        await conn.consume(span_batch(old))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for _ in range(3):
        await conn.consume(span_batch(old))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"connector redmetrics: dimension {name!r} was absent from 1000 spans in a row, so "
        f"their series lack it; the spans carry the deprecated name {old_name!r} instead: "
        "put the semconv processor before this connector, or set deprecated_names: true "
        "on it"
        for name, old_name in (("http.request.method", "http.method"),
                               ("http.response.status_code", "http.status_code"))]
    await conn.flush()
    assert calls_by(sink, "http.route", "http.response.status_code") == {("/a", None): 1200}


async def test_absent_count_resets_and_names_the_dimension(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    conn = make(Sink(), dimensions=[{"name": "http.rout"}, {"name": "http.route"}],
                warn_absent_after=250)
    spans = [{"attrs": {"http.route": "/a"}}] * 100
    for i in range(5):
        await conn.consume(span_batch(spans if i != 2 else [*spans, {"attrs": {"http.rout": 1}}]))
    assert not caplog.records  # 200, then reset, then 200
    await conn.consume(span_batch(spans))
    assert [r.getMessage() for r in caplog.records] == [
        "connector redmetrics: dimension 'http.rout' was absent from 300 spans in a row, so "
        "their series lack it (is the attribute name right?)"]
    await conn.consume(span_batch(spans * 20))
    assert len(caplog.records) == 1


async def test_matched_deprecated_name_is_noted_once_and_zero_disables_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    conn = make(Sink(), dimensions=RED_DIMS, warn_absent_after=0)
    for _ in range(3):
        await conn.consume(span_batch([{"attrs": {"http.status_code": 200}}] * 500))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "connector redmetrics: dimension 'http.response.status_code' is matched by "
                 "the deprecated name 'http.status_code' on spans that lack it "
                 "(deprecated_names)")]


async def test_http_5xx_probe_with_old_names_and_flask_shapes() -> None:
    sink = Sink()
    conn = make(sink, dimensions=RED_DIMS, errors={"http_5xx": True})
    spans = [flask_span(*r, stable=False) for r in FLASK_REQUESTS]
    for s in spans:
        s["status"] = 0  # UNSET: only the HTTP status code tells an error
    await conn.consume(span_batch(spans))
    await conn.flush()
    got = calls_by(sink, "http.route", "http.response.status_code", "status.code")
    assert got[("/boom", 500, "STATUS_CODE_ERROR")] == 1
    assert got[("/missing", 404, "STATUS_CODE_UNSET")] == 1


def _tid(i: int) -> bytes:
    return (i * 0x9E3779B97F4A7C15 + 12345).to_bytes(16, "big")


@pytest.mark.parametrize("histogram", [{}, {"exponential": {"max_size": 20}}])
async def test_exemplars_only_from_kept_traces(histogram: dict[str, Any]) -> None:
    """kept_by: a span becomes an exemplar only if the mirrored tail policies keep its
    trace (FNV-1a 64 with the salt under the cut, ERROR status, or over the latency)."""
    from pipeline.pdata.sampling import fnv1a64, tail_probabilistic_threshold

    cut = tail_probabilistic_threshold(10)
    state = fnv1a64(b"s1")
    sink = Sink()
    conn = make(sink, histogram=histogram, exemplars={"kept_by": {
        "probabilistic": {"sampling_percentage": 10, "hash_salt": "s1"},
        "status_code_error": True, "latency_threshold_ms": 1000}})
    # (the exponential histogram keeps 5 exemplars a series: the special spans go first)
    spans: list[dict[str, Any]] = [
        {"ms": 1000.5, "trace": b"\xaa" * 16},   # 1000 ms whole: not > 1000
        {"ms": 1001, "trace": b"\xbb" * 16},     # kept by latency
        {"ms": 7, "trace": b"\xcc" * 16, "status": 2}]  # kept: ERROR
    spans += [{"ms": 3, "trace": _tid(i), "span": b"\x01" * 8} for i in range(400)]
    await conn.consume(span_batch(spans))
    await conn.flush()
    kept = {t for t in (_tid(i) for i in range(400)) if fnv1a64(t, state) <= cut}
    assert 15 < len(kept) < 70
    first_kept = next(_tid(i) for i in range(400) if _tid(i) in kept)
    got = [e.trace_id for _, _, dp in metrics(sink.batches)[DURATION] for e in dp.exemplars]
    assert b"\xaa" * 16 not in got
    assert b"\xbb" * 16 in got
    assert b"\xcc" * 16 in got
    assert first_kept in got
    assert set(got) <= kept | {b"\xbb" * 16, b"\xcc" * 16}


async def test_exemplars_kept_by_only_error_policy_gives_none_for_ok_spans() -> None:
    sink = Sink()
    conn = make(sink, exemplars={"kept_by": {"status_code_error": True}})
    await conn.consume(span_batch([{"ms": 3}, {"ms": 300, "status": 1}]))
    await conn.flush()
    assert all(len(dp.exemplars) == 0 for _, _, dp in metrics(sink.batches)[DURATION])


def test_exemplars_kept_by_needs_a_policy() -> None:
    with pytest.raises(ValidationError, match="at least one policy"):
        RedMetricsConfig.model_validate({"exemplars": {"kept_by": {}}})
    with pytest.raises(ValidationError, match="sampling_percentage"):
        RedMetricsConfig.model_validate(
            {"exemplars": {"kept_by": {"probabilistic": {"sampling_percentage": 0}}}})


def test_the_example_config_mirrors_its_tail_policies() -> None:
    """configs/tail-sampling.yaml: each `kept_by` key matches a top-level policy of the
    tail_sampling processor it feeds (the docs' rule for exemplars that resolve)."""
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[3] / "configs" / "tail-sampling.yaml")
                         .read_text())
    kept_by = cfg["connectors"]["redmetrics"]["exemplars"]["kept_by"]
    policies = {p["type"]: p for p in cfg["processors"]["tail_sampling"]["policies"]}
    prob = policies["probabilistic"]["probabilistic"]
    assert kept_by["probabilistic"]["sampling_percentage"] == prob["sampling_percentage"]
    assert kept_by["probabilistic"].get("hash_salt", "") == prob.get("hash_salt", "")
    assert kept_by["status_code_error"] is True
    assert "ERROR" in policies["status_code"]["status_code"]["status_codes"]
    latency = policies["latency"]["latency"]
    assert kept_by["latency_threshold_ms"] == latency["threshold_ms"]
    assert not latency.get("upper_threshold_ms")
    assert not {"and", "not", "composite", "drop", "rate_limiting"} & set(policies)
    assert not any(section.get("invert_match") for p in policies.values()
                   for section in p.values() if isinstance(section, dict)), "a veto"


@pytest.mark.parametrize("cfg", [
    {"aggregation_cardinality_limit": 4},
    {"aggregation_cardinality_limit": 4, "histogram": {"exponential": {"max_size": 8}}},
    {"dimensions": [{"name": "http.route"}, {"name": "absent", "default": "x"},
                    {"name": "http.response.status_code"}],
     "exemplars": {"kept_by": {"status_code_error": True}}},
])
async def test_one_request_equals_the_same_spans_one_by_one(cfg: dict[str, Any]) -> None:
    """Spans are read column by column per scope: series creation (the cardinality limit
    reached mid-scope), repeated keys, detours for absent dimensions, negative durations
    and exemplars must come out exactly as when each span arrives alone."""
    spans: list[dict[str, Any]] = [
        {"name": f"op{i % 7}", "ms": (i * 37) % 900 - 40, "status": 2 if i % 5 == 0 else 0,
         "kind": 1 + i % 3, "trace": bytes([i + 1]) * 16, "span": bytes([i + 1]) * 8,
         "attrs": {"http.route": f"/r{i % 3}", "http.status_code": 500 + i % 2}
         if i % 4 else {"http.response.status_code": 200}}
        for i in range(60)]
    together, alone = Sink(), Sink()
    a = make(together, **cfg)
    b = make(alone, **cfg)
    await a.consume(span_batch(spans))
    for spec in spans:
        await b.consume(span_batch([spec]))
    await a.flush()
    await b.flush()
    assert a.series.overflowed == b.series.overflowed
    assert [x.to_bytes() for x in together.batches] == [x.to_bytes() for x in alone.batches]
