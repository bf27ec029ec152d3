#!/usr/bin/env bash
# A throw-away PostgreSQL 15 primary + streaming replica for otelpipe's tests
# (the replication_lag receiver) and for trying it out by hand.
#
#   primary  127.0.0.1:55432  wal_level=replica, hot_standby, track_commit_timestamp
#   replica  127.0.0.1:55433  made with `pg_basebackup -R`, streaming from the primary,
#                             application_name (cluster_name) "replica1"
#   user `postgres` (superuser), trust auth on loopback, database `postgres`
#
# Usage: scripts/postgres.sh start|stop|status|stop-replica|wipe
#   start         idempotent: installs the Debian package postgresql-15 if the
#                 server binaries are missing (root only), creates the clusters on
#                 first use, starts whatever is not running, and returns once both
#                 accept connections and the replica is in recovery and streaming
#                 (it shows up in the primary's pg_stat_replication)
#   stop          stops the replica, then the primary (fast shutdown)
#   status        prints the state of both; exit 0 only if both are up and streaming
#   stop-replica  stops only the replica (fast); `start` brings it back
#   wipe          stops both and deletes the state directory
#
# PostgreSQL refuses to run as root. Run as root (CI), the servers run as the
# unprivileged user $OTELPIPE_PG_USER (default `postgres`, the Debian package's
# own system user; created as a system user if missing) through `runuser`; run
# as anyone else, they run as that user. The package's own cluster (15/main on
# port 5432, if it exists) is neither used nor touched.
#
# Environment (all optional):
#   OTELPIPE_STATE           services state root (default /tmp/otelpipe-services);
#                            clusters live in $OTELPIPE_STATE/postgres
#   OTELPIPE_PG_USER         OS user the servers run as when started by root
#   PG_PRIMARY_PORT          default 55432
#   PG_REPLICA_PORT          default 55433
#   PG_BINDIR                default /usr/lib/postgresql/15/bin
#   PG_START_TIMEOUT         seconds to wait for each step (default 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SERVICE=postgres
STATE_DIR="$STATE_ROOT/postgres"
PRIMARY_DIR="$STATE_DIR/primary"
REPLICA_DIR="$STATE_DIR/replica"
RUN_DIR="$STATE_DIR/run"              # unix sockets (not /var/run/postgresql)
PRIMARY_PORT="${PG_PRIMARY_PORT:-55432}"
REPLICA_PORT="${PG_REPLICA_PORT:-55433}"
REPLICA_NAME="replica1"
PGBIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
START_TIMEOUT="${PG_START_TIMEOUT:-60}"
RUN_USER="${OTELPIPE_PG_USER:-postgres}"

# Run a PostgreSQL program as the unprivileged user (root) or as ourselves.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u "$RUN_USER" -- "$@"
    else
        "$@"
    fi
}

# psql as the database superuser over TCP; prints unaligned, tuples only.
sql() {
    local port="$1"; shift
    PGCONNECT_TIMEOUT=3 "$PGBIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U postgres \
        -d postgres -v ON_ERROR_STOP=1 -c "$*" 2>/dev/null
}

ensure_server() {
    [[ -x "$PGBIN/postgres" && -x "$PGBIN/pg_basebackup" ]] && return 0
    [[ $EUID -eq 0 ]] || die "$PGBIN/postgres not found; install postgresql-15 (as root: apt-get install postgresql-15)"
    # Do not let the package create and start its own cluster on 5432: we never
    # use it and it would only hold memory.
    mkdir -p /etc/postgresql-common/createcluster.d
    if [[ ! -e /etc/postgresql-common/createcluster.d/50-otelpipe.conf ]]; then
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/50-otelpipe.conf
    fi
    apt_install postgresql-15
    [[ -x "$PGBIN/postgres" ]] || die "postgresql-15 installed but $PGBIN/postgres is missing"
}

ensure_user() {
    [[ $EUID -eq 0 ]] || return 0
    if ! id -u "$RUN_USER" >/dev/null 2>&1; then
        log "creating system user $RUN_USER"
        useradd --system --no-create-home --home-dir "$STATE_DIR" --shell /usr/sbin/nologin \
            "$RUN_USER"
    fi
}

ensure_state_dir() {
    mark_state_dir
    mkdir -p "$RUN_DIR"
    if [[ $EUID -eq 0 ]]; then
        chown "$RUN_USER:" "$STATE_DIR" "$RUN_DIR"
        chmod 700 "$STATE_DIR"
        # Every parent must be traversable by the server's user.
        runuser -u "$RUN_USER" -- test -w "$STATE_DIR" \
            || die "$RUN_USER cannot write $STATE_DIR (is a parent directory private?)"
    fi
}

# True if the server of data dir $1 is running (postmaster.pid of a live process).
running() {
    [[ -f "$1/PG_VERSION" ]] || return 1
    as_pg "$PGBIN/pg_ctl" status -D "$1" >/dev/null 2>&1
}

write_common_conf() {
    # $1 data dir, $2 port, $3 cluster name
    as_pg tee "$1/otelpipe.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh (rewritten on every start).
listen_addresses = '127.0.0.1'
port = $2
cluster_name = '$3'
unix_socket_directories = '$RUN_DIR'
max_connections = 50
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
hot_standby = on
track_commit_timestamp = on
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
EOF
}

init_primary() {
    log "initdb $PRIMARY_DIR"
    as_pg "$PGBIN/initdb" -D "$PRIMARY_DIR" -U postgres --auth=trust -E UTF8 --locale=C \
        >"$STATE_DIR/initdb.log" 2>&1 || { cat "$STATE_DIR/initdb.log" >&2; die "initdb failed"; }
    as_pg tee "$PRIMARY_DIR/pg_hba.conf" >/dev/null <<'EOF'
# Written by scripts/postgres.sh: trust on loopback for the postgres role only.
local   all           all                     trust
host    all           postgres  127.0.0.1/32  trust
host    replication   postgres  127.0.0.1/32  trust
host    all           postgres  ::1/128       trust
host    replication   postgres  ::1/128       trust
EOF
    echo "include_if_exists = 'otelpipe.conf'" | as_pg tee -a "$PRIMARY_DIR/postgresql.conf" >/dev/null
}

start_server() {
    # $1 data dir, $2 port, $3 name
    if running "$1"; then
        return 0
    fi
    if port_open "$2"; then
        die "port $2 on 127.0.0.1 is in use by another process (not the $3 in $1)"
    fi
    rm -f "$1/postmaster.pid"  # stale after a crash or reboot; pg_ctl status said not running
    log "starting $3 on 127.0.0.1:$2"
    # 9>&-: the server must not inherit the start/stop lock (it would hold it forever).
    as_pg "$PGBIN/pg_ctl" start -D "$1" -l "$STATE_DIR/$3.log" -w -t "$START_TIMEOUT" \
        >/dev/null 9>&- \
        || { tail -n 30 "$STATE_DIR/$3.log" >&2 || true; die "$3 did not start"; }
}

init_replica() {
    rm -rf "$REPLICA_DIR"
    log "pg_basebackup -R from 127.0.0.1:$PRIMARY_PORT into $REPLICA_DIR"
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres \
        -D "$REPLICA_DIR" -R -X stream -c fast --no-password \
        >"$STATE_DIR/basebackup.log" 2>&1 \
        || { cat "$STATE_DIR/basebackup.log" >&2; die "pg_basebackup failed"; }
    as_pg touch "$REPLICA_DIR/.otelpipe-basebackup-done"
}

wait_for() {
    # $1 description, rest: command that succeeds when ready
    local what="$1"; shift
    local deadline=$((SECONDS + START_TIMEOUT))
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out after ${START_TIMEOUT}s waiting for $what"
        sleep 0.1
    done
}

accepts() { [[ "$(sql "$1" 'SELECT 1')" == "1" ]]; }
in_recovery() { [[ "$(sql "$REPLICA_PORT" 'SELECT pg_is_in_recovery()')" == "t" ]]; }
streaming() {
    [[ "$(sql "$PRIMARY_PORT" "SELECT count(*) FROM pg_stat_replication
        WHERE application_name = '$REPLICA_NAME' AND state = 'streaming'")" -ge 1 ]] 2>/dev/null
}

cmd_start() {
    local t0=$SECONDS
    ensure_server
    take_lock 180
    ensure_user
    ensure_state_dir
    if [[ ! -f "$PRIMARY_DIR/PG_VERSION" ]]; then
        rm -rf "$PRIMARY_DIR" "$REPLICA_DIR"
        init_primary
    fi
    write_common_conf "$PRIMARY_DIR" "$PRIMARY_PORT" primary
    start_server "$PRIMARY_DIR" "$PRIMARY_PORT" primary
    wait_for "the primary to accept connections" accepts "$PRIMARY_PORT"

    if [[ ! -f "$REPLICA_DIR/.otelpipe-basebackup-done" ]]; then
        init_replica
    fi
    # The base backup copied the primary's otelpipe.conf; give the replica its own.
    write_common_conf "$REPLICA_DIR" "$REPLICA_PORT" "$REPLICA_NAME"
    start_server "$REPLICA_DIR" "$REPLICA_PORT" replica
    wait_for "the replica to accept connections" accepts "$REPLICA_PORT"
    wait_for "the replica to be in recovery" in_recovery
    wait_for "the replica to stream from the primary (pg_stat_replication)" streaming
    log "ready: primary 127.0.0.1:$PRIMARY_PORT, replica 127.0.0.1:$REPLICA_PORT streaming" \
        "($((SECONDS - t0))s)"
}

stop_server() {
    # $1 data dir, $2 name
    if running "$1"; then
        log "stopping $2"
        as_pg "$PGBIN/pg_ctl" stop -D "$1" -m fast -w -t "$START_TIMEOUT" >/dev/null \
            || die "$2 did not stop"
    else
        log "$2 not running"
    fi
}

cmd_stop() {
    take_lock 180
    stop_server "$REPLICA_DIR" replica
    stop_server "$PRIMARY_DIR" primary
}

cmd_stop_replica() {
    take_lock 180
    stop_server "$REPLICA_DIR" replica
}

cmd_status() {
    local rc=0
    if running "$PRIMARY_DIR" && accepts "$PRIMARY_PORT"; then
        echo "primary running on 127.0.0.1:$PRIMARY_PORT ($PRIMARY_DIR)"
    else
        echo "primary not running"; rc=1
    fi
    if running "$REPLICA_DIR" && accepts "$REPLICA_PORT"; then
        local state
        state="$(sql "$PRIMARY_PORT" "SELECT state FROM pg_stat_replication
            WHERE application_name = '$REPLICA_NAME'" || true)"
        echo "replica running on 127.0.0.1:$REPLICA_PORT ($REPLICA_DIR), in recovery:" \
            "$(sql "$REPLICA_PORT" 'SELECT pg_is_in_recovery()' || echo '?')," \
            "replication: ${state:-not connected}"
        [[ "$state" == "streaming" ]] || rc=1
    else
        echo "replica not running"; rc=1
    fi
    return "$rc"
}

cmd_wipe() {
    take_lock 180
    stop_server "$REPLICA_DIR" replica
    stop_server "$PRIMARY_DIR" primary
    wipe_state_dir
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    stop-replica) cmd_stop_replica ;;
    wipe) cmd_wipe ;;
    *) echo "usage: $0 start|stop|status|stop-replica|wipe" >&2; exit 2 ;;
esac
