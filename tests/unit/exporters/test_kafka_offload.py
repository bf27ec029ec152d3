"""kafka exporter: records of a big batch are encoded in the offload worker (OTLP JSON of
67k spans held the loop ≈ 1 s), the same records the loop would make; protobuf passed
through as it arrived never goes there. No broker needed: this is the encoding step."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.component import Signal
from pipeline.errors import PermanentError
from pipeline.exporters.kafka import KafkaEncoder, KafkaExporter, KafkaExporterConfig
from pipeline.pdata.batch import Batch
from tests.big_batches import BIG_SPANS, big_request
from tests.loop_lag import LoopLag
from tests.support import exporter_settings


def exporter(**cfg: Any) -> KafkaExporter:
    return KafkaExporter(exporter_settings("kafka"), KafkaExporterConfig.model_validate(cfg))


@pytest.mark.parametrize(("cfg", "records"), [
    ({"encoding": "otlp_json"}, 12),  # 11 MB of JSON: split by resource, then by item
    ({"encoding": "otlp_json", "producer": {"max_message_bytes": 20_000_000}}, 1),
    ({"encoding": "json"}, BIG_SPANS),
    # 3 traces of 1.3 MB: each split in two to fit the default 1 MB
    ({"encoding": "otlp_proto", "partition_traces_by_id": True}, 6),
])
async def test_big_batch_records_are_made_off_the_loop(cfg: dict[str, Any], records: int
                                                       ) -> None:
    req = big_request()
    raw = req.SerializeToString()
    exp = exporter(**cfg)
    try:
        async with LoopLag() as lag:
            messages, rejected = await exp._encode(Batch(Signal.TRACES, raw=raw))
        assert exp._offload.calls == 1
    finally:
        await exp._offload.close()
    assert rejected == 0
    assert len(messages) == records
    assert messages == KafkaEncoder(exp.config).encode(Batch(Signal.TRACES, raw=raw))[0]
    lag.assert_bounded()


async def test_protobuf_forwarded_as_is_stays_on_the_loop() -> None:
    raw = big_request().SerializeToString()
    exp = exporter(producer={"max_message_bytes": 20_000_000})
    messages, _ = await exp._encode(Batch(Signal.TRACES, raw=raw))
    assert messages == [("otlp_spans", None, raw)]
    assert exp._offload.calls == 0


async def test_an_item_too_big_is_refused_from_the_worker_too() -> None:
    req = big_request(spans=3000, resources=1)
    req.resource_spans[0].scope_spans[0].spans[0].name = "x" * 400_000
    exp = exporter(encoding="otlp_json", producer={"max_message_bytes": 300_000})
    try:
        with pytest.raises(PermanentError, match=r"exceeds producer\.max_message_bytes") as info:
            await exp._encode(Batch(Signal.TRACES, raw=req.SerializeToString()))
        assert info.value.rejected == 1
        assert exp._offload.calls == 1
    finally:
        await exp._offload.close()
