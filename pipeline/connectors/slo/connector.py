"""The `slo` connector: feeds the engine, evaluates and emits every flush, keeps its
state in a file, and answers the read API (`status()`) of the status page."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.aggregation.connector import AggregatingConnector
from pipeline.component import Component, ConnectorCreateSettings, Consumer, Host, Kind, Signal
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.connectors.slo.counting import EventCounter
from pipeline.connectors.slo.emit import logs_request, metrics_request
from pipeline.errors import ConfigError, PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.slo.engine import AlertTransition, Engine, SLOStatus, SLOStatusSource
from pipeline.slo.model import SLO
from pipeline.slo.persistence import StateFile

Clock = Callable[[], int]
MAX_PENDING_EVENTS = 1000


class SLOConnector(Component, Consumer, SLOStatusSource):
    def __init__(self, settings: ConnectorCreateSettings, config: SLOConnectorConfig,
                 clock: Clock | None = None):
        self.id = str(settings.id)
        self.logger = settings.logger
        self.config = config
        self.clock: Clock = clock or time.time_ns
        self.metrics_out: Consumer | None = settings.consumers.get(Signal.METRICS)
        self.logs_out: Consumer | None = settings.consumers.get(Signal.LOGS)
        self.slos = config.definitions
        self.engine = Engine(self.slos, config.alerting, self.clock)
        self.counter = EventCounter(self.slos, self.engine, self.logger, config.series_limit,
                                    watch_start=self.clock())
        self.pending_events: list[AlertTransition] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_save = self.engine.now()
        self.state = StateFile(config.state_file) if config.state_file else None
        if self.state is not None:
            self._restore()

    # --- read API -------------------------------------------------------------

    def status(self) -> list[SLOStatus]:
        """One status per SLO, as of now (windows advanced to the clock)."""
        return self.engine.status()

    def slo_status(self, name: str) -> SLOStatus:
        return self.engine.get(name)

    def definitions(self) -> list[SLO]:
        return list(self.slos)

    @property
    def problems(self) -> dict[str, list[str]]:
        """The input problems found per SLO (a threshold that is not a bucket bound …)."""
        return self.counter.problems

    # --- input ----------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        if batch.signal is not Signal.METRICS:
            raise PermanentError(f"slo connector takes metrics, not {batch.signal}")
        try:
            req = batch.message
        except Exception as exc:  # DecodeError
            raise PermanentError(f"undecodable metrics request: {exc}") from exc
        self.counter.ingest(req)

    def ingest(self, req: ExportMetricsServiceRequest) -> None:
        """Count the events of one metrics request."""
        self.counter.ingest(req)

    # --- output ---------------------------------------------------------------

    async def start(self, host: Host) -> None:
        self._check_buckets(host)
        replay = self.engine.firing_transitions()
        if replay:
            self.pending_events.extend(replay)
        self._task = asyncio.create_task(self._loop(), name=f"flush {self.id}")

    def _check_buckets(self, host: Host) -> None:
        """Fail at start when a latency threshold is not a bucket bound of a
        redmetrics connector of this service that emits the metric."""
        components = host.components()
        problems: list[str] = []
        for (kind, cid), comp in components.items():
            if kind is not Kind.CONNECTOR or not isinstance(comp, AggregatingConnector):
                continue
            for metric, bounds in comp.duration_bounds().items():
                self._check_thresholds(cid, metric, bounds, problems)
        if problems:
            raise ConfigError(problems)

    def _check_thresholds(self, cid: object, metric: str, bounds: list[float],
                          problems: list[str]) -> None:
        for e in self.counter.index.get(metric, []):
            if e.selector.op is None:
                continue
            v = e.selector.value
            assert v is not None
            if not any(math.isclose(b, v, rel_tol=1e-9) for b in bounds):
                problems.append(
                    f"connectors.{self.id}: SLO {e.slo}: latency threshold {v:g} s is "
                    f"not a bucket bound of {metric} (connectors.{cid} buckets: "
                    f"{', '.join(f'{b:g}' for b in bounds)}); add {v:g} to "
                    f"connectors.{cid}.histogram.explicit.buckets")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.flush_interval
        deadline = loop.time()
        while True:
            deadline += interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if loop.time() - deadline > interval:
                deadline = loop.time()
            try:
                await self.flush()
            except Exception:
                self.logger.exception("SLO evaluation failed")

    async def flush(self) -> list[AlertTransition]:
        """Evaluate, emit metrics and alert events, save the state when due.
        Returns the alert transitions of this evaluation."""
        async with self._lock:
            self.counter.sample()
            transitions = self.engine.evaluate()
            for tr in transitions:
                log = self.logger.warning if tr.state == "firing" else self.logger.info
                log(tr.summary, extra={"slo": tr.slo, "severity": tr.severity,
                                       "state": tr.state})
            statuses = self.engine.status()
            now_ns = self.clock()
            if self.metrics_out is not None:
                req = metrics_request(statuses, now_ns)
                try:
                    await self.metrics_out.consume(Batch(Signal.METRICS, message=req))
                except (RetryableError, PermanentError) as exc:
                    self.logger.warning("SLO metrics not delivered (the next flush supersedes "
                                        "them)", extra={"error": str(exc)})
            self.pending_events.extend(transitions)
            if len(self.pending_events) > MAX_PENDING_EVENTS:
                dropped = len(self.pending_events) - MAX_PENDING_EVENTS
                self.logger.error("dropping undelivered SLO alert events",
                                  extra={"dropped": dropped})
                del self.pending_events[:dropped]
            if self.pending_events and self.logs_out is not None:
                req_logs = self.logs_request(self.pending_events, now_ns)
                try:
                    await self.logs_out.consume(Batch(Signal.LOGS, message=req_logs))
                    self.pending_events.clear()
                except RetryableError as exc:
                    self.logger.warning("alert events refused; sending them again at the "
                                        "next flush", extra={"error": str(exc)})
                except PermanentError as exc:
                    self.logger.error("alert events rejected", extra={"error": str(exc)})
                    self.pending_events.clear()
            elif self.logs_out is None:
                self.pending_events.clear()
            self.counter.expire(self.engine.now() - self.config.series_expiry)
            if self.state is not None and (self.engine.now() - self._last_save
                                           >= self.config.state_save_interval):
                self.save()
            return transitions


    def runbook_url(self, severity: str) -> str:
        return f"{self.config.runbook_url}#slo-burn-rate-{severity}"

    def logs_request(self, events: list[AlertTransition], now_ns: int) -> ExportLogsServiceRequest:
        return logs_request(events, now_ns, self.config.runbook_url)

    # --- state ----------------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        state = self.engine.dump_state()
        state["watch_start"] = self.counter.watch_start
        state["series"] = self.counter.dump_series()
        return state

    def save(self) -> None:
        if self.state is None:
            return
        try:
            self.state.save(self.dump_state())
            self._last_save = self.engine.now()
        except OSError as exc:
            self.logger.error("cannot save SLO state", extra={"path": str(self.state.path),
                                                              "error": str(exc)})


    def _restore(self) -> None:
        assert self.state is not None
        try:
            state = self.state.load()
        except ValueError as exc:
            self.logger.error(str(exc))
            return
        if state is None:
            self.logger.info("no saved SLO state; starting afresh",
                             extra={"path": str(self.state.path)})
            return
        for note in self.engine.load_state(state):
            self.logger.warning(note)
        saved_at = state.get("saved_at")
        if isinstance(saved_at, int | float):
            # Series born after the last save were not counted: count them in full.
            self.counter.watch_start = int(saved_at * 1e9)
        self.counter.restore_series(state.get("series", []))
        self.logger.info("SLO state restored", extra={
            "path": str(self.state.path), "saved_at": saved_at,
            "slos": len(self.engine.trackers), "series": len(self.counter.series)})

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        finally:
            self.save()



def find_slo_connectors(components: Mapping[Any, Any]) -> list[SLOConnector]:
    """The `slo` connectors among a host's components."""
    return [c for c in components.values() if isinstance(c, SLOConnector)]
