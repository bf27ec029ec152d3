"""ReceiverObs: an exporter's error is logged (masked, rate-limited), the sender gets less."""

from __future__ import annotations

import logging

import pytest

from pipeline.errors import PermanentError, RetryableError
from pipeline.receiverhelper import obs as obs_module
from pipeline.receiverhelper.obs import ReceiverObs, sender_reason
from pipeline.telemetry.metrics import Telemetry
from tests.builders import traces
from tests.support import Sink, receiver_settings


def logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("refused a request")]


async def test_downstream_errors_are_logged_masked_and_rate_limited(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    obs = ReceiverObs(receiver_settings("otlp", telemetry=Telemetry()), "http")
    obs.clock = lambda: now[0]
    sink = Sink()
    sink.refuse = RetryableError("http://u:pw@h/v1/traces: HTTP 503").from_origin("exporter a")
    for _ in range(3):
        with pytest.raises(RetryableError):
            await obs.deliver(sink, traces(1))
    [first] = logged(caplog)
    assert first.error == "http://u:***@h/v1/traces: HTTP 503"  # type: ignore[attr-defined]
    assert first.answered == "exporter a unavailable: retry later"  # type: ignore[attr-defined]
    now[0] += obs_module.LOG_EVERY
    with pytest.raises(RetryableError):
        await obs.deliver(sink, traces(1))
    second = logged(caplog)[1]
    assert second.suppressed == 2  # type: ignore[attr-defined]
    assert "pw" not in caplog.text


async def test_errors_without_origin_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    obs = ReceiverObs(receiver_settings("otlp", telemetry=Telemetry()), "http")
    sink = Sink()
    sink.refuse = PermanentError("undecodable")
    with pytest.raises(PermanentError):
        await obs.deliver(sink, traces(1))
    assert logged(caplog) == []


def test_sender_reason_masks_what_it_keeps() -> None:
    assert sender_reason(RetryableError("see http://u:pw@h/?token=t")) == \
        "see http://u:***@h/?token=***"
    assert sender_reason(PermanentError("x").from_origin("exporter b")) == \
        "exporter b rejected the data: do not retry"
