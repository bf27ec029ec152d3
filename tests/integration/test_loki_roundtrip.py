"""Loki push (protobuf + snappy) round trip against the real VictoriaLogs
(scripts/victorialogs.sh, /insert/loki/api/v1/push): what the `loki` exporter sends — read
from its request body with the generated `logproto.PushRequest` — is exactly what
VictoriaLogs then returns: every entry with its stream labels, nanosecond timestamp, line
and structured metadata (fields), nothing more and nothing less. (VictoriaLogs drops
empty fields, so the records carry none.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import cramjam
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.component import Signal
from pipeline.exporters._lokilabels import render_labels
from pipeline.exporters.loki import LokiExporter, LokiExporterConfig, factory
from pipeline.pdata.batch import Batch
from pipeline.proto.logproto.push_pb2 import PushRequest
from tests.support import eventually, exporter_settings

Row = tuple[frozenset[tuple[str, str]], int, str, frozenset[tuple[str, str]]]
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="')
_VL_OWN = frozenset({"_msg", "_stream", "_stream_id", "_time"})


def logs(t0: int) -> bytes:
    req = ExportLogsServiceRequest()
    for svc, n in (("checkout", 4), ("cart-ü", 3)):
        rl = req.resource_logs.add()
        for k, v in (("service.name", svc), ("host.name", "node-7"),
                     ("k8s.pod.name", f"{svc}-abc")):
            rl.resource.attributes.add(key=k).value.string_value = v
        sl = rl.scope_logs.add()
        sl.scope.name = "app.http"
        for i in range(n):
            lr = sl.log_records.add(
                time_unix_nano=t0 + i * 1_000_001 + len(svc), severity_number=9 + 8 * (i % 2),
                severity_text="INFO" if i % 2 == 0 else "ERROR",
                trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 1]) * 8)
            if i == 2:
                kv = lr.body.kvlist_value.values.add(key="event")
                kv.value.string_value = "structured ✓"
            else:
                lr.body.string_value = f"GET /item/{i} → 200 in {i * 7} ms"
            for k, v in (("user", f"u{i % 2}"), ("http.route", "/item/{id}"),
                         ("note", "ünïcode \"quoted\" \\ back")):
                lr.attributes.add(key=k).value.string_value = v
            lr.attributes.add(key="http.response.status_code").value.int_value = 200 + i
            lr.attributes.add(key="cached").value.bool_value = i % 2 == 0
    return bytes(req.SerializeToString())


def sent(exp: LokiExporter, raw: bytes) -> list[Row]:
    """The entries of the exporter's request body, read with the generated message."""
    pr = PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(exp.encode(raw))))
    keys = list(exp.streams(raw))  # the label pairs of each stream, in the same order
    assert [render_labels(k) for k in keys] == [s.labels for s in pr.streams]
    return sorted(((frozenset(k), e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos,
                   e.line, frozenset((m.name, m.value) for m in e.structuredMetadata))
                   for k, s in zip(keys, pr.streams, strict=True) for e in s.entries),
                  key=_order)


def _order(row: Row) -> tuple[int, str]:
    """Rows by timestamp (unique here) and line; frozensets have no total order."""
    return row[1], row[2]


def time_ns(text: str) -> int:
    """RFC 3339 with up to nine fraction digits (VictoriaLogs' `_time`) -> Unix ns."""
    whole, _, frac = text.rstrip("Z").partition(".")
    secs = int(dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC).timestamp())
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def stored(url: str, run: str) -> list[Row]:
    data = urllib.parse.urlencode({"query": f"run:={run}"}).encode()
    with urllib.request.urlopen(url + "/select/logsql/query", data=data, timeout=10) as resp:
        rows: list[dict[str, Any]] = [orjson.loads(x) for x in resp.read().splitlines()
                                      if x.strip()]
    out = []
    for r in rows:
        names = set(_LABEL.findall(r["_stream"]))
        labels = frozenset((n, r[n]) for n in names)
        meta = frozenset((k, v) for k, v in r.items() if k not in _VL_OWN and k not in names)
        out.append((labels, time_ns(r["_time"]), r["_msg"], meta))
    return sorted(out, key=_order)


def test_loki_push_reads_back_exactly_what_was_sent(victorialogs: str) -> None:
    run = uuid.uuid4().hex[:12]
    config = LokiExporterConfig.model_validate({
        # VictoriaLogs unpacks JSON lines into fields unless told not to: keep lines as sent.
        "endpoint": f"{victorialogs}/insert/loki/api/v1/push?disable_message_parsing=1",
        "labels": {"resource": ["service.name"], "attributes": ["user"], "severity": "level",
                   "static": {"run": run}},
        "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}})
    raw = logs(time.time_ns() - 60_000_000_000)
    want = sent(LokiExporter(exporter_settings("loki"), config), raw)
    assert len(want) == 7
    assert len({labels for labels, *_ in want}) == 2 * 2  # service x (user, level)
    metadata = dict(want[0][3])
    assert {"trace_id", "span_id", "severity_number", "scope_name", "host_name",
            "k8s_pod_name", "http_route", "http_response_status_code", "cached",
            "note"} <= set(metadata)

    async def send() -> None:
        exp = factory.create(exporter_settings("loki"), config)
        assert isinstance(exp, LokiExporter)
        await exp.start(None)  # type: ignore[arg-type]
        try:
            await exp.send(Batch(Signal.LOGS, raw=raw))
        finally:
            await exp.shutdown()

    asyncio.run(send())

    def all_stored() -> list[Row]:
        rows = stored(victorialogs, run)
        assert len(rows) == len(want), rows
        return rows

    got = eventually(all_stored, what="the pushed entries in VictoriaLogs")
    assert got == want
    lines = {line for _, _, line, _ in got}
    assert '{"event":"structured ✓"}' in lines
    assert "GET /item/1 → 200 in 7 ms" in lines
    assert any(("note", 'ünïcode "quoted" \\ back') in meta for *_, meta in got)
    assert any(("service_name", "cart-ü") in labels for labels, *_ in got)
