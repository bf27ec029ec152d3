"""Exceptions that cross component boundaries.

Backpressure is an exception, not a return code: receivers map
`RetryableError` to HTTP 503/429 + Retry-After or gRPC UNAVAILABLE, and
`PermanentError` to HTTP 400 or gRPC INVALID_ARGUMENT.

What a sender learns: an error that left an exporter carries `origin`
("exporter otlphttp/backend", set by the exporter base class). Its text may
quote the backend's URL and answer, so a receiver answers the sender
`sender_message(exc)` -- the status and a generic reason naming the origin --
and logs the full text (masked). Errors without an origin (a processor's
refusal such as the memory limiter's, a connector rejecting undecodable data)
are about the pipeline or the sender's own data and keep their message.
"""

from __future__ import annotations

from typing import Self


class PipelineError(Exception):
    """Base class of errors raised by components while consuming data.

    `origin`: the component the error came from when it crossed an exporter's
    boundary (e.g. "exporter otlphttp/backend"), else None.
    """

    origin: str | None = None

    def from_origin(self, origin: str) -> Self:
        """Mark where the error came from (the first mark wins); returns self."""
        if self.origin is None:
            self.origin = origin
        return self


class RetryableError(PipelineError):
    """The batch was refused for now (memory limit, full queue, backend down).

    Nothing of the batch was kept; the sender should retry after `retry_after`
    seconds. `throttle` asks for 429 instead of 503 on HTTP.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, throttle: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.throttle = throttle


class PermanentError(PipelineError):
    """The batch (or `rejected` items of it) can never be accepted; do not retry."""

    def __init__(self, message: str, *, rejected: int | None = None):
        super().__init__(message)
        self.rejected = rejected


def sender_message(exc: PipelineError) -> str:
    """The reason a receiver gives a sender for `exc`.

    An error from an exporter becomes generic ("exporter otlphttp/backend
    unavailable: retry later" / "... rejected the data"): its own text may
    hold the backend's URL, credentials or answer, which never travel back.
    Others keep their message (callers still mask URLs in it).
    """
    if exc.origin is not None:
        if isinstance(exc, RetryableError):
            return f"{exc.origin} unavailable: retry later"
        return f"{exc.origin} rejected the data: do not retry"
    if isinstance(exc, RetryableError):
        return str(exc) or "retry later"
    return str(exc) or "rejected"


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems
