"""The aggregation engine behind the metric-deriving connectors.

`redmetrics` (spans → RED metrics) and `logmetrics` (log records → counters,
sums, histograms, gauges) are two front ends over this package:

- `series`, `histograms`: one aggregate per distinct set of dimension values
  (`SumSeries`, `GaugeSeries`, `HistogramSeries`, `ExpHistogramSeries`);
- `store`: `SeriesSet`, the series of one metric with the cardinality limit
  (overflow series), per-series expiry and temporality;
- `keys`: cheap lookup keys from serialized attributes (`KeyTable`,
  `ValueCache`);
- `emit`: one OTLP metrics request per flush;
- `connector`: `AggregatingConnector`, the flush loop, its settings and its
  own metrics.

Not a component: the connectors are `pipeline.connectors.redmetrics` and
`pipeline.connectors.logmetrics`.
"""
