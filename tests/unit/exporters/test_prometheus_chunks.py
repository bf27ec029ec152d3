"""`prometheus` exporter: a scrape rendered in chunks on the event loop and streamed."""

from __future__ import annotations

import gzip
from typing import Any

import aiohttp
import pytest
from prometheus_client.exposition import choose_encoder

from pipeline.exporters import prometheus as prom
from pipeline.exporters.prometheus import (
    PrometheusConfig,
    PrometheusExporter,
    SeriesCollector,
    paced_sorted,
    render_chunks,
)
from pipeline.pdata import pacing
from tests.promdata import gauge_metric, histogram_metric, parse_text, request, sum_metric
from tests.support import LoopTurns, exporter_settings, free_port

TS = 1_700_000_000_000_000_000
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
TEXT = "text/plain"


def make(**cfg: Any) -> PrometheusExporter:
    return PrometheusExporter(exporter_settings("prometheus"),
                              PrometheusConfig.model_validate(cfg), clock=lambda: 1000.0)


def fill(exp: PrometheusExporter, n: int) -> None:
    """Several families of every kind: counters and histograms with exemplars,
    gauges with a unit, `n` series in the big histogram family."""
    ex = (0.12, TRACE, SPAN)
    exp.consume_request(request([
        sum_metric("calls", [({"route": f"/r/{i}", "q": 'a"b\\c\nd'}, float(i))
                             for i in range(n // 4)], ts=TS, exemplar=ex,
                   description="Calls.\nSecond line \\ here"),
        gauge_metric("queue.size", [({"q": str(i)}, i * 0.5) for i in range(n // 4)],
                     ts=TS, unit="By", description="Bytes queued."),
        histogram_metric("duration", [({"route": f"/r/{i}"}, [i % 3, 1, 2, 0], 0.25 * i)
                                      for i in range(n)],
                         bounds=[0.1, 0.2, 0.5], ts=TS,
                         exemplars=[(0.05, TRACE, SPAN), (0.15, TRACE, SPAN)]),
        gauge_metric("zz.one", [({}, 1.0)], ts=TS),
    ], resource={"service.name": "checkout", "service.instance.id": "i-1", "host.name": "h"},
        scope="otelpipe/test", scope_version="1.0"))


@pytest.mark.parametrize("accept", [OPENMETRICS, TEXT])
@pytest.mark.parametrize("cfg", [{}, {"const_labels": {"region": "eu"}, "send_timestamps": True,
                                      "namespace": "ns"}])
@pytest.mark.parametrize("chunk_samples", [1, 7, 1000])
def test_chunks_join_to_the_single_rendering(accept: str, cfg: dict[str, Any],
                                             chunk_samples: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prom, "CHUNK_SAMPLES", chunk_samples)
    exp = make(**cfg)
    fill(exp, 200)
    encoder, _ = choose_encoder(accept)
    whole = encoder(SeriesCollector(list(exp.acc.values()), exp.config.send_timestamps))
    chunks, _ = exp.render_chunks(accept)
    assert len(chunks) >= (100 if chunk_samples < 1000 else 2)  # families split many times
    assert b"".join(chunks) == whole
    assert whole.count(b"# TYPE ") == 5  # each family once, target_info included
    if accept == OPENMETRICS:
        assert chunks[-1] == b"# EOF\n"
        assert whole.count(b"# EOF") == 1
        assert b"# UNIT " in whole
        assert b"trace_id=" in whole


@pytest.mark.parametrize("accept", [OPENMETRICS, TEXT])
def test_empty_and_single_series_scrapes(accept: str) -> None:
    encoder, _ = choose_encoder(accept)
    assert b"".join(render_chunks([], encoder, False)) == encoder(SeriesCollector([], False))
    exp = make()
    exp.consume_request(request([gauge_metric("g", [({}, 1.0)], ts=TS)]))
    series = list(exp.acc.values())
    assert b"".join(render_chunks(series, encoder, False)) == \
        encoder(SeriesCollector(series, False))


async def test_render_async_matches_and_is_cached() -> None:
    exp = make()
    fill(exp, 300)
    chunks, content_type = await exp.render_async(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    assert exp.render_chunks(OPENMETRICS)[0] is chunks  # cached until something changes
    assert b"".join(chunks) == exp.render(OPENMETRICS)[0]
    fill(exp, 301)
    assert exp.render_chunks(OPENMETRICS)[0] is not chunks


async def test_paced_sort_is_the_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prom, "SORT_RUN", 7)
    exp = make()
    fill(exp, 100)
    series = list(exp.acc.values())[::-1]
    assert await paced_sorted(series) == sorted(series, key=lambda s: (s.family, s.labels))
    assert await paced_sorted([]) == []


async def test_other_tasks_run_during_a_big_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The render gives the loop a turn between slices: a concurrent task ticks."""
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)  # a turn after every chunk
    exp = make()
    fill(exp, 3000)
    async with LoopTurns() as turns:
        chunks, _ = await exp.render_async(OPENMETRICS)
    assert len(chunks) > 20
    assert turns.count >= len(chunks) - 1


async def test_big_scrape_streams_over_http_plain_and_gzip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "SLICE_SECONDS", 0.0)
    port = free_port()
    exp = make(endpoint=f"127.0.0.1:{port}")
    await exp.start(None)  # type: ignore[arg-type]
    try:
        fill(exp, 2000)
        expected = exp.render(OPENMETRICS)[0]
        async with LoopTurns() as turns, \
                aiohttp.ClientSession(auto_decompress=False) as http:
            url = f"http://127.0.0.1:{port}/metrics"
            async with http.get(url, headers={"Accept": OPENMETRICS,
                                              "Accept-Encoding": "identity"}) as r:
                assert r.status == 200
                assert int(r.headers["Content-Length"]) == len(expected)
                assert await r.read() == expected
            async with http.get(url, headers={"Accept": OPENMETRICS,
                                              "Accept-Encoding": "gzip"}) as r:
                assert r.headers["Content-Encoding"] == "gzip"
                assert gzip.decompress(await r.read()) == expected
            async with http.get(url, headers={"Accept-Encoding": "identity"}) as r:
                text = await r.text()
        assert turns.count > 100
        assert len(parse_text(text)) == len(parse_text(exp.render(TEXT)[0].decode()))
    finally:
        await exp.shutdown()
