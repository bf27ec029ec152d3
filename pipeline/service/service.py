"""Builds the pipeline graph from a validated config and runs it.

Build order is downstream first: exporters, then each pipeline's processors
(last to first), connectors once every pipeline they feed exists, then
receivers. Components start in that order (so nothing receives data before
what is behind it runs) and shut down in reverse, draining as they go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal as os_signal
import time
from collections.abc import Mapping
from typing import Any, Protocol

from pipeline.component import (
    Component,
    ComponentEntry,
    ComponentID,
    ConnectorCreateSettings,
    Consumer,
    CreateSettings,
    ExporterCreateSettings,
    ExtensionCreateSettings,
    Host,
    Kind,
    PipelineInfo,
    ProcessorCreateSettings,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.model import Config, PipelineConfig
from pipeline.service.fanout import fan_out
from pipeline.service.inflight import InFlight, Tracked
from pipeline.service.looplag import LoopLagMonitor
from pipeline.telemetry.logs import component_logger
from pipeline.telemetry.metrics import Telemetry

log = logging.getLogger("otelpipe.service")


class Supervision(Protocol):
    def states(self) -> list[dict[str, Any]]: ...

    async def merged_metrics(self, own: bytes) -> bytes: ...


class Service(Host):
    def __init__(self, config: Config, telemetry: Telemetry | None = None):
        self.config = config
        self.telemetry = telemetry or Telemetry()
        self.entries: list[ComponentEntry] = []  # in start order
        self._started_entries: list[ComponentEntry] = []
        self._started = False
        self._loop_lag = LoopLagMonitor(self.telemetry)
        # What is inside each receiver's pipelines and each exporter right now (the
        # report of a drain cut short by a second signal).
        self._in_flight: dict[tuple[Kind, ComponentID], InFlight] = {}
        # The supervisor of the worker processes, in the primary of several
        # (`service.workers` > 1): the health extension lists them and sums their metrics.
        self.supervisor: Supervision | None = None
        self._build()

    # Host -----------------------------------------------------------------
    def components(self) -> Mapping[tuple[Kind, ComponentID], Component]:
        return {(e.kind, e.id): e.component for e in self.entries if e.pipeline is None}

    def component_entries(self) -> list[ComponentEntry]:
        return list(self.entries)  # processors once per pipeline

    def pipelines(self) -> Mapping[str, PipelineInfo]:
        return {p.id: PipelineInfo(p.id, p.signal, p.receivers, p.processors, p.exporters)
                for p in self.config.pipelines.values()}

    def started(self) -> bool:
        return self._started

    # Several processes (read by the health extension) -------------------------
    def workers(self) -> list[dict[str, Any]] | None:
        """Each process of this service (index, pid, state, restarts, last exit), or None
        when it runs in one process."""
        return None if self.supervisor is None else self.supervisor.states()

    async def metrics_exposition(self) -> bytes:
        """This service's metrics in the Prometheus text format: with workers, summed over
        every process (a `worker` label where a sum means nothing)."""
        own = self.telemetry.render()
        if self.supervisor is None:
            return own
        return await self.supervisor.merged_metrics(own)

    # Build ----------------------------------------------------------------
    @staticmethod
    def _logger(kind: Kind, cid: ComponentID) -> logging.Logger:
        return component_logger(kind.value, str(cid))

    def _create(self, settings: CreateSettings, pipeline: str | None = None) -> Component:
        """Create a component with the settings of its kind; the factory is that kind's."""
        kind, cid = settings.kind, settings.id
        factory = self.config.factories[(kind, cid)]
        component = factory.create(settings, self.config.components[kind][cid])
        self.entries.append(ComponentEntry(kind, cid, component, pipeline))
        return component

    def _build(self) -> None:
        cfg = self.config
        tel = self.telemetry
        for ext_id in cfg.extensions:
            self._create(ExtensionCreateSettings(
                id=ext_id, logger=self._logger(Kind.EXTENSION, ext_id), telemetry=tel))
        consumers: dict[tuple[Kind, ComponentID], Consumer] = {}
        used_exporters = {e for p in cfg.pipelines.values() for e in p.exporters
                          if e in cfg.components[Kind.EXPORTER]}
        for eid in sorted(used_exporters):
            comp = self._create(ExporterCreateSettings(
                id=eid, logger=self._logger(Kind.EXPORTER, eid), telemetry=tel))
            counts = self._in_flight[(Kind.EXPORTER, eid)] = InFlight()
            consumers[(Kind.EXPORTER, eid)] = Tracked(_as_consumer(comp, eid), counts)

        heads: dict[str, Consumer] = {}
        connectors = cfg.components[Kind.CONNECTOR]
        pending = dict(cfg.pipelines)
        while pending:
            progressed = False
            for pid, p in list(pending.items()):
                outs = [consumers.get((Kind.CONNECTOR if e in connectors else Kind.EXPORTER, e))
                        for e in p.exporters]
                if any(c is None for c in outs):
                    continue
                nxt = fan_out([c for c in outs if c is not None])
                for proc_id in reversed(p.processors):
                    comp = self._create(ProcessorCreateSettings(
                        id=proc_id, logger=self._logger(Kind.PROCESSOR, proc_id), telemetry=tel,
                        signal=p.signal, pipeline_id=pid, next_consumer=nxt), pid)
                    nxt = _as_consumer(comp, proc_id)
                heads[pid] = nxt
                del pending[pid]
                progressed = True
            for cid in connectors:
                if (Kind.CONNECTOR, cid) in consumers:
                    continue
                fed = [p for p in cfg.pipelines.values() if cid in p.receivers]
                if not fed or any(p.id not in heads for p in fed):
                    continue
                comp = self._create(ConnectorCreateSettings(
                    id=cid, logger=self._logger(Kind.CONNECTOR, cid), telemetry=tel,
                    consumers=self._signal_consumers(fed, heads)))
                consumers[(Kind.CONNECTOR, cid)] = _as_consumer(comp, cid)
                progressed = True
            if not progressed:  # validation rejects cycles; this guards against bugs
                raise RuntimeError(f"cannot order pipelines {sorted(pending)}")

        receiver_ids = sorted({r for p in cfg.pipelines.values() for r in p.receivers
                               if r in cfg.components[Kind.RECEIVER]})
        for rid in receiver_ids:
            fed = [p for p in cfg.pipelines.values() if rid in p.receivers]
            counts = self._in_flight[(Kind.RECEIVER, rid)] = InFlight()
            self._create(ReceiverCreateSettings(
                id=rid, logger=self._logger(Kind.RECEIVER, rid), telemetry=tel,
                consumers={s: Tracked(c, counts)
                           for s, c in self._signal_consumers(fed, heads).items()}))

    @staticmethod
    def _signal_consumers(fed: list[PipelineConfig],
                          heads: dict[str, Consumer]) -> dict[Signal, Consumer]:
        by_signal: dict[Signal, list[Consumer]] = {}
        for p in fed:
            by_signal.setdefault(p.signal, []).append(heads[p.id])
        return {s: fan_out(cs) for s, cs in by_signal.items()}

    # Lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        self._loop_lag.start()
        for entry in self.entries:
            try:
                await entry.component.start(self)
            except Exception as exc:
                log.error("component failed to start", extra={"component": entry.name,
                                                               "error": str(exc)})
                await self.shutdown(drain_seconds=10)
                raise
            self._started_entries.append(entry)
        self._started = True
        log.info("otelpipe started", extra={"pipelines": sorted(self.config.pipelines)})

    async def shutdown(self, drain_seconds: float | None = None) -> bool:
        """Stop in reverse start order; returns False if the drain timed out."""
        self._started = False
        if drain_seconds is None:
            drain_seconds = self.config.service.shutdown_timeout
        deadline = time.monotonic() + drain_seconds
        clean = True
        # Receivers stop first and wait for their in-flight requests, which may wait in
        # turn for data a processor holds (the batch processor acknowledges after
        # delivery): let every component release what it holds as soon as the first
        # shutdown (a receiver's: no new requests) has begun, not when its turn comes.
        asyncio.get_running_loop().call_soon(_begin_shutdown_of, list(self._started_entries))
        for entry in reversed(self._started_entries):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(entry.component.shutdown(), remaining)
            except TimeoutError:
                clean = False
                log.error("component did not drain in time", extra={"component": entry.name})
            except Exception as exc:
                clean = False
                log.error("component failed to shut down", extra={"component": entry.name,
                                                                   "error": str(exc)})
        self._started_entries.clear()
        self._loop_lag.stop()
        return clean

    def undrained(self) -> list[dict[str, Any]]:
        """What is still held, per exporter (queue size, items inside `consume`) and
        per receiver (requests in flight): what a drain cut short leaves behind."""
        out: list[dict[str, Any]] = []
        for entry in self.entries:
            counts = self._in_flight.get((entry.kind, entry.id))
            if counts is None or entry.pipeline is not None:
                continue
            if entry.kind is Kind.EXPORTER:
                health = entry.component.health()
                out.append({"component": entry.name, "queue_size": health.queue_size or 0,
                            "items_in_flight": counts.items})
            else:
                out.append({"component": entry.name, "requests_in_flight": counts.requests,
                            "items_in_flight": counts.items})
        return out


def _begin_shutdown_of(entries: list[ComponentEntry]) -> None:
    for entry in entries:
        try:
            entry.component.begin_shutdown()
        except Exception as exc:
            log.error("component failed to begin shutdown",
                      extra={"component": entry.name, "error": str(exc)})


def _as_consumer(component: Component, cid: ComponentID) -> Consumer:
    if not isinstance(component, Consumer):
        raise TypeError(f"component {cid} does not consume data")
    return component


def exit_undrained(service: Service, sig: os_signal.Signals) -> None:
    """A second signal during the drain: say what is left, exit at once (128 + signal,
    as shells report a process a signal ended: 130 for SIGINT, 143 for SIGTERM)."""
    try:
        log.error("second signal: exiting without draining",
                  extra={"signal": sig.name, "not_drained": service.undrained()})
    finally:
        for handler in logging.getLogger("otelpipe").handlers:
            handler.flush()
        os._exit(128 + int(sig))


class RunHooks(Protocol):
    """What a process of several adds to `run`: the supervisor (spawn the workers once the
    primary runs, drain them before it) or a worker (its control socket)."""

    async def started(self, service: Service) -> None: ...

    async def stopping(self) -> None: ...

    def second_signal(self, sig: os_signal.Signals) -> bool:
        """A second signal arrived during the drain: pass it on; False ignores it."""
        ...


async def run(config: Config, *, telemetry: Telemetry | None = None,
              hooks: RunHooks | None = None,
              stop_signals: tuple[os_signal.Signals, ...] = (os_signal.SIGTERM,
                                                             os_signal.SIGINT)) -> int:
    """Run until one of `stop_signals` (SIGTERM, SIGINT), then drain within
    service.shutdown_timeout; a second signal during the drain exits at once
    (`exit_undrained`)."""
    service = Service(config, telemetry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: os_signal.Signals) -> None:
        if stop.is_set():
            if hooks is not None and not hooks.second_signal(sig):
                return
            exit_undrained(service, sig)
        stop.set()

    for sig in stop_signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await service.start()
        if hooks is not None:
            await hooks.started(service)
    except Exception as exc:
        if service.started():  # a hook failed: the service itself runs
            log.error("could not start", extra={"error": str(exc)})
            if hooks is not None:
                await hooks.stopping()
            await service.shutdown()
        return 1
    await stop.wait()
    deadline = time.monotonic() + config.service.shutdown_timeout
    log.info("shutting down", extra={"timeout_s": config.service.shutdown_timeout,
                                     "hint": "a second SIGINT/SIGTERM exits at once, "
                                             "without draining"})
    if hooks is not None:
        await hooks.stopping()  # the workers' drain: part of the same deadline
    clean = await service.shutdown(drain_seconds=max(0.1, deadline - time.monotonic()))
    log.info("stopped", extra={"drained": clean})
    return 0
