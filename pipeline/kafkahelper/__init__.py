"""Runtime helpers shared by the `kafka` exporter and receiver.

Both talk to brokers through aiokafka; this module turns the config's `brokers`,
`sasl` and `tls` blocks (`pipeline.config.kafka`) into aiokafka keyword arguments,
maps aiokafka's errors onto the pipeline's retryable / permanent errors, and watches
a consumer for stalls aiokafka does not bound (`StallWatch`).

aiokafka is imported inside the functions that need it, so that importing this
module (or the settings) to list or validate components loads no Kafka client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Set
from functools import cache
from typing import Any

from pipeline.config.kafka import ClientSettings, TLSSettings


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_kwargs(s: ClientSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for brokers, client id, SASL and TLS."""
    kw: dict[str, Any] = {"bootstrap_servers": list(s.brokers), "client_id": s.client_id}
    if s.tls is not None:
        kw["ssl_context"] = ssl_context(s.tls)
    if s.sasl is not None:
        kw["security_protocol"] = "SASL_SSL" if s.tls is not None else "SASL_PLAINTEXT"
        kw["sasl_mechanism"] = s.sasl.mechanism
        kw["sasl_plain_username"] = s.sasl.username
        kw["sasl_plain_password"] = s.sasl.password.get_secret_value()
    else:
        kw["security_protocol"] = "SSL" if s.tls is not None else "PLAINTEXT"
    return kw


@cache
def permanent_errors() -> tuple[type[BaseException], ...]:
    """Errors no retry can fix: the record itself is refused."""
    from aiokafka import errors as kerrors

    return (
        kerrors.MessageSizeTooLargeError,
        kerrors.RecordListTooLargeError,
        kerrors.InvalidMessageError,
        kerrors.RecordTooLargeError,
        kerrors.InvalidTopicError,
    )


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, permanent_errors())


def describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


@cache
def auth_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the broker refused the SASL credentials."""
    from aiokafka import errors as kerrors

    return (
        kerrors.SaslAuthenticationFailed,
        kerrors.UnsupportedSaslMechanismError,
        kerrors.IllegalSaslStateError,
    )


async def _connect(s: ClientSettings, broker: str, request_timeout: float) -> Any:
    """One direct connection to `broker` (host:port) with the configured TLS and SASL:
    each request `request_timeout`, the whole (TCP, ApiVersions, SASL) twice that."""
    from aiokafka.conn import create_conn

    kw = client_kwargs(s)
    host, _, port = broker.rpartition(":")
    return await asyncio.wait_for(create_conn(
        host, int(port), client_id=kw["client_id"], request_timeout_ms=int(request_timeout * 1000),
        ssl_context=kw.get("ssl_context"), security_protocol=kw["security_protocol"],
        sasl_mechanism=kw.get("sasl_mechanism"),
        sasl_plain_username=kw.get("sasl_plain_username"),
        sasl_plain_password=kw.get("sasl_plain_password")), 2 * request_timeout)


async def connect_error(s: ClientSettings, exc: BaseException) -> str:
    """Why connecting failed, for errors and logs (never with the password).

    aiokafka's bootstrap hides each broker's reason behind "Unable to bootstrap",
    so a wrong password reads like an unreachable broker. With SASL configured,
    one direct connection to the first broker asks it why."""
    from aiokafka import errors as kerrors

    text = describe(exc)
    if s.sasl is None or not isinstance(exc, kerrors.KafkaConnectionError):
        return text
    try:
        conn = await _connect(s, s.brokers[0], 5.0)
    except auth_errors() as auth:
        return (f"authentication failed (SASL {s.sasl.mechanism}, user {s.sasl.username!r}): "
                f"{describe(auth)}")
    except Exception:  # unreachable after all: the bootstrap error says so
        return text
    conn.close()
    return text


async def coordinator_answers(s: ClientSettings, group_id: str,
                              request_timeout: float = 5.0) -> bool:
    """True if a broker, asked on a fresh connection of our own, names a coordinator
    for `group_id` (FindCoordinator without error): the group can be joined right now.

    The kafka receiver asks this when its consumer has been without a coordinator (or
    without fetch responses) for a while, to tell a broker outage (wait: aiokafka
    reconnects by itself) from a consumer stuck although the brokers answer (replace
    it). Each broker is tried in turn, each request bounded by `request_timeout`."""
    from aiokafka.protocol.coordination import FindCoordinatorRequest

    for broker in s.brokers:
        try:
            conn = await _connect(s, broker, request_timeout)
        except Exception:  # down, refusing, or auth failing: not answering
            continue
        try:
            resp = await asyncio.wait_for(conn.send(FindCoordinatorRequest(group_id, 0)),
                                          request_timeout)
        except Exception:
            continue
        finally:
            conn.close()
        if resp.error_code == 0:
            return True
    return False


class StallWatch:
    """Tells a broker outage (wait: aiokafka reconnects by itself) from a consumer that
    stays stuck although the brokers answer (replace it).

    Stuck means: no group coordinator (aiokafka logs "Group Coordinator Request failed"
    and retries with no bound on how long), or an assigned, unpaused partition without a
    fetch response for `timeout`. While stuck, a probe on a connection of our own asks a
    broker for the group's coordinator (`coordinator_answers`), in the background, at most
    once a second; once brokers have answered for `timeout` and the consumer is still
    stuck, `check` returns why: the caller replaces the consumer. During an outage the
    probes fail and nothing is replaced; when aiokafka recovers by itself (normally well
    within a second of the broker answering) the watch resets.
    """

    CHECK_INTERVAL = 1.0  # how often `check` looks; also the least time between probes

    def __init__(self, consumer: Any, assignment: Callable[[], Set[Any]],
                 settings: ClientSettings, group_id: str, timeout: float, name: str):
        self.consumer = consumer
        self.assignment = assignment
        self.settings = settings
        self.group_id = group_id
        self.timeout = timeout
        self.name = name
        self.since: float | None = None  # stuck since
        self.answering: float | None = None  # brokers answered since (while stuck)
        self.probe: asyncio.Task[bool] | None = None
        self.probe_started = 0.0
        self.next_check = 0.0

    def reason(self) -> str | None:
        """Why the consumer looks stuck right now, or None."""
        from aiokafka import errors as kerrors

        consumer = self.consumer
        # aiokafka keeps the coordinator's node id here (None while it looks for one);
        # getattr: should a release rename it, only this half of the check goes quiet.
        coordinator = getattr(consumer, "_coordinator", None)
        if coordinator is not None and getattr(coordinator, "coordinator_id", 0) is None:
            return "no group coordinator"
        stale_before = time.time() * 1000 - self.timeout * 1000
        paused = consumer.paused()
        for tp in self.assignment():
            if tp in paused:
                continue
            try:
                last = consumer.last_poll_timestamp(tp)
            except (AssertionError, kerrors.KafkaError):  # not (or no longer) assigned
                continue
            if last is not None and last < stale_before:
                return f"no fetch response for {tp.topic}/{tp.partition}"
        return None

    async def check(self, now: float) -> str | None:
        """Why the consumer must be replaced (stuck for `timeout` while a broker
        answers), or None. Looks at most once per CHECK_INTERVAL; `now` is monotonic."""
        if now < self.next_check:
            return None
        self.next_check = now + self.CHECK_INTERVAL
        reason = self.reason()
        if reason is None:
            self.close()
            return None
        if self.since is None:
            self.since = now
        self._take_probe()
        if self.answering is not None and now - self.answering >= self.timeout:
            return f"{reason} for {now - self.since:.1f}s while a broker answers"
        if self.probe is None and now - self.since >= self.CHECK_INTERVAL:
            self.probe_started = now
            self.probe = asyncio.create_task(
                coordinator_answers(self.settings, self.group_id), name=f"{self.name}-probe")
        return None

    def _take_probe(self) -> None:
        probe = self.probe
        if probe is None or not probe.done():
            return
        self.probe = None
        if probe.cancelled() or probe.exception() is not None or not probe.result():
            self.answering = None
        elif self.answering is None:
            self.answering = self.probe_started

    def close(self) -> None:
        """Forget the stall (the consumer is fine, or being replaced)."""
        self.since = self.answering = None
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None


class _HideSaslBytes(logging.Filter):
    """aiokafka logs every request at DEBUG, SaslAuthenticate's bytes too: with PLAIN
    they are the password in clear. Secrets never appear in logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(
                type(a).__name__.startswith("SaslAuthenticateRequest") for a in args):
            record.args = tuple(
                "SaslAuthenticateRequest(<redacted>)"
                if type(a).__name__.startswith("SaslAuthenticateRequest") else a
                for a in args)
        return True


# Installed on the logger by name: it works before and after aiokafka is imported.
logging.getLogger("aiokafka.conn").addFilter(_HideSaslBytes())
