"""The broker stops while data keeps coming: nothing acknowledged is lost.

The outage lasts 30 s, as the issue asks (KAFKA_OUTAGE_SECONDS overrides): fifteen
times the exporter's `timeout` (2 s), spanning many of aiokafka's reconnect and
metadata-refresh cycles.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.pdata.batch import Batch
from tests.builders import span_names, tagged_traces_request
from tests.integration.conftest import kafka_script
from tests.integration.test_kafka import HOST, make_exporter, make_receiver
from tests.support import Sink, aeventually

OUTAGE_SECONDS = float(os.environ.get("KAFKA_OUTAGE_SECONDS", "30"))


async def test_broker_outage_refuses_then_resumes_without_loss(
        kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("outage")
    exp = make_exporter(kafka_bootstrap, topic=topic, timeout="2s")
    await exp.start(HOST)
    sink = Sink()
    rec = make_receiver(kafka_bootstrap, {Signal.TRACES: sink}, group_id=topic,
                        traces={"topics": [topic]})
    await rec.start(HOST)

    acked: list[tuple[float, list[str]]] = []
    refused: list[float] = []
    stop_sending = asyncio.Event()

    async def client() -> None:
        i = 0
        while not stop_sending.is_set():
            req = tagged_traces_request(traces_per_resource=1, spans_per_trace=5, tag=f"{i}-")
            i += 1
            try:
                await exp.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
            except RetryableError:
                refused.append(time.monotonic())
                await asyncio.sleep(0.2)
                continue
            acked.append((time.monotonic(), span_names(req)))
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(client())
    try:
        await aeventually(lambda: len(acked) >= 10, timeout=30,
                          what="acknowledged batches before the outage")
        await asyncio.to_thread(kafka_script, "stop")
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        up_at = time.monotonic()
        await asyncio.to_thread(kafka_script, "start")
        n_before_restart = len(acked)
        await aeventually(lambda: len(acked) >= n_before_restart + 10, timeout=60,
                          what="delivery to resume after the broker returned")
        stop_sending.set()
        await sender
        expected = sorted(n for _, names in acked for n in names)
        await aeventually(lambda: sink.items >= len(expected), timeout=60,
                          what="the receiver to deliver every acknowledged span")
        await asyncio.sleep(1.0)
    finally:
        stop_sending.set()
        if not sender.done():
            sender.cancel()
        await rec.shutdown()
        await exp.shutdown()

    refused_during = [t for t in refused if down_at <= t <= up_at]
    acked_during = [t for t, _ in acked if down_at + 0.5 <= t <= up_at]
    got = [n for b in sink.batches for n in span_names(b.message)]
    missing = set(expected) - set(got)
    duplicates = len(got) - len(set(got))
    print(f"\noutage {OUTAGE_SECONDS:.0f}s: acked {len(acked)} batches "
          f"({len(expected)} spans), refused {len(refused)} attempts "
          f"({len(refused_during)} while down), received {len(got)} spans, "
          f"missing {len(missing)}, duplicates {duplicates}")
    assert refused_during, "the exporter never refused while the broker was down"
    assert not acked_during, "a batch was acknowledged while the broker was down"
    assert not missing
