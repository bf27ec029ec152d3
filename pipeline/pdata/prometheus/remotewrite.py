"""The Prometheus remote-write 1.0 protobuf types, built at import (no generated code).

The schema is the one in prometheus/prompb `remote.proto` and `types.proto`.
The exporter writes these messages by hand (`exporters/prometheusremotewrite.py`);
the classes serve to read them back (tests) and document the field numbers.
"""

from __future__ import annotations

from typing import Any

from pipeline.pdata.projection import build_projection

# MetricMetadata.type is prompb's enum MetricType (UNKNOWN 0, COUNTER 1, GAUGE 2,
# HISTOGRAM 3, GAUGEHISTOGRAM 4, SUMMARY 5, INFO 6, STATESET 7), declared as its
# varint; WriteRequest's field 2 is reserved in prompb.
_RW = build_projection("otelpipe/prometheus_remote_write.proto", {
    "Label": [("name", 1, "string"), ("value", 2, "string")],
    "Sample": [("value", 1, "double"), ("timestamp", 2, "int64")],
    "Exemplar": [("labels", 1, "repeated Label"), ("value", 2, "double"),
                 ("timestamp", 3, "int64")],
    "TimeSeries": [("labels", 1, "repeated Label"), ("samples", 2, "repeated Sample"),
                   ("exemplars", 3, "repeated Exemplar")],
    "MetricMetadata": [("type", 1, "int32"), ("metric_family_name", 2, "string"),
                       ("help", 4, "string"), ("unit", 5, "string")],
    "WriteRequest": [("timeseries", 1, "repeated TimeSeries"),
                     ("metadata", 3, "repeated MetricMetadata")],
}, package="prometheus")
WriteRequest: Any = _RW["WriteRequest"]
TimeSeries: Any = _RW["TimeSeries"]
MetricMetadata: Any = _RW["MetricMetadata"]
