"""The engine driven through its `redmetrics` front end (spans in, metrics out)."""

from __future__ import annotations

from typing import Any

from pipeline.component import Signal
from pipeline.connectors.redmetrics import RedMetricsConfig, RedMetricsConnector
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, connector_settings
from tests.unit.connectors.spans import FakeClock

CALLS = "traces.span.metrics.calls"
DURATION = "traces.span.metrics.duration"


def make(sink: Sink, clock: FakeClock | None = None, telemetry: Telemetry | None = None,
         **cfg: Any) -> RedMetricsConnector:
    settings = connector_settings("redmetrics", telemetry=telemetry,
                                  consumers={Signal.METRICS: sink})
    return RedMetricsConnector(settings, RedMetricsConfig.model_validate(cfg),
                               clock=clock or FakeClock())


def by_name(points: list[tuple[dict[str, Any], dict[str, Any], Any]], key: str = "span.name"
            ) -> dict[Any, tuple[dict[str, Any], dict[str, Any], Any]]:
    return {p[1].get(key): p for p in points}
