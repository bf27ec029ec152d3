"""Connections to the primary and the replicas (asyncpg, reopened with exponential
backoff), the per-replica probe state, and how a failure is classified and described
(never with the DSN). asyncpg loads with this module, when a receiver is created."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from pipeline.receivers.replication_lag.config import ReplicaConfig, ReplicationLagConfig


class NotYet(Exception):
    """Reconnect backoff has not elapsed."""


class Conn:
    """One asyncpg connection, reopened with exponential backoff after failures."""

    def __init__(self, label: str, dsn: str, config: ReplicationLagConfig,
                 clock: Callable[[], float]):
        self.label = label
        self._dsn = dsn
        self._timeout = config.timeout
        self._initial = config.reconnect_backoff
        self._max = config.max_reconnect_backoff
        self._backoff = config.reconnect_backoff
        self._next_attempt = 0.0
        self._clock = clock
        self.conn: asyncpg.Connection | None = None
        self.fresh = False  # True right after (re)connecting

    async def get(self) -> asyncpg.Connection:
        conn = self.conn
        if conn is not None and not conn.is_closed():
            self.fresh = False
            return conn
        if self._clock() < self._next_attempt:
            raise NotYet()
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=self._timeout, command_timeout=self._timeout,
                statement_cache_size=16,
                server_settings={"application_name": "otelpipe replication_lag"})
        except BaseException:
            self._schedule_retry()
            raise
        self.conn = conn
        self.fresh = True
        return conn

    def _schedule_retry(self) -> None:
        self._next_attempt = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, self._max)

    def succeeded(self) -> None:
        self._backoff = self._initial

    def failed(self) -> None:
        """Drop the connection after an error (it may be mid-protocol or hung).

        A connection that worked is reopened at the next tick; a failed connect was
        already given its backoff by `get`."""
        conn, self.conn = self.conn, None
        if conn is not None:
            if not conn.is_closed():
                conn.terminate()
            self._next_attempt = 0.0

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=min(self._timeout, 2.0))
            except BaseException:
                conn.terminate()


def reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError | asyncpg.exceptions.ConnectionDoesNotExistError |
                  asyncpg.exceptions.CannotConnectNowError):
        return "connection"
    if isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError |
                  asyncpg.exceptions.InvalidPasswordError):
        return "auth"
    return "query"


def describe(exc: BaseException) -> str:
    """A short error text that never includes the DSN."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".strip()[:300]


@dataclass
class ReplicaState:
    config: ReplicaConfig
    conn: Conn
    task: asyncio.Task[None] | None = None
    up: bool = False
    answered: bool = False        # at least once since start
    confirmed_seq: int | None = None
    confirmed_mono: float | None = None
    sample: float | None = None   # heartbeat lag from a read completed since the last emission
    floor: float | None = None    # write time of its oldest missing heartbeat, if forgotten
    last_error: str | None = None


@dataclass
class StatRow:
    name: str
    lag: dict[str, float | None] = field(default_factory=dict)
    lag_bytes: dict[str, float | None] = field(default_factory=dict)
