#!/usr/bin/env bash
# Run a throw-away Jaeger v2 (in-memory storage) for otelpipe's tests, built
# from the Go module proxy: `go get -tool github.com/jaegertracing/jaeger/cmd/jaeger`
# in a scratch module, `go build -o` into the cache (never into the repo).
#
# Usage: scripts/jaeger.sh build|start|stop|status|path
#
# Environment (all optional):
#   JAEGER_VERSION      module version (default v1.76.0: Jaeger v2's binary ships in the
#                       v1.x module line)
#   OTELPIPE_CACHE      cache root (default ~/.cache/otelpipe); binary, Go module and
#                       build caches go to $OTELPIPE_CACHE/jaeger
#   OTELPIPE_STATE      services state root (default /tmp/otelpipe-services)
#   JAEGER_STATE_DIR    this instance's state dir (default $OTELPIPE_STATE/jaeger)
#   JAEGER_OTLP_GRPC_PORT  OTLP gRPC receiver on 127.0.0.1 (default 14317, off 4317)
#   JAEGER_OTLP_HTTP_PORT  OTLP HTTP receiver on 127.0.0.1 (default 14318, off 4318)
#   JAEGER_QUERY_PORT      query UI + HTTP API on 127.0.0.1 (default 16686)
#   JAEGER_QUERY_GRPC_PORT query gRPC API on 127.0.0.1 (default 16685)
#   JAEGER_START_TIMEOUT   seconds to wait for the query API (default 60)
# Several instances can run side by side with distinct JAEGER_STATE_DIR and ports
# (the outage tests stop and start their own).
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
CACHE_ROOT="${OTELPIPE_CACHE:-${HOME:-/tmp}/.cache/otelpipe}"
OUT="$CACHE_ROOT/jaeger"
BIN="$OUT/jaeger-$JAEGER_VERSION"
STATE_DIR="${JAEGER_STATE_DIR:-${OTELPIPE_STATE:-/tmp/otelpipe-services}/jaeger}"
GRPC_PORT="${JAEGER_OTLP_GRPC_PORT:-14317}"
HTTP_PORT="${JAEGER_OTLP_HTTP_PORT:-14318}"
QUERY_PORT="${JAEGER_QUERY_PORT:-16686}"
QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-16685}"
START_TIMEOUT="${JAEGER_START_TIMEOUT:-60}"
CONF="$STATE_DIR/config.yaml"
PID_FILE="$STATE_DIR/jaeger.pid"
LOG_FILE="$STATE_DIR/jaeger.log"

log() { printf 'jaeger.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

build() {
    if [[ -x "$BIN" ]]; then
        return 0
    fi
    command -v go >/dev/null || die "go not found (needed once to build Jaeger $JAEGER_VERSION)"
    mkdir -p "$OUT/src"
    exec 8>"$OUT/.build.lock"
    flock -w 1800 8 || die "timed out waiting for the build lock"
    [[ -x "$BIN" ]] && return 0
    # Module and build caches stay under the cache dir; -modcacherw so `rm -rf` works.
    export GOMODCACHE="$OUT/gomod" GOCACHE="$OUT/gocache"
    export GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0
    log "building Jaeger $JAEGER_VERSION into $BIN (several minutes the first time)"
    (
        cd "$OUT/src"
        [[ -f go.mod ]] || go mod init otelpipe.local/jaeger-build >/dev/null 2>&1
        go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
        go build -trimpath -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
    )
    mv "$BIN.tmp" "$BIN"
    log "built $BIN"
}

read_pid() {
    if [[ -s "$PID_FILE" ]]; then tr -dc '0-9' <"$PID_FILE"; fi
}

# A live, non-zombie process running our binary with our config (guards pid reuse).
pid_is_jaeger() {
    local pid="$1" state
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" && -n "$state" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config $CONF"
}

port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

query_answers() {
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$QUERY_PORT/api/services" 2>/dev/null
}

take_lock() {
    mkdir -p "$(dirname "$STATE_DIR")"
    exec 9>"$STATE_DIR.lock"
    flock -w 120 9 || die "timed out waiting for lock $STATE_DIR.lock"
}

write_config() {
    mkdir -p "$STATE_DIR"
    # Only the pieces the tests need: OTLP in, in-memory store, query API out.
    # The Collector's own telemetry (8888) and health check (13133) stay off so
    # they cannot clash with otelpipe's ports.
    cat >"$CONF" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$QUERY_GRPC_PORT
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 200000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$GRPC_PORT
      http:
        endpoint: 127.0.0.1:$HTTP_PORT
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

show_logs() {
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
}

stop_jaeger() {
    local pid
    pid="$(read_pid)"
    if ! pid_is_jaeger "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while pid_is_jaeger "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if pid_is_jaeger "$pid"; then
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
    if pid_is_jaeger "$pid" && query_answers; then
        log "already running (pid $pid); query API on 127.0.0.1:$QUERY_PORT"
        return 0
    fi
    pid_is_jaeger "$pid" && stop_jaeger
    rm -f "$PID_FILE"
    local p
    for p in "$GRPC_PORT" "$HTTP_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT"; do
        port_open "$p" && die "port $p on 127.0.0.1 is already in use by another process"
    done
    write_config
    log "starting Jaeger $JAEGER_VERSION: OTLP 127.0.0.1:$GRPC_PORT (gRPC) and :$HTTP_PORT" \
        "(HTTP), query 127.0.0.1:$QUERY_PORT (state: $STATE_DIR)"
    # shellcheck disable=SC2016  # $$ is for the inner bash
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$BIN" --config "$CONF" >"$LOG_FILE" 2>&1 </dev/null 8>&- 9>&- &
    local _
    for _ in $(seq 50); do
        pid="$(read_pid)"
        [[ -n "$pid" ]] && break
        sleep 0.1
    done
    [[ -n "$pid" ]] || die "launcher did not record a pid"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! pid_is_jaeger "$pid"; then
            show_logs
            die "jaeger (pid $pid) exited during startup"
        fi
        if query_answers && port_open "$GRPC_PORT" && port_open "$HTTP_PORT"; then
            log "ready (pid $pid, $((SECONDS - t0))s)"
            return 0
        fi
        sleep 0.2
    done
    show_logs
    stop_jaeger
    die "query API did not answer on 127.0.0.1:$QUERY_PORT within ${START_TIMEOUT}s"
}

cmd_status() {
    local pid
    pid="$(read_pid)"
    if pid_is_jaeger "$pid" && query_answers; then
        echo "jaeger running (pid $pid): OTLP 127.0.0.1:$GRPC_PORT/$HTTP_PORT, query 127.0.0.1:$QUERY_PORT"
        return 0
    fi
    if pid_is_jaeger "$pid"; then
        echo "jaeger process $pid alive but the query API does not answer"
    else
        echo "jaeger not running"
    fi
    return 1
}

case "${1:-}" in
    build) build ;;
    start) cmd_start ;;
    stop) take_lock; stop_jaeger ;;
    status) cmd_status ;;
    path) echo "$BIN" ;;
    *) echo "usage: $0 {build|start|stop|status|path}" >&2; exit 2 ;;
esac
