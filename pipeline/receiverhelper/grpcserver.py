"""A gRPC server's budgets: keepalive settings (the Collector's `keepalive` keys), the
core channel arguments they become, admission of a message against the memory
limiter and the in-flight byte budget, and `google.rpc.Status` details.

What gRPC core enforces with these arguments:

- `max_connections` (`grpc.max_allowed_incoming_connections`): connections beyond
  it are closed as they arrive;
- a connection that has not completed its TLS / HTTP/2 handshake within
  `HANDSHAKE_TIMEOUT` is closed (an idle TCP connection that never speaks);
- `keepalive.server_parameters.max_connection_idle`: a connection with no RPC
  for that long gets a GOAWAY and is closed (clients reconnect transparently);
  `max_connection_age` (+ `_grace`) likewise by age; `time`/`timeout`: the
  server pings a quiet client and drops it when the ping goes unanswered;
- `keepalive.enforcement_policy`: a client pinging more often than `min_time`
  (or at all without an RPC in progress, unless `permit_without_stream`) is
  disconnected after two strikes (GOAWAY `too_many_pings`);
- `max_concurrent_streams` per connection and `max_recv_msg_size_mib` per message.

And in Python, at admission (`try_admit`): the peer's error budget
(`receiverhelper.peers`: a peer whose calls keep failing is answered
RESOURCE_EXHAUSTED with RetryInfo, after a delay), the memory limiter, the bytes
in flight.
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
from google.rpc import code_pb2, error_details_pb2, status_pb2
from pydantic import Field

from pipeline.component import ComponentConfig, CreateSettings
from pipeline.config.types import Duration
from pipeline.receiverhelper import pressure
from pipeline.receiverhelper.budget import ListenerBudget, Reservation
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.receiverhelper.peers import (
    CURRENT,
    REFUSAL_DELAY,
    Attempt,
    PeerBudget,
    PeerErrorBudgetSettings,
    grpc_peer_key,
    refusal_message,
)

HANDSHAKE_TIMEOUT = 10.0
MAX_PING_STRIKES = 2


class KeepaliveServerParameters(ComponentConfig):
    max_connection_idle: Duration = Field(
        300.0, gt=0, description="A connection with no RPC for this long is closed (GOAWAY).")
    max_connection_age: Duration | None = Field(
        None, gt=0, description="Connections are closed (GOAWAY) at this age; unset: never.")
    max_connection_age_grace: Duration | None = Field(
        None, gt=0, description="RPCs still running at max_connection_age get this long, "
                                "then the connection is closed; unset: no limit.")
    time: Duration = Field(
        7200.0, gt=0, description="The server pings a client after this long without activity.")
    timeout: Duration = Field(
        20.0, gt=0, description="A server ping unanswered for this long closes the connection.")


class KeepaliveEnforcementPolicy(ComponentConfig):
    min_time: Duration = Field(
        300.0, ge=0, description="Clients pinging more often than this are disconnected "
                                 "(GOAWAY too_many_pings).")
    permit_without_stream: bool = Field(
        False, description="Allow client pings while no RPC is in progress.")


class KeepaliveSettings(ComponentConfig):
    server_parameters: KeepaliveServerParameters = Field(
        default_factory=KeepaliveServerParameters,
        description="max_connection_idle, max_connection_age(_grace), time, timeout")
    enforcement_policy: KeepaliveEnforcementPolicy = Field(
        default_factory=KeepaliveEnforcementPolicy,
        description="min_time, permit_without_stream")


def _ms(seconds: float) -> int:
    return max(1, min(int(seconds * 1000), 2**31 - 1))


def server_options(*, max_recv_msg_size_mib: int, max_concurrent_streams: int,
                   so_reuseport: bool, max_connections: int,
                   keepalive: KeepaliveSettings) -> list[tuple[str, int]]:
    """gRPC core channel arguments for a server."""
    ka = keepalive.server_parameters
    policy = keepalive.enforcement_policy
    options = [
        ("grpc.max_receive_message_length", max_recv_msg_size_mib * 1024 * 1024),
        ("grpc.max_concurrent_streams", max_concurrent_streams),
        ("grpc.so_reuseport", 1 if so_reuseport else 0),
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.server_handshake_timeout_ms", _ms(HANDSHAKE_TIMEOUT)),
        ("grpc.max_connection_idle_ms", _ms(ka.max_connection_idle)),
        ("grpc.keepalive_time_ms", _ms(ka.time)),
        ("grpc.keepalive_timeout_ms", _ms(ka.timeout)),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(policy.min_time)),
        ("grpc.keepalive_permit_without_calls", 1 if policy.permit_without_stream else 0),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]
    if ka.max_connection_age is not None:
        options.append(("grpc.max_connection_age_ms", _ms(ka.max_connection_age)))
    if ka.max_connection_age_grace is not None:
        options.append(("grpc.max_connection_age_grace_ms", _ms(ka.max_connection_age_grace)))
    return options


def grpc_status_details(code: int, message: str, retry_after: float | None) -> bytes:
    """A serialized google.rpc.Status, with RetryInfo when a delay is known."""
    status = status_pb2.Status(code=code, message=message)
    if retry_after is not None:
        info = error_details_pb2.RetryInfo()
        secs = max(0.0, retry_after)
        info.retry_delay.seconds = int(secs)
        info.retry_delay.nanos = int((secs - int(secs)) * 1e9)
        status.details.add().Pack(info)
    serialized: bytes = status.SerializeToString()
    return serialized


def listener_budget(max_in_flight_bytes: int, peers: PeerErrorBudgetSettings | None,
                    endpoint: str, settings: CreateSettings) -> ListenerBudget:
    """A gRPC listener's budget: its bytes in flight and its peers' error budgets."""
    return ListenerBudget(max_in_flight_bytes, peers=PeerBudget(
        peers, endpoint=endpoint, transport="grpc", telemetry=settings.telemetry)
        if peers is not None and peers.enabled else None)


class Refused:
    """Why a message was refused at admission: answered UNAVAILABLE with RetryInfo (or
    RESOURCE_EXHAUSTED, by the peer's error budget, after a delay when `delayed`)."""

    __slots__ = ("code", "delayed", "message", "retry_after")

    def __init__(self, message: str, retry_after: float, code: int = code_pb2.UNAVAILABLE,
                 delayed: tuple[PeerBudget, str, int] | None = None):
        self.message = message
        self.retry_after = retry_after
        self.code = code
        self.delayed = delayed  # (peers, key, bytes held) of a delayed refusal


def _peer_admission(peers: PeerBudget, raw: bytes, context: grpc.aio.ServicerContext[
        bytes, bytes]) -> Attempt | Refused | None:
    key = grpc_peer_key(context.peer())
    if key is None:
        return None
    retry_after = peers.refusal(key)
    if retry_after is None:
        attempt = Attempt(peers, key)
        attempt.bytes = len(raw)
        CURRENT.set(attempt)  # each RPC runs in its own task: its own context
        return attempt
    peers.refused()
    size = len(raw)
    return Refused(refusal_message(peers, key, retry_after), retry_after,
                   code_pb2.RESOURCE_EXHAUSTED,
                   (peers, key, size) if peers.try_delay(key, size) else None)


def try_admit(budget: ListenerBudget, obs: ReceiverObs, raw: bytes,
              context: grpc.aio.ServicerContext[bytes, bytes] | None = None
              ) -> Reservation | Refused:
    """Admission of a message: the reservation holding its bytes (the caller releases
    it when the RPC's work is done, which also charges the peer's error budget if the
    call failed by the sender's doing), or the refusal (counted) while the peer is out
    of its error budget (with `context`), the memory limiter refuses or it does not fit
    the in-flight budget. gRPC has read the message already: refusing frees it at
    once, before the parse and the pipeline."""
    attempt = None
    if budget.peers is not None and context is not None:
        admitted = _peer_admission(budget.peers, raw, context)
        if isinstance(admitted, Refused):
            return admitted
        attempt = admitted
    refusal = pressure.MEMORY.refusal()
    if refusal is None:
        reservation = Reservation(budget, attempt)
        if reservation.take(len(raw)):
            return reservation
        reservation.release()  # the attempt's held token
        obs.failed_request("in_flight_bytes")
        return Refused("too many request bytes in flight (max_in_flight_bytes); retry later",
                       1.0)
    if attempt is not None:
        attempt.settle()
    obs.failed_request("memory_limiter")
    return Refused(f"memory limit: {refusal.reason}", refusal.retry_after)


async def refuse(refused: Refused, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
    """Abort the call with `refused` (UNAVAILABLE or RESOURCE_EXHAUSTED, google.rpc.Status
    with RetryInfo), after REFUSAL_DELAY for a delayed refusal by the peer's budget."""
    if refused.delayed is not None:
        peers, key, size = refused.delayed
        refused.delayed = None
        try:
            await asyncio.sleep(REFUSAL_DELAY)
        finally:
            peers.undelay(key, size)
    code = grpc.StatusCode.RESOURCE_EXHAUSTED if refused.code == code_pb2.RESOURCE_EXHAUSTED \
        else grpc.StatusCode.UNAVAILABLE
    await context.abort(code, refused.message, trailing_metadata=(
        ("grpc-status-details-bin",
         grpc_status_details(refused.code, refused.message, refused.retry_after)),))


async def admit(budget: ListenerBudget, obs: ReceiverObs, raw: bytes,
                context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
    """`try_admit`, holding the bytes until the RPC ends (a done callback), or abort the
    call with the refusal."""
    admitted = try_admit(budget, obs, raw, context)
    if isinstance(admitted, Refused):
        await refuse(admitted, context)
        return
    context.add_done_callback(lambda _: admitted.release())
