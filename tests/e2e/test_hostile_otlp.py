"""Hostile OTLP requests against a real `otelpipe run` do not stall its event loop.

Pipeline: otlp (gRPC with a 16 MiB limit, HTTP with the default 20 MiB) → file
(OTLP JSON lines). Sent, one after the other, by a separate client process:

- normal requests (HTTP protobuf);
- a legal 9 MB protobuf holding one span with 1M attributes, over HTTP and over gRPC;
- a 20 MB OTLP JSON body: one span with ≈ 500k attributes;
- a 20 MB OTLP JSON body of ≈ 54k ordinary spans, which the file exporter must encode
  back to OTLP JSON (≈ 1 s of CPU: done in the offload worker, pdata/offload.py);
- normal requests again.

Meanwhile this test polls `/health/liveness` every 50 ms. Asserted: no probe waits
longer than `MAX_STALL` (100 ms, the target) plus `TOLERANCE` (a loaded CI machine
delays any process by tens of ms; the measured maximum is printed and is in the
failure message); every request gets its exact answer (200 with an empty body or
`{}`, gRPC OK with an empty response); every normal span is in the file, and each
hostile span with `max_attributes_per_item` attributes and the rest counted in
`dropped_attributes_count`.

Before the receiver decoded large bodies in a worker process, the same requests
held the loop for 0.2-0.3 s (protobuf) and 7-21 s (JSON); before the file exporter
encoded big batches in a worker, the many-spans body held it ≈ 1 s more.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.protobuf.internal.encoder import _VarintBytes
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.builders import spans_request
from tests.support import REPO, OtelpipeProcess, free_port

MAX_STALL = 0.100
TOLERANCE = float(os.environ.get("OTELPIPE_STALL_TOLERANCE", "0.100"))
PROBE_EVERY = 0.050
MAX_ATTRIBUTES = 1000
HOSTILE_ATTRIBUTES = 1_000_000
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# Payloads ---------------------------------------------------------------------------------

def hostile_protobuf(trace_id: bytes) -> bytes:
    """One span with 1M attributes {"a": true}: 9 bytes each on the wire, ≈ 9 MB."""
    kv = KeyValue(key="a", value=AnyValue(bool_value=True)).SerializeToString()
    attr: bytes = b"\x4a" + _VarintBytes(len(kv)) + kv  # Span.attributes = 9
    span = Span(trace_id=trace_id, span_id=b"\x02" * 8, name="hostile").SerializeToString() \
        + attr * HOSTILE_ATTRIBUTES
    scope = b"\x12" + _VarintBytes(len(span)) + span  # ScopeSpans.spans = 2
    resource = b"\x12" + _VarintBytes(len(scope)) + scope  # ResourceSpans.scope_spans = 2
    raw: bytes = b"\x0a" + _VarintBytes(len(resource)) + resource  # resource_spans = 1
    return raw


JSON_ATTRIBUTE = {"key": "a", "value": {"boolValue": True}}
JSON_ATTRIBUTES = 20_000_000 // (len(orjson.dumps(JSON_ATTRIBUTE)) + 1) - 10


def hostile_json(trace_id: bytes) -> bytes:
    """One span with ≈ 500k attributes: 20 MB of OTLP JSON."""
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": trace_id.hex(), "spanId": "02" * 8, "name": "hostile",
        "attributes": [JSON_ATTRIBUTE] * JSON_ATTRIBUTES}]}]}]})
    assert 19_000_000 < len(body) <= 20_000_000
    return body


MANY_SPANS = 54_000


def many_spans_json(trace_id: bytes) -> bytes:
    """≈ 54k spans of one trace with 3 attributes each: just under 20 MB of OTLP JSON."""
    attrs = [{"key": "http.route", "value": {"stringValue": "/api/v1/items/{id}"}},
             {"key": "http.status_code", "value": {"intValue": "200"}},
             {"key": "peer", "value": {"stringValue": "10.0.0.1"}}]
    spans = [{"traceId": trace_id.hex(), "spanId": (i + 1).to_bytes(8, "big").hex(),
              "name": f"op{i % 50}", "kind": 2, "startTimeUnixNano": "1700000000000000000",
              "endTimeUnixNano": "1700000000001000000", "attributes": attrs}
             for i in range(MANY_SPANS)]
    body = orjson.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "many"}}]},
        "scopeSpans": [{"spans": spans}]}]})
    assert 15_000_000 < len(body) <= 20_000_000, len(body)
    return body


def normal_protobuf(trace_id: bytes) -> bytes:
    raw: bytes = spans_request(trace_id, 5, service="normal", scope="normal",
                               attributes={"k": "v"}).SerializeToString()
    return raw


# The client (a separate process, so that its work does not delay the probe) --------------

def client_main(spec_json: str) -> None:
    """Send each request of the spec in order; print one JSON answer per request."""
    spec = json.loads(spec_json)
    for req in spec["requests"]:
        body = Path(req["file"]).read_bytes()
        t0 = time.perf_counter()
        if req["transport"] == "grpc":
            with grpc.insecure_channel(f"127.0.0.1:{spec['grpc_port']}", options=[
                    ("grpc.max_send_message_length", 64 << 20)]) as channel:
                call = channel.unary_unary(METHOD)
                try:
                    answer = {"status": "OK", "body": call(body, timeout=120).hex()}
                except grpc.RpcError as exc:
                    answer = {"status": exc.code().name, "body": exc.details()}
        else:
            conn = http.client.HTTPConnection("127.0.0.1", spec["http_port"], timeout=120)
            conn.request("POST", "/v1/traces", body, {"Content-Type": req["ctype"]})
            resp = conn.getresponse()
            answer = {"status": resp.status, "body": resp.read().hex()}
            conn.close()
        answer["seconds"] = round(time.perf_counter() - t0, 3)
        print(json.dumps({"name": req["name"], **answer}), flush=True)


# The probe --------------------------------------------------------------------------------

class LivenessProbe(threading.Thread):
    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/health/liveness")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status != 200:
                    self.failures.append(f"status {resp.status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            self.latencies.append(time.perf_counter() - t0)
            self.stop_event.wait(PROBE_EVERY)


# The test ---------------------------------------------------------------------------------

def test_hostile_otlp_requests_do_not_stall_the_loop(tmp_path: Path) -> None:
    gport, hport, health = free_port(), free_port(), free_port()
    out = tmp_path / "spans.jsonl"
    config: dict[str, Any] = {
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{gport}", "max_recv_msg_size_mib": 16},
            "http": {"endpoint": f"127.0.0.1:{hport}"}}}},
        "exporters": {"file": {"path": str(out), "format": "otlp_json"}},
        "service": {"extensions": ["health"], "pipelines": {"traces": {
            "receivers": ["otlp"], "exporters": ["file"]}}},
    }
    ids = {name: bytes([i + 1]) * 16 for i, name in enumerate(
        ["before", "pb_http", "pb_grpc", "json_http", "many_http", "after"])}
    files = {"before": normal_protobuf(ids["before"]), "after": normal_protobuf(ids["after"]),
             "pb": hostile_protobuf(ids["pb_http"]),
             "pb_grpc": hostile_protobuf(ids["pb_grpc"]),
             "json": hostile_json(ids["json_http"]),
             "many": many_spans_json(ids["many_http"])}
    assert 9_000_000 <= len(files["pb"]) < 9_100_000
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    pb, js = "application/x-protobuf", "application/json"
    requests = [
        {"name": "before", "transport": "http", "ctype": pb, "file": str(tmp_path / "before")},
        {"name": "pb_http", "transport": "http", "ctype": pb, "file": str(tmp_path / "pb")},
        {"name": "pb_grpc", "transport": "grpc", "file": str(tmp_path / "pb_grpc")},
        {"name": "json_http", "transport": "http", "ctype": js, "file": str(tmp_path / "json")},
        {"name": "many_http", "transport": "http", "ctype": js, "file": str(tmp_path / "many")},
        {"name": "after", "transport": "http", "ctype": pb, "file": str(tmp_path / "after")},
    ]
    spec = json.dumps({"grpc_port": gport, "http_port": hport, "requests": requests})

    with OtelpipeProcess(config, tmp_path, wait_ports=(gport, hport, health)) as otelpipe:
        probe = LivenessProbe(health)
        probe.start()
        time.sleep(0.3)
        client = subprocess.run(
            [sys.executable, "-c",
             f"from tests.e2e.test_hostile_otlp import client_main; client_main({spec!r})"],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        time.sleep(0.3)
        probe.stop_event.set()
        probe.join()
        assert client.returncode == 0, client.stderr
        answers = {a["name"]: a for a in map(json.loads, client.stdout.splitlines())}
        assert otelpipe.stop() == 0, otelpipe.logs()

    # Exact answers: an empty Export*ServiceResponse (protobuf, gRPC) or {} (JSON).
    assert {name: (a["status"], a["body"]) for name, a in answers.items()} == {
        "before": (200, ""), "pb_http": (200, ""), "pb_grpc": ("OK", ""),
        "json_http": (200, b"{}".hex()), "many_http": (200, b"{}".hex()),
        "after": (200, "")}, answers

    worst = max(probe.latencies)
    print(f"\nliveness: {len(probe.latencies)} probes, max {worst * 1000:.0f} ms; "
          f"request seconds: { {n: a['seconds'] for n, a in answers.items()} }")
    assert not probe.failures, probe.failures
    assert len(probe.latencies) >= 10
    assert worst < MAX_STALL + TOLERANCE, (
        f"a liveness probe waited {worst * 1000:.0f} ms (target {MAX_STALL * 1000:.0f} ms "
        f"+ {TOLERANCE * 1000:.0f} ms tolerance)")

    spans: dict[bytes, list[dict[str, Any]]] = {}
    for line in out.read_text().splitlines():
        for rs in orjson.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    spans.setdefault(bytes.fromhex(sp["traceId"]), []).append(sp)
    assert sorted(len(spans[ids[n]]) for n in ("before", "after")) == [5, 5]
    many = spans[ids["many_http"]]
    assert len(many) == MANY_SPANS
    assert {sp["spanId"] for sp in many} == {(i + 1).to_bytes(8, "big").hex()
                                             for i in range(MANY_SPANS)}
    assert many[0]["attributes"][1] == {"key": "http.status_code",
                                        "value": {"intValue": "200"}}
    for name, total in (("pb_http", HOSTILE_ATTRIBUTES), ("pb_grpc", HOSTILE_ATTRIBUTES),
                        ("json_http", JSON_ATTRIBUTES)):
        [sp] = spans[ids[name]]
        assert len(sp["attributes"]) == MAX_ATTRIBUTES, name
        assert sp["droppedAttributesCount"] == total - MAX_ATTRIBUTES, name
