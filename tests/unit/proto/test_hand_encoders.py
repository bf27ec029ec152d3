"""The hand-written encoders kept for speed (docs/benchmarks.md, "Hand-written protobuf
encoders") write bytes that the generated messages parse to exactly the content they
were given: Prometheus remote write, Loki push (through the exporter, structured
metadata included) and OTLP logs from native records. Property tests (Hypothesis)."""

from __future__ import annotations

import math
import struct
from typing import Any

import cramjam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.exporters._lokilabels import render_labels
from pipeline.exporters.loki import LokiExporter, LokiExporterConfig
from pipeline.exporters.prometheusremotewrite import WireEncoder, _SeriesBuf, encode_write_requests
from pipeline.pdata.logrecords import LogGroup, LogRecord, encode_groups
from pipeline.pdata.prometheus.series import Exemplar
from pipeline.proto.logproto.push_pb2 import PushRequest
from pipeline.proto.prompb.remote_write_pb2 import WriteRequest
from tests.support import exporter_settings
from tests.unit.pdata.test_logrecords import pb_request

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TEXT = st.text(max_size=24)
NAME = st.text(min_size=1, max_size=16)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def bits(x: float) -> int:
    """A double's bit pattern: NaN payloads (the staleness marker) and -0.0 compare exactly."""
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


# --- remote write -----------------------------------------------------------------------

LABELS = st.lists(st.tuples(NAME, TEXT), min_size=1, max_size=5, unique_by=lambda p: p[0])
EXEMPLAR = st.builds(Exemplar, FLOATS, st.integers(-(2**62), 2**62),
                     st.lists(st.tuples(NAME, TEXT), max_size=3).map(tuple))
SERIES = st.lists(st.tuples(LABELS, st.dictionaries(INT64, FLOATS, min_size=1, max_size=6),
                            st.lists(EXEMPLAR, max_size=3)), max_size=12)


@SETTINGS
@given(series=SERIES, max_bytes=st.integers(1, 4000), cache=st.integers(1, 8))
def test_remote_write_bytes_parse_to_the_same_content(
        series: list[tuple[list[tuple[str, str]], dict[int, float], list[Exemplar]]],
        max_bytes: int, cache: int) -> None:
    wire = WireEncoder(cache_size=cache)  # small: the label cache is cleared as it fills
    bufs: dict[bytes, _SeriesBuf] = {}
    expected: dict[bytes, Any] = {}
    for labels, samples, exemplars in series:
        key = b"".join(wire.label(k, v) for k, v in labels)
        buf = bufs.get(key)
        if buf is None:
            buf = bufs[key] = _SeriesBuf()
            expected[key] = (tuple(labels), {}, [])
        buf.samples.update(samples)
        expected[key][1].update(samples)
        for e in exemplars:
            buf.exemplars.append(wire.exemplar(e))
            expected[key][2].append((e.labels, bits(e.value), e.timestamp_ns // 1_000_000))
    parts = encode_write_requests(bufs, max_bytes)
    got = []
    for p in parts:
        raw = bytes(cramjam.snappy.decompress_raw(p.body))
        req = WriteRequest.FromString(raw)
        assert len(raw) <= max_bytes or len(req.timeseries) == 1
        assert p.samples == sum(len(ts.samples) for ts in req.timeseries)
        got += [(tuple((lb.name, lb.value) for lb in ts.labels),
                 [(s.timestamp, bits(s.value)) for s in ts.samples],
                 [(tuple((lb.name, lb.value) for lb in e.labels), bits(e.value), e.timestamp)
                  for e in ts.exemplars]) for ts in req.timeseries]
    assert got == [(labels, [(t, bits(v)) for t, v in sorted(samples.items())], exemplars)
                   for labels, samples, exemplars in expected.values()]


# --- Loki push, through the exporter -----------------------------------------------------

def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"bool_value": v}
    if isinstance(v, int):
        return {"int_value": v}
    if isinstance(v, float):
        return {"double_value": v}
    return {"string_value": v}


SCALAR = st.one_of(TEXT, st.booleans(), INT64, st.floats(allow_nan=False))
ATTRS = st.dictionaries(st.sampled_from(["user", "http.method", "a.b", "1x", "service.name",
                                         "k"]) | NAME, SCALAR, max_size=4)
RECORD = st.fixed_dictionaries({
    "time_unix_nano": st.integers(0, 2**64 - 1), "severity_number": st.integers(0, 24),
    "severity_text": st.sampled_from(["", "INFO", "ERROR", "wärn"]),
    "trace_id": st.sampled_from([b"", bytes(range(16)), b"\x01\x02"]),
    "span_id": st.sampled_from([b"", bytes(range(8)), b"\xff"]),
    "observed_time_unix_nano": st.integers(1, 2**63),
    "body": st.one_of(st.none(), TEXT, INT64), "attributes": ATTRS})
REQUEST = st.lists(st.tuples(ATTRS, st.sampled_from(["", "scope"]),
                             st.lists(RECORD, max_size=6)), min_size=1, max_size=3)


def otlp_logs(resources: list[tuple[dict[str, Any], str, list[dict[str, Any]]]]) -> bytes:
    req = ExportLogsServiceRequest()
    for res, scope, records in resources:
        rl = req.resource_logs.add()
        for k, v in res.items():
            rl.resource.attributes.add(key=k).value.CopyFrom(AnyValue(**_value(v)))
        sl = rl.scope_logs.add()
        sl.scope.name = scope
        for r in records:
            lr = sl.log_records.add(**{k: v for k, v in r.items()
                                       if k not in ("body", "attributes")})
            if r["body"] is not None:
                lr.body.CopyFrom(AnyValue(**_value(r["body"])))
            for k, v in r["attributes"].items():
                lr.attributes.add(key=k).value.CopyFrom(AnyValue(**_value(v)))
    return bytes(req.SerializeToString())


LOKI = [LokiExporter(exporter_settings("loki"), LokiExporterConfig(
    endpoint="http://127.0.0.1:1", max_label_values=3, line_format=line_format,
    labels={"resource": ["service.name"], "attributes": ["user"], "severity": "level"}))
    for line_format in ("text", "json")]


@SETTINGS
@given(resources=REQUEST)
def test_loki_push_bytes_parse_to_the_same_content(
        resources: list[tuple[dict[str, Any], str, list[dict[str, Any]]]]) -> None:
    """The protobuf body parses to exactly the streams, lines, timestamps and structured
    metadata of the exporter's list form (the JSON encoding's), label guard included."""
    raw = otlp_logs(resources)
    for exp in LOKI:  # text lines with metadata; JSON lines (the metadata in the line)
        body = exp.encode(raw)  # hand-written PushRequest, snappy
        listed = exp.streams(raw)  # same call state: the guard admits the same values
        pr = PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        got = [(s.labels, [(e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos, e.line,
                            [(m.name, m.value) for m in e.structuredMetadata])
                           for e in s.entries]) for s in pr.streams]
        want = [(render_labels(labels), [(ts, line, [(k, str(v)) for k, v in meta])
                                         for ts, line, meta in entries])
                for labels, entries in listed.items()]
        assert got == want
        assert all(s.hash == 0 for s in pr.streams)


# --- OTLP logs from native records --------------------------------------------------------

VALUE = st.recursive(st.one_of(st.none(), TEXT, st.booleans(), INT64,
                               st.floats(allow_nan=False), st.binary(max_size=8)),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(NAME, inner, max_size=3), max_leaves=8)
NATIVE = st.builds(
    lambda body, attrs, observed, fields: LogRecord(body, attrs, observed, **fields),
    VALUE, st.dictionaries(NAME, VALUE, max_size=4), st.integers(0, 2**64 - 1),
    st.fixed_dictionaries({"time_unix_nano": st.integers(0, 2**64 - 1),
                           "severity_number": st.integers(0, 24), "severity_text": TEXT,
                           "trace_id": st.sampled_from([b"", bytes(range(16))]),
                           "flags": st.integers(0, 2**32 - 1), "event_name": TEXT}))
GROUPS = st.lists(st.builds(
    lambda recs, res, scope: LogGroup(recs, resource=res, scope_name=scope),
    st.lists(NATIVE, max_size=4), st.dictionaries(NAME, VALUE, max_size=3), TEXT),
    min_size=1, max_size=3)


@SETTINGS
@given(groups=GROUPS)
def test_otlp_log_bytes_parse_to_the_same_content(groups: list[LogGroup]) -> None:
    raw = encode_groups(groups)
    parsed = ExportLogsServiceRequest.FromString(raw)
    expected = pb_request(groups)
    assert parsed == expected
    assert parsed.SerializeToString() == expected.SerializeToString()


def test_property_helpers_see_differences() -> None:
    """The comparisons above can fail: a NaN payload, -0.0, a dropped exemplar differ."""
    assert bits(math.nan) != bits(struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0])
    assert bits(0.0) != bits(-0.0)
    wire = WireEncoder()
    buf = _SeriesBuf()
    buf.samples = {1: 1.0}
    (part,) = encode_write_requests({wire.label("a", "b"): buf}, 100)
    req = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(part.body)))
    assert [(lb.name, lb.value) for lb in req.timeseries[0].labels] == [("a", "b")]
