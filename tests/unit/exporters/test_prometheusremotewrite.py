"""`prometheusremotewrite` exporter against a local aiohttp endpoint that
decodes what it receives (the real Prometheus is in tests/integration)."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import cramjam
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters.prometheusremotewrite import (
    RemoteWriteConfig,
    RemoteWriteExporter,
    factory,
)
from pipeline.pdata.batch import Batch
from pipeline.pdata.prometheus.remotewrite import WriteRequest
from pipeline.telemetry.metrics import Telemetry
from tests.promdata import DELTA, gauge_metric, histogram_metric, request, sum_metric
from tests.secretsdata import API_KEY, assert_no_secret, basic, leaky_backend
from tests.support import exporter_settings, free_port

TS = 1_700_000_000_000_000_000
MS = 1_000_000
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")


@dataclass
class Endpoint:
    """A remote-write receiver: answers with the queued statuses, then 204."""

    url: str
    statuses: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    headers: list[Any] = field(default_factory=list)

    def series(self) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
        """Every series of every request that was answered 2xx: labels -> samples."""
        out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        for req, ok in self.requests:
            if not ok:
                continue
            for ts in req.timeseries:
                key = tuple((lb.name, lb.value) for lb in ts.labels)
                out.setdefault(key, []).extend((s.timestamp, s.value) for s in ts.samples)
        return out

    def value(self, name: str, **labels: str) -> list[float]:
        found = [[v for _, v in samples] for key, samples in self.series().items()
                 if ("__name__", name) in key and set(labels.items()) <= set(key)]
        assert len(found) == 1, f"{len(found)} series match {name} {labels}"
        return found[0]


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    port = free_port()
    ep = Endpoint(f"http://127.0.0.1:{port}/api/v1/write")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        req = WriteRequest()
        req.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
        status, headers = ep.statuses.pop(0) if ep.statuses else (204, {})
        ep.requests.append((req, status < 300))
        ep.headers.append(request.headers)
        return web.Response(status=status, headers=headers, text="" if status < 300 else
                            "out of order sample")

    app = web.Application()
    app.router.add_post("/api/v1/write", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield ep
    finally:
        await runner.cleanup()


async def started(endpoint: Endpoint, telemetry: Telemetry | None = None,
                  **cfg: Any) -> RemoteWriteExporter:
    cfg.setdefault("endpoint", endpoint.url)
    cfg.setdefault("sending_queue", {"enabled": False})
    cfg.setdefault("retry_on_failure", {"enabled": False})
    exp = factory.create(exporter_settings("prometheusremotewrite", telemetry=telemetry),
                         RemoteWriteConfig.model_validate(cfg))
    assert isinstance(exp, RemoteWriteExporter)
    await exp.start(None)  # type: ignore[arg-type]
    return exp


def batch(req: Any) -> Batch:
    return Batch(Signal.METRICS, raw=req.SerializeToString())


def red(ts: int = TS, calls: int = 5, temporality: int = 2) -> Any:
    base = {"service.name": "checkout", "span.name": "GET /cart"}
    return request([
        sum_metric("traces.span.metrics.calls", [({**base, "status.code": "STATUS_CODE_ERROR"},
                                                  calls)], ts=ts, temporality=temporality),
        histogram_metric("traces.span.metrics.duration", [(base, [3, 1, 1], 0.7)],
                         bounds=[0.2, 0.5], ts=ts, exemplars=[(0.3, TRACE, SPAN)]),
    ], resource={"service.name": "checkout", "service.instance.id": "i-1", "host.name": "h1"})


async def test_wire_format_headers_labels_and_histograms(endpoint: Endpoint) -> None:
    exp = await started(endpoint, external_labels={"cluster": "eu-1", "job": "ignored"},
                        headers={"Authorization": "Bearer s3cret"})
    try:
        await exp.consume(batch(red()))
    finally:
        await exp.shutdown()
    (h,) = endpoint.headers
    assert h["Content-Encoding"] == "snappy"
    assert h["Content-Type"] == "application/x-protobuf"
    assert h["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert h["User-Agent"].startswith("otelpipe/")
    assert h["Authorization"] == "Bearer s3cret"
    ((req, _),) = endpoint.requests
    for ts in req.timeseries:
        names = [lb.name for lb in ts.labels]
        assert names == sorted(names), names
    assert endpoint.value("traces_span_metrics_calls_total", status_code="STATUS_CODE_ERROR",
                          job="checkout", instance="i-1", cluster="eu-1") == [5]
    h_ = "traces_span_metrics_duration_seconds"
    assert [endpoint.value(f"{h_}_bucket", le=le)[0] for le in ("0.2", "0.5", "+Inf")] == \
        [3, 4, 5]
    assert endpoint.value(f"{h_}_count") == [5]
    assert endpoint.value(f"{h_}_sum") == [0.7]
    assert endpoint.value("target_info", host_name="h1", job="checkout") == [1]
    # Timestamps are the OTLP ones, in milliseconds; exemplars ride on the bucket.
    bucket = next(ts for ts in req.timeseries
                  if ("le", "0.5") in [(lb.name, lb.value) for lb in ts.labels])
    assert bucket.samples[0].timestamp == TS // MS
    (ex,) = bucket.exemplars
    assert ex.value == 0.3
    assert {lb.name: lb.value for lb in ex.labels} == {"trace_id": TRACE.hex(),
                                                       "span_id": SPAN.hex()}


async def test_samples_of_one_series_are_sorted_by_timestamp(endpoint: Endpoint) -> None:
    exp = await started(endpoint)
    req = request([gauge_metric("g", [({}, 3.0)], ts=TS + 2 * MS),
                   gauge_metric("g", [({}, 1.0)], ts=TS),
                   gauge_metric("g", [({}, 2.0)], ts=TS + MS),
                   gauge_metric("g", [({}, 2.5)], ts=TS + MS)])  # same ts: last wins
    await exp.consume(batch(req))
    await exp.shutdown()
    ((key, samples),) = endpoint.series().items()
    assert key == (("__name__", "g"),)
    assert samples == [(TS // MS, 1.0), (TS // MS + 1, 2.5), (TS // MS + 2, 3.0)]


async def test_400_is_dropped_and_counted_not_retried(endpoint: Endpoint,
                                                      telemetry: Telemetry) -> None:
    endpoint.statuses = [(400, {})]
    exp = await started(endpoint, telemetry,
                        retry_on_failure={"enabled": True, "initial_interval": 0.01})
    b = batch(red())
    with pytest.raises(PermanentError, match="HTTP 400: out of order sample"):
        await exp.consume(b)
    await exp.shutdown()
    assert len(endpoint.requests) == 1  # no retry
    r = telemetry.registry.get_sample_value
    labels = {"exporter": "prometheusremotewrite", "signal": "metrics"}
    assert r("otelpipe_exporter_send_failed_items_total", labels) == b.items
    assert r("otelpipe_prometheusremotewrite_requests_total",
             {"exporter": "prometheusremotewrite", "status_code": "400"}) == 1
    assert r("otelpipe_prometheusremotewrite_rejected_samples_total",
             {"exporter": "prometheusremotewrite"}) == 7  # counter + 3 buckets, sum, count, info


async def test_400_through_the_queue_is_dropped_and_the_next_batch_flows(
        endpoint: Endpoint, telemetry: Telemetry) -> None:
    endpoint.statuses = [(400, {})]
    exp = await started(endpoint, telemetry, sending_queue={"enabled": True},
                        retry_on_failure={"enabled": True, "initial_interval": 0.01})
    await exp.consume(batch(red(calls=1)))  # acknowledged by the queue, then rejected
    await exp.consume(batch(red(ts=TS + MS, calls=2)))
    await exp.shutdown()  # drains the queue
    assert len(endpoint.requests) == 2
    assert endpoint.value("traces_span_metrics_calls_total") == [2]
    assert telemetry.registry.get_sample_value(
        "otelpipe_exporter_send_failed_items_total",
        {"exporter": "prometheusremotewrite", "signal": "metrics"}) == 2  # sum + histogram


@pytest.mark.parametrize(("status", "headers", "after", "throttle"), [
    (503, {"Retry-After": "7"}, 7.0, False),
    (429, {"Retry-After": "2"}, 2.0, True),
    (500, {}, None, False),
])
async def test_5xx_and_429_are_retryable_with_retry_after(
        endpoint: Endpoint, status: int, headers: dict[str, str], after: float | None,
        throttle: bool) -> None:
    endpoint.statuses = [(status, headers)]
    exp = await started(endpoint)
    with pytest.raises(RetryableError) as info:
        await exp.send(batch(red()))
    await exp.shutdown()
    assert info.value.retry_after == after
    assert info.value.throttle is throttle
    assert f"HTTP {status}" in str(info.value)


async def test_retry_resends_without_counting_deltas_twice(endpoint: Endpoint,
                                                           telemetry: Telemetry) -> None:
    endpoint.statuses = [(503, {}), (502, {})]
    exp = await started(endpoint, telemetry,
                        retry_on_failure={"enabled": True, "initial_interval": 0.01,
                                          "randomization_factor": 0})
    await exp.consume(batch(red(calls=5, temporality=DELTA)))
    await exp.consume(batch(red(ts=TS + MS, calls=2, temporality=DELTA)))
    await exp.shutdown()
    assert len(endpoint.requests) == 4
    # Delta sums become cumulative; the retried request still says 5.
    assert endpoint.value("traces_span_metrics_calls_total") == [5, 7]
    assert telemetry.registry.get_sample_value(
        "otelpipe_exporter_sent_items_total",
        {"exporter": "prometheusremotewrite", "signal": "metrics"}) == 4


async def test_large_batches_are_split(endpoint: Endpoint) -> None:
    exp = await started(endpoint, max_batch_size_bytes=2000)
    req = request([gauge_metric("g", [({"i": i}, float(i)) for i in range(200)], ts=TS)])
    await exp.consume(batch(req))
    await exp.shutdown()
    assert len(endpoint.requests) > 3
    for r, _ in endpoint.requests:
        assert r.ByteSize() <= 2000
    assert len(endpoint.series()) == 200


async def test_partial_rejection_counts_the_rejected_share(endpoint: Endpoint,
                                                           telemetry: Telemetry) -> None:
    endpoint.statuses = [(204, {}), (400, {})]
    exp = await started(endpoint, telemetry, max_batch_size_bytes=400)
    req = request([gauge_metric("g", [({"i": i}, float(i)) for i in range(40)], ts=TS)])
    with pytest.raises(PermanentError) as info:
        await exp.consume(batch(req))
    await exp.shutdown()
    assert len(endpoint.requests) > 2  # the parts after the rejected one were still sent
    assert info.value.rejected is not None
    assert 0 < info.value.rejected < 40


async def test_no_recorded_value_is_a_staleness_marker(endpoint: Endpoint) -> None:
    exp = await started(endpoint)
    await exp.consume(batch(request([gauge_metric("up", [({}, 0.0)], ts=TS, stale=True)])))
    await exp.shutdown()
    ((_, [(_, value)]),) = endpoint.series().items()
    assert math.isnan(value)
    assert struct.pack("<d", value) == struct.pack("<Q", 0x7FF0000000000002)


async def test_unreachable_endpoint_is_retryable() -> None:
    exp = factory.create(exporter_settings("prometheusremotewrite"),
                         RemoteWriteConfig(endpoint=f"http://127.0.0.1:{free_port()}/w"))
    await exp.start(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(RetryableError, match="cannot reach"):
            await exp.send(batch(red()))  # type: ignore[attr-defined]
    finally:
        await exp.shutdown()


def test_config() -> None:
    c = RemoteWriteConfig(endpoint="http://u:pw@h:9090/api/v1/write")
    assert c.sending_queue.enabled
    assert c.sending_queue.num_consumers == 1
    assert c.retry_on_failure.enabled
    exp = RemoteWriteExporter(exporter_settings("prometheusremotewrite"), c)
    assert "pw" not in exp.safe_url
    with pytest.raises(ValidationError, match="http:// or https://"):
        RemoteWriteConfig(endpoint="127.0.0.1:9090")
    with pytest.raises(ValidationError, match="set by the exporter"):
        RemoteWriteConfig(endpoint="http://h/w", headers={"content-encoding": "gzip"})
    with pytest.raises(ValidationError, match="invalid label name"):
        RemoteWriteConfig(endpoint="http://h/w", external_labels={"a.b": "x"})
    with pytest.raises(ValidationError, match="endpoint"):
        RemoteWriteConfig.model_validate({})


def test_hand_encoding_matches_protobuf() -> None:
    """The hand-written encoder produces the bytes upb would (field order, framing,
    int64 varints of negative timestamps included)."""
    from pipeline.exporters.prometheusremotewrite import (
        WireEncoder,
        _SeriesBuf,
        encode_write_requests,
    )
    from pipeline.pdata.prometheus.series import Exemplar as Ex

    wire = WireEncoder()
    buf = _SeriesBuf()
    buf.samples = {1_700_000_000_123: 2.5, -5: 1.25, 300: -7.0}
    buf.exemplars = [wire.exemplar(Ex(0.3, 1_700_000_000_456 * MS,
                                      (("trace_id", TRACE.hex()), ("span_id", SPAN.hex()))))]
    labels = wire.label("__name__", "x_bucket") + wire.label("le", "0.5") + \
        wire.label("service_name", "ü-checkout" * 20)
    (part,) = encode_write_requests({labels: buf}, 10_000)
    raw = bytes(cramjam.snappy.decompress_raw(part.body))
    expected = WriteRequest()
    ts = expected.timeseries.add()
    for k, v in (("__name__", "x_bucket"), ("le", "0.5"), ("service_name", "ü-checkout" * 20)):
        ts.labels.add(name=k, value=v)
    for t, value in ((-5, 1.25), (300, -7.0), (1_700_000_000_123, 2.5)):
        ts.samples.add(value=value, timestamp=t)
    ex = ts.exemplars.add(value=0.3, timestamp=1_700_000_000_456)
    ex.labels.add(name="trace_id", value=TRACE.hex())
    ex.labels.add(name="span_id", value=SPAN.hex())
    assert raw == expected.SerializeToString()
    assert part.samples == 3


async def test_credentials_in_the_url_are_basic_auth_and_never_in_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    async with leaky_backend(400) as backend:
        cfg = {"endpoint": backend.with_credentials(f"/api/v1/write?api_key={API_KEY}"),
               "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}
        exp = factory.create(exporter_settings("prometheusremotewrite"),
                             RemoteWriteConfig.model_validate(cfg))
        await exp.start(None)  # type: ignore[arg-type]
        try:
            with pytest.raises(PermanentError) as exc:
                await exp.send(batch(red()))  # type: ignore[attr-defined]
        finally:
            await exp.shutdown()
    assert backend.authorizations == [basic()]
    assert str(exc.value).startswith(
        f"http://127.0.0.1:{backend.port}/api/v1/write?api_key=*** rejected")
    assert_no_secret(str(exc.value), caplog.text)


def _held_after(exp: RemoteWriteExporter, batches: int, start: int, n: int = 1000) -> int:
    """Feed `batches` requests of `n` new distinct delta series each; returns the next
    series number."""
    for _ in range(batches):
        req = request([sum_metric("requests", [({"user": f"u{start + i}"}, 1)
                                               for i in range(n)],
                                  ts=TS, temporality=DELTA)])
        exp.build(req)
        start += n
    return start


def _decoded(parts: list[Any]) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for p in parts:
        req = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(p.body)))
        for ts in req.timeseries:
            out[tuple((lb.name, lb.value) for lb in ts.labels)] = ts.samples[-1].value
    return out


def test_max_series_caps_delta_state_with_one_overflow_series_per_metric() -> None:
    telemetry = Telemetry()
    cfg = RemoteWriteConfig(endpoint="http://127.0.0.1:1/api/v1/write", max_series=100)
    exp = RemoteWriteExporter(exporter_settings("prometheusremotewrite", telemetry), cfg)
    assert RemoteWriteConfig(endpoint="http://h/w").max_series == 100_000
    points = [({"user": f"u{i}"}, 1) for i in range(1000)]
    parts, samples = exp.build(request([sum_metric("requests", points, ts=TS,
                                                   temporality=DELTA)]))
    sent = _decoded(parts)
    overflow = (("__name__", "requests_total"), ("otel_metric_overflow", "true"))
    assert sent[overflow] == 900  # the 900 points that did not fit, counted
    assert len(sent) == samples == 101
    assert len(exp.deltas.series) == 100
    assert len(exp.deltas) == 101

    # Again, with 1000 more users and a metric first seen beyond the cap: held series keep
    # accumulating, new ones go on counting in the overflow series, the new metric is
    # dropped (counted) since it holds no series.
    parts, _ = exp.build(request([
        sum_metric("requests", [({"user": f"u{i}"}, 1) for i in range(2000)], ts=TS + MS,
                   temporality=DELTA),
        sum_metric("other", [({"user": "u0"}, 1)], ts=TS + MS, temporality=DELTA)]))
    sent = _decoded(parts)
    assert sent[overflow] == 2800
    assert sent[(("__name__", "requests_total"), ("user", "u0"))] == 2
    assert len(sent) == 101
    assert len(exp.deltas) == 101
    assert telemetry.registry.get_sample_value(
        "otelpipe_prometheusremotewrite_overflow_points_total",
        {"exporter": "prometheusremotewrite"}) == 900 + 1900 + 1
    # Cumulative points keep no state: not limited.
    parts, _ = exp.build(request([sum_metric("total", points, ts=TS)]))
    assert len(_decoded(parts)) == 1000
    assert len(exp.deltas) == 101


def test_max_series_bounds_memory() -> None:
    """20,000 more distinct delta series cost (next to) nothing once the cap is reached;
    without the cap the same feed grows the state by megabytes."""
    import gc
    import tracemalloc

    def growth(max_series: int) -> int:
        cfg = RemoteWriteConfig(endpoint="http://127.0.0.1:1/api/v1/write",
                                max_series=max_series)
        exp = RemoteWriteExporter(exporter_settings("prometheusremotewrite"), cfg)
        nxt = _held_after(exp, 2, 0)  # reach the cap, warm the caches
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            _held_after(exp, 20, nxt)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(exp.deltas) == (max_series + 1 if max_series else nxt + 20_000)
        return after - before

    capped, uncapped = growth(1000), growth(0)
    assert capped < 256 * 1024, capped
    assert uncapped > 4 * 1024 * 1024, uncapped
