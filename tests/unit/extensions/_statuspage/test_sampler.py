"""Throughput from the pipeline's own counters, read from the telemetry registry by
metric name; the sampler's failures are logged (rate-limited) and kept."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pipeline.extensions._statuspage import sampler
from pipeline.extensions._statuspage.sampler import ThroughputSampler
from pipeline.telemetry.metrics import CounterSpec, HistogramSpec, Telemetry

RECV = ("receiver", "transport", "signal")
EXP = ("exporter", "signal")
ACCEPTED = CounterSpec("otelpipe_receiver_accepted_items",
                       "Items accepted by a receiver and acknowledged to the sender.", RECV)
SENT = CounterSpec("otelpipe_exporter_sent_items", "Items delivered by an exporter.", EXP)
SEND_FAILED = CounterSpec(
    "otelpipe_exporter_send_failed_items",
    "Items an exporter failed to deliver (permanent error or retries exhausted).", EXP)
BATCH_SIZE = HistogramSpec(
    "otelpipe_processor_batch_send_size", "Items per batch sent by the batch processor.",
    ("processor", "pipeline"), (10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000))
EMITTED = CounterSpec("otelpipe_connector_emitted_points",
                      "Data points a connector handed to its metrics pipelines.", ("connector",))


def test_throughput_from_sampled_counters() -> None:
    t = Telemetry()
    now = [0.0]
    s = ThroughputSampler(t, window=60, clock=lambda: now[0])
    s.sample()
    for step in range(1, 25):  # 2 minutes, a sample every 5 s
        now[0] = step * 5.0
        t.counter(ACCEPTED).labels("otlp", "grpc", "traces").inc(500)  # 100/s
        t.counter(ACCEPTED).labels("otlp", "http", "logs").inc(50)  # +10/s
        t.counter(SENT).labels("kafka", "traces").inc(250)
        t.counter(SEND_FAILED).labels("kafka", "traces").inc(5)
        t.histogram(BATCH_SIZE).labels("batch", "traces").observe(500)
        t.counter(EMITTED).labels("redmetrics").inc(20)
        s.sample()
    rates, failed = s.rates()
    assert rates[("receiver", "otlp", "")] == pytest.approx(110.0)
    assert rates[("receiver", "otlp", "@logs")] == pytest.approx(10.0)
    assert rates[("exporter", "kafka", "")] == pytest.approx(50.0)
    assert failed[("exporter", "kafka", "")] == pytest.approx(1.0)
    assert rates[("processor", "batch", "traces")] == pytest.approx(100.0)
    assert rates[("connector", "redmetrics", "")] == pytest.approx(4.0)
    assert len(s.samples) <= 14  # old samples dropped (one before the window kept)
    # traffic stops: a minute later the rate is 0
    now[0] += 65
    s.sample()
    assert s.rates()[0][("receiver", "otlp", "")] == 0.0


def broken_counters(telemetry: Telemetry) -> Any:
    raise RuntimeError("scrape of https://u:hunter2@host/ failed")


def test_a_failing_sample_is_logged_rate_limited_and_kept(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.ERROR)
    t = Telemetry()
    now = [0.0]
    s = ThroughputSampler(t, clock=lambda: now[0], wall_clock=lambda: 1_700_000_000.0,
                          scrub=lambda text: text.replace("hunter2", "***"), log_interval=300)
    s.sample_safely()
    assert s.last_error is None
    monkeypatch.setattr(sampler, "counter_totals", broken_counters)
    for step in range(10):  # every 60 s: logged at 0 s and 300 s
        now[0] = 1000.0 + step * 60
        s.sample_safely()
    assert s.last_error is not None
    assert s.last_error.text == "RuntimeError: scrape of https://u:***@host/ failed"
    assert s.last_error.failures == 10
    assert s.last_error.at == 1_700_000_000.0
    logged = [r for r in caplog.records if r.getMessage().startswith("status page throughput")]
    assert [r.failures_not_logged for r in logged] == [0, 4]
    assert "hunter2" not in caplog.text
