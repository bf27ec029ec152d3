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

Modules: `config` (the models), `probes` (connections with backoff, probe state,
error classification), `receiver` (tick loop, heartbeat bookkeeping, emission).
This module holds only the factory; asyncpg loads when a receiver is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.component import Factory, Kind, ReceiverCreateSettings, Signal
from pipeline.receivers.replication_lag.config import ReplicationLagConfig

if TYPE_CHECKING:
    from pipeline.receivers.replication_lag.receiver import ReplicationLagReceiver


def _create(settings: ReceiverCreateSettings,
            config: ReplicationLagConfig) -> ReplicationLagReceiver:
    from pipeline.receivers.replication_lag.receiver import ReplicationLagReceiver

    return ReplicationLagReceiver(settings, config)


factory = Factory(
    type="replication_lag",
    kind=Kind.RECEIVER,
    config_model=ReplicationLagConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    runs_once=lambda config: True,  # one heartbeat writer
    description="PostgreSQL replication lag: heartbeat row written on the primary and read "
                "on each replica, plus pg_stat_replication.",
)
