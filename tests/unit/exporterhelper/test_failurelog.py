"""The failure/recovery log of an exporter: first failure at once, then rate-limited
with a count, recovery with the streak's failures and duration, secrets masked."""

from __future__ import annotations

import logging

import pytest

from pipeline.config.retry import ExporterSettings
from pipeline.errors import RetryableError
from pipeline.exporterhelper.failurelog import DeliveryLog
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import Telemetry
from tests.builders import traces
from tests.unit.exporterhelper.test_exporter import Scripted, helper

LOGGER = "otelpipe.exporter.test"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def test_first_failure_at_once_then_once_per_interval_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    clock = Clock()
    dl = DeliveryLog("otlp/x", logging.getLogger(LOGGER), every=30.0, clock=clock)
    dl.failed(RetryableError("connection refused"), retrying=True)
    [first] = records(caplog)
    assert first.levelno == logging.WARNING
    assert first.getMessage() == "exporter otlp/x cannot deliver"
    assert first.__dict__["error"] == "connection refused"
    assert first.__dict__["retrying"] is True
    for _ in range(9):
        clock.now += 2.0
        dl.failed(RetryableError("connection refused"), retrying=True)
    assert len(records(caplog)) == 1  # 18 s later: still quiet
    clock.now += 12.0
    dl.failed(RetryableError("connection refused"), retrying=True)
    second = records(caplog)[1]
    assert second.levelno == logging.WARNING
    assert second.__dict__["failures"] == 10  # 9 suppressed + this one
    assert second.__dict__["failing_s"] == 30.0
    assert "still cannot deliver: 10 failures" in second.getMessage()
    clock.now += 4.5
    dl.delivered()
    recovered = records(caplog)[2]
    assert recovered.levelno == logging.INFO
    assert recovered.getMessage() == \
        "exporter otlp/x delivering again after 11 failures over 34.5 s"
    assert recovered.__dict__["failures"] == 11
    dl.delivered()  # nothing more to say
    assert len(records(caplog)) == 3


def test_a_new_streak_within_the_interval_stays_quiet_and_is_counted_later(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    clock = Clock()
    dl = DeliveryLog("x", logging.getLogger(LOGGER), every=30.0, clock=clock)
    dl.failed("down", retrying=True)
    dl.delivered()
    assert len(records(caplog)) == 2
    clock.now += 1.0  # flapping: no line per flap
    dl.failed("down", retrying=True)
    dl.delivered()
    assert len(records(caplog)) == 2
    clock.now += 40.0
    dl.failed("down", retrying=False)
    last = records(caplog)[-1]
    assert last.getMessage() == "exporter x cannot deliver"
    assert last.__dict__["failures"] == 2


def test_errors_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    dl = DeliveryLog("x", logging.getLogger(LOGGER))
    dl.failed(RetryableError("POST https://user:hunter2@backend/v1?api_key=s3cret: 503"),
              retrying=True)
    [rec] = records(caplog)
    assert "hunter2" not in rec.__dict__["error"]
    assert "s3cret" not in rec.__dict__["error"]
    assert "backend" in rec.__dict__["error"]


async def test_an_exporter_logs_its_first_failure_before_any_retry_and_its_recovery(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "otelpipe.exporter.scripted")
    settings: ExporterSettings = helper(queue={"enabled": True})
    exp = Scripted(Telemetry(), settings, [RetryableError("down")] * 3)
    await exp.start(None)  # type: ignore[arg-type]
    batch: Batch = traces(2)
    await exp.consume(batch)
    await exp.shutdown()
    msgs = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "otelpipe.exporter.scripted"]
    assert msgs[0] == ("WARNING", "exporter scripted cannot deliver")
    assert msgs[-1][0] == "INFO"
    assert msgs[-1][1].startswith("exporter scripted delivering again after 3 failures over ")
    assert len(msgs) == 2
