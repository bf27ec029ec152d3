"""kafka exporter and receiver in one process against the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from pipeline.component import Host, Kind, PipelineInfo, Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters.kafka import KafkaExporter, KafkaExporterConfig
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlpjson import encode_request
from pipeline.receivers.kafka.config import KafkaReceiverConfig
from pipeline.receivers.kafka.receiver import KafkaReceiver
from pipeline.telemetry.metrics import Telemetry
from tests.builders import log_bodies, span_names, tagged_logs_request, tagged_traces_request
from tests.kafkadata import read_topic
from tests.support import Sink, aeventually, exporter_settings, receiver_settings


class NullHost(Host):
    def components(self) -> Mapping[tuple[Kind, Any], Any]:
        return {}

    def pipelines(self) -> Mapping[str, PipelineInfo]:
        return {}

    def started(self) -> bool:
        return True


HOST = NullHost()


def make_exporter(bootstrap: str, telemetry: Telemetry | None = None, **cfg: Any) -> KafkaExporter:
    config = KafkaExporterConfig.model_validate({"brokers": [bootstrap], **cfg})
    return KafkaExporter(exporter_settings("kafka", telemetry), config)


def make_receiver(bootstrap: str, sinks: dict[Signal, Any], telemetry: Telemetry | None = None,
                  **cfg: Any) -> KafkaReceiver:
    config = KafkaReceiverConfig.model_validate(
        {"brokers": [bootstrap], "commit_interval": "100ms", **cfg})
    return KafkaReceiver(receiver_settings("kafka", telemetry, consumers=sinks), config)


def sample(t: Telemetry, name: str, **labels: str) -> float:
    return t.registry.get_sample_value(name, labels) or 0.0


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return {p: await c.committed(TopicPartition(topic, p)) for p in range(4)}
    finally:
        await c.stop()


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
async def test_round_trip_exact_counts(kafka_bootstrap: str, kafka_topic: Any,
                                       encoding: str) -> None:
    topic = await kafka_topic("spans")
    t_exp, t_rec = Telemetry(), Telemetry()
    exp = make_exporter(kafka_bootstrap, t_exp, topic=topic, encoding=encoding)
    await exp.start(HOST)
    sent: list[str] = []
    n_batches = 40
    for i in range(n_batches):
        req = tagged_traces_request(resources=2, traces_per_resource=3, spans_per_trace=4,
                                    tag=f"b{i}-")
        sent.extend(span_names(req))
        await exp.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    await exp.shutdown()
    assert sample(t_exp, "otelpipe_kafka_exporter_produced_records_total",
                  exporter="kafka", topic=topic) == n_batches
    assert sample(t_exp, "otelpipe_exporter_sent_items_total", exporter="kafka",
                  signal="traces") == len(sent)

    sink = Sink()
    rec = make_receiver(kafka_bootstrap, {Signal.TRACES: sink}, t_rec, group_id=topic,
                        traces={"topics": [topic]}, encoding=encoding)
    await rec.start(HOST)
    try:
        await aeventually(lambda: sink.items >= len(sent), timeout=60, what="every span")
        await asyncio.sleep(0.5)  # anything extra would be a duplicate
    finally:
        await rec.shutdown()
    got = [n for b in sink.batches for n in span_names(b.message)]
    assert len(got) == len(sent) == 40 * 24
    assert sorted(got) == sorted(sent)  # each exactly once
    assert sample(t_rec, "otelpipe_kafka_receiver_consumed_records_total",
                  receiver="kafka", topic=topic) == n_batches
    assert sample(t_rec, "otelpipe_receiver_accepted_items_total", receiver="kafka",
                  transport="kafka", signal="traces") == len(sent)
    # every offset was committed, and the lag is zero
    offsets = await committed(kafka_bootstrap, topic, topic)
    on_topic = await read_topic(kafka_bootstrap, topic)
    for p in range(4):
        assert (offsets[p] or 0) == sum(1 for r in on_topic if r.partition == p)
        assert sample(t_rec, "otelpipe_kafka_receiver_consumer_lag", receiver="kafka",
                      topic=topic, partition=str(p)) == 0


async def test_proto_pass_through_puts_the_received_bytes_on_the_topic(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("raw")
    exp = make_exporter(kafka_bootstrap, topic=topic, producer={"compression": "zstd"})
    await exp.start(HOST)
    raws = [tagged_traces_request(resources=i % 3 + 1, tag=f"{i}-").SerializeToString()
            for i in range(10)]
    for raw in raws:
        batch = Batch(Signal.TRACES, raw=raw, metadata={"tenant": "acme"})
        await exp.consume(batch)
        assert not batch.decoded
    await exp.shutdown()
    records = await read_topic(kafka_bootstrap, topic)
    assert sorted(r.value for r in records) == sorted(raws)  # bytes in == bytes on the topic
    assert all(dict(r.headers) == {"tenant": b"acme"} for r in records)


async def test_partition_traces_by_id_one_partition_per_trace(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("bytrace")
    exp = make_exporter(kafka_bootstrap, topic=topic, partition_traces_by_id=True)
    await exp.start(HOST)
    reqs = [tagged_traces_request(resources=2, traces_per_resource=10, spans_per_trace=3)
            for _ in range(4)]
    # the same traces again in later requests (spans of a trace arrive in pieces)
    for i in range(1, 4):
        extra = tagged_traces_request(resources=1, traces_per_resource=5, spans_per_trace=2)
        for j, sp in enumerate(extra.resource_spans[0].scope_spans[0].spans):
            sp.trace_id = reqs[0].resource_spans[j % 2].scope_spans[0].spans[3 * j].trace_id
        reqs.append(extra)
        del i
    n_spans = 0
    for req in reqs:
        n_spans += len(span_names(req))
        await exp.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    await exp.shutdown()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    partitions: dict[bytes, set[int]] = {}
    seen = 0
    for r in await read_topic(kafka_bootstrap, topic):
        req = ExportTraceServiceRequest.FromString(r.value)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    partitions.setdefault(sp.trace_id, set()).add(r.partition)
                    assert r.key == sp.trace_id.hex().encode()
                    seen += 1
    assert seen == n_spans
    assert len(partitions) == 80
    assert all(len(p) == 1 for p in partitions.values())
    assert len({next(iter(p)) for p in partitions.values()}) > 1  # spread over partitions


async def test_refused_records_are_retried_in_order_and_not_committed(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("refuse")
    exp = make_exporter(kafka_bootstrap, topic=topic)
    await exp.start(HOST)
    for i in range(30):
        req = tagged_logs_request(records=2, tag=f"{i:03d}-")
        await exp.consume(Batch(Signal.LOGS, message=req))
    await exp.shutdown()

    sink = Sink()
    sink.refuse = RetryableError("pipeline is full", retry_after=0.05)
    t = Telemetry()
    rec = make_receiver(kafka_bootstrap, {Signal.LOGS: sink}, t, group_id=topic,
                        logs={"topics": [topic]}, backoff={"initial_interval": "20ms",
                                                           "max_interval": "100ms"})
    await rec.start(HOST)
    try:
        await aeventually(lambda: sample(t, "otelpipe_receiver_refused_items_total",
                                         receiver="kafka", transport="kafka",
                                         signal="logs") >= 20, timeout=30, what="refusals")
        await asyncio.sleep(0.5)
        assert await committed(kafka_bootstrap, topic, topic) == dict.fromkeys(range(4))
        sink.refuse = None
        await aeventually(lambda: sink.items >= 60, timeout=30,
                          what="all records after the refusals")
        await asyncio.sleep(0.5)
    finally:
        await rec.shutdown()
    assert sink.items == 60
    # order within a partition is the produce order (sequence numbers increase)
    by_partition: dict[int, list[str]] = {}
    records = await read_topic(kafka_bootstrap, topic)
    where = {log_bodies(_parse_logs(r.value))[0][:3]: r.partition for r in records}
    for b in sink.batches:
        first = log_bodies(b.message)[0][:3]
        by_partition.setdefault(where[first], []).append(first)
    for seq in by_partition.values():
        assert seq == sorted(seq)
    offsets = await committed(kafka_bootstrap, topic, topic)
    assert sum(v or 0 for v in offsets.values()) == 30


def _parse_logs(raw: bytes) -> Any:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    return ExportLogsServiceRequest.FromString(raw)


class RejectSome(Sink):
    """Rejects (permanently) batches whose first log body starts with `bad`."""

    async def consume(self, batch: Any) -> None:
        if log_bodies(batch.message)[0].startswith("bad"):
            raise PermanentError("rejected by the backend")
        await super().consume(batch)


async def test_garbage_and_wrong_encoding_are_counted_skipped_and_dead_lettered(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    from aiokafka import AIOKafkaProducer

    topic = await kafka_topic("mixed")
    dlq = await kafka_topic("dlq")
    good = [tagged_logs_request(records=3, tag=f"good{i}-").SerializeToString() for i in range(20)]
    bad: list[tuple[bytes, str]] = [
        (b"\x00\xff garbage \xfe" * 10, "decode_error"),
        # JSON on a protobuf topic
        (encode_request(tagged_logs_request(records=2)), "decode_error"),
        (tagged_traces_request().SerializeToString(), "invalid_ids"),  # spans on a logs topic
        (b"", "empty"),
        (tagged_logs_request(records=1, tag="bad").SerializeToString(), "rejected"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        # the bad records sit between good ones on one partition
        for i, raw in enumerate(good):
            await producer.send_and_wait(topic, raw, partition=i % 2)
            if i < len(bad):
                await producer.send_and_wait(topic, bad[i][0], partition=i % 2)
    finally:
        await producer.stop()

    sink = RejectSome()
    t = Telemetry()
    rec = make_receiver(kafka_bootstrap, {Signal.LOGS: sink}, t, group_id=topic,
                        logs={"topics": [topic]}, dead_letter_topic=dlq)
    await rec.start(HOST)
    try:
        await aeventually(lambda: sink.items >= 60, timeout=30, what="the good records")
        await aeventually(lambda: sum(
            (committed_ or 0) for committed_ in [sample(
                t, "otelpipe_kafka_receiver_committed_offset", receiver="kafka", topic=topic,
                partition=str(p)) for p in range(2)]) >= 25, timeout=10,
            what="commits past the bad records")
    finally:
        await rec.shutdown()
    assert sink.items == 60
    assert len(sink.batches) == 20
    reasons: dict[str, int] = {}
    for _, reason in bad:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in reasons.items():
        assert sample(t, "otelpipe_kafka_receiver_undecodable_records_total", receiver="kafka",
                      topic=topic, reason=reason) == n, reason
    dead = await read_topic(kafka_bootstrap, dlq)
    assert sorted(r.value for r in dead) == sorted(v for v, _ in bad)
    for r in dead:
        h = dict(r.headers)
        assert h["otelpipe.dlq.topic"] == topic.encode()
        assert dict(bad)[r.value].encode() == h["otelpipe.dlq.reason"]
