#!/usr/bin/env bash
# Run a throw-away VictoriaLogs for otelpipe's tests and benchmarks, built from
# the Go module proxy (`github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs`
# at a tagged release) in a scratch module; the binary and the Go module/build
# caches live under the cache dir, never in the repository.
#
# VictoriaLogs accepts the Loki push API (/insert/loki/api/v1/push) and the
# Elasticsearch Bulk API (/insert/elasticsearch/_bulk), and answers LogsQL
# queries on /select/logsql/query.
#
# Usage: scripts/victorialogs.sh build|start|stop|status|path|reset
#
# Environment (all optional):
#   VICTORIALOGS_VERSION  module version (default v1.52.1)
#   OTELPIPE_CACHE        cache root (default ~/.cache/otelpipe); binary, Go module and
#                         build caches go to $OTELPIPE_CACHE/victorialogs
#   OTELPIPE_STATE        services state root (default /tmp/otelpipe-services)
#   VICTORIALOGS_STATE_DIR  this instance's state dir (default $OTELPIPE_STATE/victorialogs);
#                         the data lives in $VICTORIALOGS_STATE_DIR/data
#   VICTORIALOGS_PORT     HTTP port on 127.0.0.1 (default 9428)
#   VICTORIALOGS_START_TIMEOUT  seconds to wait for /health (default 60)
#   VICTORIALOGS_BUILD_TIMEOUT  seconds to wait for another process's build (default 1800)
# Several instances can run side by side with distinct VICTORIALOGS_STATE_DIR and ports.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SERVICE=victorialogs
VL_VERSION="${VICTORIALOGS_VERSION:-v1.52.1}"
VL_PKG="github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"
BIN="$CACHE_ROOT/victorialogs/victoria-logs-$VL_VERSION"
STATE_DIR="${VICTORIALOGS_STATE_DIR:-$STATE_ROOT/victorialogs}"
DATA_DIR="$STATE_DIR/data"
PORT="${VICTORIALOGS_PORT:-9428}"
START_TIMEOUT="${VICTORIALOGS_START_TIMEOUT:-60}"
BUILD_TIMEOUT="${VICTORIALOGS_BUILD_TIMEOUT:-1800}"
PID_FILE="$STATE_DIR/victorialogs.pid"
PID_MATCH="-storageDataPath=$DATA_DIR"
LOG_FILE="$STATE_DIR/victorialogs.log"
LOG_FILES=("$LOG_FILE")

build() { go_build "$BIN" "$VL_PKG" "$VL_VERSION" "$BUILD_TIMEOUT"; }
is_ready() { http_ok "http://127.0.0.1:$PORT/health"; }
stop_server() { stop_pid 20; }

cmd_start() {
    build
    take_lock 120
    local pid t0=$SECONDS
    pid="$(read_pid)"
    if pid_is_ours "$pid" && is_ready; then
        log "already running (pid $pid) on 127.0.0.1:$PORT"
        return 0
    fi
    pid_is_ours "$pid" && stop_server
    rm -f "$PID_FILE"
    ports_free "$PORT"
    mkdir -p "$DATA_DIR"
    log "starting VictoriaLogs $VL_VERSION on 127.0.0.1:$PORT (data: $DATA_DIR)"
    # -retentionPeriod is generous so test data with old timestamps is kept;
    # -futureRetention likewise for clock skew in fixtures.
    spawn "$LOG_FILE" \
        "$BIN" "-httpListenAddr=127.0.0.1:$PORT" "-storageDataPath=$DATA_DIR" \
        -retentionPeriod=100y -futureRetention=100y -loggerLevel=WARN
    pid="$SPAWNED_PID"
    wait_ready "$pid" "/health did not answer on 127.0.0.1:$PORT"
    log "ready (pid $pid, $((SECONDS - t0))s)"
}

case "${1:-}" in
    build) build ;;
    start) cmd_start ;;
    stop) take_lock 120; stop_server ;;
    status) print_status " on 127.0.0.1:$PORT (data: $DATA_DIR)" "/health does not answer" ;;
    reset) take_lock 120; stop_server; rm -rf "$DATA_DIR"; log "data removed" ;;
    path) echo "$BIN" ;;
    *) echo "usage: $0 {build|start|stop|status|path|reset}" >&2; exit 2 ;;
esac
