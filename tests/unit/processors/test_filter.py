from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.connectors.logmetrics import LogMetricsConfig
from pipeline.pdata.batch import Batch
from pipeline.processors.filter import FilterConfig, FilterProcessor, factory
from pipeline.telemetry.metrics import Telemetry
from tests.builders import kv, metrics_request, traces_request
from tests.support import Sink, processor_settings


def make(sink: Sink, signal: Signal, cfg: dict[str, Any],
         telemetry: Telemetry | None = None) -> FilterProcessor:
    settings = processor_settings("filter/x", telemetry=telemetry, next_consumer=sink,
                                  signal=signal)
    proc = factory.create(settings, FilterConfig.model_validate(cfg))
    assert isinstance(proc, FilterProcessor)
    return proc


def dropped(tel: Telemetry, signal: Signal) -> float | None:
    return tel.registry.get_sample_value(
        "otelpipe_processor_dropped_items_total",
        {"processor": "filter/x", "pipeline": signal.value, "signal": signal.value})


def logs_batch() -> Batch:
    req = ExportLogsServiceRequest()
    for svc, env in (("api", "prod"), ("worker", "test")):
        rl = req.resource_logs.add()
        rl.resource.attributes.extend([kv("service.name", svc), kv("env", env)])
        sl = rl.scope_logs.add()
        for i, (sev, text, body) in enumerate([(5, "DEBUG", "cache hit"),
                                               (9, "INFO", "GET /healthz 200"),
                                               (13, "WARN", "slow query"),
                                               (0, "ERROR", "boom")]):
            lr = sl.log_records.add(severity_number=sev, severity_text=text)
            lr.body.string_value = body
            lr.attributes.append(kv("i", i))
            if i == 2:
                lr.attributes.append(kv("env", "canary"))
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def bodies(batch: Batch) -> list[tuple[str, str]]:
    return [(rl.resource.attributes[0].value.string_value, lr.body.string_value)
            for rl in batch.message.resource_logs for sl in rl.scope_logs
            for lr in sl.log_records]


async def test_logs_exclude_by_severity_body_and_attribute() -> None:
    sink, tel = Sink(), Telemetry()
    proc = make(sink, Signal.LOGS, {"logs": {"exclude": [
        {"not": {"severity_at_least": "INFO"}},
        {"field": "body", "matches": "^GET /healthz"},
        # `attribute:` reads the record's attribute, else the resource's.
        {"attribute": "env", "equals": "test"},
    ]}}, tel)
    await proc.consume(logs_batch())
    assert bodies(sink.batches[0]) == [("api", "slow query"), ("api", "boom"),
                                       ("worker", "slow query")]
    assert dropped(tel, Signal.LOGS) == 5
    assert sink.batches[0].items == 3


async def test_logs_include_then_exclude_and_resource_attribute() -> None:
    sink = Sink()
    proc = make(sink, Signal.LOGS, {"logs": {
        "include": {"resource_attribute": "service.name", "equals": "worker"},  # one, no list
        "exclude": [{"attribute": "i", "in": [0, "1"]}]}})
    await proc.consume(logs_batch())
    assert bodies(sink.batches[0]) == [("worker", "slow query"), ("worker", "boom")]


async def test_empty_batch_is_not_forwarded() -> None:
    sink, tel = Sink(), Telemetry()
    proc = make(sink, Signal.LOGS, {"logs": {"exclude": [{"field": "body", "exists": True}]}},
                tel)
    await proc.consume(logs_batch())
    assert sink.batches == []
    assert dropped(tel, Signal.LOGS) == 8


async def test_nothing_dropped_keeps_the_bytes() -> None:
    batch = logs_batch()
    raw = batch.to_bytes()
    sink = Sink()
    await make(sink, Signal.LOGS, {"logs": {"exclude": [{"field": "body", "equals": "x"}]}}
               ).consume(batch)
    assert sink.batches == [batch]
    assert batch.has_raw
    assert batch.to_bytes() is raw


async def test_signal_without_section_passes() -> None:
    batch = logs_batch()
    sink = Sink()
    await make(sink, Signal.LOGS, {"traces": {"exclude": [{"field": "name", "equals": "x"}]}}
               ).consume(batch)
    assert sink.batches == [batch]
    assert not batch.decoded


async def test_spans_by_name_kind_status_duration() -> None:
    req = traces_request(6)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].kind = 3  # client
    spans[2].status.code = 1  # ok
    spans[3].end_time_unix_nano = spans[3].start_time_unix_nano + 50_000_000  # 50 ms
    sink = Sink()
    proc = make(sink, Signal.TRACES, {"traces": {"exclude": [
        {"field": "name", "equals": "span-0"},
        {"field": "kind", "equals": "client"},
        {"field": "status_code", "equals": "ok"},
        {"all": [{"field": "duration_ms", "gt": 10}, {"attribute": "http.route",
                                                      "matches": "/r/3$"}]},
    ]}})
    await proc.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    out = sink.batches[0].message.resource_spans[0].scope_spans[0].spans
    assert [sp.name for sp in out] == ["span-4", "span-5"]


async def test_metrics_by_name_and_point_attribute() -> None:
    req = metrics_request([3, 2, 2])  # metric-0 gauge, metric-1 sum, metric-2 histogram
    for m in req.resource_metrics[0].scope_metrics[0].metrics:
        for i, dp in enumerate(getattr(m, m.WhichOneof("data")).data_points):
            dp.attributes.append(kv("shard", i))
    sink, tel = Sink(), Telemetry()
    proc = make(sink, Signal.METRICS, {"metrics": {
        "include": [{"field": "type", "in": ["gauge", "sum"]}],
        "exclude": [{"all": [{"field": "name", "equals": "metric-0"},
                             {"attribute": "shard", "gte": 1}]},
                    {"field": "name", "equals": "metric-1"}]}}, tel)
    await proc.consume(Batch(Signal.METRICS, raw=req.SerializeToString()))
    metrics = sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics
    assert [(m.name, len(m.gauge.data_points)) for m in metrics] == [("metric-0", 1)]
    assert dropped(tel, Signal.METRICS) == 6


async def test_metric_level_conditions_decide_once_per_metric() -> None:
    sink = Sink()
    proc = make(sink, Signal.METRICS, {"metrics": {"exclude": {"field": "name",
                                                               "matches": "-[12]$"}}})
    await proc.consume(Batch(Signal.METRICS, message=metrics_request([2, 3, 4, 1])))
    metrics = sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics
    assert [m.name for m in metrics] == ["metric-0", "metric-3"]


@pytest.mark.parametrize(("cfg", "error"), [
    ({"traces": {"exclude": [{"field": "body", "equals": "x"}]}}, "field 'body' does not exist"),
    ({"metrics": {"exclude": [{"severity_at_least": "WARN"}]}}, "logs only"),
    ({"logs": {"exclude": [{"field": "name", "equals": "x"}]}}, "does not exist for logs"),
    ({"logs": {"exclude": [{"attribute": "a", "matches": "("}]}}, "invalid regular expression"),
    ({"logs": {"drop": []}}, "Extra inputs"),
])
def test_config_errors(cfg: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        FilterConfig.model_validate(cfg)


def test_logmetrics_still_accepts_only_log_fields() -> None:
    with pytest.raises(ValidationError, match="not a log record field"):
        LogMetricsConfig.model_validate(
            {"metrics": [{"name": "m", "when": {"all": [{"field": "name", "equals": "x"}]}}]})
