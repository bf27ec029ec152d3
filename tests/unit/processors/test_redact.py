from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.processors.redact import RedactConfig, Redactor, RedactProcessor, factory, luhn
from tests.builders import metrics_request, traces_request
from tests.support import Sink, processor_settings

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")

MASKED = [
    ("request failed: password=hunter2 user=bob", "request failed: password=**** user=bob"),
    ('{"password": "s3cr\\"et", "user": "x"}', '{"password": "****", "user": "x"}'),
    ("login pwd: 'letmein' ok", "login pwd: '****' ok"),
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ****"),
    ("curl -H 'authorization: Basic dXNlcjpwYXNz' http://x",
     "curl -H 'authorization: Basic ****' http://x"),
    ("headers={'Authorization': 'Bearer t0k3n'}", "headers={'Authorization': 'Bearer ****'}"),
    ("SECRET_KEY=abcdef AWS_SECRET_ACCESS_KEY=xyz/+1",
     "SECRET_KEY=**** AWS_SECRET_ACCESS_KEY=****"),
    ("env DJANGO_SETTINGS=x STRIPE_KEY=sk9 DB_PASSWORD=pw GITHUB_TOKEN=t1",
     "env DJANGO_SETTINGS=x STRIPE_KEY=**** DB_PASSWORD=**** GITHUB_TOKEN=****"),
    ("GET /cb?code=1&access_token=ya29.a0Af&state=x", "GET /cb?code=1&access_token=****&state=x"),
    ("x-api-key=abc123&page=2", "x-api-key=****&page=2"),
    ("apikey: 9a8b7c", "apikey: ****"),
    ("client_secret=\"s p a c e\"", "client_secret=\"****\""),
    ("sent Bearer 9f8e7d6c5b4a39281726 upstream", "sent Bearer **** upstream"),
    ("dsn postgres://app:hunter2@db:5432/app", "dsn postgres://app:****@db:5432/app"),
    (f"jwt {JWT} end", "jwt **** end"),
    ("key AKIAIOSFODNN7EXAMPLE used", "key **** used"),
    ("push ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 done", "push **** done"),
    ("paid with 4111 1111 1111 1111 today", "paid with **** today"),
    ("card=5500-0000-0000-0004", "card=****"),  # key_value does not apply ("card" is no key)
    ("amex 378282246310005.", "amex ****."),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "****"),
]

KEPT = [
    "password reset requested",
    "user changed their password",
    "GET /api/v1/orders/12345 200 OK in 12ms",
    "order 1234567812345678 shipped",           # 16 digits failing Luhn
    "trace 4111111111111112 span",              # a card-like prefix, Luhn fails
    "ts=1700000000123456789 took 0.4111111111111111",  # timestamp and a float
    "max_tokens=100 input_tokens: 523 tokenizer=bpe",
    "the secretary said hello",
    "Bearer authentication failed",             # no token after the scheme
    "token=****",                               # already masked: left as is
    "short",
]


@pytest.fixture
def redactor() -> Redactor:
    return Redactor(RedactConfig())


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_masks(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact_str(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_near_misses_are_kept(redactor: Redactor, text: str) -> None:
    assert redactor.redact_str(text) is None


def test_luhn() -> None:
    assert luhn("4111111111111111")
    assert luhn("378282246310005")
    assert not luhn("4111111111111112")
    assert not luhn("1234567812345678")


def test_hash_is_stable_and_keyed() -> None:
    r = Redactor(RedactConfig(hash="sha256"))
    digest = hashlib.sha256(b"hunter2").hexdigest()
    assert r.redact_str("password=hunter2 x") == f"password=sha256:{digest} x"
    assert r.redact_str("pwd: hunter2") == f"pwd: sha256:{digest}"
    keyed = Redactor(RedactConfig.model_validate({"hash": "sha256", "hash_key": "k"}))
    mac = hmac.new(b"k", b"hunter2", hashlib.sha256).hexdigest()
    assert keyed.redact_str("password=hunter2") == f"password=sha256:{mac}"
    # Already hashed values are not hashed again.
    assert r.redact_str(f"password=sha256:{digest}") is None


def test_custom_mask_patterns_allow_values_and_disable() -> None:
    r = Redactor(RedactConfig.model_validate({
        "mask": "[REDACTED]",
        "patterns": [{"name": "ssn", "regex": r"\b\d{3}-\d{2}-\d{4}\b"},
                     {"name": "session", "regex": r"sid=(?P<secret>\w+)", "keywords": ["sid="]}],
        "allow_values": [r"4111 1111 1111 1111"],
        "disable_patterns": ["jwt"],
    }))
    assert r.redact_str("ssn 123-45-6789 ok") == "ssn [REDACTED] ok"
    assert r.redact_str("cookie sid=abc123; path=/") == "cookie sid=[REDACTED]; path=/"
    assert r.redact_str("test card 4111 1111 1111 1111") is None
    assert r.redact_str(f"jwt {JWT}") is None
    assert r.redact_str("password=x1") == "password=[REDACTED]"


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="unknown built-in pattern"):
        RedactConfig.model_validate({"disable_patterns": ["nope"]})
    with pytest.raises(ValidationError, match="invalid regular expression"):
        RedactConfig.model_validate({"patterns": [{"name": "x", "regex": "("}]})
    with pytest.raises(ValidationError, match="backreferences"):
        RedactConfig.model_validate({"patterns": [{"name": "x", "regex": r"(a)\1"}]})
    with pytest.raises(ValidationError, match="hash_key needs hash"):
        RedactConfig.model_validate({"hash_key": "k"})
    # The hash key never shows in errors or reprs.
    cfg = RedactConfig.model_validate({"hash": "sha256", "hash_key": "topsecret"})
    assert "topsecret" not in repr(cfg)
    assert "topsecret" not in str(cfg.model_dump())


# --- whole batches ------------------------------------------------------------------------

def s(v: str) -> AnyValue:
    return AnyValue(string_value=v)


def make(sink: Sink, signal: Signal, **cfg: Any) -> RedactProcessor:
    settings = processor_settings("redact", next_consumer=sink, signal=signal)
    proc = factory.create(settings, RedactConfig.model_validate(cfg))
    assert isinstance(proc, RedactProcessor)
    return proc


def logs_batch() -> Batch:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([
        KeyValue(key="service.name", value=s("api")),
        KeyValue(key="process.command_line", value=s("app --db-password=hunter2 --port 80"))])
    sl = rl.scope_logs.add()
    lr = sl.log_records.add()
    lr.body.string_value = "login ok for bob password=hunter2"
    lr.attributes.extend([
        KeyValue(key="http.request.header.authorization", value=s("Bearer abc")),
        KeyValue(key="db.password", value=AnyValue(int_value=1234)),
        KeyValue(key="user.ssn", value=s("123-45-6789")),
        KeyValue(key="http.route", value=s("/token=abc")),
        KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=523)),
        KeyValue(key="note", value=s("password reset requested")),
    ])
    lr2 = sl.log_records.add()
    kvl = lr2.body.kvlist_value.values
    kvl.add(key="msg", value=s("charged 4111-1111-1111-1111"))
    kvl.add(key="api_key", value=s("k-123"))
    arr = kvl.add(key="args").value.array_value.values
    arr.add(string_value="--token=t0ps3cret")
    arr.add(int_value=7)
    lr3 = sl.log_records.add()
    lr3.body.string_value = "nothing to see here"
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def attrs(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind not in ("kvlist_value", "array_value") \
            else kv.value
    return out


async def test_logs_bodies_attributes_and_resource() -> None:
    sink = Sink()
    proc = make(sink, Signal.LOGS, blocked_keys=["user.ssn"], allowed_keys=["http.route"],
                summary=True)
    batch = logs_batch()
    await proc.consume(batch)
    out = Batch(Signal.LOGS, raw=sink.batches[0].to_bytes()).message
    rl = out.resource_logs[0]
    assert attrs(rl.resource.attributes) == {
        "service.name": "api", "process.command_line": "app --db-password=**** --port 80"}
    lr, lr2, lr3 = rl.scope_logs[0].log_records
    assert lr.body.string_value == "login ok for bob password=****"
    assert attrs(lr.attributes) == {
        "http.request.header.authorization": "****",
        "db.password": "****",                 # a secret key name: the whole value, any type
        "user.ssn": "****",                    # blocked_keys
        "http.route": "/token=abc",            # allowed_keys: untouched
        "gen_ai.usage.input_tokens": 523,
        "note": "password reset requested",
        "redaction.masked.count": 4,
        "redaction.masked.keys": "(body),db.password,http.request.header.authorization,user.ssn",
    }
    body = {kv.key: kv.value for kv in lr2.body.kvlist_value.values}
    assert body["msg"].string_value == "charged ****"
    assert body["api_key"].string_value == "****"
    assert [v.WhichOneof("value") for v in body["args"].array_value.values] == \
        ["string_value", "int_value"]
    assert body["args"].array_value.values[0].string_value == "--token=****"
    assert attrs(lr2.attributes) == {"redaction.masked.count": 3,
                                     "redaction.masked.keys": "(body)"}
    assert lr3.body.string_value == "nothing to see here"
    assert list(lr3.attributes) == []


async def test_spans_events_links_status_and_metrics() -> None:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.name = "POST /login"
    sp.attributes.add(key="url.full", value=s("https://u:p4ss@api/x?api_key=zz9"))
    ev = sp.events.add(name="exception")
    ev.attributes.add(key="exception.message", value=s("auth failed for token=abc123"))
    sp.links.add().attributes.add(key="cookie", value=s("sid=1"))
    sp.status.message = "connect: password=pw1 refused"
    sink = Sink()
    await make(sink, Signal.TRACES).consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    out = sink.batches[0].message.resource_spans[0].scope_spans[0].spans[0]
    assert out.name == "POST /login"
    assert out.attributes[0].value.string_value == "https://u:****@api/x?api_key=****"
    assert out.events[0].attributes[0].value.string_value == "auth failed for token=****"
    assert out.links[0].attributes[0].value.string_value == "****"
    assert out.status.message == "connect: password=**** refused"

    mreq = metrics_request([2])
    for dp in mreq.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points:
        dp.attributes.add(key="db.connection_string", value=s("Server=x;Password=abc;"))
    sink = Sink()
    await make(sink, Signal.METRICS).consume(Batch(Signal.METRICS, message=mreq))
    dps = sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    assert [dp.attributes[0].value.string_value for dp in dps] == ["Server=x;Password=****;"] * 2


async def test_clean_batch_passes_as_its_bytes() -> None:
    """A batch with no trigger word is neither decoded nor re-encoded."""
    raw = traces_request(20).SerializeToString()
    batch = Batch(Signal.TRACES, raw=raw)
    sink = Sink()
    await make(sink, Signal.TRACES).consume(batch)
    assert sink.batches[0] is batch
    assert not batch.decoded
    assert batch.to_bytes() is raw


def test_batch_prefilter(redactor: Redactor) -> None:
    assert not redactor.batch_may_hold_secrets(traces_request(5).SerializeToString())
    for text in ("password=x", "Bearer abc", "4111 1111 1111 1111", JWT):
        req = traces_request(1)
        req.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="m", value=s(text))
        assert redactor.batch_may_hold_secrets(req.SerializeToString()), text
