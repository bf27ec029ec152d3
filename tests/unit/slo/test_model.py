"""The shared model: selectors and alerting rules."""

from __future__ import annotations

import pytest

from pipeline.slo.model import AlertingConfig, BurnRateRule, Selector


def test_histogram_thresholds_are_lte_only() -> None:
    with pytest.raises(ValueError, match="only `op: lte`"):
        Selector(metric="traces.span.metrics.duration", op="lt", value=0.2)
    assert Selector.model_validate({"metric": "m", "le": "200ms"}) == Selector(
        metric="m", op="lte", value=0.2)


def test_burn_rate_thresholds_scale_with_the_period() -> None:
    page = BurnRateRule.model_validate({"severity": "page", "long_window": "1h",
                                        "short_window": "5m", "burn_rate": 14.4})
    month = 30 * 86400
    assert page.threshold(month, month) == pytest.approx(14.4)
    # 7 days: the same 2% of the budget in an hour is a burn rate of 14.4 * 7/30.
    assert page.threshold(7 * 86400, month) == pytest.approx(3.36)
    by_budget = BurnRateRule.model_validate({"severity": "page", "long_window": "1h",
                                             "short_window": "5m", "budget_consumed": "2%"})
    assert by_budget.threshold(month, month) == pytest.approx(14.4)
    assert by_budget.threshold(7 * 86400, month) == pytest.approx(3.36)
    with pytest.raises(ValueError, match="exactly one of burn_rate and budget_consumed"):
        BurnRateRule.model_validate({"severity": "page", "long_window": "1h",
                                     "short_window": "5m"})
    with pytest.raises(ValueError, match="short_window must be shorter"):
        BurnRateRule.model_validate({"severity": "page", "long_window": "5m",
                                     "short_window": "1h", "burn_rate": 1})


def test_default_alerting_is_the_workbook() -> None:
    cfg = AlertingConfig()
    got = [(r.severity, r.long_window, r.short_window, r.burn_rate) for r in cfg.rules]
    assert got == [("page", 3600, 300, 14.4), ("page", 21600, 1800, 6),
                   ("ticket", 86400, 7200, 3), ("ticket", 259200, 21600, 1)]
    assert cfg.min_events_for(300) == 10
    per = AlertingConfig.model_validate({"min_events": {"5m": 50, "default": 5}})
    assert (per.min_events_for(300), per.min_events_for(3600)) == (50, 5)
