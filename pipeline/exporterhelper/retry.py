"""When to try again: exponential backoff, and the delays a server asks for.

- `Backoff`: the Collector's retry sender (exponential, with jitter, bounded
  by `max_elapsed_time`), driven by `pipeline.config.retry.RetrySettings`;
- `parse_retry_after`: an HTTP `Retry-After` header (seconds or an HTTP date);
- `retry_delay`: the `google.rpc.RetryInfo` delay of a gRPC
  `grpc-status-details-bin` trailer.

A server's delay is a lower bound for the next wait (`Backoff.next_delay`).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterable

from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from pipeline.config.retry import RetrySettings

__all__ = ["Backoff", "parse_retry_after", "retry_delay"]


class Backoff:
    """Exponential backoff with jitter, as the Collector's retry sender."""

    def __init__(self, s: RetrySettings, clock: Callable[[], float] = time.monotonic):
        self.s = s
        self.clock = clock
        self.start = clock()
        self.interval = s.initial_interval

    def next_delay(self, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when time is up."""
        jitter = self.s.randomization_factor * self.interval
        delay = self.interval + random.uniform(-jitter, jitter)
        self.interval = min(self.interval * self.s.multiplier, self.s.max_interval)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if self.s.max_elapsed_time:
            remaining = self.start + self.s.max_elapsed_time - self.clock()
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        return max(delay, 0.0)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """The RetryInfo delay of a `grpc-status-details-bin` trailer, if any."""
    for key, value in metadata or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None
