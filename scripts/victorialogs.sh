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

VL_VERSION="${VICTORIALOGS_VERSION:-v1.52.1}"
VL_MODULE="github.com/VictoriaMetrics/VictoriaLogs"
VL_PKG="$VL_MODULE/app/victoria-logs"
CACHE_ROOT="${OTELPIPE_CACHE:-${HOME:-/tmp}/.cache/otelpipe}"
OUT="$CACHE_ROOT/victorialogs"
BIN="$OUT/victoria-logs-$VL_VERSION"
STATE_DIR="${VICTORIALOGS_STATE_DIR:-${OTELPIPE_STATE:-/tmp/otelpipe-services}/victorialogs}"
DATA_DIR="$STATE_DIR/data"
PORT="${VICTORIALOGS_PORT:-9428}"
START_TIMEOUT="${VICTORIALOGS_START_TIMEOUT:-60}"
BUILD_TIMEOUT="${VICTORIALOGS_BUILD_TIMEOUT:-1800}"
PID_FILE="$STATE_DIR/victorialogs.pid"
LOG_FILE="$STATE_DIR/victorialogs.log"

log() { printf 'victorialogs.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

build() {
    if [[ -x "$BIN" ]]; then
        return 0
    fi
    command -v go >/dev/null || die "go not found (needed once to build VictoriaLogs $VL_VERSION)"
    mkdir -p "$OUT/src"
    exec 8>"$OUT/.build.lock"
    flock -w "$BUILD_TIMEOUT" 8 || die "timed out waiting for the build lock $OUT/.build.lock"
    [[ -x "$BIN" ]] && { exec 8>&-; return 0; }
    # Module and build caches stay under the cache dir; -modcacherw so `rm -rf` works.
    export GOMODCACHE="$OUT/gomod" GOCACHE="$OUT/gocache"
    export GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0
    log "building VictoriaLogs $VL_VERSION into $BIN (several minutes the first time)"
    (
        cd "$OUT/src"
        [[ -f go.mod ]] || go mod init otelpipe.local/victorialogs-build >/dev/null 2>&1
        go get "$VL_PKG@$VL_VERSION"
        go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" "$VL_PKG"
    ) || die "go build of $VL_PKG@$VL_VERSION failed (see the go output above)"
    mv "$BIN.tmp" "$BIN"
    exec 8>&-
    log "built $BIN"
}

read_pid() {
    if [[ -s "$PID_FILE" ]]; then tr -dc '0-9' <"$PID_FILE"; fi
}

# A live, non-zombie process running our binary on our data dir (guards pid reuse).
pid_is_ours() {
    local pid="$1" state
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" && -n "$state" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-storageDataPath=$DATA_DIR"
}

port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

health_ok() {
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/health" 2>/dev/null
}

take_lock() {
    mkdir -p "$(dirname "$STATE_DIR")"
    exec 9>"$STATE_DIR.lock"
    flock -w 120 9 || die "timed out waiting for lock $STATE_DIR.lock"
}

show_logs() {
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
}

stop_vl() {
    local pid
    pid="$(read_pid)"
    if ! pid_is_ours "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while pid_is_ours "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if pid_is_ours "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_start() {
    build
    take_lock
    local pid t0=$SECONDS
    pid="$(read_pid)"
    if pid_is_ours "$pid" && health_ok; then
        log "already running (pid $pid) on 127.0.0.1:$PORT"
        return 0
    fi
    pid_is_ours "$pid" && stop_vl
    rm -f "$PID_FILE"
    port_open "$PORT" && die "port $PORT on 127.0.0.1 is already in use by another process"
    mkdir -p "$DATA_DIR"
    log "starting VictoriaLogs $VL_VERSION on 127.0.0.1:$PORT (data: $DATA_DIR)"
    # -retentionPeriod is generous so test data with old timestamps is kept;
    # -futureRetention likewise for clock skew in fixtures.
    # shellcheck disable=SC2016  # $$ is for the inner bash
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$BIN" "-httpListenAddr=127.0.0.1:$PORT" "-storageDataPath=$DATA_DIR" \
        -retentionPeriod=100y -futureRetention=100y -loggerLevel=WARN \
        >"$LOG_FILE" 2>&1 </dev/null 8>&- 9>&- &
    local _
    for _ in $(seq 50); do
        pid="$(read_pid)"
        [[ -n "$pid" ]] && break
        sleep 0.1
    done
    [[ -n "$pid" ]] || die "launcher did not record a pid"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! pid_is_ours "$pid"; then
            show_logs
            die "victoria-logs (pid $pid) exited during startup"
        fi
        if health_ok; then
            log "ready (pid $pid, $((SECONDS - t0))s)"
            return 0
        fi
        sleep 0.2
    done
    show_logs
    stop_vl
    die "/health did not answer on 127.0.0.1:$PORT within ${START_TIMEOUT}s"
}

cmd_status() {
    local pid
    pid="$(read_pid)"
    if pid_is_ours "$pid" && health_ok; then
        echo "victorialogs running (pid $pid) on 127.0.0.1:$PORT (data: $DATA_DIR)"
        return 0
    fi
    if pid_is_ours "$pid"; then
        echo "victorialogs process $pid alive but /health does not answer"
    else
        echo "victorialogs not running"
    fi
    return 1
}

case "${1:-}" in
    build) build ;;
    start) cmd_start ;;
    stop) take_lock; stop_vl ;;
    status) cmd_status ;;
    reset) take_lock; stop_vl; rm -rf "$DATA_DIR"; log "data removed" ;;
    path) echo "$BIN" ;;
    *) echo "usage: $0 {build|start|stop|status|path|reset}" >&2; exit 2 ;;
esac
