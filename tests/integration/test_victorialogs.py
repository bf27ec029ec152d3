"""Structured logs through a real `otelpipe run` (jsonlogs receiver -> loki and elasticsearch
exporters) into a real VictoriaLogs, read back with LogsQL: exact counts, stream labels /
stream fields, structured metadata and document fields as configured."""

from __future__ import annotations

import functools
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import OtelpipeProcess, eventually, free_port, http_get, with_logs

pytestmark = pytest.mark.integration

SERVICES = ("checkout", "cart", "payments")
USERS = ("u0", "u1", "u2", "u3", "u4")
N = 300


class VictoriaLogs:
    def __init__(self, url: str):
        self.url = url

    def query(self, logsql: str) -> list[dict[str, Any]]:
        data = urllib.parse.urlencode({"query": logsql}).encode()
        with urllib.request.urlopen(self.url + "/select/logsql/query", data=data,
                                    timeout=10) as resp:
            return [orjson.loads(line) for line in resp.read().splitlines() if line.strip()]

    def count(self, logsql: str) -> int:
        rows = self.query(logsql + " | stats count() as n")
        return int(rows[0]["n"]) if rows else 0


def has_count(vl: VictoriaLogs, logsql: str) -> bool:
    return vl.count(logsql) >= N


def records(run: str) -> list[dict[str, Any]]:
    now = time.time()
    out = []
    for i in range(N):
        out.append({
            "time": now - (N - i) * 0.001,
            "level": "error" if i % 10 == 0 else "info",
            "message": f"order {i} processed",
            "service": SERVICES[i % 3],
            "trace_id": f"{i + 1:032x}",
            "span_id": f"{i + 1:016x}",
            "user": USERS[i % 5],
            "http": {"status": 500 if i % 10 == 0 else 200},
            "duration_ms": i + 0.5,
            "seq": i,
        })
    return out


def post_ndjson(port: int, lines: list[dict[str, Any]]) -> int:
    body = b"\n".join(orjson.dumps(x) for x in lines)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/logs", data=body, method="POST",
                                 headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def metric(health: int, name: str, **labels: str) -> float:
    status, body = http_get(f"http://127.0.0.1:{health}/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_logs_reach_victorialogs_through_loki_and_elasticsearch(victorialogs: str,
                                                                tmp_path: Path) -> None:
    vl = VictoriaLogs(victorialogs)
    run = uuid.uuid4().hex[:12]
    port, health = free_port(), free_port()
    loki_url = f"{victorialogs}/insert/loki/api/v1/push"
    es_url = f"{victorialogs}/insert/elasticsearch"
    labels = {"resource": ["service.name"], "severity": "level"}

    def loki(tag: str, **extra: Any) -> dict[str, Any]:
        return {"endpoint": loki_url, "labels": {**labels, "static": {"run": run, "exp": tag}},
                **extra}

    def es(tag: str, mapping: str, stream: str) -> dict[str, Any]:
        return {"endpoint": es_url, "mapping": mapping, "compression": "gzip",
                "victorialogs": {"stream_fields": [stream],
                                 "extra_fields": {"run": run, "exp": tag}}}

    exporters = {
        "loki/protobuf": loki("loki_protobuf"),
        "loki/json": loki("loki_json", encoding="json"),
        "loki/guard": {**loki("loki_guard"), "max_label_values": 2, "labels": {
            "resource": ["service.name"], "attributes": ["user"],
            "static": {"run": run, "exp": "loki_guard"}}},
        "elasticsearch/otel": es("es_otel", "otel", "resource.attributes.service.name"),
        "elasticsearch/ecs": es("es_ecs", "ecs", "service.name"),
    }
    config = {
        "receivers": {"jsonlogs": {"endpoint": f"127.0.0.1:{port}"}},
        "processors": {"batch": {"timeout": "100ms", "send_batch_size": 100}},
        "exporters": exporters,
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {"logs": {
            "receivers": ["jsonlogs"], "processors": ["batch"],
            "exporters": list(exporters)}}},
    }
    lines = records(run)
    with OtelpipeProcess(config, tmp_path, wait_ports=(port, health)) as proc:
        for start in range(0, N, 50):  # several requests, several batches
            assert post_ndjson(port, lines[start:start + 50]) in (200, 202, 204)
        eventually(lambda: all(metric(health, "otelpipe_exporter_sent_items_total",
                                      exporter=e) >= N for e in exporters),
                   what=with_logs(f"every exporter to send {N} records", proc), interval=0.2)
        for e in exporters:
            assert metric(health, "otelpipe_exporter_sent_items_total", exporter=e) == N, \
                (e, proc.logs())
            assert metric(health, "otelpipe_exporter_send_failed_items_total",
                          exporter=e) == 0, e
        # Two users took the two label slots; the other three users' records overflowed.
        overflow = metric(health, "otelpipe_loki_exporter_label_overflow_records_total",
                          exporter="loki/guard", label="user")
        assert overflow == N * 3 / 5
        assert proc.stop() == 0

    base = f"run:={run}"
    for tag in ("loki_protobuf", "loki_json", "loki_guard", "es_otel", "es_ecs"):
        # VictoriaLogs makes new data searchable within about a second.
        query = f"{base} exp:={tag}"
        eventually(functools.partial(has_count, vl, query), what=f"{N} {tag} records",
                   interval=0.25)
        assert vl.count(query) == N, tag
    time.sleep(1.0)  # nothing more arrives later (no duplicates)
    for tag in ("loki_protobuf", "loki_json", "loki_guard", "es_otel", "es_ecs"):
        assert vl.count(f"{base} exp:={tag}") == N, tag

    # Loki: stream labels are the configured ones; per stream counts are exact.
    for tag in ("loki_protobuf", "loki_json"):
        rows = vl.query(f"{base} exp:={tag} | stats by (_stream) count() as n")
        got = {r["_stream"]: int(r["n"]) for r in rows}
        want: dict[str, int] = {}
        for rec in lines:
            key = (f'{{exp="{tag}",level="{rec["level"]}",run="{run}",'
                   f'service_name="{rec["service"]}"}}')
            want[key] = want.get(key, 0) + 1
        assert got == want, tag
        # Everything else as structured metadata (fields).
        (row,) = vl.query(f'{base} exp:={tag} seq:=7')
        assert row["_msg"] == "order 7 processed"
        assert row["service_name"] == "cart"
        assert row["level"] == "info"
        assert row["severity_text"] == "info"
        assert row["severity_number"] == "9"
        assert row["trace_id"] == f"{8:032x}"
        assert row["span_id"] == f"{8:016x}"
        assert row["user"] == "u2"
        assert row["duration_ms"] == "7.5"
        assert orjson.loads(row["http"]) == {"status": 200}
        assert vl.count(f'{base} exp:={tag} _stream:{{service_name="checkout"}}') == N / 3
        assert vl.count(f'{base} exp:={tag} level:=error') == N / 10

    # The cardinality guard: two users (whichever came first) became stream labels; the
    # records of the other three keep `user` as a field, in streams without it.
    rows = vl.query(f"{base} exp:=loki_guard | stats by (_stream) count() as n")
    streams = {r["_stream"] for r in rows}
    labelled = {u for u in USERS if any(f'user="{u}"' in s for s in streams)}
    assert len(labelled) == 2, streams
    for user in USERS:
        assert vl.count(f"{base} exp:=loki_guard user:={user}") == N / 5
        in_stream = vl.count(f'{base} exp:=loki_guard _stream:{{user="{user}"}}')
        assert in_stream == (N / 5 if user in labelled else 0), user

    # Elasticsearch bulk, otel mapping: stream field, message, fields.
    rows = vl.query(f"{base} exp:=es_otel | stats by (_stream) count() as n")
    assert {r["_stream"]: int(r["n"]) for r in rows} == {
        f'{{resource.attributes.service.name="{s}"}}': N // 3 for s in SERVICES}
    (row,) = vl.query(f"{base} exp:=es_otel attributes.seq:=7")
    assert row["_msg"] == "order 7 processed"
    assert row["severity_text"] == "info"
    assert row["trace_id"] == f"{8:032x}"
    assert row["attributes.user"] == "u2"
    assert row["attributes.http.status"] == "200"
    assert row["data_stream.dataset"] == "generic"
    assert vl.count(f"{base} exp:=es_otel severity_text:=error") == N / 10

    # Elasticsearch bulk, ECS mapping.
    rows = vl.query(f"{base} exp:=es_ecs | stats by (_stream) count() as n")
    assert {r["_stream"]: int(r["n"]) for r in rows} == {
        f'{{service.name="{s}"}}': N // 3 for s in SERVICES}
    (row,) = vl.query(f"{base} exp:=es_ecs seq:=7")
    assert row["_msg"] == "order 7 processed"
    assert row["log.level"] == "info"
    assert row["trace.id"] == f"{8:032x}"
    assert row["span.id"] == f"{8:016x}"
    assert row["user"] == "u2"
    assert row["http.status"] == "200"
