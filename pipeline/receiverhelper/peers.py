"""Per-peer error budgets: a peer whose requests keep failing is refused cheaply.

A flood of invalid requests (malformed protobuf, gzip bombs, oversized bodies)
from one address costs the listener CPU for every one it reads, inflates and
decodes before it can say 400 or 413; on one event loop, normal clients queue
behind the garbage. So each listener keeps, per remote address (IPv6: per /64),
a token bucket of `burst` tokens refilled at `errors_per_second`:

- a request that fails *because of what the sender sent* (the reasons in
  `SENDER_FAULTS`: malformed, too large, too slow, badly encoded, wrong media
  type or method, unauthenticated, headers not sent in time) takes one token
  plus one per MiB the listener read or inflated for it (a gzip bomb refused at
  the 20 MiB limit costs 21, a malformed 1 KB body 1); the pipeline's own
  refusals (memory limiter, exporters) never count;
- a peer out of tokens is refused before anything of its request is read: a
  new HTTP connection gets `429` + `Retry-After` and is closed, a request on a
  connection already open gets `429` + `Retry-After` (`Connection: close`), a
  gRPC call `RESOURCE_EXHAUSTED` with RetryInfo, until the bucket holds a token
  again. Its debt is capped at `burst`, so a peer is refused at most
  2 × burst / errors_per_second seconds after its last failure (20 s with the
  defaults).
- the refusal is answered after `REFUSAL_DELAY` (one second): an attacker that
  sends as fast as it is answered (the usual flood) then gets one answer per
  second per connection or stream instead of thousands, and so costs next to
  nothing. A refused HTTP connection waits with reading paused (a socket, no
  body), at most `max_connections` of them per listener; a refused gRPC call
  holds its message (already read by gRPC core): at most
  `MAX_DELAYED_PER_PEER` per peer and `MAX_DELAYED_BYTES` per listener wait.
  Beyond these, refusals are immediate.

Only peers with a recent failure are tracked (a peer whose bucket is full again
is forgotten), at most `max_peers` per listener (the oldest is forgotten
first): bounded memory (≈ 200 bytes a peer) whatever the number of addresses.
Peers without an address (unix sockets) are never limited.

A per-address budget cannot tell two clients behind one address apart (NAT, a
sidecar's localhost): one client's flood blocks the others on that address.
`enabled: false` turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import ipaddress
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import Field

from pipeline.component import ComponentConfig
from pipeline.telemetry.metrics import CounterSpec, Telemetry

DEFAULT_ERRORS_PER_SECOND = 10.0
DEFAULT_BURST = 100
DEFAULT_MAX_PEERS = 10_000
#: A failed request costs one token plus one per this many bytes read or inflated.
COST_UNIT = 1024 * 1024
REFUSAL_DELAY = 1.0
MAX_DELAYED_PER_PEER = 64
MAX_DELAYED_BYTES = 16 * 1024 * 1024

#: `otelpipe_receiver_failed_requests_total` reasons that are the sender's doing.
SENDER_FAULTS = frozenset({
    "malformed", "too_large", "timeout", "bad_encoding", "unsupported_media_type",
    "method_not_allowed", "unauthenticated", "header_timeout"})

PEER_REFUSED = CounterSpec(
    "otelpipe_receiver_peer_refused",
    "Requests and connections refused because their peer (remote address) ran out of "
    "its error budget (peer_error_budget), by listener endpoint and transport.",
    ("endpoint", "transport"))
PEER_BLOCKED = CounterSpec(
    "otelpipe_receiver_peer_blocked",
    "Times a peer ran out of its error budget (peer_error_budget) and was refused from "
    "then on until the budget refilled.", ("endpoint", "transport"))


class PeerErrorBudgetSettings(ComponentConfig):
    enabled: bool = Field(True, description=(
        "Refuse (429 / RESOURCE_EXHAUSTED + Retry-After, before reading) the requests of "
        "a remote address whose requests keep failing (malformed, too large, bad "
        "encoding, unauthenticated, too slow)."))
    errors_per_second: float = Field(DEFAULT_ERRORS_PER_SECOND, gt=0, description=(
        "Failed requests a peer may keep making per second (tokens refilled per second; "
        "a failure costs 1 token + 1 per MiB read or inflated for it)."))
    burst: int = Field(DEFAULT_BURST, gt=0, description=(
        "Tokens a peer starts with and holds at most: failures it may make at once."))
    max_peers: int = Field(DEFAULT_MAX_PEERS, gt=0, description=(
        "Peers tracked at once (only those with a recent failure); beyond, the one that "
        "failed longest ago is forgotten."))


def peer_key(address: Any) -> str | None:
    """The budget key of a remote address: the IPv4 address, the /64 of an IPv6 one
    (one host usually holds a whole /64), None for anything else (unix sockets)."""
    host = address[0] if isinstance(address, tuple) and address else address
    if not isinstance(host, str) or not host:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@functools.lru_cache(maxsize=4096)
def grpc_peer_key(peer: str | None) -> str | None:
    """The budget key of a gRPC peer string (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`);
    cached: computed per call, and a connection's calls share their peer string."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return peer_key(rest.rpartition(":")[0])
    if kind == "ipv6":
        return peer_key(rest.rpartition(":")[0].strip("[]"))
    return None


class _Peer:
    __slots__ = ("delayed", "last_reason", "pending", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float):
        self.tokens = tokens
        self.stamp = stamp
        self.last_reason = ""
        self.delayed = 0  # refusals waiting REFUSAL_DELAY
        self.pending = 0  # requests admitted and not finished, each holding a token


class PeerBudget:
    """The error budgets of one listener's peers."""

    def __init__(self, settings: PeerErrorBudgetSettings, *, endpoint: str, transport: str,
                 telemetry: Telemetry | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = settings.errors_per_second
        self.burst = float(settings.burst)
        self.max_peers = settings.max_peers
        self.clock = clock
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self.delayed_bytes = 0
        # key -> (lock, users): a peer's big inflations run one at a time.
        self._inflating: dict[str, tuple[asyncio.Lock, int]] = {}
        self._refused = telemetry.counter(PEER_REFUSED).labels(endpoint, transport) \
            if telemetry is not None else None
        self._blocked = telemetry.counter(PEER_BLOCKED).labels(endpoint, transport) \
            if telemetry is not None else None

    def __len__(self) -> int:
        return len(self._peers)

    def _refill(self, key: str, peer: _Peer, now: float) -> float:
        tokens = min(self.burst, peer.tokens + (now - peer.stamp) * self.rate)
        peer.tokens, peer.stamp = tokens, now
        if tokens >= self.burst and not peer.delayed and not peer.pending:
            del self._peers[key]  # whole again: forgotten
        return tokens

    def refusal(self, key: str | None) -> float | None:
        """None if `key` may send, else the seconds until it may (Retry-After)."""
        if key is None:
            return None
        peer = self._peers.get(key)
        if peer is None:
            return None
        # A request in progress holds a token until it ends: a peer on probation gets as
        # many requests at once as it has tokens (not a burst of bombs on one token).
        tokens = self._refill(key, peer, self.clock()) - peer.pending
        if tokens >= 1.0:
            return None
        return max(1.0 - tokens, 1.0) / self.rate

    def exhausted(self, key: str) -> float | None:
        """Like `refusal`, not counting the requests in progress: None if `key` has a
        token left, else the seconds until it has one."""
        peer = self._peers.get(key)
        if peer is None:
            return None
        tokens = self._refill(key, peer, self.clock())
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def peer(self, key: str) -> _Peer | None:
        return self._peers.get(key)

    def reason(self, key: str) -> str:
        """The last failure of a refused peer (what its sender should fix)."""
        peer = self._peers.get(key)
        return peer.last_reason if peer is not None else ""

    def charge(self, key: str, reason: str, cost: float = 1.0) -> None:
        """A request of `key` failed for `reason`, costing `cost` tokens."""
        now = self.clock()
        peers = self._peers
        peer = peers.get(key)
        if peer is None:
            peer = peers[key] = _Peer(self.burst, now)
            while len(peers) > self.max_peers:
                peers.popitem(last=False)
        else:
            peer.tokens = min(self.burst, peer.tokens + (now - peer.stamp) * self.rate)
            peer.stamp = now
            peers.move_to_end(key)
        was_open = peer.tokens >= 1.0
        peer.tokens = max(-self.burst, peer.tokens - cost)
        peer.last_reason = reason
        if was_open and peer.tokens < 1.0 and self._blocked is not None:
            self._blocked.inc()

    def refused(self) -> None:
        if self._refused is not None:
            self._refused.inc()

    @contextlib.asynccontextmanager
    async def inflating(self, key: str) -> AsyncIterator[None]:
        """Hold the peer's inflation turn: one big body of a peer is inflated at a time
        (the others wait their turn, holding only their compressed bytes). Four gzip bombs
        sent at once by a peer with a full budget are then inflated one after the other,
        a MiB per loop step, rather than four MiB per step: other peers wait one step of
        inflation per loop iteration, and the first bomb's failure is charged before the
        next starts. One event loop: serializing costs a peer no throughput."""
        entry = self._inflating.get(key)
        lock, users = entry if entry is not None else (asyncio.Lock(), 0)
        self._inflating[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._inflating[key]
            if users <= 1:
                del self._inflating[key]
            else:
                self._inflating[key] = (lock, users - 1)

    # Delayed refusals -------------------------------------------------------------------

    def try_delay(self, key: str, size: int = 0, limit: int = MAX_DELAYED_PER_PEER) -> bool:
        """Whether a refusal of `key` (holding `size` bytes) may wait REFUSAL_DELAY, with
        at most `limit` of the peer's waiting at once; if so the caller calls `undelay`
        after."""
        peer = self._peers.get(key)
        if peer is None or peer.delayed >= limit or \
                (size and self.delayed_bytes + size > MAX_DELAYED_BYTES):
            return False
        peer.delayed += 1
        self.delayed_bytes += size
        return True

    def undelay(self, key: str, size: int = 0) -> None:
        self.delayed_bytes -= size
        peer = self._peers.get(key)
        if peer is not None and peer.delayed > 0:  # (forgotten meanwhile: max_peers)
            peer.delayed -= 1


def refusal_message(budget: PeerBudget, key: str, retry_after: float) -> str:
    reason = budget.reason(key)
    return (f"too many failed requests from {key}"
            + (f" (last: {reason})" if reason else "")
            + f"; retry after {max(1, round(retry_after))}s (peer_error_budget)")


# The request in progress ----------------------------------------------------------------

class Attempt:
    """One request of a tracked listener: who sent it, whether it failed by the sender's
    doing, and how many bytes it made the listener read or inflate. A peer on probation
    (a recent failure) has a token held by each of its requests until `settle`."""

    __slots__ = ("budget", "bytes", "key", "peer", "reason")

    def __init__(self, budget: PeerBudget, key: str):
        self.budget = budget
        self.key = key
        self.reason: str | None = None
        self.bytes = 0
        peer = self.peer = budget.peer(key)
        if peer is not None:
            peer.pending += 1

    def settle(self) -> None:
        """The request is done: release its held token, and charge the peer if it
        failed by its doing (once)."""
        peer = self.peer
        if peer is not None:
            self.peer = None
            peer.pending -= 1
        reason = self.reason
        if reason is not None:
            self.reason = None
            self.budget.charge(self.key, reason, 1.0 + self.bytes // COST_UNIT)


CURRENT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "otelpipe_peer_attempt", default=None)


def note_failure(reason: str) -> None:
    """The request being handled failed for `reason` (a failed_requests reason)."""
    attempt = CURRENT.get()
    if attempt is not None and reason in SENDER_FAULTS and attempt.reason is None:
        attempt.reason = reason


def current() -> Attempt | None:
    """The request being handled by a listener with peer budgets, if any."""
    return CURRENT.get()


def note_bytes(n: int) -> None:
    """The request being handled made the listener read or inflate `n` more bytes."""
    attempt = CURRENT.get()
    if attempt is not None:
        attempt.bytes += n
