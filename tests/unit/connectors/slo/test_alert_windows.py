"""One alert, one set of windows: `/status.json`, the alert log record and the
Alertmanager labels name the same windows for the whole firing episode.

A slow burn fires the page through its 6h/30m rule; a spike then makes the 1h/5m
rule hold too. The engine used to switch the firing alert to 1h/5m silently: the
status page said 1h/5m while the record (and Alertmanager's `window` label, the
alert's identity there) said 6h/30m.
"""

from __future__ import annotations

from typing import Any

from pipeline.exporters.alertmanager.events import events_from_batch
from pipeline.extensions._statuspage.view import slo_json, slo_view
from tests.support import Sink
from tests.unit.connectors.slo.support import attrs, new_sim


async def test_status_json_and_alert_records_name_the_same_windows() -> None:
    logs = Sink()
    sim = new_sim(logs=logs)
    await sim.run(2 * 24 * 60, step=10)
    checked = 0
    switched = False
    # 8x (6h/30m holds, 1h/5m does not), then 50x (both hold), then 8x again.
    for minutes, ratio in ((300, 0.008), (30, 0.05), (60, 0.008)):
        for _ in range(minutes):
            await sim.run(1, error_ratio=ratio)
            records = [r for b in logs.batches for rl in b.message.resource_logs
                       for sl in rl.scope_logs for r in sl.log_records]
            firing: dict[str, dict[str, Any] | None] = {}
            for rec in records:  # the last record per severity
                a = attrs(rec)
                firing[a["alert.severity"]] = a if a["alert.state"] == "firing" else None
            am: dict[str, str | None] = {}
            for b in logs.batches:
                for ev in events_from_batch(b, sim.clock.s):
                    am[ev.severity] = ev.windows if ev.firing else None
            [status] = sim.conn.status()
            page = slo_json(slo_view(status, "slo"))
            for alert in page["alerts"]:  # the firing alerts of /status.json
                record = firing[alert["severity"]]
                assert record is not None
                assert alert["windows"].split("/") == record["alert.windows"].split(","), \
                    (sim.minute, alert, record["alert.windows"])
                assert alert["windows"] == am[alert["severity"]]  # the `window` label
                checked += 1
            rules = {st.severity: st for st in status.alerts}
            page_status = rules.get("page")
            if page_status and page_status.firing and ratio == 0.05:
                rates = status.burn_rates
                switched = switched or ((rates["1h"] or 0) >= 14.4
                                        and (rates["5m"] or 0) >= 14.4)
    assert sim.first("page", "firing") is not None
    assert switched, "the 1h/5m rule never held while the page fired"
    assert checked > 60
    assert [sev for _, sev, st in sim.events if st == "firing"].count("page") == 1
