"""Remote write 1.0 round trip against the real Prometheus (scripts/prometheus.sh: remote-write
receiver and exemplar storage on): what the `prometheusremotewrite` exporter sends — read
from its request bodies with the generated `prometheus.WriteRequest` — is exactly what
Prometheus then returns: every series with all its labels, every sample (millisecond
timestamp and value) and every exemplar (labels, value, timestamp)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

import cramjam

from pipeline.component import Signal
from pipeline.exporters.prometheusremotewrite import (
    RemoteWriteConfig,
    RemoteWriteExporter,
    factory,
)
from pipeline.pdata.batch import Batch
from pipeline.proto.prompb.remote_write_pb2 import WriteRequest
from tests.promdata import (
    PrometheusServer,
    gauge_metric,
    histogram_metric,
    request,
    sum_metric,
)
from tests.support import eventually, exporter_settings

MS = 1_000_000
TRACES = [bytes([i]) * 16 for i in range(1, 5)]
SPANS = [bytes([i]) * 8 for i in range(1, 5)]

Labels = frozenset[tuple[str, str]]


def metrics(ts: int, wave: int) -> Any:
    """A gauge, a counter of two series, a histogram with exemplars in two buckets, and a
    resource with a non-identifying attribute (-> target_info)."""
    return request([
        gauge_metric("roundtrip.temperature", [({"room": "küche"}, 21.5 + wave),
                                               ({"room": "hall"}, -3.25)], ts=ts, unit="Cel"),
        sum_metric("roundtrip.requests", [({"route": "/a", "code": 200}, 10 * wave),
                                          ({"route": "/b", "code": 500}, 3 + wave)], ts=ts),
        histogram_metric("roundtrip.latency", [({"route": "/a"}, [3, 1, wave], 0.7 + wave)],
                         bounds=[0.1, 0.5], ts=ts,
                         exemplars=[(0.05, TRACES[2 * wave], SPANS[2 * wave]),
                                    (0.9 + wave, TRACES[2 * wave + 1], SPANS[2 * wave + 1])]),
    ], resource={"service.name": "roundtrip", "service.instance.id": "i-1",
                 "host.name": "box-ü"}, scope="proto-roundtrip", scope_version="1.0")


def sent(bodies: list[bytes]) -> tuple[dict[Labels, list[tuple[int, float]]],
                                       set[tuple[Labels, Labels, float, int]]]:
    """Series -> samples and (series, exemplar labels, value, ms) of request bodies."""
    series: dict[Labels, list[tuple[int, float]]] = {}
    exemplars: set[tuple[Labels, Labels, float, int]] = set()
    for body in bodies:
        wr = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        assert not wr.metadata
        for ts in wr.timeseries:
            key = frozenset((lb.name, lb.value) for lb in ts.labels)
            series.setdefault(key, []).extend((s.timestamp, s.value) for s in ts.samples)
            exemplars |= {(key, frozenset((lb.name, lb.value) for lb in e.labels), e.value,
                           e.timestamp) for e in ts.exemplars}
    return series, exemplars


def test_remote_write_reads_back_exactly_what_was_sent(prometheus: PrometheusServer) -> None:
    run = uuid.uuid4().hex[:12]
    config = RemoteWriteConfig.model_validate({
        "endpoint": prometheus.remote_write_url, "external_labels": {"run": run},
        "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}})
    # Samples must be recent for the TSDB head: now, on whole milliseconds, two waves.
    t0 = (time.time_ns() - 20_000 * MS) // MS * MS
    waves = [metrics(t0 + w * 5_000 * MS, w) for w in range(2)]

    # What goes on the wire: the exporter's own request bodies, read with the generated
    # message (a second exporter instance, so the one that sends starts fresh).
    probe = RemoteWriteExporter(exporter_settings("prometheusremotewrite"), config)
    bodies = [p.body for req in waves for p in probe.build(req)[0]]
    want_series, want_exemplars = sent(bodies)
    assert len(want_series) == 2 + 2 + 5 + 1  # gauges, counters, histogram, target_info
    assert len(want_exemplars) == 4
    assert all(len(samples) == 2 for samples in want_series.values())

    async def send() -> None:
        exp = factory.create(exporter_settings("prometheusremotewrite"), config)
        assert isinstance(exp, RemoteWriteExporter)
        await exp.start(None)  # type: ignore[arg-type]
        try:
            for req in waves:
                await exp.send(Batch(Signal.METRICS, raw=req.SerializeToString()))
        finally:
            await exp.shutdown()

    asyncio.run(send())

    at = str((t0 + 6_000 * MS) / 1e9)

    def stored() -> dict[Labels, list[tuple[int, float]]]:
        data = prometheus.api("/api/v1/query", query=f'{{run="{run}"}}[5m]', time=at)
        got = {frozenset(r["metric"].items()): [(round(float(t) * 1000), float(v))
                                                for t, v in r["values"]]
               for r in data["result"]}
        assert len(got) == len(want_series), got
        return got

    got = eventually(stored, what="the remote-written series in Prometheus")
    assert got == want_series
    names = {dict(k)["__name__"] for k in got}
    assert names == {"roundtrip_temperature_celsius", "roundtrip_requests_total",
                     "roundtrip_latency_seconds_bucket", "roundtrip_latency_seconds_sum",
                     "roundtrip_latency_seconds_count", "target_info"}
    assert any(("room", "küche") in k for k in got)
    assert any(("host_name", "box-ü") in k for k in got)
    assert any(v == -3.25 for samples in got.values() for _, v in samples)

    def stored_exemplars() -> set[tuple[Labels, Labels, float, int]]:
        data = prometheus.api("/api/v1/query_exemplars", query=f'{{run="{run}"}}',
                              start=str(t0 / 1e9 - 60), end=str(t0 / 1e9 + 60))
        found = {(frozenset(s["seriesLabels"].items()), frozenset(e["labels"].items()),
                  float(e["value"]), round(float(e["timestamp"]) * 1000))
                 for s in data for e in s["exemplars"]}
        assert len(found) == len(want_exemplars), found
        return found

    assert eventually(stored_exemplars, what="the exemplars in Prometheus") == want_exemplars
    assert {dict(e[1])["trace_id"] for e in want_exemplars} == {t.hex() for t in TRACES}
    assert all(math.isfinite(e[2]) for e in want_exemplars)
