"""Bytes held by request bodies in flight: per listener, within one process-wide pool.

Each listener (an HTTP server, a gRPC server) has a `ListenerBudget` of
`max_in_flight_bytes`; all of them draw from `POOL`, whose capacity is the
largest budget of the listeners running. So one listener never holds more than
its own budget, and the process never more than the largest one (with the
defaults: 64 MiB in all, however many listeners).

A request reserves its `Content-Length` before its body is read (chunked bodies
reserve as they are read, decompressed bodies what they inflate to) and
releases it all when its handler returns; a reservation that does not fit is
refused, and the request answered 503 / UNAVAILABLE with a retry delay. One
request is always admitted when nothing else is in flight, so a budget smaller
than the body size limit still lets large requests through one at a time.

Pure bookkeeping: no I/O, no locks (one event loop; gRPC handlers run on it too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.receiverhelper.peers import Attempt, PeerBudget

DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024


class Pool:
    """The process-wide pool all listener budgets draw from."""

    def __init__(self) -> None:
        self.used = 0
        self._listeners: dict[int, int] = {}  # id(ListenerBudget) -> its capacity

    @property
    def capacity(self) -> int:
        return max(self._listeners.values(), default=DEFAULT_MAX_IN_FLIGHT_BYTES)

    def register(self, budget: ListenerBudget) -> None:
        self._listeners[id(budget)] = budget.capacity

    def unregister(self, budget: ListenerBudget) -> None:
        self._listeners.pop(id(budget), None)


POOL = Pool()


class ListenerBudget:
    """One listener's share; `open()` when it starts listening, `close()` when it stops."""

    def __init__(self, capacity: int, pool: Pool = POOL, peers: PeerBudget | None = None):
        self.capacity = capacity
        self.pool = pool
        self.used = 0
        # The listener's per-peer error budgets (gRPC: admission reads them here).
        self.peers = peers

    def open(self) -> None:
        self.pool.register(self)

    def close(self) -> None:
        self.pool.unregister(self)

    def try_reserve(self, n: int, held: int = 0) -> bool:
        """Take `n` more bytes for a request that holds `held` already, if they fit or
        nothing else is in flight; False otherwise."""
        pool = self.pool
        if pool.used > held and pool.used + n > pool.capacity:
            return False
        if self.used > held and self.used + n > self.capacity:
            return False
        self.used += n
        pool.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n
        self.pool.used -= n


class Reservation:
    """What one request holds; released at once when the request is done. `attempt`
    (gRPC): the request's peer, charged on release if the request failed by its doing."""

    __slots__ = ("attempt", "budget", "held")

    def __init__(self, budget: ListenerBudget, attempt: Attempt | None = None):
        self.budget = budget
        self.held = 0
        self.attempt = attempt

    def take(self, n: int) -> bool:
        if n <= 0:
            return True
        if not self.budget.try_reserve(n, self.held):
            return False
        self.held += n
        return True

    def release(self) -> None:
        if self.held:
            self.budget.release(self.held)
            self.held = 0
        attempt = self.attempt
        if attempt is not None:
            self.attempt = None
            attempt.settle()
