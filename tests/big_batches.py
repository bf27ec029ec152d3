"""A big traces request (tens of thousands of spans): what an OTLP JSON encode or a split
holds a core for seconds with, for the tests of work moved off the loop."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.builders import spans_request

#: Spans of `big_request`: ≈ 3.8 MB of protobuf, ≈ 11 MB of OTLP JSON; encoding it on the
#: loop takes ≈ 0.45 s on an idle core (and several seconds on a loaded one).
BIG_SPANS = 30_000


def big_request(spans: int = BIG_SPANS, resources: int = 3) -> ExportTraceServiceRequest:
    """`spans` spans with 4 attributes each, spread over `resources` resources."""
    req = ExportTraceServiceRequest()
    per = spans // resources
    for r in range(resources):
        part = spans_request(bytes([r + 1]) * 16, per if r < resources - 1 else spans - per * r,
                             service=f"svc{r}", scope="big",
                             attributes={"http.method": "GET", "http.route": "/a/{id}",
                                         "n": r, "ratio": 0.5})
        req.resource_spans.extend(part.resource_spans)
    return req
