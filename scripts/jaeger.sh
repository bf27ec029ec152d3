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

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SERVICE=jaeger
JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
JAEGER_PKG="github.com/jaegertracing/jaeger/cmd/jaeger"
BIN="$CACHE_ROOT/jaeger/jaeger-$JAEGER_VERSION"
STATE_DIR="${JAEGER_STATE_DIR:-$STATE_ROOT/jaeger}"
GRPC_PORT="${JAEGER_OTLP_GRPC_PORT:-14317}"
HTTP_PORT="${JAEGER_OTLP_HTTP_PORT:-14318}"
QUERY_PORT="${JAEGER_QUERY_PORT:-16686}"
QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-16685}"
START_TIMEOUT="${JAEGER_START_TIMEOUT:-60}"
CONF="$STATE_DIR/config.yaml"
PID_FILE="$STATE_DIR/jaeger.pid"
PID_MATCH="--config $CONF"
LOG_FILE="$STATE_DIR/jaeger.log"
LOG_FILES=("$LOG_FILE")

build() { go_build "$BIN" "$JAEGER_PKG" "$JAEGER_VERSION"; }
query_answers() { http_ok "http://127.0.0.1:$QUERY_PORT/api/services"; }
is_ready() { query_answers && port_open "$GRPC_PORT" && port_open "$HTTP_PORT"; }
stop_server() { stop_pid 20; }

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

cmd_start() {
    build
    take_lock 120
    local pid t0=$SECONDS
    pid="$(read_pid)"
    if pid_is_ours "$pid" && query_answers; then
        log "already running (pid $pid); query API on 127.0.0.1:$QUERY_PORT"
        return 0
    fi
    pid_is_ours "$pid" && stop_server
    rm -f "$PID_FILE"
    ports_free "$GRPC_PORT" "$HTTP_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT"
    write_config
    log "starting Jaeger $JAEGER_VERSION: OTLP 127.0.0.1:$GRPC_PORT (gRPC) and :$HTTP_PORT" \
        "(HTTP), query 127.0.0.1:$QUERY_PORT (state: $STATE_DIR)"
    spawn "$LOG_FILE" "$BIN" --config "$CONF"
    pid="$SPAWNED_PID"
    wait_ready "$pid" "query API did not answer on 127.0.0.1:$QUERY_PORT"
    log "ready (pid $pid, $((SECONDS - t0))s)"
}

case "${1:-}" in
    build) build ;;
    start) cmd_start ;;
    stop) take_lock 120; stop_server ;;
    status)
        print_status ": OTLP 127.0.0.1:$GRPC_PORT/$HTTP_PORT, query 127.0.0.1:$QUERY_PORT" \
            "the query API does not answer" query_answers ;;
    path) echo "$BIN" ;;
    *) echo "usage: $0 {build|start|stop|status|path}" >&2; exit 2 ;;
esac
