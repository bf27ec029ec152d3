"""`deltatocumulative` processor: delta sums, histograms and exponential histograms become
cumulative, by adding up each stream's deltas in memory (the Collector contrib's
`deltatocumulative`, with its keys).

```yaml
processors:
  deltatocumulative:
    max_stale: 5m          # forget a stream that received nothing for this long
    max_streams: 100000    # streams tracked at most; a new stream beyond: its points dropped
    out_of_order: drop     # drop (the Collector's) | accumulate (several producers per stream)
    emit: cumulative       # cumulative | delta (otelpipe's: one writer's deltas, see below)
```

A *stream* is what the Collector identifies as one: resource attributes, scope (name,
version, attributes), metric (name, unit, type, monotonicity) and the point's attributes;
attribute order does not matter. For each delta point of a stream:

- the first one starts the stream and passes unchanged (its start time is the stream's);
- a later one is added to the stream and leaves as the running total, with the stream's
  start time and its own time. Sums add their values (an int stream stays an int until a
  double arrives; a total beyond int64 becomes a double); histograms add `count`, `sum`
  (dropped once a point has none), bucket counts, and keep the least `min` and greatest
  `max`; a histogram whose explicit bounds change starts over from that point (the
  Collector's reset). Exponential histograms are merged bucket by bucket after bringing
  both to the coarser scale, downscaled further so that each side holds at most 160
  buckets (the Collector's limit), and, when their zero thresholds differ, with the zero
  bucket widened to the upper bound of the bucket holding the wider threshold;
- with `out_of_order: drop` (default, the Collector's): a point whose start time is before
  the stream's is dropped (`older_start`: it belongs to an older series), and a point whose
  time is not after the stream's last time is dropped (`out_of_order`; so an exact
  duplicate, e.g. a retried request, is not added twice). A gap (start after the last
  time) is accepted.
- with `out_of_order: accumulate`: every point is added whatever its times (the stream's
  time is the latest seen, its start the earliest), except one with the same start and
  time as one of the stream's last 8 points (`duplicate`: a redelivered delta; two
  producers never close a window at the same nanosecond). This is for one stream fed by
  several producers whose deltas interleave, as the worker processes of `otelpipe run
  --workers N` that each aggregate part of the spans. A redelivery older than the
  stream's last 8 points is counted twice (at-least-once).

A refusal after the processor (a `RetryableError`, or any error but a `PermanentError`,
from the next consumer) takes back what the refused batch added: its sender sends it
again, and it must not count twice. Sums, counts, histogram sums and buckets are
subtracted (addition commutes, so batches added meanwhile stay); a stream the batch
started, or reset, and nothing updated since is forgotten (or restored); the batch's
windows are forgotten (so its resend is not a `duplicate`; with `drop`, the stream's time
goes back). Not taken back: a lower `min` / higher `max`, an earlier start, a histogram
`sum` dropped because the point had none (its resend brings them again anyway).

With `emit: delta` (otelpipe's; what `otelpipe run --workers N` uses for the
connectors whose user asked for delta temporality) the streams are tracked as above but
each accepted point leaves as it came, delta, re-timed as its stream's next window: from
the end of the stream's previous window to its own time (at least 1 ns later). The
interleaved, overlapping deltas of several producers become one writer's contiguous
deltas (the data model's single-writer rule), their sum unchanged; a duplicate is
dropped as above.

Metrics that are not delta (gauges, summaries, cumulative sums and histograms) pass
unchanged, and a batch without delta metrics keeps its bytes. A metric whose points were
all dropped is removed.

Limits (`max_streams`): a point of a new stream when `max_streams` streams are tracked is
dropped and counted (`outcome="limit"`), as in the Collector; tracked streams go on.
Streams not updated for `max_stale` are forgotten (checked on every batch, oldest first:
the streams are kept in update order, so this costs one look per batch plus one per
expired stream), which makes room again; a forgotten stream that comes back starts over.
Unlike the Collector (`max_streams` unlimited by default) the default is 100000: memory
is bounded (≈ 0.45 KB a sum stream, ≈ 0.7 KB a 17-bucket histogram stream, with 5
point attributes: `python -m benchmarks.deltatocumulative`).
`otelpipe_processor_deltatocumulative_datapoints{outcome=...}` counts points by outcome
(`started`, `accumulated`, `reset`, `limit`, `out_of_order`, `older_start`, `duplicate`,
`invalid`: an exponential histogram point with a scale outside the data model's -10..20
or a zero threshold that is not a finite number >= 0, dropped),
`otelpipe_processor_deltatocumulative_streams` is the number tracked.

Modules: `config` (the keys), `processor` (streams, state, the batch walk), `expo`
(exponential histogram arithmetic). See docs/processors.md.

Cost: the request is decoded once, and read once more through a projection
(proto/otelpipe/deltatocumulative.proto) that keeps attributes serialized and a
histogram's bounds and bucket counts as packed bytes; per delta point the stream key is
the sorted serialized attributes, then one dict lookup and a few field writes. A big batch yields
to the event loop every 2000 points (a big metric is handled in slices).
"""

from __future__ import annotations

from pipeline.component import Factory, Kind, ProcessorCreateSettings, Signal
from pipeline.processors.deltatocumulative.config import DeltaToCumulativeConfig
from pipeline.processors.deltatocumulative.processor import DeltaToCumulativeProcessor


def _create(settings: ProcessorCreateSettings,
            config: DeltaToCumulativeConfig) -> DeltaToCumulativeProcessor:
    return DeltaToCumulativeProcessor(settings, config)


factory = Factory(type="deltatocumulative", kind=Kind.PROCESSOR,
                  config_model=DeltaToCumulativeConfig, create=_create,
                  signals=frozenset({Signal.METRICS}),
                  description="delta sums and histograms to cumulative, per stream "
                              "(max_stale, max_streams)")
