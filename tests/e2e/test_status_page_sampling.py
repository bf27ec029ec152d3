"""Headless Chromium loads `/status` of a real `otelpipe run` with a tail_sampling
processor fed real OTLP traffic: the sampling card shows the decisions and each
policy's votes, and /status.json and /metrics agree with what was sent."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.test_status_page_chromium import chromium, chromium_args
from tests.support import OtelpipeProcess, eventually, free_port, http_get
from tests.unit.processors.tail_sampling.spans import S, request

__all__ = ["chromium"]  # the session fixture


def test_sampling_section_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    otlp, health = free_port(), free_port()
    cfg = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "processors": {"tail_sampling": {
            "decision_wait": "300ms", "num_traces": 1000,
            "policies": [{"name": "errors", "type": "status_code",
                          "status_code": {"status_codes": ["ERROR"]}},
                         {"name": "slow", "type": "latency",
                          "latency": {"threshold_ms": 200}}]}},
        "exporters": {"nop": {}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {"traces": {
            "receivers": ["otlp"], "processors": ["tail_sampling"], "exporters": ["nop"]}}},
    }
    # 30 traces of 2 spans: 1..5 have an error, 6..8 are slow.
    spans = [S(t, str(i), status="ERROR" if t <= 5 and i else "UNSET",
               ms=300 if 6 <= t <= 8 else 10) for t in range(1, 31) for i in range(2)]
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(otlp, health)) as proc:
        req = urllib.request.Request(f"http://127.0.0.1:{otlp}/v1/traces",
                                     data=request(spans).SerializeToString(),
                                     headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

        def decided() -> dict[str, Any] | None:
            _, body = http_get(f"http://127.0.0.1:{health}/status.json")
            items = json.loads(body).get("sampling") or []
            return items[0] if items and items[0]["traces_in_memory"] == 0 and \
                items[0]["traces_sampled"] + items[0]["traces_not_sampled"] == 30 else None

        s = eventually(decided, what="30 traces decided")
        assert s is not None
        assert s["traces_sampled"] == 8, proc.logs()
        assert s["policies"] == [{"name": "errors", "sampled": 5, "not_sampled": 25},
                                 {"name": "slow", "sampled": 3, "not_sampled": 27}]
        _, metrics = http_get(f"http://127.0.0.1:{health}/metrics")
        assert re.search(rb'otelpipe_processor_tail_sampling_policy_decisions_total\{[^}]*'
                         rb'policy="slow"[^}]*sampled="true"[^}]*\} 3\.0', metrics)

        dom = subprocess.run([*chromium_args(chromium, tmp_path / "profile"), "--dump-dom",
                              f"http://127.0.0.1:{health}/status"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert dom.returncode == 0, dom.stderr[-3000:]
        html = dom.stdout
        (tmp_path / "status.html").write_text(html)
        assert "<h2>Tail sampling</h2>" in html
        assert re.search(r'<section class="card sampling" data-processor="tail_sampling" '
                         r'data-pipeline="traces">', html)
        assert '<b class="sampled">8</b>' in html
        assert re.search(r'<tr class="policy" data-policy="errors"><td>errors</td>'
                         r'<td class="num">5</td><td class="num">25</td>', html), html
