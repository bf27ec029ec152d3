"""The status page's view of the `slo` connector: the real connector, fed with OTLP
metrics, read through its `status()` (`pipeline.slo.engine.SLOStatus`)."""

from __future__ import annotations

import pytest

from pipeline.component import Component, ComponentID, Kind
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.connectors.slo.connector import SLOConnector
from pipeline.extensions._statuspage.render import render_burndown
from pipeline.extensions._statuspage.view import read_slos, slo_json, slo_view
from tests.support import connector_settings
from tests.unit.connectors.slo.support import StaticHost
from tests.unit.slo.sim import DAY, MINUTE, Clock, RedTraffic


async def fed_connector(clock: Clock) -> SLOConnector:
    """2 hours of 1000 requests a minute; 10% errors in the last 10 minutes."""
    config = SLOConnectorConfig.model_validate({"slos": [
        {"name": "api-availability", "service": "api", "objective": 99.9,
         "display_name": "API availability",
         "sli": {"type": "availability", "match": {"service.name": "api"}}}]})
    conn = SLOConnector(connector_settings("slo/api"), config, clock=clock)
    traffic = RedTraffic(clock)
    for minute in range(120):
        traffic.requests(1000, errors=100 if minute >= 110 else 0)
        clock.advance(MINUTE)
        await conn.consume(traffic.batch())
        await conn.flush()
    return conn


async def test_slo_view_of_the_real_connector() -> None:
    clock = Clock()
    conn = await fed_connector(clock)
    [status] = conn.status()
    v = slo_view(status, "slo/api")
    assert (v.name, v.service, v.objective, v.period) == ("api-availability", "api", 0.999,
                                                          30 * DAY)
    assert v.description == "API availability"
    assert v.connector == "slo/api"
    assert v.budget_remaining == pytest.approx(status.error_budget_remaining)
    assert v.budget_remaining == pytest.approx(1 - (1000 / 120000) / 0.001)  # overspent
    assert v.sli["5m"] == pytest.approx(0.9)
    assert v.burn_rates["5m"] == pytest.approx(100)
    assert v.alerts
    assert v.alerts[0]["severity"] == "page"
    assert v.alerts[0]["windows"] in ("1h/5m", "6h/30m")
    assert v.series
    assert v.series[-1][1] == pytest.approx(v.budget_remaining)
    assert v.events == {"good": 119000.0, "bad": 1000.0, "total": 120000.0}
    svg = render_burndown(slo_json(v), clock.s)
    assert '<polyline class="budget"' in svg
    assert 'data-slo="api-availability"' in svg


async def test_read_slos_finds_the_slo_connectors_of_the_host() -> None:
    conn = await fed_connector(Clock())
    host = StaticHost({(Kind.CONNECTOR, ComponentID("slo", "api")): conn,
                       (Kind.EXTENSION, ComponentID("health")): Component()})
    [view] = read_slos(host)
    assert (view.name, view.connector) == ("api-availability", "slo/api")
    assert read_slos(None) == []
