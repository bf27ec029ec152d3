"""kafka exporter and receiver through the broker's SASL_PLAINTEXT listener.

scripts/kafka.sh serves SASL_PLAINTEXT on 127.0.0.1:${KAFKA_SASL_PORT:-9094}
with PLAIN and SCRAM-SHA-256 for one test user (KAFKA_SASL_USERNAME /
KAFKA_SASL_PASSWORD, default otelpipe / otelpipe-secret).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import Telemetry
from tests.builders import span_names, tagged_traces_request
from tests.integration.conftest import _port_open, kafka_script
from tests.integration.test_kafka import HOST, make_exporter, make_receiver, sample
from tests.support import Sink, aeventually

SASL_PORT = int(os.environ.get("KAFKA_SASL_PORT", "9094"))
USERNAME = os.environ.get("KAFKA_SASL_USERNAME", "otelpipe")
PASSWORD = os.environ.get("KAFKA_SASL_PASSWORD", "otelpipe-secret")
WRONG_PASSWORD = "not-the-password-7f3a"


@pytest.fixture(scope="session")
def kafka_sasl_bootstrap(kafka_bootstrap: str) -> str:
    if not _port_open(SASL_PORT):
        # A broker started by an older scripts/kafka.sh has no SASL listener.
        kafka_script("stop")
        kafka_script("start")
    if not _port_open(SASL_PORT):
        pytest.fail(f"kafka has no SASL listener on 127.0.0.1:{SASL_PORT}", pytrace=False)
    return f"127.0.0.1:{SASL_PORT}"


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record with its message, arguments and extra fields."""
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_round_trip_through_sasl(kafka_sasl_bootstrap: str, kafka_topic: Any,
                                       caplog: pytest.LogCaptureFixture,
                                       mechanism: str) -> None:
    caplog.set_level(logging.DEBUG)
    sasl = {"mechanism": mechanism, "username": USERNAME, "password": PASSWORD}
    topic = await kafka_topic("sasl")
    t_exp, t_rec = Telemetry(), Telemetry()
    exp = make_exporter(kafka_sasl_bootstrap, t_exp, topic=topic, sasl=sasl)
    await exp.start(HOST)
    sent: list[str] = []
    n_batches = 10
    try:
        for i in range(n_batches):
            req = tagged_traces_request(resources=2, traces_per_resource=2, spans_per_trace=3,
                                        tag=f"s{i}-")
            sent.extend(span_names(req))
            await exp.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    finally:
        await exp.shutdown()
    assert sample(t_exp, "otelpipe_kafka_exporter_produced_records_total",
                  exporter="kafka", topic=topic) == n_batches

    sink = Sink()
    rec = make_receiver(kafka_sasl_bootstrap, {Signal.TRACES: sink}, t_rec, group_id=topic,
                        traces={"topics": [topic]}, sasl=sasl)
    await rec.start(HOST)
    try:
        await aeventually(lambda: sink.items >= len(sent), timeout=60, what="every span")
        await asyncio.sleep(0.5)  # anything extra would be a duplicate
    finally:
        await rec.shutdown()
    got = [n for b in sink.batches for n in span_names(b.message)]
    assert len(got) == len(sent) == n_batches * 12
    assert sorted(got) == sorted(sent)  # each exactly once
    assert sample(t_rec, "otelpipe_receiver_accepted_items_total", receiver="kafka",
                  transport="kafka", signal="traces") == len(sent)
    assert PASSWORD not in logged(caplog)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_wrong_password_is_a_clear_error_without_the_password(
        kafka_sasl_bootstrap: str, kafka_topic: Any, caplog: pytest.LogCaptureFixture,
        mechanism: str) -> None:
    caplog.set_level(logging.DEBUG)
    sasl = {"mechanism": mechanism, "username": USERNAME, "password": WRONG_PASSWORD}
    topic = await kafka_topic("sasl-bad")

    exp = make_exporter(kafka_sasl_bootstrap, topic=topic, sasl=sasl)
    await exp.start(HOST)  # not fatal: batches are refused until the broker lets us in
    raw = tagged_traces_request().SerializeToString()
    try:
        with pytest.raises(RetryableError) as err:
            await exp.consume(Batch(Signal.TRACES, raw=raw))
    finally:
        await exp.shutdown()
    text = str(err.value)
    assert "authentication failed" in text
    assert mechanism in text
    assert USERNAME in text
    assert WRONG_PASSWORD not in text

    sink = Sink()
    rec = make_receiver(kafka_sasl_bootstrap, {Signal.TRACES: sink}, group_id=topic,
                        traces={"topics": [topic]}, sasl=sasl)
    await rec.start(HOST)
    try:
        await aeventually(
            lambda: any(r.name.startswith("otelpipe.receiver")
                        and "authentication failed" in str(r.__dict__.get("error", ""))
                        for r in caplog.records),
            timeout=30, what="the receiver's authentication error")
        assert not rec.health().healthy
        assert "authentication failed" in (rec.health().last_error or "")
    finally:
        await rec.shutdown()
    assert sink.items == 0
    assert WRONG_PASSWORD not in logged(caplog)
