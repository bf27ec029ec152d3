"""The alertmanager exporter against a small local aiohttp server: exact JSON payloads,
resolution, re-sending, ordering, retry classification, auth headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters.alertmanager.config import AlertmanagerExporterConfig
from pipeline.exporters.alertmanager.exporter import AlertmanagerExporter
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import Telemetry
from tests.secretsdata import assert_no_secret, basic, leaky_backend
from tests.support import aeventually, connector_settings, exporter_settings, free_port

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NOW_S = "2023-11-14T22:13:20.000Z"


class Clock:
    def __init__(self, t: float = NOW):
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class FakeAM:
    """Records POST /api/v2/alerts bodies; answers with the queued statuses."""

    statuses: list[int] = field(default_factory=list)
    posts: list[list[dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.path == "/api/v2/alerts"
        assert request.content_type == "application/json"
        self.headers.append(dict(request.headers))
        self.posts.append(orjson.loads(await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="" if status == 200 else f"err {status}")


@pytest.fixture
async def am() -> AsyncIterator[FakeAM]:
    fake = FakeAM()
    app = web.Application()
    app.router.add_post("/api/v2/alerts", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


async def make(config: dict[str, Any], clock: Clock | None = None,
               tel: Telemetry | None = None) -> AlertmanagerExporter:
    cfg = AlertmanagerExporterConfig.model_validate({
        "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False},
        "timeout": "2s", **config})
    exp = AlertmanagerExporter(exporter_settings("alertmanager",
                                                 telemetry=tel or Telemetry()),
                               cfg, clock=clock or Clock())
    await exp.start(None)  # type: ignore[arg-type]
    return exp


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, list):
        v = AnyValue()
        for x in value:
            v.array_value.values.add().string_value = x
        return KeyValue(key=key, value=v)
    return KeyValue(key=key, value=AnyValue(string_value=value))


def alert_batch(*events: dict[str, Any], service_on_resource: bool = True) -> Batch:
    """A logs batch like the slo connector's: one record per event."""
    req = ExportLogsServiceRequest()
    for ev in events:
        rl = req.resource_logs.add()
        attrs = dict(ev)
        t = attrs.pop("time", NOW - 60)
        body = attrs.pop("body", None)
        if service_on_resource and "service.name" in attrs:
            rl.resource.attributes.append(_kv("service.name", attrs.pop("service.name")))
        lr = rl.scope_logs.add().log_records.add()
        lr.time_unix_nano = int(t * 1e9)
        lr.severity_text = "WARN"
        if body is not None:
            lr.body.string_value = body
        for k, v in attrs.items():
            lr.attributes.append(_kv(k, v))
    return Batch(Signal.LOGS, message=req)


def firing(**kw: Any) -> dict[str, Any]:
    return {"slo.name": "api-availability", "service.name": "api", "alert.severity": "page",
            "alert.state": "firing", "alert.windows": ["1h", "5m"],
            "slo.burn_rate.1h": 15.5, "slo.burn_rate.5m": 20.0, **kw}


def resolved(**kw: Any) -> dict[str, Any]:
    return {**firing(**kw), "alert.state": "resolved", **kw}


RUNBOOK = "https://github.com/otelpipe/otelpipe/blob/main/docs/runbook.md"
LABELS = {"alertname": "SLOBurnRatePage", "slo": "api-availability", "service": "api",
          "severity": "page", "window": "1h/5m"}
ANNOTATIONS = {
    "summary": "SLO api-availability (api) burns its error budget 20× too fast (page)",
    "description": "page alert of SLO api-availability; windows 1h/5m; "
                   "burn rates 1h: 15.5×, 5m: 20×.",
    "runbook_url": f"{RUNBOOK}#slo-availability-page",
    "burn_rates": "1h: 15.5×, 5m: 20×",
}


async def test_firing_alert_exact_payload(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url})
    try:
        assert await exp.send(alert_batch(firing())) is None
    finally:
        await exp.shutdown()
    assert am.posts == [[{
        "labels": LABELS, "annotations": ANNOTATIONS,
        "startsAt": "2023-11-14T22:12:20.000Z",  # the event's time
        "endsAt": "2023-11-14T22:17:20.000Z",  # now + 4 × resend_interval (1m)
    }]]
    assert am.headers[0]["User-Agent"].startswith("otelpipe/")


async def test_resolved_event_sends_same_labels_with_ends_at_now(am: FakeAM) -> None:
    clock = Clock()
    exp = await make({"endpoint": am.url}, clock)
    try:
        await exp.send(alert_batch(firing()))
        clock.t = NOW + 600
        await exp.send(alert_batch(resolved(time=NOW + 590)))
    finally:
        await exp.shutdown()
    assert len(am.posts) == 2
    [alert] = am.posts[1]
    assert alert["labels"] == LABELS
    assert alert["startsAt"] == "2023-11-14T22:12:20.000Z"  # kept from the firing event
    assert alert["endsAt"] == "2023-11-14T22:23:20.000Z"  # now
    assert exp.firing_alerts() == []


async def test_resolution_without_windows_resolves_every_window_pair(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url})
    try:
        await exp.send(alert_batch(firing(), firing(**{"alert.windows": ["6h", "30m"]})))
        assert len(exp.firing_alerts()) == 2
        ev = resolved()
        del ev["alert.windows"]
        await exp.send(alert_batch(ev))
    finally:
        await exp.shutdown()
    last = am.posts[-1]
    assert sorted(a["labels"]["window"] for a in last) == ["1h/5m", "6h/30m"]
    assert all(a["endsAt"] == NOW_S for a in last)


async def test_resolution_naming_other_windows_resolves_the_firing_alert(am: FakeAM) -> None:
    """The page fired through 1h/5m, switched to 6h/30m while firing, resolves as 6h/30m;
    an older 6h/30m episode already resolved must not absorb the resolution."""
    clock = Clock()
    exp = await make({"endpoint": am.url}, clock)
    try:
        six = {"alert.windows": ["6h", "30m"]}
        await exp.send(alert_batch(firing(time=NOW - 500, **six)))
        await exp.send(alert_batch(resolved(time=NOW - 400, **six)))
        await exp.send(alert_batch(firing(time=NOW - 300)))
        await exp.send(alert_batch(resolved(time=NOW - 10, **six)))
    finally:
        await exp.shutdown()
    assert exp.firing_alerts() == []
    assert [a["labels"]["window"] for a in am.posts[-1]] == ["1h/5m"]
    assert am.posts[-1][0]["endsAt"] == NOW_S


async def test_older_event_never_overrides_newer_state(am: FakeAM) -> None:
    """A retried batch with an old firing event after the resolution: stays resolved."""
    exp = await make({"endpoint": am.url})
    try:
        await exp.send(alert_batch(firing(time=NOW - 100)))
        await exp.send(alert_batch(resolved(time=NOW - 10)))
        await exp.send(alert_batch(firing(time=NOW - 100)))
    finally:
        await exp.shutdown()
    assert exp.firing_alerts() == []
    assert am.posts[-1][0]["endsAt"] == NOW_S


async def test_resend_keeps_firing_and_recently_resolved(am: FakeAM) -> None:
    clock = Clock()
    exp = await make({"endpoint": am.url, "resend_interval": "1m",
                      "resolved_retention": "15m"}, clock)
    try:
        await exp.send(alert_batch(firing(), {**firing(), "slo.name": "api-latency-p95",
                                              "alert.severity": "ticket"}))
        await exp.send(alert_batch(resolved(time=NOW)))
        clock.t = NOW + 60
        assert await exp.resend() == 2
        sent = {a["labels"]["slo"]: a for a in am.posts[-1]}
        assert sent["api-latency-p95"]["endsAt"] == "2023-11-14T22:18:20.000Z"  # refreshed
        assert sent["api-latency-p95"]["labels"]["alertname"] == "SLOBurnRateTicket"
        assert sent["api-latency-p95"]["annotations"]["runbook_url"].endswith(
            "#slo-latency-ticket")
        assert sent["api-availability"]["endsAt"] == NOW_S  # still resolved, re-told
        clock.t = NOW + 16 * 60  # past the retention of the resolved one
        assert await exp.resend() == 1
        assert [a["labels"]["slo"] for a in am.posts[-1]] == ["api-latency-p95"]
    finally:
        await exp.shutdown()


async def test_resend_loop_runs_on_its_own(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url, "resend_interval": "50ms"})
    try:
        await exp.send(alert_batch(firing()))
        await aeventually(lambda: len(am.posts) >= 3, what="3 posts")
    finally:
        await exp.shutdown()
    assert len(am.posts) >= 3
    assert all(p[0]["labels"] == LABELS for p in am.posts)


async def test_resend_failure_marks_unhealthy_then_recovers(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url})
    try:
        await exp.send(alert_batch(firing()))
        am.statuses = [503]
        assert await exp.resend() == 0
        assert not exp.health().healthy
        assert "HTTP 503" in (exp.health().last_error or "")
        assert await exp.resend() == 1
        assert exp.health().healthy
    finally:
        await exp.shutdown()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_retryable_statuses(am: FakeAM, status: int) -> None:
    exp = await make({"endpoint": am.url})
    am.statuses = [status]
    try:
        with pytest.raises(RetryableError, match=f"HTTP {status}"):
            await exp.send(alert_batch(firing()))
    finally:
        await exp.shutdown()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_permanent_statuses(am: FakeAM, status: int) -> None:
    exp = await make({"endpoint": am.url})
    am.statuses = [status]
    try:
        with pytest.raises(PermanentError, match=f"HTTP {status}"):
            await exp.send(alert_batch(firing()))
    finally:
        await exp.shutdown()


async def test_connection_refused_is_retryable() -> None:
    exp = await make({"endpoint": f"http://127.0.0.1:{free_port()}"})
    try:
        with pytest.raises(RetryableError):
            await exp.send(alert_batch(firing()))
    finally:
        await exp.shutdown()


async def test_helper_retries_5xx_then_delivers(am: FakeAM) -> None:
    tel = Telemetry()
    exp = await make({"endpoint": am.url, "retry_on_failure": {
        "initial_interval": "10ms", "max_interval": "20ms", "max_elapsed_time": "5s"}}, tel=tel)
    am.statuses = [503, 502]
    try:
        await exp.consume(alert_batch(firing()))
    finally:
        await exp.shutdown()
    assert len(am.posts) == 3
    assert tel.registry.get_sample_value("otelpipe_exporter_sent_items_total",
                                         {"exporter": "alertmanager", "signal": "logs"}) == 1


async def test_helper_drops_4xx_without_retry(am: FakeAM) -> None:
    tel = Telemetry()
    exp = await make({"endpoint": am.url, "retry_on_failure": {"initial_interval": "10ms"}},
                     tel=tel)
    am.statuses = [400]
    try:
        with pytest.raises(PermanentError):
            await exp.consume(alert_batch(firing()))
    finally:
        await exp.shutdown()
    assert len(am.posts) == 1
    assert tel.registry.get_sample_value("otelpipe_exporter_send_failed_items_total",
                                         {"exporter": "alertmanager", "signal": "logs"}) == 1


async def test_auth_headers_and_static_labels(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url + "/", "auth": {"bearer_token": "tok3n"},
                      "headers": {"X-Scope-OrgID": "team-a"},
                      "labels": {"team": "platform"}, "alertname": "{slo}",
                      "generator_url": "http://otelpipe:13133/status#slo-{slo}"})
    try:
        await exp.send(alert_batch(firing()))
    finally:
        await exp.shutdown()
    assert am.headers[0]["Authorization"] == "Bearer tok3n"
    assert am.headers[0]["X-Scope-OrgID"] == "team-a"
    [alert] = am.posts[0]
    assert alert["labels"] == {**LABELS, "team": "platform", "alertname": "api-availability"}
    assert alert["generatorURL"] == "http://otelpipe:13133/status#slo-api-availability"
    assert "tok3n" not in repr(exp.config)


async def test_runbook_overrides(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url, "runbook_url": "https://wiki/runbook#old",
                      "runbook_anchors": {"db-consistency": "replication-lag",
                                          "custom": "https://wiki/custom"}})
    try:
        await exp.send(alert_batch(
            firing(**{"slo.name": "db-consistency"}), firing(**{"slo.name": "custom"}),
            firing(**{"slo.name": "api-latency-p95"}),
            firing(**{"slo.name": "own", "alert.runbook_url": "https://x/y#z"})))
    finally:
        await exp.shutdown()
    urls = {a["labels"]["slo"]: a["annotations"]["runbook_url"] for a in am.posts[0]}
    assert urls == {"db-consistency": "https://wiki/runbook#replication-lag",
                    "custom": "https://wiki/custom",
                    "api-latency-p95": "https://wiki/runbook#slo-latency-page",
                    # runbook_url configured here wins over the event's
                    "own": "https://wiki/runbook#slo-burn-rate-page"}


async def test_event_runbook_url_used_when_none_configured(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url})
    try:
        await exp.send(alert_batch(
            firing(**{"slo.name": "own", "alert.runbook_url": "https://x/y#z"}),
            firing(**{"slo.name": "rel", "alert.runbook_url": "docs/runbook.md#a"})))
    finally:
        await exp.shutdown()
    urls = {a["labels"]["slo"]: a["annotations"]["runbook_url"] for a in am.posts[0]}
    assert urls == {"own": "https://x/y#z",  # absolute: taken
                    "rel": f"{RUNBOOK}#slo-burn-rate-page"}  # relative: ours


async def test_records_of_the_real_slo_connector(am: FakeAM) -> None:
    """The exact log records `pipeline.connectors.slo` emits for a transition."""
    from pipeline.connectors.slo import factory as slo_factory
    from pipeline.connectors.slo.config import SLOConnectorConfig
    from pipeline.slo.engine import AlertTransition

    conn: Any = slo_factory.create(connector_settings("slo"), SLOConnectorConfig(
        slos=[{"name": "api-availability", "service": "api", "objective": 99.9,
               "sli": {"type": "availability"}}]))
    fire = AlertTransition(
        slo="api-availability", service="api", severity="page", state="firing",
        at=NOW - 30, started_at=NOW - 30, windows=("1h", "5m"),
        burn_rates={"1h": 15.0, "5m": 20.0}, threshold=14.4, objective=0.999,
        error_budget_remaining=0.979,
        summary="SLO api-availability (api): error budget burning at 15.0x over 1h and "
                "20.0x over 5m (threshold 14.4x); 97.9% of the 30d budget left")
    resolve = AlertTransition(**{**fire.__dict__, "state": "resolved", "at": NOW - 5,
                                 "summary": "SLO api-availability (api): page alert "
                                            "resolved after 25s"})
    clock = Clock()
    exp = await make({"endpoint": am.url}, clock)
    try:
        await exp.send(Batch(Signal.LOGS, message=conn.logs_request([fire], int(NOW * 1e9))))
        await exp.send(Batch(Signal.LOGS, message=conn.logs_request([resolve],
                                                                    int(NOW * 1e9))))
    finally:
        await exp.shutdown()
    assert am.posts[0] == [{
        "labels": LABELS,
        "annotations": {
            "summary": fire.summary,
            "description": "page alert of SLO api-availability; objective 0.999; windows "
                           "1h/5m; burn rates 1h: 15×, 5m: 20×; threshold 14.4×; error "
                           "budget left 97.9%.",
            "runbook_url": f"{RUNBOOK}#slo-availability-page",
            "burn_rates": "1h: 15×, 5m: 20×"},
        "startsAt": "2023-11-14T22:12:50.000Z", "endsAt": "2023-11-14T22:17:20.000Z"}]
    [resolved_alert] = am.posts[1]
    assert resolved_alert["labels"] == LABELS
    assert resolved_alert["startsAt"] == "2023-11-14T22:12:50.000Z"
    assert resolved_alert["endsAt"] == NOW_S
    # as Prometheus does, a resolved alert keeps the annotations it fired with
    assert resolved_alert["annotations"]["summary"] == fire.summary


async def test_records_that_are_not_alert_events_are_ignored(am: FakeAM) -> None:
    exp = await make({"endpoint": am.url})
    try:
        await exp.send(alert_batch({"body": "just a log line", "service.name": "api"},
                                   {"slo.name": "x", "other": "no state"}))
    finally:
        await exp.shutdown()
    assert am.posts == []


async def test_body_is_the_description_and_event_name_gives_the_state(am: FakeAM) -> None:
    ev = firing(body="api-availability burns 14.4x", **{"event.name": "slo.alert.firing"})
    del ev["alert.state"]
    exp = await make({"endpoint": am.url})
    try:
        await exp.send(alert_batch(ev, service_on_resource=False))
    finally:
        await exp.shutdown()
    assert am.posts[0][0]["annotations"]["description"] == "api-availability burns 14.4x"
    assert am.posts[0][0]["labels"]["service"] == "api"


async def test_metrics_batches_are_refused_permanently(am: FakeAM) -> None:
    from tests.builders import metrics_request

    exp = await make({"endpoint": am.url})
    try:
        with pytest.raises(PermanentError):
            await exp.send(Batch(Signal.METRICS, message=metrics_request([1])))
    finally:
        await exp.shutdown()


def test_every_runbook_anchor_the_exporter_links_exists() -> None:
    import re

    from tests.support import REPO

    ids = set(re.findall(r'<a id="([^"]+)"', (REPO / "docs" / "runbook.md").read_text()))
    for category in ("availability", "latency", "consistency", "burn-rate"):
        for severity in ("page", "ticket"):
            assert f"slo-{category}-{severity}" in ids


@pytest.mark.parametrize(("status", "error"), [(400, PermanentError), (503, RetryableError)])
async def test_credentials_in_the_url_are_basic_auth_and_never_in_errors(
        status: int, error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    async with leaky_backend(status) as backend:
        exp = await make({"endpoint": backend.with_credentials()})
        try:
            with pytest.raises(error) as exc:
                await exp.send(alert_batch(firing()))
            assert await exp.resend() == 0  # the re-send loop's failure is logged, masked
        finally:
            await exp.shutdown()
    assert backend.authorizations[0] == basic()
    assert str(exc.value).startswith(
        f"http://127.0.0.1:{backend.port}/api/v2/alerts: HTTP {status}: bad request to "
        f"http://alice:***@127.0.0.1:{backend.port}/api/v2/alerts (Authorization: Basic ")
    assert "re-sending alerts failed" in caplog.text
    assert_no_secret(str(exc.value), caplog.text, str(exp.health().last_error))
