from __future__ import annotations

import base64

import orjson
import pytest

from pipeline.component import Signal
from pipeline.pdata.otlpjson import (
    MAX_JSON_DEPTH,
    OTLPJSONError,
    decode_request,
    encode_request,
    flat_records,
    message_to_otlp_dict,
    rfc3339_nanos,
)
from tests.builders import T0, logs_request, traces_request

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


def _body(trace_id: str = TRACE_ID, span_id: str = SPAN_ID) -> bytes:
    return orjson.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": span_id, "parentSpanId": "",
            "name": "GET /", "kind": 2, "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": 1700000000000000500,
            "links": [{"traceId": TRACE_ID, "spanId": SPAN_ID}],
        }]}],
    }]})


def test_decode_hex_ids() -> None:
    req = decode_request(Signal.TRACES, _body())
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == b""
    assert span.kind == 2
    assert span.start_time_unix_nano == 1700000000000000000
    assert span.end_time_unix_nano == 1700000000000000500
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID)


def test_decode_snake_case_and_unknown_fields() -> None:
    body = orjson.dumps({"resource_logs": [{"scope_logs": [{"log_records": [
        {"trace_id": TRACE_ID, "span_id": SPAN_ID, "body": {"stringValue": "x"},
         "someFutureField": 1}]}]}]})
    req = decode_request(Signal.LOGS, body)
    rec = req.resource_logs[0].scope_logs[0].log_records[0]
    assert (rec.trace_id.hex(), rec.span_id.hex(), rec.body.string_value) == (
        TRACE_ID, SPAN_ID, "x")


@pytest.mark.parametrize("bad", ["xyz", "abc", "5b8efff798038103d269b633813fc60g"])
def test_decode_bad_hex_id(bad: str) -> None:
    with pytest.raises(OTLPJSONError) as exc:
        decode_request(Signal.TRACES, _body(trace_id=bad))
    assert str(exc.value) == f"traceId {bad!r} is not a hex string"


def test_decode_base64_id_is_not_accepted_as_hex() -> None:
    b64 = base64.b64encode(bytes.fromhex(TRACE_ID)).decode()
    with pytest.raises(OTLPJSONError, match=r"traceId .* is not a hex string"):
        decode_request(Signal.TRACES, _body(trace_id=b64))


def test_decode_invalid_json() -> None:
    with pytest.raises(OTLPJSONError, match=r"^invalid JSON: "):
        decode_request(Signal.TRACES, b"{not json")


def test_decode_not_an_object() -> None:
    with pytest.raises(OTLPJSONError) as exc:
        decode_request(Signal.TRACES, b"[1, 2]")
    assert str(exc.value) == "an OTLP JSON request must be a JSON object"


def test_decode_wrong_type() -> None:
    with pytest.raises(OTLPJSONError, match=r"^invalid OTLP JSON: "):
        decode_request(Signal.TRACES, b'{"resourceSpans": 5}')


def test_decode_too_deep() -> None:
    value: object = {"stringValue": "x"}
    for _ in range(MAX_JSON_DEPTH // 4 + 2):  # 4 JSON levels each
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    body = orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": value}]}]}]})
    with pytest.raises(OTLPJSONError) as exc:
        decode_request(Signal.LOGS, body)
    assert str(exc.value) == f"JSON nested deeper than {MAX_JSON_DEPTH} levels"


def test_encode_uses_hex_ids_and_integer_enums() -> None:
    req = traces_request(1)
    d = orjson.loads(encode_request(req))
    span = d["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "01" * 16
    assert span["spanId"] == "01" * 8
    assert span["kind"] == 2
    assert span["status"] == {"code": 2}
    assert "parentSpanId" not in span


def test_encode_decode_round_trip() -> None:
    req = traces_request(3, resources=2)
    req.resource_spans[0].scope_spans[0].spans[0].parent_span_id = b"\x09" * 8
    assert decode_request(Signal.TRACES, encode_request(req)) == req
    lreq = logs_request(2)
    lreq.resource_logs[0].scope_logs[0].log_records[0].trace_id = b"\x07" * 16
    assert decode_request(Signal.LOGS, encode_request(lreq)) == lreq


def test_message_to_otlp_dict_is_json_safe() -> None:
    d = message_to_otlp_dict(logs_request(1))
    rec = d["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert rec["severityNumber"] == 9
    assert rec["timeUnixNano"] == str(T0)


def test_rfc3339_nanos() -> None:
    assert rfc3339_nanos(0) is None
    assert rfc3339_nanos(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"


def test_flat_span_record() -> None:
    [rec] = list(flat_records(Signal.TRACES, traces_request(1)))
    assert rec == {
        "trace_id": "01" * 16, "span_id": "01" * 8, "name": "span-0", "kind": "server",
        "start_time": rfc3339_nanos(T0), "end_time": rfc3339_nanos(T0 + 1_500_000),
        "duration_ms": 1.5, "status_code": "error", "scope.name": "test-scope",
        "service.name": "checkout", "http.route": "/r/0"}


def test_flat_log_record() -> None:
    [rec] = list(flat_records(Signal.LOGS, logs_request(1)))
    assert rec == {"time": rfc3339_nanos(T0), "severity_text": "INFO", "severity_number": 9,
                   "body": "message 0", "service.name": "api", "n": 0}


def test_flat_records_metrics_refused() -> None:
    with pytest.raises(ValueError, match="flat JSON records exist for logs and traces"):
        flat_records(Signal.METRICS, None)
