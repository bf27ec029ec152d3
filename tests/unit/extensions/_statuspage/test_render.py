"""HTML and SVG of the status page, from snapshots."""

from __future__ import annotations

from pipeline.extensions._statuspage.render import render_burndown, render_html

DAY = 86400.0
NOW = 1_700_000_000.0


def test_burndown_chart_axes_and_overspent_budget() -> None:
    slo = {"name": "api", "period_seconds": 30 * DAY,
           "budget_series": [(NOW - 20 * DAY, 1.0), (NOW - DAY, 0.1), (NOW, -0.3)]}
    svg = render_burndown(slo, NOW)
    assert svg.startswith('<svg class="burndown" id="burndown-api" data-slo="api"')
    assert svg.count('class="grid"') == 7  # -50 % … 100 % in 25 % steps
    assert ">-50%</text>" in svg
    assert ">100%</text>" in svg
    assert ">now</text>" in svg
    assert ">−30d</text>" in svg
    assert "#dc2626" in svg
    assert ">-30.0%</text>" in svg
    empty = render_burndown({"name": "x", "budget_series": []}, NOW)
    assert "no data yet" in empty
    assert "<polyline" not in empty


def test_render_html_without_slos_or_refresh() -> None:
    page = render_html({"status": "unhealthy", "refresh_seconds": 0, "components": [],
                        "pipelines": [], "slos": []}, NOW)
    assert "http-equiv" not in page
    assert "No SLOs" in page
    assert 'data-status="unhealthy"' in page
