"""A flush done in slices (yielding to the loop between them) sends exactly what the
one-piece flush sent, loses and double-counts nothing that arrives meanwhile, and lets
other tasks run."""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import pytest

from pipeline.aggregation.connector import AggregatingConnector
from pipeline.component import Signal
from pipeline.connectors.logmetrics import LogMetricsConfig, LogMetricsConnector
from pipeline.errors import RetryableError
from pipeline.pdata import pacing
from tests.support import LoopTurns, Sink, connector_settings
from tests.unit.aggregation.support import CALLS, make
from tests.unit.connectors.spans import FakeClock, log_batch, metrics, span_batch

RED_CASES: dict[str, dict[str, Any]] = {
    "explicit cumulative": {},
    "explicit delta": {"aggregation_temporality": "delta"},
    "exponential cumulative": {"histogram": {"exponential": {"max_size": 20}}},
    "exponential delta": {"aggregation_temporality": "delta",
                          "histogram": {"exponential": {"max_size": 20}}},
    "delta overflow ms": {"aggregation_temporality": "delta", "aggregation_cardinality_limit": 7,
                          "histogram": {"unit": "ms"}, "series_expiry": "40s"},
    "cumulative no exemplars": {"exemplars": {"enabled": False},
                                "dimensions": [{"name": "route", "default": "none"}]},
}
# sha256 of every request each scenario sent, as the one-piece flush (main before the
# slices) built them. One exception, a fix: "delta overflow ms" differs from main in one
# exemplar only (main's was 02c5f8ca…). The overflow series got a span after the refused
# flush; main's commit of the resent request cleared every exemplar, that one included, so
# the next request carried none; now the commit clears only the exemplars it sent.
RED_DIGESTS = {
    "explicit cumulative":
        "4229b44b67e6ba1adb91106e08249a2e32921d9820f92a8e09b91fc83db7aba3",
    "explicit delta":
        "0422f38b280e7334f0596f50b313f606813f482042da26dc813115cd5bf9c687",
    "exponential cumulative":
        "aaf66a79f8717d74b8b7b463b4fdb3efc961b3f1d2599ffd276d5310d7a1bc56",
    "exponential delta":
        "ead9f67f54c510f35a2620cb1ee6e46f709f1b41c4b874249d7ac1c13f11c905",
    "delta overflow ms":
        "8544868f03fdc220db16c1f126077381417a0b92d49b1bfdee86cf729a5a49ce",
    "cumulative no exemplars":
        "4a8150c44da684fcb17d665ad4cbf173c523e48198f19dc3caeb7fb9a3a814e3",
}
LOG_CASES: dict[str, dict[str, Any]] = {
    "cumulative": {},
    "delta limited": {"aggregation_temporality": "delta", "aggregation_cardinality_limit": 3},
}
LOG_DIGESTS = {"cumulative":
        "edfaad3f86ad6cb9128824f4a526a5c7c764caba211f7fba14ed9bb911484e26", "delta limited":
        "0cab4cb00055c660c1efae49d611c7eafd48bab4a1fc4a391352bfc2377290a4"}
LOG_METRICS = [
    {"name": "requests", "dimensions": [{"name": "route"}, {"name": "code"}]},
    {"name": "bytes", "type": "sum", "value": "size", "dimensions": [{"name": "route"}]},
    {"name": "queue", "type": "gauge", "value": "depth", "dimensions": [{"name": "route"}]},
    {"name": "latency", "type": "histogram", "value": "ms", "buckets": [1, 10, 100],
     "dimensions": [{"name": "code"}]},
]


def spans(step: int, n: int) -> list[dict[str, Any]]:
    return [{"name": f"op {(i * 7 + step) % 23}", "ms": 0.5 + (i * 13 + step) % 900,
             "status": 2 if i % 11 == 0 else 0, "kind": 1 + i % 4,
             "attrs": {"route": f"/r{i % 5}"} if i % 3 else {},
             "trace": (i + 1000 * step + 1).to_bytes(16, "big"),
             "span": (i + 1).to_bytes(8, "big")} for i in range(n)]


def records(step: int, n: int) -> list[dict[str, Any]]:
    return [{"attrs": {"route": f"/r{(i + step) % 6}", "code": 200 + (i % 4) * 100,
                       "size": i * 10 + step, "depth": (i * step) % 17, "ms": i % 150}}
            for i in range(n)]


async def scenario(conn: AggregatingConnector, sink: Sink, clock: FakeClock,
                   feed: Any) -> list[bytes]:
    """Flushes with data from two services, a refused flush (delta: resent as is),
    expiry, and a last flush; returns every request sent, serialized."""
    await feed(0, "checkout")
    await feed(1, "cart")
    clock.advance(15)
    assert await conn.flush()
    await feed(2, "checkout")
    clock.advance(15)
    sink.refuse = RetryableError("full")
    assert not await conn.flush()
    sink.refuse = None
    await feed(3, "cart")
    clock.advance(15)
    assert await conn.flush()
    clock.advance(30)
    await feed(4, "checkout")
    clock.advance(15)
    assert await conn.flush()
    return [b.to_bytes() for b in sink.batches]


def digest(sent: list[bytes]) -> str:
    h = hashlib.sha256()
    for data in sent:
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


async def red_scenario(cfg: dict[str, Any]) -> list[bytes]:
    sink, clock = Sink(), FakeClock()
    conn = make(sink, clock, **cfg)

    async def feed(step: int, service: str) -> None:
        await conn.consume(span_batch(spans(step, 60 + 10 * step), service=service))

    return await scenario(conn, sink, clock, feed)


async def log_scenario(cfg: dict[str, Any]) -> list[bytes]:
    sink, clock = Sink(), FakeClock()
    conn = LogMetricsConnector(
        connector_settings("logmetrics", consumers={Signal.METRICS: sink}),
        LogMetricsConfig.model_validate({"metrics": LOG_METRICS, **cfg}), clock=clock)

    async def feed(step: int, service: str) -> None:
        await conn.consume(log_batch(records(step, 40 + step), service=service))

    return await scenario(conn, sink, clock, feed)


# a turn of the loop after every item, and none at all (the flush in one piece)
SLICES = pytest.mark.parametrize("slice_seconds", [0.0, math.inf], ids=["each", "never"])


@SLICES
@pytest.mark.parametrize("case", RED_CASES)
async def test_redmetrics_sends_the_bytes_main_sent(case: str, slice_seconds: float,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "SLICE_SECONDS", slice_seconds)
    assert digest(await red_scenario(RED_CASES[case])) == RED_DIGESTS[case]


@SLICES
@pytest.mark.parametrize("case", LOG_CASES)
async def test_logmetrics_sends_the_bytes_main_sent(case: str, slice_seconds: float,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "SLICE_SECONDS", slice_seconds)
    assert digest(await log_scenario(LOG_CASES[case])) == LOG_DIGESTS[case]


def calls(sink: Sink) -> list[int]:
    """The calls count of each request sent (one service, summed over its series)."""
    return [sum(p[2].as_int for p in metrics([b]).get(CALLS, [])) for b in sink.batches]


@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
async def test_spans_arriving_during_a_flush_go_to_the_next_one_whole(
        temporality: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A turn of the loop after every series: a feeder consumes between the slices. The
    snapshot is one point in time (no consume completes while it is taken); every span
    is counted once, in the flush it came before or in the next."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    sink = Sink()
    conn = make(sink, aggregation_temporality=temporality)
    before = 0
    for step in range(4):
        await conn.consume(span_batch(spans(step, 50)))
        before += 50
    flush = asyncio.create_task(conn.flush())
    during = during_snapshot = 0
    while not flush.done():
        await conn.consume(span_batch(spans(during, 3)))
        during += 3
        during_snapshot += conn._snapshotting is not None
        await asyncio.sleep(0)  # consume() yields only while a snapshot is taken
    assert await flush
    assert await conn.flush()
    sent = calls(sink)
    assert during > 0
    assert during_snapshot == 0
    if temporality == "delta":
        assert sent[0] + sent[1] == before + during
        assert sent[0] >= before
        assert sent[1] > 0
    else:
        assert sent[1] == before + during
        assert before <= sent[0] < sent[1]


async def test_a_flush_of_20k_series_lets_other_tasks_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted, not timed: with a turn after every item, a ticker task runs at least once
    per series and phase (snapshot, build, commit) while the flush is under way."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    n = 20_000
    sink = Sink()
    conn = make(sink, aggregation_temporality="delta", aggregation_cardinality_limit=n)
    for first in range(0, n, 1000):
        await conn.consume(span_batch([{"name": f"op {i}"} for i in range(first, first + 1000)]))
    async with LoopTurns() as turns:
        assert await conn.flush()
    assert calls(sink) == [n]
    assert turns.count >= 3 * n


if __name__ == "__main__":
    async def _print() -> None:
        for case, cfg in RED_CASES.items():
            print(f"    {case!r}: {digest(await red_scenario(cfg))!r},")
        for case, cfg in LOG_CASES.items():
            print(f"    {case!r}: {digest(await log_scenario(cfg))!r},")
    asyncio.run(_print())


class Sent(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.sent = asyncio.Event()

    async def consume(self, batch: Any) -> None:
        await super().consume(batch)
        self.sent.set()


async def test_shutdown_waits_for_a_flush_halfway_through_its_commit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The flush loop is stopped between flushes: cancelled after its request went out
    but before every series was committed, the final flush would send part of it again."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    sink = Sent()
    conn = make(sink, aggregation_temporality="delta", metrics_flush_interval="1ms")
    await conn.consume(span_batch([{"name": f"op {i}"} for i in range(500)]))
    await conn.start(None)
    await sink.sent.wait()  # the loop's flush sent its request and is committing
    assert conn._lock.locked()
    await conn.consume(span_batch([{"name": "op 1"}] * 7))
    await conn.shutdown()
    assert sum(calls(sink)) == 507
