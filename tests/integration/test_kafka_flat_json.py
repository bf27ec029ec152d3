"""`encoding: json` on the kafka exporter: one flat JSON object per log record or span,
written to and read back from the real broker."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup
from tests.builders import tagged_logs_request, tagged_traces_request
from tests.integration.test_kafka import HOST, make_exporter
from tests.kafkadata import read_topic


async def test_flat_json_logs_one_record_each(kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("flatlogs")
    exp = make_exporter(kafka_bootstrap, topic=topic, encoding="json")
    await exp.start(HOST)
    req = tagged_logs_request(resources=2, records=5)
    await exp.consume(Batch(Signal.LOGS, raw=req.SerializeToString()))
    # Native records (what filelog and jsonlogs produce) take the same path.
    group = LogGroup.from_lines([b"line one", b"line two"], {"log.file.name": "app.log"},
                                1_700_000_000_000_000_000, resource={"service.name": "files"})
    await exp.consume(Batch(Signal.LOGS, logs=[group]))
    await exp.shutdown()
    values = [orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, topic)]
    assert len(values) == 12
    by_body = {v["body"]: v for v in values}
    assert set(by_body) == {f"r{r}l{i}" for r in range(2) for i in range(5)} | {
        "line one", "line two"}
    assert by_body["r1l3"]["service.name"] == "svc-1"
    assert by_body["r1l3"]["severity_text"] == "INFO"
    assert by_body["r1l3"]["time"] == "2023-11-14T22:13:20.000000003Z"
    assert by_body["line two"]["service.name"] == "files"
    assert by_body["line two"]["log.file.name"] == "app.log"


async def test_flat_json_spans_keyed_by_trace_id(kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("flatspans")
    exp = make_exporter(kafka_bootstrap, topic=topic, encoding="json",
                        partition_traces_by_id=True)
    await exp.start(HOST)
    req = tagged_traces_request(resources=2, traces_per_resource=4, spans_per_trace=3)
    await exp.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    await exp.shutdown()
    records = await read_topic(kafka_bootstrap, topic)
    assert len(records) == 24
    partitions: dict[str, set[int]] = {}
    for r in records:
        span = orjson.loads(r.value)
        assert r.key.decode() == span["trace_id"]
        assert span["kind"] == "server"
        assert span["duration_ms"] == 100.0
        partitions.setdefault(span["trace_id"], set()).add(r.partition)
    assert len(partitions) == 8
    assert all(len(p) == 1 for p in partitions.values())


async def test_flat_json_oversized_record_rejected_rest_sent(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("flatbig")
    exp = make_exporter(kafka_bootstrap, topic=topic, encoding="json",
                        producer={"max_message_bytes": 2048})
    await exp.start(HOST)
    req = tagged_logs_request(records=3)
    req.resource_logs[0].scope_logs[0].log_records[1].body.string_value = "x" * 5000
    await exp.consume(Batch(Signal.LOGS, raw=req.SerializeToString()))
    await exp.shutdown()
    bodies = [orjson.loads(r.value)["body"] for r in await read_topic(kafka_bootstrap, topic)]
    assert sorted(bodies) == ["r0l0", "r0l2"]
    failed = exp.settings.telemetry.registry.get_sample_value(
        "otelpipe_exporter_send_failed_items_total", {"exporter": "kafka", "signal": "logs"})
    assert failed == 1.0
