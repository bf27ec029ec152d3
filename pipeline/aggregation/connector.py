"""The flushing connector base, its settings and its own metrics.

`AggregatingConnector`: every `metrics_flush_interval` it snapshots the series
sets, builds one OTLP metrics request (`pipeline.aggregation.emit`) and hands
it to the metrics pipeline. Only when that succeeds are delta counts
subtracted and exemplars cleared. A `RetryableError` (or an unexpected error)
downstream keeps the state:

- cumulative: the next flush sends the current values (they supersede);
- delta: the refused request is kept as it was and the next flush sends it
  again *identical* (same points, start and time) before building the next one
  from what arrived since (whose start is the refused request's time). A
  consumer that applied the refused request before refusing (or a link call
  that timed out after the primary applied it) then sees the same (start,
  time) again, which `deltatocumulative` (`out_of_order: accumulate`) drops as
  a duplicate; a resend with a new time and a larger value would be counted
  twice. While the kept request is refused nothing newer is sent.

A flush of many series costs ≈ 30 µs of CPU per series (build, serialize,
snapshot, commit: 5,000 series ≈ 150-200 ms), so it runs in slices
(`pipeline.pdata.pacing.paced`) and lets the loop serve requests between them:

- the snapshot is one point in time: while it is being taken, the front ends'
  consume() waits (`settled()`) before it changes any series;
- the request is built from the frozen snapshot, and commit removes only what
  the snapshot holds (delta counts, the exemplars sent), so what arrives while
  the request is built, sent or committed goes to the next flush, whole;
- flushes never interleave (a lock), and shutdown stops the flush loop only
  between two flushes, never halfway through a commit.

Acknowledgement: a batch is "delivered" once folded into the aggregates. A
crash loses what was aggregated since the last flush; that is inherent to
aggregation (the Collector's spanmetrics connector behaves the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Annotated, Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from pydantic import BeforeValidator, Field

from pipeline.aggregation.emit import MetricSpec, build_request
from pipeline.aggregation.series import Series
from pipeline.aggregation.store import (
    DEFAULT_CARDINALITY_LIMIT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_SERIES_EXPIRY,
    Clock,
    SeriesSet,
    Snapshot,
    Temporality,
)
from pipeline.component import Component, ComponentConfig, ConnectorCreateSettings, Consumer, Signal
from pipeline.config.types import Duration
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

SERIES = GaugeSpec(
    "otelpipe_connector_series",
    "Series a connector holds per derived metric (the overflow series included).",
    ("connector", "metric"))
EXPIRED_SERIES = CounterSpec(
    "otelpipe_connector_expired_series",
    "Series dropped because nothing updated them for series_expiry.",
    ("connector",))
FLUSHES = CounterSpec(
    "otelpipe_connector_flushes",
    "Metric flushes by outcome: ok, retry (refused downstream; state kept), dropped "
    "(rejected permanently), failed (unexpected error; state kept).",
    ("connector", "outcome"))
EMITTED_POINTS = CounterSpec(
    "otelpipe_connector_emitted_points",
    "Data points a connector handed to its metrics pipelines.", ("connector",))

TemporalityField = Annotated[Temporality, BeforeValidator(Temporality.parse)]


class AggregationSettings(ComponentConfig):
    """The aggregation keys every aggregating connector's config has."""

    aggregation_temporality: TemporalityField = Temporality.CUMULATIVE
    metrics_flush_interval: Duration = Field(DEFAULT_FLUSH_INTERVAL, gt=0)
    aggregation_cardinality_limit: int = Field(
        DEFAULT_CARDINALITY_LIMIT, ge=1,
        description="series per metric; further combinations go to one overflow series "
                    "with otel.metric.overflow=\"true\"")
    series_expiry: Duration = Field(
        DEFAULT_SERIES_EXPIRY, description="drop a series nothing updated for this long; 0: "
                                           "never")

    def series_set(self, name: str, new_series: Callable[[], Series],
                   clock: Clock) -> SeriesSet:
        """The series of one metric, under these settings."""
        return SeriesSet(name, new_series, limit=self.aggregation_cardinality_limit,
                         expiry=self.series_expiry, temporality=self.aggregation_temporality,
                         clock=clock)


class AggregatingConnector(Component, Consumer):
    """Base of the metric-deriving connectors: folds data into series sets (the
    subclass's `consume`) and emits them every `flush_interval` seconds."""

    scope_name = "otelpipe"

    def __init__(self, settings: ConnectorCreateSettings, *, flush_interval: float,
                 clock: Clock | None = None):
        self.id = str(settings.id)
        self.logger = settings.logger
        self.next = settings.consumers.get(Signal.METRICS)
        self.flush_interval = flush_interval
        self.clock: Clock = clock or time.time_ns
        self.sets: list[SeriesSet] = []
        self.specs: list[MetricSpec] = []
        self._lock = asyncio.Lock()
        self._snapshotting: asyncio.Event | None = None  # set when the snapshot is taken
        self._task: asyncio.Task[None] | None = None
        # delta: a refused flush (request, points, snapshots, time), sent again as is
        self._pending: tuple[bytes, int, dict[int, Snapshot], int] | None = None
        tel = settings.telemetry
        self._series_gauge = tel.gauge(SERIES)
        self._expired = tel.counter(EXPIRED_SERIES).labels(self.id)
        flushes = tel.counter(FLUSHES)
        self._flushes = {o: flushes.labels(self.id, o)
                         for o in ("ok", "retry", "dropped", "failed")}
        self._points = tel.counter(EMITTED_POINTS).labels(self.id)

    def duration_bounds(self) -> dict[str, list[float]]:
        """Explicit bucket bounds in seconds per duration-histogram metric this connector
        emits (the slo connector checks its latency thresholds against them)."""
        return {}

    async def start(self, host: Any) -> None:
        if self.flush_interval > 0:
            self._task = asyncio.create_task(self._loop(), name=f"flush {self.id}")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.flush_interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if loop.time() - deadline > self.flush_interval:
                deadline = loop.time()  # fell behind (a slow flush): do not burst
            try:
                await self.flush()
            except Exception:  # never let the loop die
                self.logger.exception("metrics flush failed")

    async def flush(self) -> bool:
        """Emit the current aggregates; True when the metrics pipeline accepted them
        (and the refused request kept from an earlier delta flush before them)."""
        async with self._lock:
            pending = self._pending
            if pending is not None:
                if await self._send(*pending) == "kept":
                    return False
                self._pending = None
            now = self.clock()
            snapshots = await self._snapshot(now)
            for s in self.sets:
                self._series_gauge.labels(self.id, s.name).set(len(s))
                expired = snapshots[id(s)].expired
                if expired:
                    self._expired.inc(expired)
            req, points = await build_request(self.specs, snapshots, now, self.scope_name)
            if not any(s.delta for s in self.sets):
                return await self._send(req, points, snapshots, now) == "ok"
            # delta: sent as bytes, kept as bytes: a consumer may change the request it
            # was handed (deltatocumulative does) before refusing it
            await asyncio.sleep(0)  # one C call of ≈ 2 µs a point: a slice of its own
            data = req.SerializeToString()
            await asyncio.sleep(0)
            outcome = await self._send(data, points, snapshots, now)
            if outcome == "kept":
                self._pending = (data, points, snapshots, now)
            return outcome == "ok"

    async def _send(self, req: ExportMetricsServiceRequest | bytes, points: int,
                    snapshots: dict[int, Snapshot], now: int) -> str:
        """Hand one flush's request on: "ok" (committed), "dropped" (rejected for good:
        committed) or "kept" (refused: the state stays)."""
        if points and self.next is not None:
            try:
                batch = Batch(Signal.METRICS, raw=req, items=points) if isinstance(req, bytes) \
                    else Batch(Signal.METRICS, message=req, items=points)
                await self.next.consume(batch)
            except RetryableError as exc:
                self._flushes["retry"].inc()
                self.logger.warning("metrics pipeline refused the flush; keeping the "
                                    "aggregates for the next one",
                                    extra={"error": str(exc), "data_points": points})
                return "kept"
            except PermanentError as exc:
                self._flushes["dropped"].inc()
                self.logger.error("metrics pipeline rejected the flush permanently",
                                  extra={"error": str(exc), "data_points": points})
                await self._commit(snapshots, now)
                return "dropped"
            except Exception as exc:
                self._flushes["failed"].inc()
                self.logger.error("metrics flush failed; keeping the aggregates",
                                  extra={"error": str(exc), "data_points": points})
                return "kept"
        await self._commit(snapshots, now)
        self._flushes["ok"].inc()
        self._points.inc(points)
        return "ok"

    async def _snapshot(self, now: int) -> dict[int, Snapshot]:
        """Every set's snapshot at `now`, taken in slices while consume() waits."""
        gate = self._snapshotting = asyncio.Event()
        try:
            return {id(s): await s.snapshot(now) for s in self.sets}
        finally:
            self._snapshotting = None
            gate.set()

    async def settled(self) -> None:
        """A front end's consume() awaits this before it changes any series: returns
        at once, unless a flush is taking its snapshot (then when it is done)."""
        while (gate := self._snapshotting) is not None:
            await gate.wait()

    async def _commit(self, snapshots: dict[int, Snapshot], now: int) -> None:
        for s in self.sets:
            await s.commit(snapshots[id(s)], now)

    async def shutdown(self) -> None:
        if self._task is not None:
            async with self._lock:  # between two flushes: never cancel one halfway
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()  # a last flush: what was aggregated since the previous one
