"""`encode_request_pieces`: byte for byte `encode_request`, whatever the piece size
(the offload worker builds big requests' OTLP JSON this way, without a dict of the
whole request)."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings

from pipeline.pdata.otlpjson import encode_request, encode_request_pieces
from tests.big_batches import big_request
from tests.unit.pdata.test_otlpjson_codec import corpus, otlp_messages

SMALLS = (0, 1, 40, 300, 64 * 1024)


@pytest.mark.parametrize("message", corpus(), ids=lambda m: type(m).__name__)
def test_corpus_pieces_are_byte_identical(message: Message) -> None:
    whole = encode_request(message)
    for small in SMALLS:
        assert b"".join(encode_request_pieces(message, small)) == whole


def test_a_big_request_is_many_pieces_and_identical() -> None:
    req = big_request(3000, 3)
    pieces = list(encode_request_pieces(req))
    assert b"".join(pieces) == encode_request(req)
    assert len(pieces) > 3000  # a piece per span at least: no dict of the whole request


@settings(max_examples=150, deadline=None, derandomize=True)
@given(otlp_messages())
def test_property_pieces_are_byte_identical(message: Message) -> None:
    whole = encode_request(message)
    for small in SMALLS:
        assert b"".join(encode_request_pieces(message, small)) == whole
