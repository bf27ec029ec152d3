"""Settings and helpers shared by the `kafka` exporter and receiver.

Both talk to brokers through aiokafka; this module turns the config's
`brokers`, `sasl` and `tls` blocks into aiokafka keyword arguments, and maps
aiokafka's errors onto the pipeline's retryable / permanent errors.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Literal

from aiokafka import errors as kerrors
from aiokafka.conn import create_conn
from pydantic import Field, SecretStr, field_validator

from pipeline.component import ComponentConfig, Signal

# The Collector's default topic per signal (exporter and receiver agree).
DEFAULT_TOPICS: dict[Signal, str] = {
    Signal.TRACES: "otlp_spans",
    Signal.LOGS: "otlp_logs",
    Signal.METRICS: "otlp_metrics",
}

Encoding = Literal["otlp_proto", "otlp_json"]


class SASLSettings(ComponentConfig):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    username: str
    password: SecretStr


class TLSSettings(ComponentConfig):
    """Present = connect with TLS. Files are PEM."""

    ca_file: str | None = Field(None, description="CA bundle; the system's when unset")
    cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(None, description="client key (mutual TLS)")
    insecure_skip_verify: bool = Field(
        False, description="do not verify the broker's certificate (tests only)")


class ClientSettings(ComponentConfig):
    """Connection keys every kafka component has."""

    brokers: list[str] = Field(["localhost:9092"], min_length=1,
                               description="bootstrap brokers, host:port")
    client_id: str = "otelpipe"
    sasl: SASLSettings | None = None
    tls: TLSSettings | None = None

    @field_validator("brokers")
    @classmethod
    def _check_brokers(cls, v: list[str]) -> list[str]:
        for b in v:
            host, sep, port = b.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"invalid broker {b!r}: expected host:port")
        return v


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


# Errors no retry can fix: the record itself is refused.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    kerrors.MessageSizeTooLargeError,
    kerrors.RecordListTooLargeError,
    kerrors.InvalidMessageError,
    kerrors.RecordTooLargeError,
    kerrors.InvalidTopicError,
)


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PERMANENT_ERRORS)


def describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


AUTH_ERRORS: tuple[type[BaseException], ...] = (
    kerrors.SaslAuthenticationFailed,
    kerrors.UnsupportedSaslMechanismError,
    kerrors.IllegalSaslStateError,
)


async def connect_error(s: ClientSettings, exc: BaseException) -> str:
    """Why connecting failed, for errors and logs (never with the password).

    aiokafka's bootstrap hides each broker's reason behind "Unable to bootstrap",
    so a wrong password reads like an unreachable broker. With SASL configured,
    one direct connection to the first broker asks it why."""
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
    except AUTH_ERRORS as auth:
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


logging.getLogger("aiokafka.conn").addFilter(_HideSaslBytes())
