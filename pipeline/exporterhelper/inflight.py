"""The cap on exports in flight without a sending queue.

Without a queue, each export runs in its caller's task and holds its batch
until it is delivered or given up: behind a slow or dead backend, callers
would pile up with their batches (and their retry loops) for as long as
`retry_on_failure.max_elapsed_time`. `InFlightLimit` admits an export only
while fewer than `max_requests` are in flight and their bytes stay within
`max_bytes` (0: no cap); one more is refused at once, and the caller answers
its sender with a retryable error. A single batch larger than `max_bytes` is
admitted when nothing else is in flight (it could never pass otherwise).
"""

from __future__ import annotations

__all__ = ["InFlightLimit"]


class InFlightLimit:
    """Counts exports in flight and their bytes against two caps (0: no cap)."""

    __slots__ = ("bytes", "max_bytes", "max_requests", "requests")

    def __init__(self, max_requests: int, max_bytes: int):
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def try_acquire(self, nbytes: int) -> bool:
        """Admit an export of `nbytes` (True), or refuse it (False) when over a cap."""
        if self.requests and (
                (self.max_requests and self.requests >= self.max_requests)
                or (self.max_bytes and self.bytes + nbytes > self.max_bytes)):
            return False
        self.requests += 1
        self.bytes += nbytes
        return True

    def release(self, nbytes: int) -> None:
        """The export admitted with `nbytes` is over (delivered, given up or cancelled)."""
        self.requests -= 1
        self.bytes -= nbytes
