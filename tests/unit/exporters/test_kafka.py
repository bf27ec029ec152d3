"""kafka exporter without a broker: config, encoding, partitioning, splitting.

Delivery against a real broker is in tests/integration/test_kafka*.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters.kafka import KafkaExporter, KafkaExporterConfig, factory, resource_hash
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlp import REQUEST_TYPES
from pipeline.pdata.otlpjson import decode_request
from tests.kafkadata import log_bodies, logs, metrics, span_names, traces
from tests.support import exporter_settings


def exporter(**cfg: Any) -> KafkaExporter:
    config = KafkaExporterConfig.model_validate(cfg)
    return KafkaExporter(exporter_settings("kafka"), config)


def parse(signal: Signal, payload: bytes) -> Any:
    msg = REQUEST_TYPES[signal]()
    msg.ParseFromString(payload)
    return msg


def test_defaults_ack_only_after_the_broker() -> None:
    c = KafkaExporterConfig()
    assert c.brokers == ["localhost:9092"]
    assert c.encoding == "otlp_proto"
    assert c.sending_queue.enabled is False
    assert c.retry_on_failure.enabled is False
    assert c.producer.required_acks == -1
    assert factory.signals == frozenset(Signal)


@pytest.mark.parametrize("bad", [
    {"brokers": ["nohost"]},
    {"brokers": []},
    {"encoding": "jaeger"},
    {"producer": {"compression": "brotli"}},
    {"producer": {"required_acks": 2}},
    {"sasl": {"mechanism": "GSSAPI", "username": "u", "password": "p"}},
    {"tls": {"insecure": True}},
    {"topicc": "x"},
])
def test_invalid_config(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KafkaExporterConfig.model_validate(bad)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_codec_is_available(codec: str) -> None:
    exp = exporter(producer={"compression": codec})
    kw = exp._producer_kwargs()
    assert kw["compression_type"] == (None if codec == "none" else codec)


def test_sasl_and_tls_kwargs_and_secret_not_in_repr(tmp_path: Any) -> None:
    c = KafkaExporterConfig.model_validate(
        {"sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password": "s3cret"},
         "tls": {"insecure_skip_verify": True}})
    assert "s3cret" not in repr(c)
    assert "s3cret" not in str(c.model_dump())
    kw = KafkaExporter(exporter_settings("kafka"), c)._producer_kwargs()
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_password"] == "s3cret"
    assert kw["ssl_context"].check_hostname is False
    kw = exporter(sasl={"username": "u", "password": "p"})._producer_kwargs()
    assert kw["security_protocol"] == "SASL_PLAINTEXT"
    assert kw["sasl_mechanism"] == "PLAIN"
    assert exporter()._producer_kwargs()["security_protocol"] == "PLAINTEXT"
    assert exporter(producer={"required_acks": "all"})._producer_kwargs()["acks"] == "all"
    assert exporter(producer={"required_acks": 1})._producer_kwargs()["acks"] == 1


def test_proto_pass_through_forwards_the_received_bytes() -> None:
    raw = traces(resources=2).SerializeToString()
    batch = Batch(Signal.TRACES, raw=raw)
    msgs = exporter().messages(batch)
    assert msgs == [("otlp_spans", None, raw)]
    assert msgs[0][2] is raw  # the same object: nothing was re-encoded
    assert not batch.decoded  # and nothing decoded


@pytest.mark.parametrize(("signal", "topic"), [(Signal.TRACES, "otlp_spans"),
                                                (Signal.LOGS, "otlp_logs"),
                                                (Signal.METRICS, "otlp_metrics")])
def test_default_topic_by_signal(signal: Signal, topic: str) -> None:
    makers: dict[Signal, Any] = {Signal.TRACES: traces, Signal.LOGS: logs,
                                 Signal.METRICS: metrics}
    req = makers[signal]()
    batch = Batch(signal, raw=req.SerializeToString())
    assert exporter().messages(batch)[0][0] == topic
    assert exporter(topic="mine").messages(batch)[0][0] == "mine"


def test_json_encoding() -> None:
    req = traces()
    msgs = exporter(encoding="otlp_json").messages(Batch(Signal.TRACES, message=req))
    assert len(msgs) == 1
    assert b'"traceId":"' + req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex().encode() \
        in msgs[0][2]
    assert decode_request(Signal.TRACES, msgs[0][2]) == req


def test_partition_traces_by_id_keys_every_span_of_a_trace_alike() -> None:
    req = traces(resources=3, traces_per_resource=4, spans_per_trace=3)
    # the same trace spread over two resources
    shared = req.resource_spans[0].scope_spans[0].spans[0].trace_id
    req.resource_spans[2].scope_spans[0].spans[0].trace_id = shared
    msgs = exporter(partition_traces_by_id=True).messages(Batch(Signal.TRACES, message=req))
    assert len(msgs) == 12  # 12 distinct trace ids
    seen: dict[bytes, list[str]] = {}
    for _topic, key, payload in msgs:
        sub = parse(Signal.TRACES, payload)
        ids = {sp.trace_id for rs in sub.resource_spans for ss in rs.scope_spans
               for sp in ss.spans}
        assert len(ids) == 1
        tid = ids.pop()
        assert key is not None
        assert key == tid.hex().encode()
        seen.setdefault(key, []).extend(span_names(sub))
    assert sorted(n for ns in seen.values() for n in ns) == sorted(span_names(req))
    assert len(seen[shared.hex().encode()]) == 4  # kept its resources apart
    shared_req = parse(Signal.TRACES, next(p for _, k, p in msgs if k == shared.hex().encode()))
    assert len(shared_req.resource_spans) == 2


def test_partition_logs_by_resource_attributes() -> None:
    attrs = [{"service.name": "a", "host": "1"}, {"host": "1", "service.name": "a"},
             {"service.name": "b"}]
    req = logs(resources=3, records=2, resource_attrs=attrs)
    msgs = exporter(partition_logs_by_resource_attributes=True).messages(
        Batch(Signal.LOGS, message=req))
    assert len(msgs) == 3  # one message per resource
    keys = [k for _, k, _ in msgs]
    assert keys[0] == keys[1] != keys[2]  # attribute order does not matter
    assert keys[0] == resource_hash(req.resource_logs[0].resource)
    bodies = [b for _, _, p in msgs for b in log_bodies(parse(Signal.LOGS, p))]
    assert bodies == log_bodies(req)


def test_topic_from_attribute_groups_resources() -> None:
    req = traces(resources=1, resource_attrs={"kafka.topic": "team-a"})
    req.MergeFrom(traces(resources=1, tag="b", resource_attrs={"kafka.topic": "team-b"}))
    req.MergeFrom(traces(resources=1, tag="c"))
    msgs = exporter(topic_from_attribute="kafka.topic").messages(Batch(Signal.TRACES, message=req))
    topics = {t: span_names(parse(Signal.TRACES, p)) for t, _, p in msgs}
    assert set(topics) == {"team-a", "team-b", "otlp_spans"}
    assert all(n.startswith("b") for n in topics["team-b"])
    assert all(n.startswith("c") for n in topics["otlp_spans"])


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_oversize_request_is_split_by_resource_then_item(encoding: str) -> None:
    req = traces(resources=4, traces_per_resource=5, spans_per_trace=10, attrs=5)
    raw = req.SerializeToString()
    limit = len(raw) // 7
    exp = exporter(encoding=encoding, producer={"max_message_bytes": limit})
    msgs = exp.messages(Batch(Signal.TRACES, raw=raw))
    assert len(msgs) >= 7
    names = []
    for _, _, payload in msgs:
        assert len(payload) <= limit
        sub = (parse(Signal.TRACES, payload) if encoding == "otlp_proto"
               else decode_request(Signal.TRACES, payload))
        # a resource's data never mixes with another's inside one message
        # beyond what fits; every part keeps its resource
        assert all(rs.resource.attributes for rs in sub.resource_spans)
        names.extend(span_names(sub))
    assert sorted(names) == sorted(span_names(req))


def test_a_single_item_over_the_limit_is_rejected() -> None:
    req = traces(resources=1, traces_per_resource=1, spans_per_trace=1, attrs=50)
    exp = exporter(producer={"max_message_bytes": 200})
    with pytest.raises(PermanentError):
        exp.messages(Batch(Signal.TRACES, message=req))


async def test_unreachable_broker_is_retryable() -> None:
    from tests.support import free_port

    exp = exporter(brokers=[f"127.0.0.1:{free_port()}"], timeout="2s")
    with pytest.raises(RetryableError):
        await exp.consume(Batch(Signal.TRACES, message=traces()))
    await exp.shutdown()
