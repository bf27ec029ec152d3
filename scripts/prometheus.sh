#!/usr/bin/env bash
# Run a throw-away Prometheus for otelpipe's tests and CI, from the Debian
# package `prometheus` (which also brings `promtool`).
#
# Usage: scripts/prometheus.sh start|stop|status|reload|wipe
#
# Our instance (never the packaged service) listens on 127.0.0.1:$PROMETHEUS_PORT
# with the remote-write receiver and the lifecycle API (POST /-/reload) on,
# scrapes every 1s, and reads its scrape targets from file_sd files:
#   $STATE/targets/*.json   [{"targets": ["127.0.0.1:8889"], "labels": {...}}]
# Tests add otelpipe's port at runtime by writing such a file; Prometheus
# notices within ~1s (inotify, 1s refresh as a fallback). Targets are scraped
# with honor_labels: true, so the `job`/`instance` labels otelpipe's
# `prometheus` exporter derives from service.name / service.instance.id win.
# Rule files (recording/alerting rules, e.g. for SLO tests) are loaded from
#   $STATE/rules/*.yml       (apply changes with `scripts/prometheus.sh reload`)
#
# Environment (all optional):
#   OTELPIPE_STATE            services state root (default /tmp/otelpipe-services)
#   PROMETHEUS_STATE_DIR      this instance's state dir (default $OTELPIPE_STATE/prometheus)
#   PROMETHEUS_PORT           listen port on 127.0.0.1 (default 9091; 9090 is the
#                             packaged service's, which we never use)
#   PROMETHEUS_SCRAPE_INTERVAL scrape and rule evaluation interval (default 1s)
#   PROMETHEUS_RETENTION      TSDB retention (default 1d)
#   PROMETHEUS_START_TIMEOUT  seconds to wait for /-/ready (default 60)
#   PROMETHEUS_BIN            prometheus binary (default /usr/bin/prometheus)
set -euo pipefail

STATE_DIR="${PROMETHEUS_STATE_DIR:-${OTELPIPE_STATE:-/tmp/otelpipe-services}/prometheus}"
PORT="${PROMETHEUS_PORT:-9091}"
INTERVAL="${PROMETHEUS_SCRAPE_INTERVAL:-1s}"
RETENTION="${PROMETHEUS_RETENTION:-1d}"
START_TIMEOUT="${PROMETHEUS_START_TIMEOUT:-60}"
PROMETHEUS="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
ADDRESS="127.0.0.1:$PORT"
URL="http://$ADDRESS"

CONF="$STATE_DIR/prometheus.yml"
DATA_DIR="$STATE_DIR/data"
TARGETS_DIR="$STATE_DIR/targets"
RULES_DIR="$STATE_DIR/rules"
PID_FILE="$STATE_DIR/prometheus.pid"
LOG_FILE="$STATE_DIR/prometheus.log"
MARKER="$STATE_DIR/.otelpipe-prometheus-state"  # lets `wipe` refuse to delete a foreign dir

log() { printf 'prometheus.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- process helpers -------------------------------------------------------

read_pid() {
    if [[ -s "$PID_FILE" ]]; then tr -dc '0-9' <"$PID_FILE"; fi
}

# True if $1 is a live (non-zombie) process running our config (guards
# against pid reuse).
pid_is_ours() {
    local pid="$1"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    local state
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" && -n "$state" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--config.file=$CONF"
}

http_ok() {
    if command -v curl >/dev/null; then
        curl -fsS -m 3 -o /dev/null "$1" 2>/dev/null
    else
        python3 - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=3).read()
EOF
    fi
}

http_post() {
    if command -v curl >/dev/null; then
        curl -fsS -m 10 -X POST -o /dev/null "$1"
    else
        python3 - "$1" <<'EOF'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=10).read()
EOF
    fi
}

port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

is_ready() { http_ok "$URL/-/ready"; }

take_lock() {
    mkdir -p "$(dirname "$STATE_DIR")"
    exec 9>"$STATE_DIR.lock"
    flock -w 300 9 || die "timed out waiting for lock $STATE_DIR.lock"
}

# --- install -----------------------------------------------------------------

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

# The package's maintainer scripts start the packaged service (port 9090) where
# an init system lets them. We never use it: stop and disable it, and kill a
# packaged instance (it runs as user `prometheus`; ours runs as the caller).
disable_packaged_service() {
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
    if [[ -x /etc/init.d/prometheus ]]; then
        as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        if command -v update-rc.d >/dev/null; then
            as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
        fi
    fi
    local pid
    if id prometheus >/dev/null 2>&1; then
        for pid in $(pgrep -x -u prometheus prometheus 2>/dev/null || true); do
            log "killing the packaged prometheus service (pid $pid)"
            as_root kill -TERM "$pid" 2>/dev/null || true
        done
    fi
}

ensure_installed() {
    if [[ -x "$PROMETHEUS" ]]; then
        return 0
    fi
    [[ "$PROMETHEUS" == /usr/bin/prometheus ]] \
        || die "$PROMETHEUS not found (PROMETHEUS_BIN points at a missing binary)"
    command -v apt-get >/dev/null || die "/usr/bin/prometheus missing and apt-get not available"
    log "installing the Debian package prometheus (one-time)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq >&2 || die "apt-get update failed"
    as_root apt-get install -y -qq --no-install-recommends prometheus >&2 \
        || die "apt-get install prometheus failed"
    [[ -x "$PROMETHEUS" ]] || die "the prometheus package did not install $PROMETHEUS"
    disable_packaged_service
}

# Prometheus 2.33+ has --web.enable-remote-write-receiver; older ones used the
# feature flag.
remote_write_flag() {
    if "$PROMETHEUS" --help 2>&1 | grep -q -- '--web.enable-remote-write-receiver'; then
        echo "--web.enable-remote-write-receiver"
    else
        echo "--enable-feature=remote-write-receiver"
    fi
}

# --- config ------------------------------------------------------------------

write_config() {
    mkdir -p "$DATA_DIR" "$TARGETS_DIR" "$RULES_DIR"
    touch "$MARKER"
    cat >"$CONF" <<EOF
# Generated by scripts/prometheus.sh - Prometheus for otelpipe tests. Do not edit.
global:
  scrape_interval: $INTERVAL
  scrape_timeout: $INTERVAL
  evaluation_interval: $INTERVAL
rule_files:
  - $RULES_DIR/*.yml
  - $RULES_DIR/*.yaml
scrape_configs:
  # Targets come from files tests write at runtime (file_sd).
  - job_name: otelpipe
    honor_labels: true
    file_sd_configs:
      - files: ['$TARGETS_DIR/*.json', '$TARGETS_DIR/*.yml', '$TARGETS_DIR/*.yaml']
        refresh_interval: 1s
EOF
    if command -v promtool >/dev/null; then
        promtool check config "$CONF" >/dev/null 2>&1 \
            || { promtool check config "$CONF" >&2 || true; die "generated config is invalid"; }
    fi
}

show_logs() {
    log "---- tail of $LOG_FILE ----"
    tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
}

stop_prometheus() {
    local pid
    pid="$(read_pid)"
    if ! pid_is_ours "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping prometheus (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while pid_is_ours "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if pid_is_ours "$pid"; then
        log "prometheus ignored SIGTERM for 30s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! pid_is_ours "$pid"; then
            show_logs
            die "prometheus (pid $pid) exited during startup"
        fi
        if is_ready; then
            return 0
        fi
        sleep 0.2
    done
    show_logs
    stop_prometheus
    die "prometheus did not answer $URL/-/ready within ${START_TIMEOUT}s"
}

# --- subcommands -------------------------------------------------------------

cmd_start() {
    take_lock
    local pid t0=$SECONDS
    pid="$(read_pid)"
    if pid_is_ours "$pid"; then
        wait_ready "$pid"
        log "already running (pid $pid) on $URL"
        return 0
    fi
    rm -f "$PID_FILE"
    ensure_installed
    # A packaged service started by an earlier install would hold 9090 and
    # confuse whoever looks there; make sure it is gone.
    disable_packaged_service
    if port_open "$PORT"; then
        die "port $PORT on 127.0.0.1 is already in use by another process"
    fi
    write_config
    local rw_flag
    rw_flag="$(remote_write_flag)"
    log "starting $("$PROMETHEUS" --version 2>&1 | head -n 1) on $URL (state: $STATE_DIR)"
    # setsid + nohup: outlive the calling shell; lock fd 9 is closed for the
    # child so the long-lived server does not hold the start/stop lock.
    # shellcheck disable=SC2016  # $$ is for the inner bash
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$PROMETHEUS" \
        --config.file="$CONF" \
        --storage.tsdb.path="$DATA_DIR" \
        --storage.tsdb.retention.time="$RETENTION" \
        --web.listen-address="$ADDRESS" \
        --web.enable-lifecycle \
        --web.enable-admin-api \
        "$rw_flag" \
        --enable-feature=exemplar-storage \
        --log.level=info \
        >"$LOG_FILE" 2>&1 </dev/null 9>&- &
    local _
    for _ in $(seq 50); do
        pid="$(read_pid)"
        [[ -n "$pid" ]] && break
        sleep 0.1
    done
    [[ -n "$pid" ]] || die "launcher did not record a pid"
    wait_ready "$pid"
    log "ready on $URL (pid $pid, $((SECONDS - t0))s)"
}

cmd_stop() {
    take_lock
    stop_prometheus
}

cmd_status() {
    local pid
    pid="$(read_pid)"
    if pid_is_ours "$pid" && is_ready; then
        echo "prometheus running (pid $pid) on $URL; targets in $TARGETS_DIR, rules in $RULES_DIR"
        return 0
    fi
    if pid_is_ours "$pid"; then
        echo "prometheus process $pid alive but $URL/-/ready not answering"
    else
        echo "prometheus not running"
    fi
    return 1
}

cmd_reload() {
    pid_is_ours "$(read_pid)" || die "not running"
    http_post "$URL/-/reload" || die "reload failed (see $LOG_FILE)"
    log "reloaded"
}

cmd_wipe() {
    take_lock
    stop_prometheus
    if [[ -d "$STATE_DIR" ]]; then
        [[ -f "$MARKER" ]] || die "$STATE_DIR is not a prometheus.sh state dir; refusing to delete"
        rm -rf "$STATE_DIR"
        log "wiped $STATE_DIR"
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reload) cmd_reload ;;
    wipe) cmd_wipe ;;
    *) echo "usage: $0 start|stop|status|reload|wipe" >&2; exit 2 ;;
esac
