"""Alert events read from log records: state words, windows, burn rates, categories."""

from __future__ import annotations

from pipeline.exporters.alertmanager.events import category_of, event_from_record

NOW = 1_700_000_000.0


def test_event_parsing_variants() -> None:
    ev = event_from_record({"slo.name": "a", "alert.state": "RESOLVED",
                            "alert.windows": "6h,30m", "alert.burn_rates": {"6h": 7}},
                           now=NOW)
    assert ev is not None
    assert not ev.firing
    assert ev.windows == "6h/30m"
    assert ev.burn_rates == {"6h": 7.0}
    assert ev.time == NOW
    assert ev.severity == "page"
    assert event_from_record({"alert.state": "firing"}, now=NOW) is None
    assert category_of("db-consistency") == "consistency"
    assert category_of("api-latency-p95") == "latency"
    assert category_of("x", "availability") == "availability"
    assert category_of("checkout") == "burn-rate"
