"""tail_sampling with `storage: disk` in a real `otelpipe run`: SIGKILLed while traces
wait for their decision, it loses none of them. The restarted process decides every
recovered trace (counted), emits exactly the sampled ones, whole, once; a third start
finds nothing left."""

from __future__ import annotations

import concurrent.futures
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from pipeline.component import Signal
from pipeline.pdata.otlpjson import decode_request
from tests.builders import kv
from tests.support import OtelpipeProcess, eventually, free_port, http_get, with_logs

REQUESTS = 40
TRACES_PER_REQUEST = 5
T0 = 1_700_000_000_000_000_000


def config(tmp_path: Path, port: int, health: int) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "processors": {"tail_sampling": {
            "decision_wait": "1h", "storage": "disk", "directory": str(tmp_path / "wait"),
            "policies": [{"name": "errors", "type": "status_code",
                          "status_code": {"status_codes": ["ERROR"]}}]}},
        "exporters": {"file": {"path": str(tmp_path / "out" / "traces.jsonl")}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {"traces": {
            "receivers": ["otlp"], "processors": ["tail_sampling"], "exporters": ["file"]}}},
    }


def request(i: int) -> bytes:
    """Request i: the first span of traces 5i..5i+4 and the second of 5(i-1)..5i-1, so
    every trace spans two requests. Trace k has an error (its second span) if k % 3 == 0."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "api"))
    ss = rs.scope_spans.add()
    for k, part in [(k, 0) for k in range(i * 5, i * 5 + 5)] + \
                   [(k, 1) for k in range((i - 1) * 5, i * 5) if k >= 0]:
        sp = ss.spans.add()
        sp.trace_id = (k + 1).to_bytes(16, "big")
        sp.span_id = (k * 2 + part + 1).to_bytes(8, "big")
        sp.name = f"t{k}-s{part}"
        sp.start_time_unix_nano = T0 + part
        sp.end_time_unix_nano = T0 + 1_000_000
        if part == 1 and k % 3 == 0:
            sp.status.code = 2
    return bytes(req.SerializeToString())


def post(port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=body,
                                 headers={"Content-Type": "application/x-protobuf"},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=20) as resp:
        return int(resp.status)


def emitted(out: Path) -> list[str]:
    if not out.exists():
        return []
    names: list[str] = []
    for line in out.read_bytes().splitlines():
        msg = decode_request(Signal.TRACES, line)
        names.extend(sp.name for rs in msg.resource_spans for ss in rs.scope_spans
                     for sp in ss.spans)
    return names


def metric(health: int, name: str) -> float:
    """The sum of a metric's series."""
    status, body = http_get(f"http://127.0.0.1:{health}/metrics")
    assert status == 200
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", body.decode(),
                                              re.MULTILINE))


def test_sigkill_while_waiting_loses_no_trace(tmp_path: Path) -> None:
    port, health = free_port(), free_port()
    cfg = config(tmp_path, port, health)
    out = tmp_path / "out" / "traces.jsonl"
    total = REQUESTS * TRACES_PER_REQUEST
    proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
    try:
        for i in range(REQUESTS + 1):  # the last request closes the last traces
            body = request(i) if i < REQUESTS else _tail(i)
            assert post(port, body) == 200  # acknowledged: on disk from here on
        assert metric(health, "otelpipe_processor_tail_sampling_traces_in_memory") == total
    finally:
        proc.stop(signal.SIGKILL)
    assert emitted(out) == []  # nothing was decided: decision_wait is an hour

    again = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
    try:
        expected = sorted(f"t{k}-s{p}" for k in range(total) if k % 3 == 0 for p in (0, 1))
        eventually(lambda: len(emitted(out)) >= len(expected),
                   what=with_logs("the recovered error traces emitted", again))
        assert sorted(emitted(out)) == expected  # whole traces, each span once
        assert metric(health, "otelpipe_processor_tail_sampling_recovered_traces_total") \
            == total
        assert metric(health, "otelpipe_processor_tail_sampling_traces_in_memory") == 0
        sampled = 'otelpipe_processor_tail_sampling_traces_total'
        _, body = http_get(f"http://127.0.0.1:{health}/metrics")
        text = body.decode()
        assert re.search(rf'^{sampled}{{[^}}]*sampled="true"[^}}]*}} {total // 3 + 1}\.0$',
                         text, re.MULTILINE), text
        assert re.search(rf'^{sampled}{{[^}}]*sampled="false"[^}}]*}} '
                         rf'{total - total // 3 - 1}\.0$', text, re.MULTILINE), text
    finally:
        assert again.stop() == 0, again.logs()

    third = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
    try:
        assert metric(health, "otelpipe_processor_tail_sampling_recovered_traces_total") == 0
        assert metric(health, "otelpipe_processor_tail_sampling_traces_in_memory") == 0
        assert sorted(emitted(out)) == expected
    finally:
        third.stop()


def _tail(i: int) -> bytes:
    """The closing request: second spans of the last five traces."""
    req = ExportTraceServiceRequest()
    req.ParseFromString(request(i))
    spans = req.resource_spans[0].scope_spans[0].spans
    keep = [s for s in spans if s.name.endswith("-s1")]
    del spans[:]
    spans.extend(keep)
    return bytes(req.SerializeToString())


def test_sigkill_under_load_loses_no_acknowledged_sampled_span(tmp_path: Path) -> None:
    """Requests keep coming while decisions are being made (decision_wait 2s) and the
    process is SIGKILLed mid-stream: after a restart, every acknowledged span of every
    trace whose error span was acknowledged is in the output — duplicates allowed
    (at-least-once), none missing, nothing else."""
    port, health = free_port(), free_port()
    cfg = config(tmp_path, port, health)
    cfg["processors"]["tail_sampling"]["decision_wait"] = "2s"
    out = tmp_path / "out" / "traces.jsonl"
    acked: list[bytes] = []
    proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
    try:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 5.0:  # a few decision rounds happen meanwhile
            body = request(i)
            assert post(port, body) == 200
            acked.append(body)
            i += 1
            time.sleep(0.05)
        eventually(lambda: emitted(out), what=with_logs("some decisions before the kill",
                                                       proc))
    finally:
        proc.stop(signal.SIGKILL)
    before = len(emitted(out))

    sent: set[str] = set()
    for body in acked:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        sent.update(sp.name for sp in req.resource_spans[0].scope_spans[0].spans)
    error_traces = {k for k in range(i * 5) if k % 3 == 0 and f"t{k}-s1" in sent}
    expected = {n for n in sent if int(n[1:].split("-")[0]) in error_traces}

    again = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
    try:
        eventually(lambda: set(emitted(out)) >= expected,
                   what=with_logs("every acknowledged error trace emitted", again))
        eventually(lambda: metric(health,
                                  "otelpipe_processor_tail_sampling_traces_in_memory") == 0,
                   what="nothing left waiting")
    finally:
        assert again.stop() == 0, again.logs()
    names = emitted(out)
    assert set(names) == expected  # nothing else (no trace without its error span)
    duplicates = len(names) - len(set(names))
    print(f"{len(acked)} requests acknowledged, {len(expected)} sampled spans expected, "
          f"{before} emitted before the kill, {duplicates} duplicates after the restart")


def test_sigterm_decides_what_waits_behind_a_batch_processor(tmp_path: Path) -> None:
    """storage memory: a graceful stop decides the waiting traces — also the spans the
    batch processor in front flushes during the shutdown — and exits 0."""
    port, health = free_port(), free_port()
    cfg = config(tmp_path, port, health)
    ts = cfg["processors"]["tail_sampling"]
    del ts["storage"], ts["directory"]
    cfg["processors"]["batch"] = {"send_batch_size": 100_000, "timeout": "1h",
                                  "flush_when_idle": False}
    cfg["service"]["pipelines"]["traces"]["processors"] = ["batch", "tail_sampling"]
    out = tmp_path / "out" / "traces.jsonl"
    proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        # The batch processor holds these requests (acknowledged after delivery).
        futures = [pool.submit(post, port, request(i)) for i in range(4)]
        eventually(lambda: metric(health, "otelpipe_http_server_connections") >= 5,
                   what=with_logs("the four requests connected", proc))
        time.sleep(1.0)  # let them reach the batch processor (none can finish: it holds)
        assert not any(f.done() for f in futures)
        assert proc.stop(signal.SIGTERM) == 0, proc.logs()
        assert [f.result(timeout=30) for f in futures] == [200] * 4
    # Traces 0..19 were started (first spans); 0..14 also got their second span, which
    # holds the error: the error traces among them are kept, whole.
    expected = sorted(f"t{k}-s{p}" for k in range(15) if k % 3 == 0 for p in (0, 1))
    assert sorted(emitted(out)) == expected
