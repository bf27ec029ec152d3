"""kafka receiver without a broker: config, topic routing, record decoding.

Consuming from a real broker (commits, rebalances, crashes) is in
tests/integration/test_kafka*.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.pdata.otlpjson import encode_request
from pipeline.receivers.kafka import factory
from pipeline.receivers.kafka.config import KafkaReceiverConfig
from pipeline.receivers.kafka.receiver import KafkaReceiver
from tests.kafkadata import logs, metrics, traces
from tests.support import Sink, receiver_settings


def receiver(signals: tuple[Signal, ...] = (Signal.TRACES,), **cfg: Any) -> KafkaReceiver:
    config = KafkaReceiverConfig.model_validate(cfg)
    return KafkaReceiver(receiver_settings("kafka",
                                           consumers={s: Sink() for s in signals}), config)


def record(topic: str, value: bytes | None, headers: Any = ()) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=topic, partition=0, offset=0, timestamp=0, timestamp_type=0,
                          key=None, value=value, checksum=None, serialized_key_size=0,
                          serialized_value_size=len(value or b""), headers=tuple(headers))


def test_defaults() -> None:
    c = KafkaReceiverConfig()
    assert c.group_id == "otelpipe"
    assert c.initial_offset == "earliest"
    assert c.encoding == "otlp_proto"
    assert factory.signals == frozenset(Signal)


@pytest.mark.parametrize("bad", [
    {"traces": {"topics": ["a"], "topic_pattern": "a.*"}},
    {"traces": {"topics": []}},
    {"traces": {"topic_pattern": "("}},
    {"initial_offset": "newest"},
    {"traces": {"topics": ["x"]}, "logs": {"topics": ["x"]}},
    {"topics": ["x"]},
])
def test_invalid_config(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KafkaReceiverConfig.model_validate(bad)


def test_only_the_signals_of_its_pipelines_are_subscribed() -> None:
    r = receiver((Signal.TRACES, Signal.LOGS))
    assert r.route.subscription() == {"topics": ["otlp_logs", "otlp_spans"]}
    r = receiver((Signal.METRICS,), metrics={"topics": ["m1", "m2"]})
    assert r.route.subscription() == {"topics": ["m1", "m2"]}


def test_patterns_and_names_combine_into_one_subscription() -> None:
    r = receiver((Signal.TRACES, Signal.LOGS), logs={"topic_pattern": "logs-.*"})
    pattern = r.route.subscription()["pattern"]
    assert re.match(pattern, "otlp_spans")
    assert re.match(pattern, "logs-team-a")
    assert not re.match(pattern, "otlp_spans2")
    assert r.route.lookup("logs-team-a") == (Signal.LOGS, "otlp_proto")
    assert r.route.lookup("otlp_spans") == (Signal.TRACES, "otlp_proto")
    assert r.route.lookup("other") is None


def test_decode_proto_keeps_bytes_and_headers_become_metadata() -> None:
    raw = traces().SerializeToString()
    batch, reason = receiver().decode(record("otlp_spans", raw, [("tenant", b"acme")]))
    assert batch is not None
    assert reason == ""
    assert batch.to_bytes() is raw
    assert not batch.decoded
    assert batch.items == 6
    assert batch.metadata == {"tenant": "acme"}


def test_decode_json_per_signal_encoding() -> None:
    r = receiver((Signal.LOGS,), logs={"encoding": "otlp_json"})
    batch, _ = r.decode(record("otlp_logs", encode_request(logs(records=4))))
    assert batch is not None
    assert batch.items == 4


def test_decode_metrics() -> None:
    batch, _ = receiver((Signal.METRICS,)).decode(
        record("otlp_metrics", metrics(points=3).SerializeToString()))
    assert batch is not None
    assert batch.items == 3


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xff\xff\xff\xff garbage", "decode_error"),
    (b"", "empty"),
    (None, "empty"),
    (b'{"resourceSpans": []}', "decode_error"),  # JSON on a protobuf topic
    (logs().SerializeToString(), "invalid_ids"),  # logs on a traces topic
])
def test_undecodable_proto_records(value: bytes | None, reason: str) -> None:
    batch, why = receiver().decode(record("otlp_spans", value))
    assert batch is None
    assert why == reason


@pytest.mark.parametrize(("value", "reason"), [
    (traces().SerializeToString(), "decode_error"),  # protobuf on a JSON topic
    (b"not json", "decode_error"),
    (b"[1, 2]", "decode_error"),
    (encode_request(logs()), "no_items"),  # logs JSON on a traces topic
])
def test_undecodable_json_records(value: bytes, reason: str) -> None:
    batch, why = receiver(encoding="otlp_json").decode(record("otlp_spans", value))
    assert batch is None
    assert why == reason


def test_spans_with_malformed_ids_are_dropped_the_rest_kept() -> None:
    req = traces(traces_per_resource=1, spans_per_trace=4)
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = b"short"
    r = receiver()
    batch, _ = r.decode(record("otlp_spans", req.SerializeToString()))
    assert batch is not None
    assert batch.items == 3


def test_unused_receiver_starts_nothing() -> None:
    r = receiver(())
    assert r.route.subscription() == {"topics": []}
