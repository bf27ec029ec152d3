"""Helpers of the `slo` connector tests: the connector driven by a simulated clock.

Real OTLP metrics batches (cumulative counters and histograms as `redmetrics`
emits them, gauges as `httpcheck` / `replication_lag` emit them) go in through
`consume`; `flush` is called once per simulated minute (the flush interval);
the injected clock is advanced in between. 30 days run in well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.component import Component, ComponentID, Host, Kind, PipelineInfo, Signal
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.connectors.slo.connector import SLOConnector
from pipeline.pdata.anyvalue import any_value_to_python
from tests.support import Sink, connector_settings
from tests.unit.slo.sim import MINUTE, T0_S, Clock, RedTraffic

RPM = 1000  # requests per minute

AVAILABILITY: dict[str, Any] = {
    "name": "api-availability", "service": "api", "objective": 99.9, "window": "30d",
    "sli": {"type": "availability", "match": {"service.name": "api"}}}
LATENCY: dict[str, Any] = {
    "name": "api-latency-p95", "service": "api", "objective": 95, "window": "30d",
    "sli": {"type": "latency", "threshold": "200ms",
            "match": {"service.name": "api", "span.kind": "SPAN_KIND_SERVER"}}}


def make(clock: Clock, *, slos: list[dict[str, Any]] | None = None,
         logs: Sink | None = None, metrics: Sink | None = None, **cfg: Any) -> SLOConnector:
    consumers: dict[Signal, Any] = {}
    if logs is not None:
        consumers[Signal.LOGS] = logs
    if metrics is not None:
        consumers[Signal.METRICS] = metrics
    config = SLOConnectorConfig.model_validate(
        {"slos": slos or [AVAILABILITY], "flush_interval": "1m", **cfg})
    return SLOConnector(connector_settings("slo", consumers=consumers), config,
                        clock=clock)


class Sim:
    """Traffic, clock and connector; records alert transitions by minute."""

    def __init__(self, conn: SLOConnector, clock: Clock, traffic: RedTraffic):
        self.conn, self.clock, self.traffic = conn, clock, traffic
        self.events: list[tuple[float, str, str]] = []  # (minute since T0, severity, state)

    @property
    def minute(self) -> float:
        return (self.clock.s - T0_S) / MINUTE

    async def run(self, minutes: int, *, step: int = 1, error_ratio: float = 0.0,
                  rpm: int = RPM, slow_ratio: float = 0.0,
                  per_step: int | None = None) -> None:
        """`minutes` of traffic in steps of `step` minutes (one batch and one flush per
        step)."""
        for _ in range(minutes // step):
            n = rpm * step if per_step is None else per_step
            self.traffic.requests(n, errors=round(n * error_ratio), slow=round(n * slow_ratio))
            self.clock.advance(step * MINUTE)
            await self.conn.consume(self.traffic.batch())
            for tr in await self.conn.flush():
                self.events.append((self.minute, tr.severity, tr.state))

    def first(self, severity: str, state: str, after: float = 0) -> float | None:
        return next((m for m, sev, st in self.events if sev == severity and st == state
                     and m >= after), None)


def new_sim(**kw: Any) -> Sim:
    clock = Clock()
    return Sim(make(clock, **kw), clock, RedTraffic(clock))


def remaining(conn: SLOConnector, name: str = "api-availability") -> float:
    return conn.slo_status(name).error_budget_remaining


def attrs(record: Any) -> dict[str, Any]:
    return {kv.key: any_value_to_python(kv.value) for kv in record.attributes}



class StaticHost(Host):
    """A host running the given components."""

    def __init__(self, components: Mapping[tuple[Kind, ComponentID], Component] | None = None):
        self._components = dict(components or {})

    def components(self) -> Mapping[tuple[Kind, ComponentID], Component]:
        return self._components

    def pipelines(self) -> Mapping[str, PipelineInfo]:
        return {}

    def started(self) -> bool:
        return True
