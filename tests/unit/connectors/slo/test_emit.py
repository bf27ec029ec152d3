"""The SLO metrics the connector emits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Sink
from tests.unit.connectors.slo.support import (
    AVAILABILITY,
    LATENCY,
    attrs,
    new_sim,
)

# --- output ---------------------------------------------------------------------------


async def test_emitted_metrics() -> None:
    metrics = Sink()
    sim = new_sim(slos=[AVAILABILITY, LATENCY], metrics=metrics)
    await sim.run(60, step=10)
    await sim.run(10, error_ratio=1.0)
    last = metrics.batches[-1].message
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    for rm in last.resource_metrics:
        assert [(kv.key, kv.value.string_value) for kv in rm.resource.attributes] == [
            ("service.name", "api")]
        for m in rm.scope_metrics[0].metrics:
            for dp in m.gauge.data_points:
                points[(m.name, tuple(sorted(attrs(dp).items())))] = dp.as_double
    base = (("service.name", "api"), ("slo.name", "api-availability"))

    def get(name: str, *extra: tuple[str, str]) -> float:
        return points[(name, tuple(sorted((*base, *extra))))]

    assert get("slo.sli", ("slo.window", "5m")) == 0.0
    assert get("slo.burn_rate", ("slo.window", "5m")) == pytest.approx(1000.0)
    # 1h window at minute 70: the quiet batches of minutes 20..60 (50,000) + the outage
    assert get("slo.sli", ("slo.window", "1h")) == pytest.approx(50 / 60)
    assert get("slo.alert.firing", ("alert.severity", "page")) == 1.0
    assert get("slo.alert.firing", ("alert.severity", "ticket")) == 0.0
    assert get("slo.objective") == 0.999
    assert get("slo.error_budget.remaining") == pytest.approx(1 - (10 / 70) / 0.001)
    windows = {dict(k[1])["slo.window"] for k in points if k[0] == "slo.sli"
               and dict(k[1])["slo.name"] == "api-availability"}
    assert windows == {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}
