"""The worker plan end to end, with real `otelpipe run` processes and a real OTLP/HTTP
client:

- RED metrics: the same spans through `service.workers: 2` and through one process
  give the same Prometheus scrape (same series, same counts, same bucket counts):
  each process aggregates its share with delta temporality, the primary merges them
  (deltatocumulative) before the prometheus exporter;
- runs-once components run in exactly one process: `filelog` reads each line once,
  `tail_sampling` sees every span of a trace although the spans arrived at different
  processes, and only the primary holds the `file` exporters' files open.

The spans are spread for sure, not by chance: every request goes on its own kept-open
connection, and the test checks (psutil) that both processes hold some of them.
"""

from __future__ import annotations

import http.client
import math
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import T0, kv
from tests.support import OtelpipeProcess, eventually, free_port, http_get, port_open

START_TIMEOUT = 60.0  # two interpreters importing on a loaded 2-core machine
REQUESTS = 24  # one connection each: all on one process with probability 2 * 2**-24
RED_PREFIX = "traces_span_metrics_"
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def red_request(i: int) -> bytes:
    """Request i: 5 spans of one service, names, kinds, statuses, routes and durations
    varied so that the spans fall into many series and buckets."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", f"svc{i % 3}"))
    ss = rs.scope_spans.add()
    for j in range(5):
        sp = ss.spans.add()
        sp.trace_id = struct.pack(">I", i) + bytes([j + 1]) * 12
        sp.span_id = struct.pack(">II", i, j)
        sp.name = f"op{(i + j) % 4}"
        sp.kind = 2 if j % 2 else 3
        if (i * 5 + j) % 7 == 0:
            sp.status.code = 2
        sp.attributes.append(kv("http.route", f"/r{j % 3}"))
        sp.start_time_unix_nano = T0
        sp.end_time_unix_nano = T0 + ((i * 37 + j * 101) % 900 + 1) * 1_000_000  # 1-900 ms
    body: bytes = req.SerializeToString()
    return body


def one_span_request(trace: int, k: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "once"))
    sp = rs.scope_spans.add().spans.add()
    sp.trace_id = struct.pack(">I", trace) + b"\x07" * 12
    sp.span_id = struct.pack(">II", trace, k)
    sp.name = f"t{trace}s{k}"
    sp.start_time_unix_nano = T0
    sp.end_time_unix_nano = T0 + 1000
    body: bytes = req.SerializeToString()
    return body


class Run(OtelpipeProcess):
    """`otelpipe run` of a config whose health extension lists the processes."""

    def __init__(self, config: dict[str, Any], home: Path, health: int):
        home.mkdir()
        super().__init__(config, home)
        self.health = health

    def processes(self, n: int) -> list[dict[str, Any]]:
        def running() -> list[dict[str, Any]] | None:
            assert self.proc is not None
            assert self.proc.poll() is None, f"otelpipe exited:\n{self.logs()}"
            if not port_open(self.health):
                return None
            # The health extension starts before the receivers: /health answers 200 once
            # every component has started (the OTLP port included).
            if http_get(f"http://127.0.0.1:{self.health}/health")[0] != 200:
                return None
            if n == 1:
                return [{"index": 0, "pid": self.pid}]
            status, body = http_get(f"http://127.0.0.1:{self.health}/health/detailed")
            workers: list[dict[str, Any]] = orjson.loads(body).get("workers", []) \
                if status == 200 else []
            ok = len(workers) == n and all(w["state"] == "running" for w in workers)
            return workers if ok else None
        found = eventually(running, timeout=START_TIMEOUT, interval=0.2,
                           what=lambda: f"{n} processes running\n{self.logs()[-3000:]}")
        assert found is not None
        return found


def post_each_on_its_own_connection(port: int, bodies: list[bytes],
                                    processes: list[dict[str, Any]]) -> dict[int, int]:
    """POST each body on a new kept-open connection; returns how many of the
    connections each process held (by index) while they were open."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in bodies]
    try:
        for conn, body in zip(conns, bodies, strict=True):
            conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            resp.read()
        return {p["index"]: sum(
            1 for c in psutil.Process(p["pid"]).net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)
            for p in processes}
    finally:
        for conn in conns:
            conn.close()


def red_config(hport: int, prom: int, health: int, workers: int) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{hport}"}}}},
        "connectors": {"redmetrics": {"dimensions": [{"name": "http.route"}],
                                      "metrics_flush_interval": "200ms"}},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{prom}"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"workers": workers, "shutdown_timeout": "10s", "extensions": ["health"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["redmetrics"]},
                                  "metrics": {"receivers": ["redmetrics"],
                                              "exporters": ["prometheus"]}}},
    }


def scrape(port: int, prefix: str) -> Series:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode())
            for s in fam.samples if s.name.startswith(prefix)}


def calls(series: Series) -> float:
    return sum(v for (name, _), v in series.items() if name == RED_PREFIX + "calls_total")


def red_scrape(tmp_path: Path, workers: int) -> tuple[Series, dict[int, int], Series]:
    """The RED series after all the spans, how many connections each process held,
    and the primary's own telemetry."""
    hport, prom, health = free_port(), free_port(), free_port()
    run = Run(red_config(hport, prom, health, workers), tmp_path / f"w{workers}", health)
    with run:
        processes = run.processes(workers)
        held = post_each_on_its_own_connection(
            hport, [red_request(i) for i in range(REQUESTS)], processes)
        spans = REQUESTS * 5

        def complete() -> Series | None:
            series = scrape(prom, RED_PREFIX)
            return series if calls(series) == spans else None
        series = eventually(complete, what=lambda: f"{spans} calls in the scrape, "
                            f"got {calls(scrape(prom, RED_PREFIX))}\n{run.logs()[-3000:]}")
        assert series is not None
        # settled: two flushes later (of every process), the same
        before = flushes(health)
        eventually(lambda: flushes(health) >= before + 2 * workers,
                   what="two more flushes of redmetrics")
        assert scrape(prom, RED_PREFIX) == series
        own = scrape(health, "otelpipe_")
    return series, held, own


def flushes(health: int) -> float:
    return sum(v for (name, labels), v in scrape(health, "otelpipe_connector_flushes").items()
               if dict(labels).get("outcome") == "ok")


def test_red_scrape_with_two_workers_equals_one_process(tmp_path: Path) -> None:
    single, _, _ = red_scrape(tmp_path, 1)
    merged, held, own = red_scrape(tmp_path, 2)
    # the spans were spread: both processes held connections, so both aggregated some
    assert sum(held.values()) == REQUESTS, held
    assert all(held.values()), held
    link = [v for (name, labels), v in own.items()
            if name == "otelpipe_receiver_accepted_items_total"
            and dict(labels).get("receiver", "").startswith("otlp/_link_merge_")]
    assert sum(link) > 0, "the worker sent no aggregates over the link"
    assert len(single) > 50  # many series: services x names x kinds x statuses x routes
    assert merged.keys() == single.keys()
    # counts and bucket counts exactly; sums of seconds up to the order of float additions
    exact = {k for k in single if not k[0].endswith("_sum")}
    assert {k: merged[k] for k in exact} == {k: single[k] for k in exact}
    assert all(math.isclose(merged[k], single[k], rel_tol=1e-9) for k in single.keys() - exact)


def test_runs_once_components_run_in_the_primary_only(tmp_path: Path) -> None:
    hport, health = free_port(), free_port()
    home = tmp_path / "home"
    (tmp_path / "in").mkdir()
    lines = [f"line {i} of the one log file" for i in range(200)]
    (tmp_path / "in" / "app.log").write_text("".join(f"{line}\n" for line in lines))
    out = tmp_path / "out"
    config = {
        "receivers": {
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{hport}"}}},
            "filelog": {"include": [str(tmp_path / "in" / "*.log")], "start_at": "beginning",
                        "storage_dir": str(tmp_path / "state"), "poll_interval": "100ms"}},
        "processors": {"tail_sampling": {
            "decision_wait": "1s",
            # kept only when one instance saw all 4 spans of the trace
            "policies": [{"name": "whole", "type": "span_count",
                          "span_count": {"min_spans": 4}}]}},
        "exporters": {"file/logs": {"path": str(out / "logs.jsonl"), "format": "json"},
                      "file/traces": {"path": str(out / "traces.jsonl"), "format": "json"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"workers": 2, "shutdown_timeout": "10s", "extensions": ["health"],
                    "pipelines": {
                        "logs": {"receivers": ["filelog"], "exporters": ["file/logs"]},
                        "traces": {"receivers": ["otlp"], "processors": ["tail_sampling"],
                                   "exporters": ["file/traces"]}}},
    }
    run = Run(config, home, health)
    with run:
        processes = run.processes(2)
        primary, worker = processes[0]["pid"], processes[1]["pid"]
        assert primary == run.pid
        traces = 12  # 4 spans each, every span on its own connection
        held = post_each_on_its_own_connection(
            hport, [one_span_request(t, k) for t in range(traces) for k in range(4)],
            processes)
        assert sum(held.values()) == traces * 4, held
        assert all(held.values()), held

        def kept() -> Counter[str] | None:
            got = _read(out / "traces.jsonl", "trace_id")
            return got if len(got) == traces else None
        got = eventually(kept, what=lambda: f"{traces} traces kept\n{run.logs()[-3000:]}")
        assert got is not None
        # every trace whole: one tail_sampling saw the spans that reached both processes
        assert set(got.values()) == {4}, got
        def all_lines() -> Counter[str] | None:
            got = _read(out / "logs.jsonl", "body")
            return got if sum(got.values()) >= len(lines) else None
        assert eventually(all_lines, what="every line written") == Counter(lines)  # once
        # only the primary holds the files of the runs-once components
        ours = {str(p) for p in (out / "logs.jsonl", out / "traces.jsonl")}
        assert ours <= {f.path for f in psutil.Process(primary).open_files()}
        in_worker = {f.path for f in psutil.Process(worker).open_files()}
        assert not in_worker & (ours | {str(tmp_path / "in" / "app.log")}), in_worker
        assert not any(path.startswith(str(tmp_path / "state")) for path in in_worker)
        # and once more after a while: still each line once, each trace whole
        assert _read(out / "logs.jsonl", "body") == Counter(lines)
        assert set(_read(out / "traces.jsonl", "trace_id").values()) == {4}


def _read(path: Path, key: str) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(str(orjson.loads(line)[key]) for line in _lines(path))


def _lines(path: Path) -> Iterator[bytes]:
    yield from (line for line in path.read_bytes().splitlines() if line.strip())
