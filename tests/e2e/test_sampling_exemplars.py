"""Exemplars that resolve: `redmetrics` before `tail_sampling`, with `exemplars.kept_by`
mirroring the sampler's policies. One `otelpipe run`: OTLP in → redmetrics (→ the
prometheus exporter) and → tail_sampling → file. Every exemplar scraped (OpenMetrics)
must name a trace the file exporter wrote; a second redmetrics without `kept_by`, on
the same spans, shows that without it exemplars do point at dropped traces.
"""

from __future__ import annotations

import random
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.builders import kv
from tests.support import OtelpipeProcess, eventually, free_port, with_logs

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
EXEMPLAR = re.compile(r'^(?P<name>[a-z_]+)_bucket\{.*\} \S+ # \{(?P<labels>[^}]*)\}')
TRACE_LABEL = re.compile(r'trace_id="([0-9a-f]{32})"')
MS = 1_000_000


def config(otlp: int, scrape: int, out: Path) -> dict[str, Any]:
    tail = {"decision_wait": "1s", "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 400}},
        {"name": "baseline", "type": "probabilistic",
         "probabilistic": {"sampling_percentage": 10, "hash_salt": "e2e"}}]}
    red = {"metrics_flush_interval": "500ms", "dimensions": [{"name": "http.route"}]}
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "processors": {"tail_sampling": tail},
        "connectors": {
            "forward/sample": {},
            "redmetrics": {**red, "exemplars": {"kept_by": {
                "probabilistic": {"sampling_percentage": 10, "hash_salt": "e2e"},
                "status_code_error": True, "latency_threshold_ms": 400}}},
            "redmetrics/all": {**red, "namespace": "unfiltered"}},
        "exporters": {"file": {"path": str(out)},
                      "prometheus": {"endpoint": f"127.0.0.1:{scrape}",
                                     "metric_expiration": "10m"}},
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"],
                       "exporters": ["redmetrics", "redmetrics/all", "forward/sample"]},
            "traces/sampled": {"receivers": ["forward/sample"], "processors": ["tail_sampling"],
                               "exporters": ["file"]},
            "metrics": {"receivers": ["redmetrics", "redmetrics/all"],
                        "exporters": ["prometheus"]}}},
    }


def requests(rng: random.Random, n_traces: int) -> tuple[list[bytes], set[str]]:
    """Traces of 4 spans (two per request, the halves a few requests apart); 5% have an
    error span, some are slow. Returns the serialized requests and every trace id."""
    now = time.time_ns()
    routes = ["/a", "/b", "/c"]
    traces = []
    for _ in range(n_traces):
        tid = rng.randbytes(16)
        error = rng.random() < 0.05
        spans = []
        for j in range(4):
            dur = int(rng.expovariate(1 / 60) * MS)
            spans.append((tid, rng.randbytes(8), f"op{j}", dur, 2 if error and j == 3 else 0,
                          rng.choice(routes)))
        traces.append(spans)
    bodies = []
    all_ids = {t[0][0].hex() for t in traces}
    for start in range(0, n_traces, 50):
        for half in (0, 1):
            req = ExportTraceServiceRequest()
            rs = req.resource_spans.add()
            rs.resource.attributes.append(kv("service.name", "shop"))
            ss = rs.scope_spans.add()
            for spans in traces[start:start + 50]:
                for tid, sid, name, dur, status, route in spans[2 * half:2 * half + 2]:
                    sp = ss.spans.add(trace_id=tid, span_id=sid, name=name, kind=2,
                                      start_time_unix_nano=now - dur, end_time_unix_nano=now)
                    sp.status.code = status
                    sp.attributes.append(kv("http.route", route))
            bodies.append(req.SerializeToString())
    return bodies, all_ids


def exported_traces(out: Path) -> dict[str, int]:
    """trace id (hex) -> spans the file exporter wrote."""
    got: dict[str, int] = {}
    if not out.exists():
        return got
    for line in out.read_bytes().splitlines():
        for rs in orjson.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss["spans"]:
                    got[sp["traceId"]] = got.get(sp["traceId"], 0) + 1
    return got


def scrape_exemplars(url: str) -> dict[str, set[str]]:
    req = urllib.request.Request(url, headers={
        "Accept": "application/openmetrics-text;version=1.0.0"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = EXEMPLAR.match(line)
        if m:
            t = TRACE_LABEL.search(m["labels"])
            if t:
                out.setdefault(m["name"], set()).add(t[1])
    return out


def test_every_exemplar_resolves_to_an_exported_trace(tmp_path: Path) -> None:
    otlp, scrape = free_port(), free_port()
    out = tmp_path / "sampled.jsonl"
    rng = random.Random(61)
    bodies, all_ids = requests(rng, 1000)
    seen: dict[str, set[str]] = {}
    proc = OtelpipeProcess(config(otlp, scrape, out), tmp_path, wait_ports=(otlp, scrape))
    with proc:
        with grpc.insecure_channel(f"127.0.0.1:{otlp}") as ch:
            export = ch.unary_unary(TRACES_METHOD)
            for i, body in enumerate(bodies):
                export(body, timeout=30)
                if i % 8 == 7:  # scrape while the flushes go on (exemplars change per flush)
                    for name, ids in scrape_exemplars(f"http://127.0.0.1:{scrape}/metrics"
                                                      ).items():
                        seen.setdefault(name, set()).update(ids)

        def settled() -> dict[str, int]:
            got = exported_traces(out)
            assert got, "nothing exported yet"
            for name, ids in scrape_exemplars(f"http://127.0.0.1:{scrape}/metrics").items():
                seen.setdefault(name, set()).update(ids)
            time.sleep(0.5)
            assert exported_traces(out) == got, "still exporting"
            return got

        exported = eventually(settled, timeout=60, what=with_logs("the decisions", proc))
    filtered = seen.get("traces_span_metrics_duration_seconds", set())
    unfiltered = seen.get("unfiltered_duration_seconds", set())
    dangling = filtered - set(exported)
    print(f"\n{len(exported)} of {len(all_ids)} traces kept; exemplars: kept_by "
          f"{len(filtered)} (dangling {len(dangling)}), without kept_by {len(unfiltered)} "
          f"(dangling {len(unfiltered - set(exported))})")
    assert set(exported) <= all_ids
    assert set(exported.values()) == {4}, "a trace was exported partially"
    assert len(filtered) >= 10
    assert not dangling
    # Without kept_by most exemplars point at dropped traces: the check above can fail.
    assert unfiltered - set(exported)
