"""probabilistic_sampler against the real Collector: the same spans and log records
go through otelpipe and through contrib's probabilisticsamplerprocessor v0.161.0
(the `sampling` peer of scripts/otelcol.sh); the kept sets and what each wrote into
the tracestate / record attributes must be identical.

One otelpipe process holds both ends: `otlp/<case>` receivers feeding its own
samplers into `file/ours`, and `otlp/peer`, which receives what the Collector kept
(its `otlp` exporter) into `file/peer`. Each request carries a resource attribute
`case`, so the lines say which configuration kept them.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.builders import kv
from tests.support import REPO, OtelpipeProcess, eventually, free_port, wait_port, with_logs

TRACE_CASES: dict[str, dict[str, Any]] = {
    "hash": {"sampling_percentage": 33, "hash_seed": 4312},
    "hash10": {"sampling_percentage": 10},
    "prop": {"sampling_percentage": 25, "mode": "proportional"},
    "eq": {"sampling_percentage": 40, "mode": "equalizing", "sampling_precision": 3},
    "open": {"sampling_percentage": 50, "mode": "proportional", "fail_closed": False},
}
LOG_CASES: dict[str, dict[str, Any]] = {
    "logs": {"sampling_percentage": 30, "hash_seed": 7, "attribute_source": "record",
             "from_attribute": "logID", "sampling_priority": "prio"},
    "logstid": {"sampling_percentage": 20},
    "logsprop": {"sampling_percentage": 50, "mode": "proportional"},
}
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES = 1500
RECORDS = 1500
TRACESTATES = ["", "", "", "", "ot=th:8", "ot=th:c;rv:fedcba98765432", "ot=rv:0123456789abcd",
               "congo=t61rcWkgMzE", "ot=th:zz", "ot=th:4,rojo=00f067aa0ba902b7",
               "Bad Key=1"]


def peer_binary() -> str:
    """The sampling peer (scripts/otelcol.sh build sampling); built here if missing."""
    script = str(REPO / "scripts" / "otelcol.sh")
    path = subprocess.run([script, "path", "sampling"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not Path(path).exists():
        build = subprocess.run([script, "build", "sampling"], capture_output=True, text=True,
                               timeout=3600, check=False)
        if build.returncode != 0 or not Path(path).exists():
            pytest.fail(f"the Collector sampling peer could not be built:\n"
                        f"{build.stdout[-2000:]}\n{build.stderr[-2000:]}", pytrace=False)
    return path


def trace_requests(rng: random.Random) -> list[ExportTraceServiceRequest]:
    reqs = []
    for start in range(0, TRACES, 100):
        req = ExportTraceServiceRequest()
        ss = req.resource_spans.add().scope_spans.add()
        for i in range(start, min(start + 100, TRACES)):
            tid = rng.randbytes(16) if i % 97 else bytes(16)  # a few without randomness
            sp = ss.spans.add(trace_id=tid, span_id=rng.randbytes(8), name=f"s{i}",
                              trace_state=TRACESTATES[i % len(TRACESTATES)])
            if i % 13 == 0:
                sp.attributes.append(kv("sampling.priority", (i // 13) % 3))
        reqs.append(req)
    return reqs


def log_requests(rng: random.Random) -> list[ExportLogsServiceRequest]:
    reqs = []
    for start in range(0, RECORDS, 100):
        req = ExportLogsServiceRequest()
        sl = req.resource_logs.add().scope_logs.add()
        for i in range(start, min(start + 100, RECORDS)):
            lr = sl.log_records.add(trace_id=rng.randbytes(16) if i % 3 else b"")
            lr.body.string_value = f"r{i}"
            if i % 5:
                lr.attributes.append(kv("logID", f"id-{rng.random()}"))
            elif i % 10 == 0:
                lr.attributes.append(kv("logID", rng.randrange(1 << 40)))
            if i % 11 == 0:
                lr.attributes.append(kv("prio", [0, 50, 100, 150][(i // 11) % 4]))
            if i % 17 == 0:
                lr.attributes.append(kv("sampling.threshold", "8"))
            if i % 23 == 0:
                lr.attributes.append(kv("sampling.randomness", "c0000000000000"))
        reqs.append(req)
    return reqs


def tag(req: Any, case: str) -> Any:
    out = type(req)()
    out.CopyFrom(req)
    for r in (out.resource_spans if isinstance(out, ExportTraceServiceRequest)
              else out.resource_logs):
        r.resource.attributes.append(kv("case", case))
    return out


ZERO_ID = "0" * 32


def kept(path: Path) -> dict[str, dict[str, tuple[Any, ...]]]:
    """case -> item name -> (trace id, tracestate or sorted attributes) from OTLP JSON.

    Spans with an all-zero trace id are left out: the Collector forwards such an id as
    an absent field, which otelpipe's receiver (`otlp/peer`) drops as malformed, so
    they can only be compared in the unit tests."""
    out: dict[str, dict[str, tuple[Any, ...]]] = {}
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        req = orjson.loads(line)
        for rs in req.get("resourceSpans", []) + req.get("resourceLogs", []):
            case = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                        if a["key"] == "case")
            got = out.setdefault(case, {})
            for scope in rs.get("scopeSpans", []):
                for sp in scope["spans"]:
                    if sp.get("traceId", "") in ("", ZERO_ID):
                        continue
                    got[sp["name"]] = (sp.get("traceId", ""), sp.get("traceState", ""))
            for scope in rs.get("scopeLogs", []):
                for lr in scope["logRecords"]:
                    attrs = tuple(sorted(orjson.dumps(a).decode()
                                         for a in lr.get("attributes", [])))
                    got[lr["body"]["stringValue"]] = (lr.get("traceId", ""), attrs)
    return out


def test_same_items_kept_as_the_collector(tmp_path: Path) -> None:
    binary = peer_binary()
    cases = {**TRACE_CASES, **LOG_CASES}
    ours = {c: free_port() for c in cases}
    theirs = {c: free_port() for c in cases}
    peer_in = free_port()
    out_ours, out_peer = tmp_path / "ours.jsonl", tmp_path / "peer.jsonl"

    def pipelines(prefix: str) -> dict[str, Any]:
        return {f"{'traces' if c in TRACE_CASES else 'logs'}/{c}": {
            "receivers": [f"otlp/{c}"], "processors": [f"probabilistic_sampler/{c}"],
            "exporters": [prefix]} for c in cases}

    otelpipe_cfg = {
        "receivers": {**{f"otlp/{c}": {"protocols": {"grpc": {
            "endpoint": f"127.0.0.1:{p}"}}} for c, p in ours.items()},
            "otlp/peer": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{peer_in}"}}}},
        "processors": {f"probabilistic_sampler/{c}": cfg for c, cfg in cases.items()},
        "exporters": {"file/ours": {"path": str(out_ours)},
                      "file/peer": {"path": str(out_peer)}},
        "service": {"pipelines": {
            **pipelines("file/ours"),
            "traces/peer": {"receivers": ["otlp/peer"], "exporters": ["file/peer"]},
            "logs/peer": {"receivers": ["otlp/peer"], "exporters": ["file/peer"]}}},
    }
    peer_cfg = {
        "receivers": {f"otlp/{c}": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{p}"}}}
                      for c, p in theirs.items()},
        "processors": {f"probabilistic_sampler/{c}": {"sampling_precision": 4, **cfg}
                       for c, cfg in cases.items()},
        "exporters": {"otlp": {"endpoint": f"127.0.0.1:{peer_in}", "tls": {"insecure": True}}},
        "service": {"telemetry": {"metrics": {"level": "none"}}, "pipelines": pipelines("otlp")},
    }
    (tmp_path / "peer.yaml").write_text(yaml.safe_dump(peer_cfg))
    rng = random.Random(20261206)
    traces, logs = trace_requests(rng), log_requests(rng)
    ourselves = OtelpipeProcess(otelpipe_cfg, tmp_path, wait_ports=(peer_in, *ours.values()))
    with ourselves, open(tmp_path / "peer.log", "wb") as peer_log:
        peer = subprocess.Popen([binary, "--config", str(tmp_path / "peer.yaml")],
                                stdout=peer_log, stderr=subprocess.STDOUT)
        try:
            for p in theirs.values():
                wait_port(p)
            for c in cases:
                for port in (ours[c], theirs[c]):
                    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                        reqs: list[Any] = traces if c in TRACE_CASES else logs
                        export = ch.unary_unary(TRACES_METHOD if c in TRACE_CASES
                                                else LOGS_METHOD)
                        for req in reqs:
                            export(tag(req, c).SerializeToString(), timeout=30)

            def same() -> bool:
                a, b = kept(out_ours), kept(out_peer)
                return set(a) == set(cases) and a == b

            try:
                eventually(same, timeout=60, what=with_logs("the same kept sets", ourselves))
            finally:
                a, b = kept(out_ours), kept(out_peer)
                for c in cases:
                    mine, peer_kept = a.get(c, {}), b.get(c, {})
                    diff = {k: (mine.get(k), peer_kept.get(k))
                            for k in set(mine) | set(peer_kept)
                            if mine.get(k) != peer_kept.get(k)}
                    print(f"{c}: otelpipe kept {len(mine)}, Collector {len(peer_kept)}, "
                          f"differing {len(diff)} {list(diff.items())[:3]}")
        finally:
            peer.terminate()
            peer.wait(30)
    a = kept(out_ours)
    n = TRACES
    # Sanity: each case kept some and dropped some (a test that cannot fail otherwise).
    for c in cases:
        assert 0 < len(a[c]) < n, c
