"""A refusal after `deltatocumulative`: the processor takes back what the refused batch
added, and a delta connector sends the refused request again identical (duplicate check),
so every delta is counted once."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.aggregation.connector import AggregatingConnector
from pipeline.component import Signal
from pipeline.connectors.redmetrics import factory as redmetrics
from pipeline.errors import RetryableError
from pipeline.pdata.batch import Batch
from pipeline.processors.deltatocumulative.config import DeltaToCumulativeConfig
from pipeline.processors.deltatocumulative.processor import DeltaToCumulativeProcessor
from pipeline.telemetry.metrics import Telemetry
from tests.builders import T0, traces_request
from tests.support import Sink, connector_settings, processor_settings
from tests.unit.processors.deltatocumulative.test_processor import (
    counted,
    expo_metric,
    expo_point,
    histogram_metric,
    make,
    points,
    request,
    run,
    sum_metric,
    value,
)


class RefuseOnce(Sink):
    """Refuses the first batch it is handed (after `during` ran, if any)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0
        self.during: Any = None

    async def consume(self, batch: Any) -> None:
        if not self.refused:
            self.refused += 1
            if self.during is not None:
                await self.during()
            raise RetryableError("exporter queue is full")
        await super().consume(batch)


def last_values(sink: Sink) -> dict[tuple[str, str], Any]:
    """Per (metric, series attributes) the last point the sink got."""
    out: dict[tuple[str, str], Any] = {}
    for b in sink.batches:
        req = ExportMetricsServiceRequest.FromString(b.to_bytes())
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for dp in getattr(m, m.WhichOneof("data")).data_points:
                        out[(m.name, str(sorted(str(a) for a in dp.attributes)))] = dp
    return out


async def test_redmetrics_delta_refused_once_after_the_merge_counts_every_span_once() -> None:
    """The reviewer's case: 5 spans, a refused flush, 3 more spans: 8 calls (13 before)."""
    sink, tel = RefuseOnce(), Telemetry()
    d2c = DeltaToCumulativeProcessor(
        processor_settings("deltatocumulative", tel, next_consumer=sink,
                           signal=Signal.METRICS),
        DeltaToCumulativeConfig(out_of_order="accumulate"))
    cfg = redmetrics.config_model.model_validate(
        {"aggregation_temporality": "delta", "metrics_flush_interval": "1h"})
    conn = redmetrics.create(connector_settings("redmetrics", tel,
                                                consumers={Signal.METRICS: d2c}), cfg)
    assert isinstance(conn, AggregatingConnector)
    await conn.consume(Batch(Signal.TRACES, raw=traces_request(5).SerializeToString()))
    assert not await conn.flush()
    await conn.consume(Batch(Signal.TRACES, raw=traces_request(3, start=5).SerializeToString()))
    assert await conn.flush()
    assert await conn.flush()  # nothing new: nothing sent
    last = last_values(sink)
    calls = [value(dp) for (name, _), dp in last.items() if name.endswith(".calls")]
    durations = [dp.count for (name, _), dp in last.items() if name.endswith(".duration")]
    assert sum(calls) == 8
    assert sum(durations) == 8
    assert len(sink.batches) == 2  # the refused request again, then the new one
    assert counted(tel, "duplicate") == 0


async def test_a_refused_sum_is_taken_back_and_its_resend_added_once() -> None:
    for mode in ("drop", "accumulate"):
        proc, _, tel, _ = make(out_of_order=mode)
        sink = RefuseOnce()
        proc.next = sink
        sink.refused = 1  # accept the first
        await run(proc, sink, request(sum_metric([(T0, T0 + 10, 5)])))
        sink.refused = 0
        refused = request(sum_metric([(T0 + 10, T0 + 20, 7), (T0, T0 + 20, 2, {"k": "new"})]))
        with pytest.raises(RetryableError):
            await run(proc, sink, refused)
        assert len(proc.streams) == 1  # the stream the refused batch started is gone
        out = await run(proc, sink, refused)  # sent again, identical
        assert [value(dp) for dp in points(out)] == [12, 2], mode
        assert counted(tel, "duplicate") == 0


async def test_a_refused_histogram_is_taken_back_while_other_batches_add() -> None:
    """Another batch adds to the stream while the refused one waits downstream: only
    the refused batch's part is taken back."""
    proc, _, _, _ = make(out_of_order="accumulate")
    sink = RefuseOnce()
    proc.next = sink
    sink.refused = 1

    def hist(t: int, counts: list[int]) -> ExportMetricsServiceRequest:
        return request(histogram_metric([{
            "start_time_unix_nano": t - 10, "time_unix_nano": t, "count": sum(counts),
            "sum": float(sum(counts)), "explicit_bounds": [1.0, 2.0],
            "bucket_counts": counts}]))

    await run(proc, sink, hist(T0 + 10, [1, 2, 3]))

    async def meanwhile() -> None:
        await run(proc, sink, hist(T0 + 30, [100, 0, 0]))

    sink.refused, sink.during = 0, meanwhile
    refused = hist(T0 + 20, [0, 10, 0])
    with pytest.raises(RetryableError):
        await run(proc, sink, refused)
    (state,) = proc.streams.values()
    assert (state[2], state[3], list(state[7])) == (106, 106.0, [101, 2, 3])
    out = await run(proc, sink, refused)
    dp = points(out)[0]
    assert (dp.count, dp.sum, list(dp.bucket_counts)) == (116, 116.0, [101, 12, 3])


async def test_a_refused_exponential_histogram_is_taken_back() -> None:
    rnd = random.Random(5)
    pts = [expo_point([rnd.lognormvariate(0, 2) for _ in range(40)], scale, t=t)
           for t, scale in ((1, 8), (2, 3), (3, 5))]
    straight, sink1, _, _ = make(out_of_order="accumulate")
    for p in pts:
        expected = await run(straight, sink1, request(expo_metric([dict(p)])))
    proc, _, _, _ = make(out_of_order="accumulate")
    sink = RefuseOnce()
    proc.next = sink
    sink.refused = 1
    await run(proc, sink, request(expo_metric([dict(pts[0])])))
    sink.refused = 0
    with pytest.raises(RetryableError):
        await run(proc, sink, request(expo_metric([dict(pts[1])])))
    (state,) = proc.streams.values()
    assert state[2].count == pts[0]["count"]  # taken back
    for p in pts[1:]:
        got = await run(proc, sink, request(expo_metric([dict(p)])))
    a, b = points(expected)[0], points(got)[0]
    assert (b.count, b.scale, b.zero_count, b.sum, b.min, b.max) == \
        (a.count, a.scale, a.zero_count, a.sum, a.min, a.max)
    trim = [(o + i, c) for o, cs in ((b.positive.offset, b.positive.bucket_counts),)
            for i, c in enumerate(cs) if c]
    assert trim == [(a.positive.offset + i, c) for i, c in
                    enumerate(a.positive.bucket_counts) if c]


async def test_emit_delta_makes_one_writer_of_several_producers() -> None:
    """emit: delta: interleaved, overlapping deltas of two producers leave as they came,
    re-timed into one contiguous series of windows; a resend is dropped."""
    rnd = random.Random(11)
    a = [(T0 + 10 * k, T0 + 10 * (k + 1), rnd.randrange(1, 100)) for k in range(15)]
    b = [(T0 + 10 * k + 5, T0 + 10 * (k + 1) + 5, rnd.randrange(1, 100)) for k in range(15)]
    arrivals = sorted(a + b, key=lambda p: (p[1] + rnd.randrange(-12, 12)))
    proc, sink, tel, _ = make(out_of_order="accumulate", emit="delta")
    windows: list[tuple[int, int]] = []
    total: float = 0
    for p in [*arrivals, arrivals[-2]]:  # a recent one sent again
        out = await run(proc, sink, request(sum_metric([p])))
        if out is None:
            continue
        m = out.resource_metrics[0].scope_metrics[0].metrics[0]
        assert m.sum.aggregation_temporality == 1  # DELTA
        (dp,) = m.sum.data_points
        windows.append((dp.start_time_unix_nano, dp.time_unix_nano))
        total += value(dp)
    assert total == sum(p[2] for p in arrivals)
    assert len(windows) == len(arrivals)
    assert counted(tel, "duplicate") == 1
    # contiguous, each at least 1 ns long: one writer's windows
    for (s1, e1), (s2, e2) in itertools.pairwise(windows):
        assert s1 < e1 == s2 < e2
