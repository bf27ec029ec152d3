"""`replication_lag` receiver: PostgreSQL streaming-replication lag as gauges.

    receivers:
      replication_lag:
        primary: postgresql://postgres@db-primary:5432/postgres
        replicas:
          - postgresql://postgres@db-replica-1:5432/postgres      # named "db-replica-1:5432"
          - {name: replica2, dsn: "host=db-replica-2 user=postgres", application_name: replica2}
        interval: 100ms

Every `interval` the receiver writes a heartbeat row on the primary, then reads
it back on every replica; it also reads `pg_stat_replication` on the primary.
One metrics batch per interval, with gauges:

- `db.replication.lag` (s) -- attributes `db.system=postgresql`, `db.replica`,
  `method`: `heartbeat` (measured through the heartbeat row, see below) and
  `write` / `flush` / `replay` (the primary's `pg_stat_replication` columns of
  the same names, as seconds; absent while PostgreSQL reports NULL);
- `db.replication.lag_bytes` (By) -- `method` `write` / `flush` / `replay`:
  `pg_wal_lsn_diff(pg_current_wal_lsn(), <method>_lsn)`;
- `db.replication.up` (1) -- 1/0 per replica (`db.role=replica`, `db.replica`)
  and for the primary (`db.role=primary`, `db.instance`).

`pg_stat_replication` rows are matched to configured replicas by
`application_name` (per replica, defaulting to its name); rows that match no
configured replica are still reported, with `db.replica` set to their
application_name (or client address when it is empty).

The heartbeat
-------------
The row `(id, seq, ts)` in `heartbeat_table` (created if missing) is upserted
on the primary; `id` is `heartbeat_id` (default `<hostname>/<component id>`,
so several otelpipe instances can share the table), `seq` strictly increases
(microseconds since the epoch of the writer's wall clock) and `ts` is the
primary's `clock_timestamp()` (for humans and SQL dashboards only).

Clock. Both ends of the measurement are taken on ONE clock, this process's
monotonic clock: the write time is taken just before the upsert is sent, the
read time when the replica's answer arrives. No clock of any database host is
involved, so clock skew between primary and replica cannot bias the result,
and wall-clock steps (NTP) cannot either. The price: the figure includes the
commit round trip of the write and the read round trip (an upper bound, a few
ms on a LAN). Only when this process has no write time for the sequence number
the replica shows (after a restart, before the first successful write) is the
wall clock used: lag = now - seq.

Definition. lag = (read time) - (write time of the OLDEST heartbeat the
replica has not applied), or, when it has applied the latest heartbeat,
(read time) - (write time of that heartbeat). So a replica that is only
microseconds behind reports a few ms, not "up to one interval" as a plain
`now() - ts` would (it would sometimes read the previous row before the newest
one is applied); and while replay is paused the figure grows from the moment
the first unapplied heartbeat was written: it is the age of the oldest change
the replica is missing, to within one write round trip.

A replica that does not answer (down, refusing connections, or a query that
exceeded `timeout`): `up = 0` and its heartbeat lag is still reported, computed
against the current time: the age of the oldest heartbeat it is not known to
have applied, so it keeps growing until the replica answers again. A replica
that never answered has no lag point, only `up = 0`. While the primary is down
no heartbeat is written, so the replicas' heartbeat lag grows as the age of the
last heartbeat (their data is as stale as that, whatever the cause).

Failures never stop the loop: connections are (re)opened with exponential
backoff (`reconnect_backoff` up to `max_reconnect_backoff`), every query has a
`timeout`, and each target has at most one query in flight, so a hung server
cannot stall the others or the emission. The write, the reads and the
`pg_stat_replication` query are awaited for at most half an interval; answers
that come later are used in the next emission.

Delivery. Gauges are superseded by the next sample, so a batch the pipeline
refuses (RetryableError), or that cannot be handed over because the previous
one is still being delivered, is dropped and counted in
`otelpipe_receiver_refused_items{transport="postgresql"}`; nothing is retried.

Privileges: the primary user needs CREATE on the schema (or a pre-created
table, `create_table: false`) and INSERT/UPDATE on the table; reading
`pg_stat_replication` lag columns needs `pg_monitor` (or superuser). The replica
user needs SELECT on the table.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline import __version__
from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentHealth,
    Factory,
    Host,
    Kind,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.telemetry.metrics import CounterSpec

PROBE_ERRORS = CounterSpec(
    "otelpipe_replication_lag_probe_errors",
    "Failed connections and queries of the replication_lag receiver, per database "
    "(primary or replica name) and reason (connection, timeout, auth, query).",
    ("receiver", "target", "reason"))

SCOPE = "otelpipe/receiver/replication_lag"
METHODS = ("write", "flush", "replay")
# Heartbeats remembered while a replica lags (about 2.8 h at 100 ms); older
# write times are summarised per replica (see `_trim`).
MAX_REMEMBERED = 100_000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def _dsn_name(dsn: str, fallback: str) -> str:
    """host:port of a URL or key=value DSN, for naming a replica (never the password)."""
    text = dsn.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
            port = parts.port
        except ValueError:
            return fallback
        return f"{host}:{port}" if host and port else host or fallback
    kv = dict(re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", text))
    host = kv.get("host", "").strip("'")
    port = kv.get("port", "").strip("'")
    if not host:
        return fallback
    return f"{host}:{port}" if port else host


class ReplicaConfig(ComponentConfig):
    name: str = Field(description="Value of the db.replica attribute.")
    dsn: SecretStr = Field(description="libpq connection string or postgresql:// URL.")
    application_name: str | None = Field(
        None, description="application_name of this replica's WAL receiver in the primary's "
                          "pg_stat_replication (default: name).")

    @property
    def match_name(self) -> str:
        return self.application_name or self.name


def _replicas_schema(schema: dict[str, Any]) -> None:
    """A replica may also be written as a bare DSN string."""
    schema["items"] = {"anyOf": [schema["items"], {"type": "string"}]}


class ReplicationLagConfig(ComponentConfig):
    primary: SecretStr = Field(description="DSN of the primary (libpq string or URL).")
    primary_name: str = Field("primary", description="db.instance attribute of the primary.")
    replicas: list[ReplicaConfig] = Field(
        default_factory=list,
        description="Replicas to read the heartbeat on: DSNs or {name, dsn, application_name}.",
        json_schema_extra=_replicas_schema)
    interval: Duration = Field(0.1, gt=0, description="How often to write, read and emit.")
    timeout: Duration = Field(
        1.0, gt=0, description="Limit for connecting and for each query; a slower target "
                               "counts as down.")
    reconnect_backoff: Duration = Field(0.1, gt=0, description="First reconnect delay.")
    max_reconnect_backoff: Duration = Field(5.0, gt=0, description="Largest reconnect delay.")
    heartbeat_table: str = Field(
        "otelpipe_heartbeat", description="[schema.]table holding the heartbeat rows.")
    heartbeat_id: str | None = Field(
        None, description="Row id of this instance (default: <hostname>/<component id>).")
    create_table: bool = Field(True, description="CREATE TABLE IF NOT EXISTS on the primary.")
    stat_replication: bool = Field(
        True, description="Also read pg_stat_replication on the primary.")

    @field_validator("replicas", mode="before")
    @classmethod
    def _replica_strings(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out: list[Any] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append({"name": _dsn_name(item, f"replica{i + 1}"), "dsn": item})
            elif isinstance(item, dict) and "dsn" in item and "name" not in item:
                out.append({**item, "name": _dsn_name(str(item["dsn"]), f"replica{i + 1}")})
            else:
                out.append(item)
        return out

    @field_validator("heartbeat_table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError("expected an unquoted identifier, optionally schema-qualified "
                             "(e.g. otelpipe_heartbeat or monitoring.heartbeat)")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> ReplicationLagConfig:
        names = [r.name for r in self.replicas]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"replica names must be unique, repeated: {', '.join(dup)} "
                             "(give each replica a name)")
        if self.max_reconnect_backoff < self.reconnect_backoff:
            raise ValueError("max_reconnect_backoff must be >= reconnect_backoff")
        return self


class _NotYet(Exception):
    """Reconnect backoff has not elapsed."""


class _Conn:
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
            raise _NotYet()
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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError | asyncpg.exceptions.ConnectionDoesNotExistError |
                  asyncpg.exceptions.CannotConnectNowError):
        return "connection"
    if isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError |
                  asyncpg.exceptions.InvalidPasswordError):
        return "auth"
    return "query"


def _describe(exc: BaseException) -> str:
    """A short error text that never includes the DSN."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".strip()[:300]


@dataclass
class _ReplicaState:
    config: ReplicaConfig
    conn: _Conn
    task: asyncio.Task[None] | None = None
    up: bool = False
    answered: bool = False        # at least once since start
    confirmed_seq: int | None = None
    confirmed_mono: float | None = None
    sample: float | None = None   # heartbeat lag from a read completed since the last emission
    floor: float | None = None    # write time of its oldest missing heartbeat, if forgotten
    last_error: str | None = None


@dataclass
class _StatRow:
    name: str
    lag: dict[str, float | None] = field(default_factory=dict)
    lag_bytes: dict[str, float | None] = field(default_factory=dict)


class ReplicationLagReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: ReplicationLagConfig,
                 *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 max_remembered: int = MAX_REMEMBERED):
        self.config = config
        self.settings = settings
        self.log = settings.logger
        self.consumer = settings.consumers[Signal.METRICS]
        self.obs = ReceiverObs(settings, "postgresql")
        self._clock = clock
        self._wall = wall_clock
        self._max_remembered = max_remembered
        self._errors = settings.telemetry.counter(PROBE_ERRORS)
        self._rid = str(settings.id)
        self.heartbeat_id = config.heartbeat_id or f"{socket.gethostname()}/{settings.id}"
        table = ".".join(f'"{part}"' for part in config.heartbeat_table.split("."))
        self._sql_create = (f"CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, "
                            "seq bigint NOT NULL, ts timestamptz NOT NULL)")
        self._sql_write = (f"INSERT INTO {table} (id, seq, ts) VALUES ($1, $2, clock_timestamp()) "
                           "ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, ts = EXCLUDED.ts")
        self._sql_read = f"SELECT seq FROM {table} WHERE id = $1"
        self._sql_stat = (
            "SELECT application_name, client_addr::text AS client_addr, "
            "EXTRACT(EPOCH FROM write_lag)::float8 AS write, "
            "EXTRACT(EPOCH FROM flush_lag)::float8 AS flush, "
            "EXTRACT(EPOCH FROM replay_lag)::float8 AS replay, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn)::float8 AS write_bytes, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::float8 AS flush_bytes, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS replay_bytes "
            "FROM pg_stat_replication")
        self._primary = _Conn(config.primary_name, config.primary.get_secret_value(), config,
                              clock)
        self._replicas = [
            _ReplicaState(r, _Conn(r.name, r.dsn.get_secret_value(), config, clock))
            for r in config.replicas
        ]
        self._by_app = {r.config.match_name: r for r in self._replicas}
        # Heartbeats written and not yet applied everywhere: seq -> monotonic write time.
        self._seqs: list[int] = []
        self._monos: list[float] = []
        self._last_seq = 0
        self._table_ready = False
        self._primary_up = False
        self._primary_error: str | None = None
        self._primary_task: asyncio.Task[None] | None = None
        self._written = asyncio.Event()
        self._stats: list[_StatRow] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._deliver_task: asyncio.Task[None] | None = None
        self.emitted = 0  # batches handed to the pipeline

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, host: Host) -> None:
        self._loop_task = asyncio.create_task(self._run(), name=f"{self._rid} loop")

    async def shutdown(self) -> None:
        tasks = [t for t in (self._loop_task, self._primary_task, self._deliver_task,
                             *(r.task for r in self._replicas)) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await asyncio.gather(self._primary.close(), *(r.conn.close() for r in self._replicas))

    def health(self) -> ComponentHealth:
        if not self._primary_up:
            return ComponentHealth(healthy=False,
                                   last_error=self._primary_error or "primary not connected")
        down = [r.config.name for r in self._replicas if not r.up]
        if down:
            return ComponentHealth(healthy=True, last_error="replica(s) down: " + ", ".join(down))
        return ComponentHealth()

    # -- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.config.interval
        next_tick = self._clock()
        while True:
            try:
                # Answers are awaited for half an interval: a late target delays the
                # emission by at most that, and ticks never run back to back.
                await self._tick(next_tick + interval / 2)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: log and keep measuring
                self.log.exception("replication_lag tick failed")
            next_tick += interval
            now = self._clock()
            if now - next_tick >= interval:  # overran: skip missed ticks, keep the phase
                next_tick += (now - next_tick) // interval * interval
            await asyncio.sleep(next_tick - now)

    async def _tick(self, deadline: float) -> None:
        if self._primary_task is None or self._primary_task.done():
            self._written.clear()
            self._primary_task = asyncio.create_task(self._primary_round())
        # Reads start once the heartbeat is written (or the primary is late).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._written.wait(), timeout=max(0.0, deadline -
                                                                     self._clock()))
        pending: set[asyncio.Task[None]] = {self._primary_task}
        for r in self._replicas:
            if r.task is None or r.task.done():
                r.task = asyncio.create_task(self._read(r))
            pending.add(r.task)
        remaining = deadline - self._clock()
        if remaining > 0:
            await asyncio.wait(pending, timeout=remaining)
        self._emit()

    async def _primary_round(self) -> None:
        conn_ = self._primary
        try:
            conn = await conn_.get()
            if conn_.fresh:
                self._table_ready = False
            if self.config.create_table and not self._table_ready:
                # UniqueViolation: created concurrently by another instance.
                with contextlib.suppress(asyncpg.exceptions.UniqueViolationError):
                    await conn.execute(self._sql_create, timeout=self.config.timeout)
                self._table_ready = True
            seq = max(self._last_seq + 1, int(self._wall() * 1_000_000))
            sent = self._clock()
            await conn.execute(self._sql_write, self.heartbeat_id, seq,
                               timeout=self.config.timeout)
        except _NotYet:
            self._written.set()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._primary_failed(exc)
            self._written.set()
            return
        self._remember(seq, sent)
        self._last_seq = seq
        conn_.succeeded()
        if not self._primary_up:
            self.log.info("primary up", extra={"db.instance": self.config.primary_name})
        self._primary_up = True
        self._primary_error = None
        self._written.set()
        if not self.config.stat_replication:
            return
        try:
            rows = await conn.fetch(self._sql_stat, timeout=self.config.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._primary_failed(exc)
            return
        self._stats = [self._stat_row(row) for row in rows]

    def _primary_failed(self, exc: BaseException) -> None:
        self._errors.labels(self._rid, self.config.primary_name, _reason(exc)).inc()
        self._primary.failed()
        self._stats = None
        if self._primary_up or self._primary_error is None:
            self.log.warning("primary down", extra={"db.instance": self.config.primary_name,
                                                    "error": _describe(exc)})
        self._primary_up = False
        self._primary_error = _describe(exc)

    def _stat_row(self, row: Any) -> _StatRow:
        app = row["application_name"] or ""
        replica = self._by_app.get(app)
        name = replica.config.name if replica else (app or row["client_addr"] or "unknown")
        return _StatRow(name, {m: row[m] for m in METHODS},
                        {m: row[m + "_bytes"] for m in METHODS})

    async def _read(self, r: _ReplicaState) -> None:
        try:
            conn = await r.conn.get()
            try:
                seq = await conn.fetchval(self._sql_read, self.heartbeat_id,
                                          timeout=self.config.timeout)
            except asyncpg.exceptions.UndefinedTableError:
                seq = None  # the table has not reached this replica yet
            answered_at = self._clock()
        except _NotYet:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._errors.labels(self._rid, r.config.name, _reason(exc)).inc()
            r.conn.failed()
            if r.up or r.last_error is None:
                self.log.warning("replica down", extra={"db.replica": r.config.name,
                                                        "error": _describe(exc)})
            r.up = False
            r.last_error = _describe(exc)
            return
        r.conn.succeeded()
        if not r.up:
            self.log.info("replica up", extra={"db.replica": r.config.name})
        r.up = True
        r.answered = True
        r.last_error = None
        r.sample = self._confirm(r, seq, answered_at)

    # -- heartbeat bookkeeping -----------------------------------------------------

    def _remember(self, seq: int, mono: float) -> None:
        self._seqs.append(seq)
        self._monos.append(mono)
        self._trim()

    def _trim(self) -> None:
        """Forget heartbeats every replica has applied (all but the newest)."""
        keep_from = len(self._seqs) - 1
        for r in self._replicas:
            if r.confirmed_seq is None:
                keep_from = 0
                break
            keep_from = min(keep_from, bisect.bisect_left(self._seqs, r.confirmed_seq))
        overflow = len(self._seqs) - self._max_remembered
        if overflow > keep_from:
            # A replica far behind: remember only the write time of its oldest missing
            # heartbeat (`floor`), which is all its lag needs.
            for r in self._replicas:
                if r.floor is None:
                    i = (0 if r.confirmed_seq is None
                         else bisect.bisect_right(self._seqs, r.confirmed_seq))
                    if i < overflow:
                        r.floor = self._monos[i]
            keep_from = overflow
        if keep_from > 0:
            del self._seqs[:keep_from]
            del self._monos[:keep_from]

    def _confirm(self, r: _ReplicaState, seq: int | None, answered_at: float) -> float | None:
        """Record the heartbeat a replica showed; its lag at `answered_at`."""
        seqs, monos = self._seqs, self._monos
        if seq is None:  # no row on the replica yet: missing everything written
            if r.floor is not None:
                return answered_at - r.floor
            return answered_at - monos[0] if monos else None
        r.confirmed_seq = seq
        i = bisect.bisect_right(seqs, seq)
        if i > 0 and seqs[i - 1] == seq:
            r.confirmed_mono = monos[i - 1]
        else:  # written before this process's memory (restart, or forgotten): wall clock
            r.confirmed_mono = answered_at - max(0.0, self._wall() - seq / 1e6)
        if r.floor is not None and seqs and seq < seqs[0]:
            return answered_at - r.floor
        r.floor = None
        if i < len(seqs):
            return answered_at - monos[i]  # the oldest heartbeat it has not applied
        return answered_at - r.confirmed_mono

    def _missing_since(self, r: _ReplicaState) -> float | None:
        """Write time of the oldest heartbeat `r` is not known to have applied."""
        if r.floor is not None:
            return r.floor
        seqs = self._seqs
        if r.confirmed_seq is None:
            return self._monos[0] if seqs else None
        i = bisect.bisect_right(seqs, r.confirmed_seq)
        if i < len(seqs):
            return self._monos[i]
        return r.confirmed_mono

    # -- emission ------------------------------------------------------------------

    def _emit(self) -> None:
        now = self._clock()
        b = _GaugeBuilder(time.time_ns())
        lag = b.metric("db.replication.lag", "s",
                       "Replication lag per replica, by measurement method.")
        lag_bytes = b.metric("db.replication.lag_bytes", "By",
                             "WAL bytes the replica is behind the primary's current position.")
        up = b.metric("db.replication.up", "1",
                      "1 if the database answered the last probe, else 0.")
        pg = ("db.system", "postgresql")
        b.int_point(up, int(self._primary_up),
                    (pg, ("db.role", "primary"), ("db.instance", self.config.primary_name)))
        for r in self._replicas:
            name = r.config.name
            b.int_point(up, int(r.up), (pg, ("db.role", "replica"), ("db.replica", name)))
            value = r.sample
            r.sample = None
            if value is None and (r.answered or r.confirmed_seq is not None):
                since = self._missing_since(r)
                value = None if since is None else now - since
            if value is not None:
                b.double_point(lag, round(max(0.0, value), 6),
                               (pg, ("db.replica", name), ("method", "heartbeat")))
        if self._stats is not None:
            for row in self._stats:
                for m in METHODS:
                    v = row.lag.get(m)
                    if v is not None:
                        b.double_point(lag, v, (pg, ("db.replica", row.name), ("method", m)))
                    nbytes = row.lag_bytes.get(m)
                    if nbytes is not None:
                        b.int_point(lag_bytes, max(0, int(nbytes)),
                                    (pg, ("db.replica", row.name), ("method", m)))
            self._stats = None
        batch = Batch(Signal.METRICS, message=b.request, items=b.points)
        if self._deliver_task is not None and not self._deliver_task.done():
            self.obs.refused(Signal.METRICS, b.points)  # previous sample still in delivery
            return
        self._deliver_task = asyncio.create_task(self._deliver(batch))

    async def _deliver(self, batch: Batch) -> None:
        try:
            await self.obs.deliver(self.consumer, batch)
        except (RetryableError, PermanentError):
            pass  # counted by deliver(); the next sample supersedes this one
        except Exception:
            pass  # counted and logged by deliver()
        else:
            self.emitted += 1


class _GaugeBuilder:
    """Builds one ExportMetricsServiceRequest of gauges."""

    def __init__(self, time_unix_nano: int):
        self.request = ExportMetricsServiceRequest()
        rm = self.request.resource_metrics.add()
        self._scope = rm.scope_metrics.add()
        self._scope.scope.name = SCOPE
        self._scope.scope.version = __version__
        self._now = time_unix_nano
        self.points = 0

    def metric(self, name: str, unit: str, description: str) -> Any:
        m = self._scope.metrics.add()
        m.name = name
        m.unit = unit
        m.description = description
        return m.gauge

    def _point(self, gauge: Any, attrs: tuple[tuple[str, str], ...]) -> Any:
        dp = gauge.data_points.add()
        dp.time_unix_nano = self._now
        for key, value in attrs:
            kv = dp.attributes.add()
            kv.key = key
            kv.value.string_value = value
        self.points += 1
        return dp

    def double_point(self, gauge: Any, value: float, attrs: tuple[tuple[str, str], ...]) -> None:
        self._point(gauge, attrs).as_double = value

    def int_point(self, gauge: Any, value: int, attrs: tuple[tuple[str, str], ...]) -> None:
        self._point(gauge, attrs).as_int = value


def _create(settings: ReceiverCreateSettings,
            config: ReplicationLagConfig) -> ReplicationLagReceiver:
    return ReplicationLagReceiver(settings, config)


factory = Factory(
    type="replication_lag",
    kind=Kind.RECEIVER,
    config_model=ReplicationLagConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="PostgreSQL replication lag: heartbeat row written on the primary and read "
                "on each replica, plus pg_stat_replication.",
)
