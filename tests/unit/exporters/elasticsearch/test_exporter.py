"""`elasticsearch` exporter: documents per mapping, targets, and the per-document results of
bulk responses, against a local aiohttp endpoint answering crafted bulk responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters.elasticsearch import factory
from pipeline.exporters.elasticsearch.config import ElasticsearchExporterConfig
from pipeline.exporters.elasticsearch.exporter import ElasticsearchExporter
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import Telemetry
from tests.secretsdata import assert_no_secret, basic, leaky_backend
from tests.support import exporter_settings, free_port

T0 = 1_700_000_000_123_456_789          # 2023-11-14T22:13:20.123456789Z
TS0 = "2023-11-14T22:13:20.123456789Z"
TRACE = bytes(range(16))
SPAN = bytes(range(8))
ID = "elasticsearch/test"


def kv(key: str, value: Any) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, int):
        out.value.int_value = value
    else:
        out.value.string_value = value
    return out


def logs(n: int, service: str = "api", attrs: dict[str, Any] | None = None,
         resource: dict[str, Any] | None = None, step: int = 1) -> Batch:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", service))
    for k, v in (resource or {}).items():
        rl.resource.attributes.append(kv(k, v))
    sl = rl.scope_logs.add()
    sl.scope.name = "app"
    for i in range(n):
        lr = sl.log_records.add()
        lr.time_unix_nano = T0 + i * step
        lr.severity_text, lr.severity_number = "INFO", 9
        lr.body.string_value = f"message {i}"
        lr.attributes.append(kv("n", i))
        for k, v in (attrs or {}).items():
            lr.attributes.append(kv(k, v))
        if i == 0:
            lr.trace_id, lr.span_id = TRACE, SPAN
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def exporter(tel: Telemetry | None = None, **config: Any) -> ElasticsearchExporter:
    cfg = ElasticsearchExporterConfig.model_validate({
        "endpoint": "http://127.0.0.1:1", "timeout": "2s",
        "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False},
        **config})
    exp = factory.create(exporter_settings(ID, telemetry=tel or Telemetry()), cfg)
    assert isinstance(exp, ElasticsearchExporter)
    return exp


def pairs(docs: list[bytes]) -> list[tuple[Any, Any]]:
    out = []
    for d in docs:
        action, doc, rest = d.split(b"\n")
        assert rest == b""
        out.append((orjson.loads(action), orjson.loads(doc)))
    return out


def metric(tel: Telemetry, name: str, **labels: str) -> float | None:
    return tel.registry.get_sample_value(name, {"exporter": ID, **labels})


# --- config and url -----------------------------------------------------------------


def test_urls_and_victorialogs_params() -> None:
    assert exporter(endpoint="http://es:9200").url == "http://es:9200/_bulk"
    assert exporter(endpoint="http://es:9200/_bulk").url == "http://es:9200/_bulk"
    vl = exporter(endpoint="http://vl:9428/insert/elasticsearch/", mapping="ecs",
                  victorialogs={"stream_fields": ["service.name", "host.name"],
                                "extra_fields": {"env": "ci"}},
                  params={"debug": "0"})
    parts = urlsplit(vl.url)
    assert parts.path == "/insert/elasticsearch/_bulk"
    assert parse_qs(parts.query) == {"_msg_field": ["message"], "_time_field": ["@timestamp"],
                                     "_stream_fields": ["service.name,host.name"],
                                     "extra_fields": ["env=ci"], "debug": ["0"]}
    otel = exporter(endpoint="http://vl:9428/insert/elasticsearch", victorialogs={})
    assert parse_qs(urlsplit(otel.url).query) == {"_msg_field": ["body"],
                                                  "_time_field": ["@timestamp"]}


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        ElasticsearchExporterConfig.model_validate({"endpoint": "es:9200"})
    with pytest.raises(ValidationError, match="params"):
        ElasticsearchExporterConfig.model_validate({"endpoint": "http://es/_bulk?x=1"})
    with pytest.raises(ValidationError, match="mapping"):
        ElasticsearchExporterConfig.model_validate({"endpoint": "http://es", "mapping": "x"})


# --- documents ----------------------------------------------------------------------


def test_otel_mapping_into_a_data_stream() -> None:
    exp = exporter()
    docs = pairs(exp.documents(logs(2, resource={"host.name": "h1"}).message))
    assert docs[0] == ({"create": {"_index": "logs-generic-default"}}, {
        "@timestamp": TS0, "body": "message 0", "severity_text": "INFO",
        "severity_number": 9, "trace_id": TRACE.hex(), "span_id": SPAN.hex(),
        "scope": {"name": "app"}, "attributes": {"n": 0},
        "resource": {"attributes": {"service.name": "api", "host.name": "h1"}},
        "data_stream": {"type": "logs", "dataset": "generic", "namespace": "default"}})
    assert docs[1][1]["@timestamp"] == "2023-11-14T22:13:20.123456790Z"
    assert "trace_id" not in docs[1][1]


def test_ecs_mapping() -> None:
    exp = exporter(mapping="ecs", data_stream={"dataset": "app", "namespace": "prod"})
    batch = logs(1, attrs={"http.request.method": "GET"},
                 resource={"host.name": "h1", "service.instance.id": "i-1",
                           "k8s.pod.name": "p-1", "custom.key": "c"})
    (action, doc), = pairs(exp.documents(batch.message))
    assert action == {"create": {"_index": "logs-app-prod"}}
    assert doc == {
        "@timestamp": TS0, "message": "message 0", "log.level": "INFO", "event.severity": 9,
        "trace.id": TRACE.hex(), "span.id": SPAN.hex(), "log.logger": "app",
        "service.name": "api", "host.name": "h1", "service.node.name": "i-1",
        "kubernetes.pod.name": "p-1", "custom.key": "c", "n": 0,
        "http.request.method": "GET", "data_stream.type": "logs",
        "data_stream.dataset": "app", "data_stream.namespace": "prod"}


def test_raw_mapping_into_a_dated_index() -> None:
    exp = exporter(mapping="raw", mode="index", index="otelpipe-%Y.%m.%d")
    day = 86_400 * 10**9
    docs = pairs(exp.documents(logs(2, step=day).message))
    assert docs == [
        ({"create": {"_index": "otelpipe-2023.11.14"}}, {
            "@timestamp": TS0, "severity_text": "INFO", "severity_number": 9,
            "body": "message 0", "trace_id": TRACE.hex(), "span_id": SPAN.hex(),
            "scope.name": "app", "service.name": "api", "n": 0}),
        ({"create": {"_index": "otelpipe-2023.11.15"}}, {
            "@timestamp": "2023-11-15T22:13:20.123456789Z", "severity_text": "INFO",
            "severity_number": 9, "body": "message 1", "scope.name": "app",
            "service.name": "api", "n": 1}),
    ]
    fixed = exporter(mode="index", index="fixed")
    assert pairs(fixed.documents(logs(1).message))[0][0] == {"create": {"_index": "fixed"}}


def test_data_stream_names_from_attributes() -> None:
    exp = exporter()
    batch = logs(1, attrs={"data_stream.dataset": "nginx"},
                 resource={"data_stream.namespace": "edge"})
    (action, doc), = pairs(exp.documents(batch.message))
    assert action == {"create": {"_index": "logs-nginx-edge"}}
    assert doc["data_stream"] == {"type": "logs", "dataset": "nginx", "namespace": "edge"}


def test_structured_body_is_json_text_in_otel_and_kept_in_raw() -> None:
    req = ExportLogsServiceRequest()
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    lr.time_unix_nano = T0
    lr.body.kvlist_value.values.append(kv("a", 1))
    (_, otel), = pairs(exporter().documents(req))
    assert otel["body"] == '{"a":1}'
    (_, raw), = pairs(exporter(mapping="raw").documents(req))
    assert raw["body"] == {"a": 1}


# --- bulk responses -----------------------------------------------------------------


def item(status: int, error: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"_index": "logs-generic-default", "status": status}
    if error:
        res["error"] = {"type": error, "reason": f"{error} happened"}
    return {"create": res}


def bulk(*items: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    errors = any(not 200 <= next(iter(i.values()))["status"] < 300 for i in items)
    return 200, {}, orjson.dumps({"took": 1, "errors": errors, "items": list(items)})


@dataclass
class BulkEndpoint:
    """Answers scripted responses; by default every document of a request is created."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[list[dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def bodies(self, i: int) -> list[str]:
        return [d["body"] for d in self.requests[i]]


@pytest_asyncio.fixture
async def es() -> AsyncIterator[BulkEndpoint]:
    ep = BulkEndpoint()

    async def handle(request: web.Request) -> web.Response:
        lines = (await request.read()).splitlines()
        ep.requests.append([orjson.loads(x) for x in lines[1::2]])
        ep.headers.append(dict(request.headers))
        if ep.answers:
            status, headers, body = ep.answers.pop(0)
        else:
            status, headers, body = bulk(*[item(201) for _ in lines[1::2]])
        return web.Response(status=status, headers=headers, body=body,
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/_bulk", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    ep.url = f"http://127.0.0.1:{port}"
    yield ep
    await runner.cleanup()


async def started(tel: Telemetry, es: BulkEndpoint, **config: Any) -> ElasticsearchExporter:
    exp = exporter(tel, endpoint=es.url, **config)
    await exp.start(None)  # type: ignore[arg-type]
    return exp


async def test_all_created(es: BulkEndpoint, telemetry: Telemetry) -> None:
    exp = await started(telemetry, es, compression="gzip",
                        auth={"bearer_token": "tok"}, headers={"X-A": "b"})
    try:
        assert await exp.send(logs(3)) is None
    finally:
        await exp.shutdown()
    assert es.bodies(0) == ["message 0", "message 1", "message 2"]
    h = es.headers[0]
    assert h["Content-Type"] == "application/x-ndjson"
    assert h["Content-Encoding"] == "gzip"
    assert h["Authorization"] == "Bearer tok"
    assert h["X-A"] == "b"
    assert metric(telemetry, "otelpipe_elasticsearch_exporter_bulk_items_total",
                  outcome="ok") == 3


async def test_only_failed_documents_are_retried(es: BulkEndpoint,
                                                 telemetry: Telemetry) -> None:
    """429/5xx items are sent again (and only they); a mapping error is dropped and
    counted; the documents accepted the first time are never sent again."""
    es.answers.append(bulk(item(201), item(429, "es_rejected_execution_exception"),
                           item(400, "mapper_parsing_exception"), item(503, "unavailable"),
                           item(409, "version_conflict_engine_exception")))
    es.answers.append(bulk(item(201), item(503, "unavailable")))
    exp = await started(telemetry, es, retry_on_failure={
        "enabled": True, "initial_interval": "10ms", "max_interval": "20ms"})
    try:
        await exp.consume(logs(5))
    finally:
        await exp.shutdown()
    assert [es.bodies(i) for i in range(3)] == [
        ["message 0", "message 1", "message 2", "message 3", "message 4"],
        ["message 1", "message 3"],
        ["message 3"],
    ]
    assert metric(telemetry, "otelpipe_exporter_sent_items_total", signal="logs") == 4
    assert metric(telemetry, "otelpipe_exporter_send_failed_items_total", signal="logs") == 1
    assert metric(telemetry, "otelpipe_elasticsearch_exporter_rejected_documents_total",
                  reason="mapper_parsing_exception") == 1
    assert metric(telemetry, "otelpipe_elasticsearch_exporter_bulk_items_total",
                  outcome="retry") == 3
    assert metric(telemetry, "otelpipe_elasticsearch_exporter_bulk_items_total",
                  outcome="ok") == 4  # 201 and 409, then 201, then 201
    assert not exp._progress  # nothing left behind


async def test_send_raises_retryable_for_the_pending_part(es: BulkEndpoint,
                                                          telemetry: Telemetry) -> None:
    es.answers.append(bulk(item(429, "es_rejected_execution_exception"), item(201)))
    exp = await started(telemetry, es)
    batch = logs(2)
    try:
        with pytest.raises(RetryableError, match="1 of 2 documents") as info:
            await exp.send(batch)
        assert info.value.throttle
        assert await exp.send(batch) is None
        # A new batch object with the same content is a new batch: sent whole.
        assert await exp.send(logs(2)) is None
    finally:
        await exp.shutdown()
    assert [es.bodies(i) for i in range(3)] == [["message 0", "message 1"], ["message 0"],
                                                ["message 0", "message 1"]]


async def test_mapping_errors_only(es: BulkEndpoint, telemetry: Telemetry) -> None:
    es.answers.append(bulk(item(400, "document_parsing_exception"), item(201), item(201)))
    exp = await started(telemetry, es, retry_on_failure={"enabled": True,
                                                         "initial_interval": "10ms"})
    try:
        await exp.consume(logs(3))
    finally:
        await exp.shutdown()
    assert len(es.requests) == 1  # no retry loop
    assert metric(telemetry, "otelpipe_exporter_sent_items_total", signal="logs") == 2
    assert metric(telemetry, "otelpipe_exporter_send_failed_items_total", signal="logs") == 1


async def test_whole_request_4xx_is_permanent(es: BulkEndpoint, telemetry: Telemetry) -> None:
    es.answers.append((403, {}, b'{"error":{"type":"security_exception"},"status":403}'))
    exp = await started(telemetry, es, retry_on_failure={"enabled": True,
                                                         "initial_interval": "10ms"})
    try:
        with pytest.raises(PermanentError, match="HTTP 403"):
            await exp.consume(logs(3))
    finally:
        await exp.shutdown()
    assert len(es.requests) == 1
    assert metric(telemetry, "otelpipe_exporter_send_failed_items_total", signal="logs") == 3
    assert metric(telemetry, "otelpipe_elasticsearch_exporter_rejected_documents_total",
                  reason="http_403") == 3


async def test_whole_request_429_retried_with_retry_after(es: BulkEndpoint,
                                                          telemetry: Telemetry) -> None:
    es.answers.append((429, {"Retry-After": "3"}, b"{}"))
    exp = await started(telemetry, es)
    batch = logs(2)
    try:
        with pytest.raises(RetryableError) as info:
            await exp.send(batch)
        assert info.value.retry_after == 3.0
        assert info.value.throttle
        assert await exp.send(batch) is None
    finally:
        await exp.shutdown()
    assert [es.bodies(i) for i in range(2)] == [["message 0", "message 1"]] * 2


async def test_split_requests_keep_their_progress(es: BulkEndpoint,
                                                  telemetry: Telemetry) -> None:
    """A batch above max_request_bytes goes as several requests; when a later one fails,
    the earlier ones are not sent again."""
    exp = await started(telemetry, es, max_request_bytes=600)
    batch = logs(6)
    doc_size = len(exp.documents(batch.message)[0])
    per_request = max(1, 600 // doc_size)
    es.answers.append(bulk(*[item(201)] * per_request))
    es.answers.append((502, {}, b"bad gateway"))
    try:
        with pytest.raises(RetryableError, match="HTTP 502"):
            await exp.send(batch)
        assert await exp.send(batch) is None
    finally:
        await exp.shutdown()
    sent = [b for r in range(len(es.requests)) for b in es.bodies(r)]
    assert len(es.requests) >= 3
    assert sorted(sent) == sorted([f"message {i}" for i in range(6)]
                                  + es.bodies(1))  # only the refused request twice
    assert es.bodies(0) == [f"message {i}" for i in range(per_request)]


async def test_unreadable_response_retries_everything(es: BulkEndpoint,
                                                      telemetry: Telemetry) -> None:
    es.answers.append((200, {}, b"<html>proxy</html>"))
    exp = await started(telemetry, es)
    batch = logs(2)
    try:
        with pytest.raises(RetryableError, match="unreadable"):
            await exp.send(batch)
        assert await exp.send(batch) is None
    finally:
        await exp.shutdown()
    assert len(es.requests) == 2


async def test_partial_delivery_then_permanent_failure_reports_partial_success(
        es: BulkEndpoint, telemetry: Telemetry) -> None:
    es.answers.append(bulk(item(201), item(503, "unavailable")))
    es.answers.append((400, {}, b'{"error":"bad request"}'))
    exp = await started(telemetry, es, retry_on_failure={"enabled": True,
                                                         "initial_interval": "10ms"})
    try:
        await exp.consume(logs(2))
    finally:
        await exp.shutdown()
    assert metric(telemetry, "otelpipe_exporter_sent_items_total", signal="logs") == 1
    assert metric(telemetry, "otelpipe_exporter_send_failed_items_total", signal="logs") == 1


async def test_connection_refused_is_retryable(telemetry: Telemetry) -> None:
    exp = exporter(telemetry, endpoint=f"http://127.0.0.1:{free_port()}")
    await exp.start(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(RetryableError, match="ClientConnectorError"):
            await exp.send(logs(1))
    finally:
        await exp.shutdown()


@pytest.mark.parametrize(("status", "error"), [(400, PermanentError), (503, RetryableError)])
async def test_credentials_in_the_url_are_basic_auth_and_never_in_errors(
        status: int, error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    async with leaky_backend(status) as backend:
        exp = exporter(endpoint=backend.with_credentials())
        await exp.start(None)  # type: ignore[arg-type]
        try:
            with pytest.raises(error) as exc:
                await exp.send(logs(2))
        finally:
            await exp.shutdown()
    assert backend.authorizations == [basic()]
    assert_no_secret(str(exc.value), caplog.text)
