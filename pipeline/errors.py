"""Exceptions that cross component boundaries.

Backpressure is an exception, not a return code: receivers map
`RetryableError` to HTTP 503/429 + Retry-After or gRPC UNAVAILABLE, and
`PermanentError` to HTTP 400 or gRPC INVALID_ARGUMENT.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of errors raised by components while consuming data."""


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


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems
