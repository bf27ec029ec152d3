"""Decoding and checking an OTLP request body, on the event loop or in a worker process.

`prepare` turns a body (protobuf or OTLP JSON) into what the otlp receiver
delivers: it parses, counts the items, drops spans and log records with
malformed ids and enforces the attribute limits. It is pure: the same
function runs on the event loop for small bodies and in a worker process for
large ones (`prepare_off_loop`).

Why a process and not a thread: neither upb's parser nor orjson releases the
GIL, so a thread would block the loop just as long (measured: a 9 MB protobuf
with 1M attributes parses in ≈ 0.25 s, a 20 MB OTLP JSON body decodes in
≈ 1-2 s, and a probe thread waits that long). The worker (`DecodeWorker`, one
per otlp receiver) is started on the first large body; bodies wait for it in
order. The loop then only moves bytes: the body to the worker, the checked
protobuf back. The process and its framing are pdata/offload.py's `WorkerPipe`
and `serve`, shared with the exporters' offload worker.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from typing import Any, BinaryIO

from google.protobuf.message import DecodeError

from pipeline.component import Signal
from pipeline.pdata.offload import WorkerPipe, read_exact, serve
from pipeline.pdata.otlp import (
    REQUEST_TYPES,
    AttributeLimits,
    apply_item_limits,
    drop_invalid_id_items,
)
from pipeline.pdata.otlpjson import OTLPJSONError, decode_request

# Bodies above these sizes are decoded in the worker process. On the loop a 1 MiB
# protobuf of tiny attributes (the worst case: ≈ 110k KeyValues) parses in ≈ 30 ms,
# 256 KiB of OTLP JSON decode in ≈ 15-25 ms (measured on 2 loaded cores).
OFF_LOOP_PROTOBUF_BYTES = 1024 * 1024
OFF_LOOP_JSON_BYTES = 256 * 1024


class MalformedRequest(Exception):
    """The body cannot be decoded (answered with 400 / INVALID_ARGUMENT)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A decoded and checked request. `raw` is the protobuf to deliver when the data
    is unchanged (or came from the worker); otherwise `message` holds it."""

    raw: bytes | None
    message: Any
    items: int  # items left to deliver
    rejected: int  # items dropped for malformed ids
    attributes_dropped: int
    values_truncated: int
    events_dropped: int = 0
    links_dropped: int = 0
    arrays_truncated: int = 0


def check_ids(signal: Signal, request: Any) -> tuple[int, int]:
    """(items, items with malformed ids) of a decoded request.

    Reads two fields per span/log record, nothing per attribute; metrics
    count data points and have no ids to check.
    """
    total = bad = 0
    if signal is Signal.TRACES:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans = ss.spans
                total += len(spans)
                for sp in spans:
                    if len(sp.trace_id) != 16 or len(sp.span_id) != 8:
                        bad += 1
    elif signal is Signal.LOGS:
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                records = sl.log_records
                total += len(records)
                for lr in records:
                    t = len(lr.trace_id)
                    s = len(lr.span_id)
                    if (t != 16 and t != 0) or (s != 8 and s != 0):
                        bad += 1
    else:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind is not None:
                        total += len(getattr(m, kind).data_points)
    return total, bad


def malformed_protobuf(exc: DecodeError) -> str:
    return (f"malformed protobuf: {exc} (invalid wire format, or a string field that is "
            "not valid UTF-8)")


def prepare(signal: Signal, body: bytes, is_json: bool, limits: AttributeLimits,
            serialize: bool = False) -> Prepared:
    """Decode and check a request body. Raises MalformedRequest.

    `serialize`: always return the protobuf bytes (the worker's answer), never a
    message.
    """
    if is_json:
        try:
            message = decode_request(signal, body)
        except OTLPJSONError as exc:
            raise MalformedRequest(str(exc)) from None
        raw: bytes | None = message.SerializeToString()
    else:
        try:
            message = REQUEST_TYPES[signal].FromString(body)
        except DecodeError as exc:
            raise MalformedRequest(malformed_protobuf(exc)) from None
        raw = body
    total, bad = check_ids(signal, message)
    if bad:
        drop_invalid_id_items(signal, message)
        total -= bad
        raw = message.SerializeToString()  # rare: the limits read the sizes from it
    assert raw is not None
    cut = apply_item_limits(signal, message, raw, limits)
    if bad or cut:
        raw = None
    if serialize:
        if raw is None and total:
            raw = message.SerializeToString()
        message = None
    elif raw is not None:
        message = None
    return Prepared(raw, message, total, bad, cut.attributes_dropped, cut.values_truncated,
                    cut.events_dropped, cut.links_dropped, cut.arrays_truncated)


def off_loop(body: bytes, is_json: bool) -> bool:
    """Whether this body is decoded in the worker process."""
    return len(body) > (OFF_LOOP_JSON_BYTES if is_json else OFF_LOOP_PROTOBUF_BYTES)


# The worker: `python -m pipeline.receivers._otlpdecode`, frames on stdin/stdout (the
# framing of pdata/offload.py's WorkerPipe).
# Request: signal index, is_json, max attributes, max value length, max events, max
# links, max array length, body length; body.
# Answer: status (0 ok, 1 malformed, 2 ok and unchanged: deliver the body), items,
# rejected, dropped, truncated, events dropped, links dropped, arrays truncated, payload
# length; payload (the protobuf, or the error).
_SIGNALS = tuple(Signal)
_REQUEST = struct.Struct(">BBQQQQQQ")
_ANSWER = struct.Struct(">BQQQQQQQQ")
_OK, _MALFORMED, _UNCHANGED = 0, 1, 2


class DecodeWorker:
    """A worker process that runs `prepare`, started on first use; one body at a time.

    Not `multiprocessing`: its spawn start method re-imports the parent's main
    script, and its feeder thread pickles the body holding the GIL (a 20 MB body
    stalled the loop 170 ms). Here the loop writes the body to a pipe and reads
    the answer without copying it through Python code.
    """

    def __init__(self) -> None:
        self._pipe = WorkerPipe(__name__, "decode worker")

    @property
    def _proc(self) -> subprocess.Popen[bytes] | None:
        return self._pipe.proc

    async def prepare(self, signal: Signal, body: bytes, is_json: bool,
                      limits: AttributeLimits) -> Prepared:
        """`prepare` in the worker. Raises MalformedRequest, or RuntimeError
        (OffloadError) when the worker failed (it is started again for the next body).
        A caller that goes away (cancelled gRPC call) leaves the exchange to finish:
        its answer is dropped."""
        head = _REQUEST.pack(_SIGNALS.index(signal), is_json, limits.max_attributes,
                             limits.max_value_length, limits.max_events, limits.max_links,
                             limits.max_array_length, len(body))
        (status, items, rejected, *cut, _), chunks = await self._pipe.exchange(
            (head, body), _ANSWER)
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if status == _MALFORMED:
            raise MalformedRequest(payload.decode())
        raw = body if status == _UNCHANGED else payload
        return Prepared(raw if items else None, None, items, rejected, *cut)

    async def close(self) -> None:
        """Stop the worker: end of input, then kill if it does not exit in 5 s."""
        await self._pipe.close()


def _step(inp: BinaryIO) -> tuple[bytes, bytes] | None:
    """One body in, its answer out (the worker's side)."""
    head = read_exact(inp, _REQUEST.size)
    if head is None:
        return None
    sig, is_json, max_attrs, max_len, max_events, max_links, max_array, n = \
        _REQUEST.unpack(head)
    body = read_exact(inp, n)
    if body is None:
        return None
    try:
        p = prepare(_SIGNALS[sig], body, bool(is_json),
                    AttributeLimits(max_attrs, max_len, max_events, max_links, max_array),
                    serialize=True)
        status, payload = (_UNCHANGED, b"") if p.raw is body else (_OK, p.raw or b"")
        counts = (p.items, p.rejected, p.attributes_dropped, p.values_truncated,
                  p.events_dropped, p.links_dropped, p.arrays_truncated)
    except MalformedRequest as exc:
        status, payload, counts = _MALFORMED, str(exc).encode(), (0,) * 7
    del body
    return _ANSWER.pack(status, *counts, len(payload)), payload


if __name__ == "__main__":
    serve(_step)
