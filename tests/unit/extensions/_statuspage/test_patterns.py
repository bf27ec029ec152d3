"""The log patterns section of the status page: read from the host's connectors by shape,
passed to /status.json, rendered escaped."""

from __future__ import annotations

import re
from typing import Any

from pipeline.component import (
    ComponentEntry,
    ComponentID,
    Kind,
    Signal,
)
from pipeline.connectors.logpatterns.config import LogPatternsConfig
from pipeline.connectors.logpatterns.connector import LogPatternsConnector
from pipeline.extensions._statuspage.patterns import read_patterns, render_patterns
from pipeline.extensions._statuspage.render import render_html
from tests.support import Sink, connector_settings
from tests.unit.connectors.spans import FakeClock, log_batch
from tests.unit.extensions._statuspage.hosts import EntriesHost


def rec(tid: str, template: str, body: str) -> dict[str, Any]:
    return {"attrs": {"log.template_id": tid, "log.template": template}, "body": body}


async def connector() -> tuple[LogPatternsConnector, FakeClock]:
    clock = FakeClock(0)
    cfg = LogPatternsConfig.model_validate({
        "warmup": "1m", "rate_change": {"window": "1m", "baseline": "5m", "min_count": 5}})
    c = LogPatternsConnector(connector_settings("logpatterns/app",
                                                consumers={Signal.LOGS: Sink()}), cfg,
                             clock=clock)
    # Baseline during the warm-up: 12 services' worth of templates in "api".
    await c.consume(log_batch([rec(f"t{i}", f"step {i} done in <*>", f"step {i} done in 3")
                               for i in range(12) for _ in range(i + 1)]))
    await c.consume(log_batch([rec("w", "GET <*> 200", "GET / 200")] * 3, service="web"))
    clock.advance(120)
    # After it: an old new pattern (more than an hour before "now"), a recent one with
    # markup in it, and a rate change of t0.
    await c.consume(log_batch([rec("old", "old <*>", "old 1")]))
    clock.advance(7200)
    await c.consume(log_batch([rec("x", "<script>alert(<*>)</script>",
                                   "<script>alert(1)</script>\nsecond line")], service="web"))
    for _ in range(6):  # t0: 1 per minute, then 40 in a minute
        await c.consume(log_batch([rec("t0", "step 0 done in <*>", "step 0 done in 1")]))
        clock.advance(60)
    await c.consume(log_batch([rec("t0", "step 0 done in <*>", "step 0 done in 1")] * 40))
    clock.advance(60)
    await c.tick()
    return c, clock


async def test_read_and_render_a_logpatterns_connector() -> None:
    c, clock = await connector()
    cid = ComponentID.parse("logpatterns/app")
    host = EntriesHost([ComponentEntry(Kind.CONNECTOR, cid, c),
                        ComponentEntry(Kind.CONNECTOR, cid, c)])
    items = read_patterns(host)
    assert len(items) == 1  # once
    s = items[0]
    assert s["connector"] == "logpatterns/app"
    assert s["patterns"] == 15
    assert not s["warming_up"]
    # Top per service: at most 10, by count.
    assert [p["template_id"] for p in s["top"]["api"]] == [
        "t0", "t11", "t10", "t9", "t8", "t7", "t6", "t5", "t4", "t3"]
    assert s["top"]["api"][0]["count"] == 47
    assert [p["template_id"] for p in s["top"]["web"]] == ["w", "x"]
    # New in the last hour: x only ("old" is older than an hour); newest first.
    assert [(ev["template_id"], ev["first_line"]) for ev in s["new"]] == [
        ("x", "<script>alert(1)</script>")]
    assert [(ev["template_id"], ev["direction"], ev["window_count"])
            for ev in s["rate_changes"]] == [("t0", "up", 40)]

    html = render_patterns(items, clock() / 1e9)
    assert '<section class="card patterns" data-connector="logpatterns/app">' in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&lt;*&gt;)&lt;/script&gt;" in html
    assert "second line" not in html
    assert len(re.findall(r'<tr class="new-pattern" data-template-id="x"', html)) == 1
    assert 'data-template-id="old"' not in html.split('<table class="top"')[0]
    assert '<tr class="rate-change" data-template-id="t0" data-direction="up">' in html
    assert "40 vs 1.0" in html
    assert html.count('<tr class="pattern"') == 12  # 10 in api, 2 in web
    page = render_html({"status": "healthy", "patterns": items}, clock() / 1e9)
    assert "<h2>Log patterns</h2>" in page


async def test_warming_up_and_empty() -> None:
    clock = FakeClock(0)
    c = LogPatternsConnector(connector_settings("logpatterns"),
                             LogPatternsConfig.model_validate({"warmup": "10m"}), clock=clock)
    s = c.pattern_status()
    assert s["warming_up"]
    html = render_patterns([s], 0.0)
    assert "warming up until 00:10:00 UTC" in html
    assert "No patterns yet." in html
    assert "No new patterns in the last hour." in html
    assert "No rate changes in the last hour." in html


def test_no_connector_no_section() -> None:
    assert read_patterns(None) == []
    assert render_patterns([], 0.0) == ""
    assert "Log patterns" not in render_html({"status": "healthy"}, 0.0)
