"""What the gRPC and HTTP services share: content types, partial success answers."""

from __future__ import annotations

from google.protobuf.message import Message

from pipeline.component import Signal
from pipeline.pdata.otlp import ITEM_NAME, REJECTED_FIELD, RESPONSE_TYPES

PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPE = "application/json"
ID_RULES = {
    Signal.TRACES: "a span needs a 16-byte trace id and an 8-byte span id",
    Signal.LOGS: "a log record's trace id must be empty or 16 bytes, its span id empty or 8",
}


def partial_success(signal: Signal, rejected: int) -> tuple[Message, str]:
    message = (f"{rejected} {ITEM_NAME[signal]} with malformed ids were dropped "
               f"({ID_RULES[signal]})")
    resp = RESPONSE_TYPES[signal]()
    ps = resp.partial_success
    setattr(ps, REJECTED_FIELD[signal], rejected)
    ps.error_message = message
    return resp, message
