"""`/health/readiness` follows whether an exporter can deliver, in a real `otelpipe run`.

The file exporter's path is a symlink to /dev/full: opening works, every
write fails with ENOSPC (even as root, which CI is). Spans sent then are
refused (HTTP 503 / gRPC UNAVAILABLE) and readiness turns 503 naming
`exporter file/traces`. Relinking the symlink to a real file is the disk
being freed: the exporter reopens the path on its next batch, the next
requests get 200 / OK and readiness is 200 again. The file then holds exactly
the spans sent after recovery, and the receiver's counters say which were
accepted and which refused.
"""

from __future__ import annotations

import http.client
import os
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import orjson

from tests.builders import spans_request
from tests.support import OtelpipeProcess, eventually, free_port, http_get

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def spans(trace_id: bytes, n: int) -> bytes:
    raw: bytes = spans_request(trace_id, n, service="readiness").SerializeToString()
    return raw


def post(port: int, body: bytes) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


def grpc_export(port: int, body: bytes) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        try:
            call(body, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def readiness(health_port: int) -> tuple[int, Any]:
    status, body = http_get(f"http://127.0.0.1:{health_port}/health/readiness")
    return status, orjson.loads(body)


def counter(health_port: int, name: str) -> float:
    """Sum of a counter over the otlp receiver's trace series (both transports)."""
    status, body = http_get(f"http://127.0.0.1:{health_port}/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if (line.startswith(name + "{") and 'receiver="otlp"' in line
                and 'signal="traces"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def relink(link: Path, target: Path) -> None:
    """Point `link` at `target` atomically (a new symlink renamed over the old one)."""
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def test_readiness_follows_a_full_disk(tmp_path: Path) -> None:
    out = tmp_path / "traces.jsonl"
    out.symlink_to("/dev/full")
    gport, hport, health = free_port(), free_port(), free_port()
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{gport}"},
                                             "http": {"endpoint": f"127.0.0.1:{hport}"}}}},
        "exporters": {"file/traces": {"path": str(out), "format": "json"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {"traces": {
            "receivers": ["otlp"], "exporters": ["file/traces"]}}},
    }
    with OtelpipeProcess(config, tmp_path, wait_ports=(gport, hport, health)) as proc:
        status, body = readiness(health)
        assert (status, body["status"]) == (200, "ready"), body  # opening /dev/full works

        # Disk full: both transports are refused, readiness names the exporter.
        status, headers = post(hport, spans(b"\x01" * 16, 3))
        assert status == 503
        assert "Retry-After" in headers
        assert grpc_export(gport, spans(b"\x02" * 16, 4)) is grpc.StatusCode.UNAVAILABLE
        status, body = readiness(health)
        assert status == 503, body
        assert body["status"] == "not_ready"
        [failing] = body["failing"]
        assert failing["component"] == "exporter file/traces"
        assert "No space left on device" in failing["error"], failing
        assert counter(health, "otelpipe_receiver_refused_items_total") == 7
        assert counter(health, "otelpipe_receiver_accepted_items_total") == 0

        # Space again: the next batch reopens the path and is written.
        real = tmp_path / "real.jsonl"
        real.touch()
        relink(out, real)
        assert post(hport, spans(b"\x03" * 16, 5))[0] == 200
        assert grpc_export(gport, spans(b"\x04" * 16, 6)) is grpc.StatusCode.OK
        status, body = readiness(health)
        assert (status, body["status"]) == (200, "ready"), body
        assert counter(health, "otelpipe_receiver_accepted_items_total") == 11
        assert counter(health, "otelpipe_receiver_refused_items_total") == 7

        def trace_ids() -> Counter[str]:
            return Counter(orjson.loads(line)["trace_id"]
                           for line in real.read_bytes().splitlines() if line)

        # Flushed per batch already; poll defensively.
        eventually(lambda: sum(trace_ids().values()) >= 11, timeout=10, what="11 spans written")
        written = trace_ids()
        assert written == {"03" * 16: 5, "04" * 16: 6}
        assert proc.stop() == 0, proc.logs()
    assert Counter(orjson.loads(line)["trace_id"]
                   for line in real.read_bytes().splitlines() if line) == written
