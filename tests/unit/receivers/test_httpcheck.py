"""The httpcheck receiver against a small real aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from pipeline.component import Kind, Signal
from pipeline.errors import RetryableError
from pipeline.receivers.httpcheck import HttpCheckConfig, HttpCheckReceiver, factory
from pipeline.registry import default_registry
from pipeline.telemetry.metrics import Telemetry
from tests.secretsdata import API_KEY, PASSWORD, assert_no_secret, basic, leaky_backend
from tests.support import Sink, aeventually, free_port, receiver_settings

SEEN_HEADERS: list[dict[str, str]] = []


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def health(request: web.Request) -> web.Response:
        SEEN_HEADERS.append(dict(request.headers))
        return web.json_response({"status": "ok"})

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/health")

    async def created(request: web.Request) -> web.Response:
        return web.Response(status=201)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/broken", broken)
    app.router.add_get("/slow", slow)
    app.router.add_get("/moved", moved)
    app.router.add_post("/created", created)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def flatten(batch: Any) -> list[tuple[str, str, dict[str, Any], int, Any]]:
    """(metric, unit, attributes, value, metric message) per data point."""
    out = []
    for rm in batch.message.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                data = m.sum if m.HasField("sum") else m.gauge
                for dp in data.data_points:
                    attrs: dict[str, Any] = {}
                    for kv in dp.attributes:
                        which = kv.value.WhichOneof("value")
                        attrs[kv.key] = getattr(kv.value, which)
                    out.append((m.name, m.unit, attrs, dp.as_int, m))
    return out


def by_url(points: list[Any], name: str, url: str) -> list[tuple[dict[str, Any], int]]:
    return [(a, v) for (n, _u, a, v, _m) in points if n == name and a["http.url"] == url]


async def run_once(config: dict[str, Any], sink: Sink | None = None,
                   telemetry: Telemetry | None = None) -> tuple[list[Any], HttpCheckReceiver]:
    sink = sink or Sink()
    cfg = HttpCheckConfig.model_validate({"collection_interval": "1h", **config})
    rcv = HttpCheckReceiver(receiver_settings("httpcheck", telemetry=telemetry,
                                              consumers={Signal.METRICS: sink}), cfg)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await aeventually(lambda: rcv.collections >= 1, timeout=10, what="a collection")
    finally:
        await rcv.shutdown()
    return sink.batches, rcv


async def test_200_500_timeout_refused(server: str) -> None:
    refused_url = f"http://127.0.0.1:{free_port()}/health"
    telemetry = Telemetry()
    batches, _ = await run_once({"targets": [
        {"endpoint": f"{server}/health", "headers": {"Authorization": "Bearer s3cret"}},
        {"endpoint": f"{server}/broken"},
        {"endpoint": f"{server}/slow", "timeout": "200ms"},
        {"endpoint": refused_url},
    ]}, telemetry=telemetry)
    assert len(batches) == 1
    pts = flatten(batches[0])
    # Collector-compatible httpcheck.status: five points per target, one per class.
    ok = by_url(pts, "httpcheck.status", f"{server}/health")
    assert sorted(a["http.status_class"] for a, _ in ok) == ["1xx", "2xx", "3xx", "4xx", "5xx"]
    assert [(a["http.status_class"], a.get("http.status_code"), v) for a, v in ok
            if v == 1] == [("2xx", 200, 1)]
    assert all("http.status_code" not in a for a, v in ok if v == 0)
    assert all(a["http.method"] == "GET" for a, _ in ok)
    bad = by_url(pts, "httpcheck.status", f"{server}/broken")
    assert [(a["http.status_class"], a["http.status_code"]) for a, v in bad if v == 1] == \
        [("5xx", 500)]
    for url in (f"{server}/slow", refused_url):  # no response: every class 0
        assert [v for _, v in by_url(pts, "httpcheck.status", url)] == [0] * 5

    # httpcheck.success: the SLI against expected_status (default 200).
    success = {a["http.url"]: (v, a) for (n, _u, a, v, _m) in pts if n == "httpcheck.success"}
    assert success[f"{server}/health"][0] == 1
    assert "error.type" not in success[f"{server}/health"][1]
    assert success[f"{server}/broken"][0] == 0
    assert success[f"{server}/broken"][1]["error.type"] == "unexpected_status"
    assert success[f"{server}/broken"][1]["http.status_code"] == 500
    assert success[f"{server}/slow"][1]["error.type"] == "timeout"
    assert success[refused_url][1]["error.type"] == "connection_refused"
    assert "http.status_code" not in success[refused_url][1]

    # httpcheck.error only for probes without a response.
    errors = {a["http.url"]: a for (n, _u, a, v, _m) in pts if n == "httpcheck.error"}
    assert set(errors) == {f"{server}/slow", refused_url}
    assert errors[f"{server}/slow"]["error.type"] == "timeout"
    assert "0.2s" in errors[f"{server}/slow"]["error.message"]
    assert errors[refused_url]["error.type"] == "connection_refused"

    # Duration in ms: a timed-out probe took at least its 200 ms timeout (in seconds it
    # would read 0.2). No upper bounds: on a loaded machine a fast probe can take 600 ms.
    dur = {a["http.url"]: v for (n, u, a, v, _m) in pts if n == "httpcheck.duration"}
    assert all(u == "ms" for (n, u, *_r) in pts if n == "httpcheck.duration")
    assert dur[f"{server}/slow"] >= 150
    assert dur[f"{server}/health"] > 0

    # Types and units as the Collector declares them.
    metrics = {n: m for (n, _u, _a, _v, m) in pts}
    assert metrics["httpcheck.status"].HasField("sum")
    assert not metrics["httpcheck.status"].sum.is_monotonic
    assert metrics["httpcheck.status"].unit == "1"
    assert metrics["httpcheck.error"].unit == "{error}"
    assert metrics["httpcheck.duration"].HasField("gauge")
    assert metrics["httpcheck.success"].HasField("gauge")
    # Configured headers were sent.
    assert SEEN_HEADERS[-1]["Authorization"] == "Bearer s3cret"
    failed = telemetry.render().decode()
    assert 'otelpipe_httpcheck_failed_checks_total{reason="timeout",receiver="httpcheck"} 1.0' \
        in failed


async def test_expected_status_list_class_method_and_redirects(server: str) -> None:
    batches, _ = await run_once({"targets": [
        {"endpoint": f"{server}/broken", "expected_status": [200, "5xx"]},
        {"endpoint": f"{server}/created", "method": "post", "expected_status": 201},
        {"endpoint": f"{server}/moved"},                                 # followed -> 200
        {"endpoint": f"{server}/moved", "follow_redirects": False,
         "expected_status": "3xx", "method": "GET"},
    ]})
    pts = flatten(batches[0])
    success = [(a["http.url"], a["http.method"], a.get("http.status_code"), v)
               for (n, _u, a, v, _m) in pts if n == "httpcheck.success"]
    assert (f"{server}/broken", "GET", 500, 1) in success
    assert (f"{server}/created", "POST", 201, 1) in success
    assert (f"{server}/moved", "GET", 200, 1) in success
    assert (f"{server}/moved", "GET", 302, 1) in success


async def test_interval_and_refusal_dropped_and_counted(server: str) -> None:
    sink = Sink()
    sink.refuse = RetryableError("full")
    telemetry = Telemetry()
    cfg = HttpCheckConfig.model_validate({"collection_interval": "50ms",
                                          "targets": [{"endpoint": f"{server}/health"}]})
    rcv = HttpCheckReceiver(receiver_settings("httpcheck", telemetry=telemetry,
                                              consumers={Signal.METRICS: sink}), cfg)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await aeventually(lambda: rcv.collections >= 3, timeout=5, what="3 collections")
        sink.refuse = None
        await aeventually(lambda: sink.batches, timeout=5, what="an accepted batch")
    finally:
        await rcv.shutdown()
    text = telemetry.render().decode()
    assert 'otelpipe_receiver_refused_items_total{receiver="httpcheck",signal="metrics",' \
           'transport="http"}' in text
    assert sink.batches[0].items == 5 + 1 + 1  # status x5, duration, success


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="targets"):
        HttpCheckConfig.model_validate({"targets": []})
    with pytest.raises(ValidationError, match="http:// or https://"):
        HttpCheckConfig.model_validate({"targets": [{"endpoint": "ftp://x/"}]})
    with pytest.raises(ValidationError, match="invalid HTTP status"):
        HttpCheckConfig.model_validate({"targets": [{"endpoint": "http://x/",
                                                     "expected_status": 700}]})
    with pytest.raises(ValidationError, match=r"expected e\.g\. 200 or 2xx"):
        HttpCheckConfig.model_validate({"targets": [{"endpoint": "http://x/",
                                                     "expected_status": "okay"}]})
    with pytest.raises(ValidationError, match="extra"):
        HttpCheckConfig.model_validate({"targets": [{"endpoint": "http://x/", "url": "y"}]})
    cfg = HttpCheckConfig.model_validate({"targets": [
        {"endpoint": "http://x/health", "expected_status": ["2XX", 301, "404"],
         "headers": {"Authorization": "Bearer hidden"}}]})
    t = cfg.targets[0]
    assert t.expected_status == ["2xx", 301, 404]
    assert t.accepts(204)
    assert t.accepts(301)
    assert t.accepts(404)
    assert not t.accepts(302)
    assert cfg.collection_interval == 10.0
    assert t.timeout == 5.0
    assert t.method == "GET"
    assert "hidden" not in repr(cfg)
    assert "hidden" not in str(cfg.model_dump())


def test_registered() -> None:
    assert default_registry().get(Kind.RECEIVER, "httpcheck") is factory
    assert factory.supports(Signal.METRICS)
    assert not factory.supports(Signal.LOGS)


async def test_urls_are_masked_in_attributes_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    refused = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}/x?api_key={API_KEY}"
    async with leaky_backend(200) as backend:
        url = backend.with_credentials(f"/health?api_key={API_KEY}&q=1")
        batches, _ = await run_once({"targets": [{"endpoint": url}, {"endpoint": refused}]})
    assert backend.authorizations == [basic()]  # the credentials are still used
    assert backend.paths == [f"/health?api_key={API_KEY}&q=1"]
    pts = flatten(batches[0])
    urls = {a["http.url"] for (_n, _u, a, _v, _m) in pts}
    assert urls == {f"http://alice:***@127.0.0.1:{backend.port}/health?api_key=***&q=1",
                    refused.replace(PASSWORD, "***").replace(API_KEY, "***")}
    texts = [str(v) for (_n, _u, a, _v, _m) in pts for v in a.values()]
    assert_no_secret(batches[0].message.SerializeToString(), caplog.text, *texts,
                     *(str(r.__dict__) for r in caplog.records))
