"""Runtime helpers shared by the `kafka` exporter and receiver.

Both talk to brokers through aiokafka; this module turns the config's `brokers`,
`sasl` and `tls` blocks (`pipeline.config.kafka`) into aiokafka keyword arguments,
and maps aiokafka's errors onto the pipeline's retryable / permanent errors.

aiokafka is imported inside the functions that need it, so that importing this
module (or the settings) to list or validate components loads no Kafka client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
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


async def connect_error(s: ClientSettings, exc: BaseException) -> str:
    """Why connecting failed, for errors and logs (never with the password).

    aiokafka's bootstrap hides each broker's reason behind "Unable to bootstrap",
    so a wrong password reads like an unreachable broker. With SASL configured,
    one direct connection to the first broker asks it why."""
    from aiokafka import errors as kerrors
    from aiokafka.conn import create_conn

    text = describe(exc)
    if s.sasl is None or not isinstance(exc, kerrors.KafkaConnectionError):
        return text
    kw = client_kwargs(s)
    host, _, port = s.brokers[0].rpartition(":")
    try:
        conn = await asyncio.wait_for(create_conn(
            host, int(port), client_id=kw["client_id"], request_timeout_ms=5000,
            ssl_context=kw.get("ssl_context"), security_protocol=kw["security_protocol"],
            sasl_mechanism=kw["sasl_mechanism"], sasl_plain_username=kw["sasl_plain_username"],
            sasl_plain_password=kw["sasl_plain_password"]), 10)
    except auth_errors() as auth:
        return (f"authentication failed (SASL {s.sasl.mechanism}, user {s.sasl.username!r}): "
                f"{describe(auth)}")
    except Exception:  # unreachable after all: the bootstrap error says so
        return text
    conn.close()
    return text


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
