"""The redactor: built-in patterns on strings (masked and near misses), hashing, custom
patterns, allow values, the batch prefilter."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.processors.redact.config import RedactConfig
from pipeline.processors.redact.patterns import luhn
from pipeline.processors.redact.redactor import Redactor
from tests.builders import traces_request

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


def test_batch_prefilter(redactor: Redactor) -> None:
    assert not redactor.batch_may_hold_secrets(traces_request(5).SerializeToString())
    for text in ("password=x", "Bearer abc", "4111 1111 1111 1111", JWT):
        req = traces_request(1)
        span = req.resource_spans[0].scope_spans[0].spans[0]
        span.attributes.add(key="m", value=AnyValue(string_value=text))
        assert redactor.batch_may_hold_secrets(req.SerializeToString()), text
