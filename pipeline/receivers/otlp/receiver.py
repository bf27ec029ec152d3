"""The otlp receiver component: its state, the batches it delivers, its lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pipeline.component import Component, Consumer, Host, ReceiverCreateSettings, Signal
from pipeline.pdata.batch import Batch
from pipeline.receiverhelper.auth import Authenticator
from pipeline.receiverhelper.budget import ListenerBudget
from pipeline.receiverhelper.grpcserver import listener_budget
from pipeline.receiverhelper.http import HTTPServer
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.receivers._otlpdecode import DecodeWorker, Prepared
from pipeline.receivers.otlp import grpcservice, httpservice
from pipeline.receivers.otlp.config import GRPCSettings, HTTPSettings, OTLPReceiverConfig
from pipeline.receivers.otlp.grpcservice import GRPC_SHUTDOWN_GRACE
from pipeline.telemetry.metrics import CounterSpec

if TYPE_CHECKING:
    import grpc.aio
    from aiohttp import web

_SIGNAL_LABELS = ("receiver", "transport", "signal")
ATTRIBUTES_DROPPED = CounterSpec(
    "otelpipe_receiver_attributes_dropped",
    "Attributes a receiver dropped from lists longer than max_attributes_per_item "
    "(added to the owner's dropped_attributes_count).", _SIGNAL_LABELS)
VALUES_TRUNCATED = CounterSpec(
    "otelpipe_receiver_attribute_values_truncated",
    "String and bytes attribute values a receiver cut to max_attribute_value_length.",
    _SIGNAL_LABELS)
EVENTS_DROPPED = CounterSpec(
    "otelpipe_receiver_span_events_dropped",
    "Span events a receiver dropped past max_events_per_span (added to the span's "
    "dropped_events_count).", _SIGNAL_LABELS)
LINKS_DROPPED = CounterSpec(
    "otelpipe_receiver_span_links_dropped",
    "Span links a receiver dropped past max_links_per_span (added to the span's "
    "dropped_links_count).", _SIGNAL_LABELS)
ARRAYS_TRUNCATED = CounterSpec(
    "otelpipe_receiver_attribute_arrays_truncated",
    "Array and key-value list attribute values a receiver cut to "
    "max_attribute_array_length elements.", _SIGNAL_LABELS)


class OTLPReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: OTLPReceiverConfig):
        self.settings = settings
        self.config = config
        self.log = settings.logger
        self.consumers: dict[Signal, Consumer] = dict(settings.consumers)
        self._grpc_server: grpc.aio.Server | None = None
        grpc_cfg = config.protocols.grpc
        self._grpc_budget = listener_budget(
            grpc_cfg.max_in_flight_bytes, grpc_cfg.peer_error_budget, grpc_cfg.endpoint,
            settings) if grpc_cfg is not None else ListenerBudget(0)
        self._http_server: HTTPServer | None = None
        self.grpc_port: int | None = None
        p = config.protocols
        self._grpc_auth = Authenticator(p.grpc.auth, settings, "grpc") \
            if p.grpc is not None and p.grpc.auth is not None else None
        self._http_auth = Authenticator(p.http.auth, settings, "http") \
            if p.http is not None and p.http.auth is not None else None
        # Decodes large bodies off the event loop (started on the first one).
        self._decoder = DecodeWorker()

    def _no_pipeline(self, signal: Signal) -> str:
        return (f"receiver {self.settings.id} is in no {signal.value} pipeline; "
                f"add it to a {signal.value} pipeline's receivers to accept {signal.value}")

    def _count_cuts(self, signal: Signal, prepared: Prepared, transport: str) -> None:
        labels = (str(self.settings.id), transport, signal.value)
        telemetry = self.settings.telemetry
        for spec, n in ((ATTRIBUTES_DROPPED, prepared.attributes_dropped),
                        (VALUES_TRUNCATED, prepared.values_truncated),
                        (EVENTS_DROPPED, prepared.events_dropped),
                        (LINKS_DROPPED, prepared.links_dropped),
                        (ARRAYS_TRUNCATED, prepared.arrays_truncated)):
            if n or spec is ATTRIBUTES_DROPPED or spec is VALUES_TRUNCATED:
                telemetry.counter(spec).labels(*labels).inc(n)

    def _batch_of(self, signal: Signal, prepared: Prepared, obs: ReceiverObs,
                  transport: str) -> tuple[Batch | None, int]:
        """The batch to deliver (None if no item is left) and the items rejected."""
        bad = prepared.rejected
        if bad:
            obs.rejected(signal, bad)
        if prepared.attributes_dropped or prepared.values_truncated or prepared.events_dropped \
                or prepared.links_dropped or prepared.arrays_truncated:
            self._count_cuts(signal, prepared, transport)
        total = prepared.items
        if not total:
            return None, bad
        if prepared.raw is not None:
            return Batch(signal, raw=prepared.raw, items=total), bad
        return Batch(signal, message=prepared.message, items=total), bad

    # gRPC -------------------------------------------------------------------------------

    def _grpc_export(self, signal: Signal) -> Callable[[bytes, Any], Awaitable[bytes]]:
        return grpcservice.grpc_export(self, signal)

    async def _start_grpc(self, cfg: GRPCSettings) -> None:
        await grpcservice.start_grpc(self, cfg)

    # HTTP -------------------------------------------------------------------------------

    def _http_export(self, signal: Signal, cfg: HTTPSettings
                     ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        return httpservice.http_export(self, signal, cfg)

    async def _start_http(self, cfg: HTTPSettings) -> None:
        await httpservice.start_http(self, cfg)

    # Lifecycle --------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        protocols = self.config.protocols
        for auth in (self._grpc_auth, self._http_auth):
            if auth is not None:
                await auth.start()
        if protocols.grpc is not None:
            await self._start_grpc(protocols.grpc)
        if protocols.http is not None:
            try:
                await self._start_http(protocols.http)
            except BaseException:
                await self.shutdown()
                raise

    async def shutdown(self) -> None:
        """Stop accepting requests; let those in flight finish (bounded)."""
        tasks = []
        if self._grpc_server is not None:
            tasks.append(self._grpc_server.stop(GRPC_SHUTDOWN_GRACE))
            self._grpc_server = None
            self._grpc_budget.close()
        if self._http_server is not None:
            tasks.append(self._http_server.stop())
            self._http_server = None
        if tasks:
            await asyncio.gather(*tasks)
        for auth in (self._grpc_auth, self._http_auth):
            if auth is not None:
                await auth.stop()
        await self._decoder.close()
