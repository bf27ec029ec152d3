"""The Prometheus remote-write 1.0 protobuf types (`proto/prompb/remote_write.proto`,
code generated into `pipeline.proto.prompb`).

The exporter writes these messages by hand (`exporters/prometheusremotewrite.py`,
measured faster: see docs/benchmarks.md); the generated classes read them back
(tests check that the hand-written bytes parse to the same content) and serve
anyone who wants to build one field by field.
"""

from __future__ import annotations

from pipeline.proto.prompb.remote_write_pb2 import (
    Exemplar,
    Label,
    MetricMetadata,
    Sample,
    TimeSeries,
    WriteRequest,
)

__all__ = ["Exemplar", "Label", "MetricMetadata", "Sample", "TimeSeries", "WriteRequest"]
