#!/usr/bin/env bash
# Run a throw-away Prometheus Alertmanager for otelpipe's tests, from the Debian
# package `prometheus-alertmanager`.
#
# Usage: scripts/alertmanager.sh start|stop|status|wipe
#
# Our instance (never the packaged service, which listens on 9093 - the port
# Kafka's KRaft controller uses here) listens on 127.0.0.1:$ALERTMANAGER_PORT
# with clustering off and a generated minimal config: one `null` receiver (no
# notifications leave the machine) and short group_wait / group_interval so
# tests see alerts and resolutions within seconds. Tests assert through the
# v2 API: GET $URL/api/v2/alerts?active=true.
#
# Environment (all optional):
#   OTELPIPE_STATE              services state root (default /tmp/otelpipe-services)
#   ALERTMANAGER_STATE_DIR      this instance's state dir (default $OTELPIPE_STATE/alertmanager)
#   ALERTMANAGER_PORT           listen port on 127.0.0.1 (default 19093)
#   ALERTMANAGER_RESOLVE_TIMEOUT  resolve_timeout of alerts without endsAt (default 5m)
#   ALERTMANAGER_START_TIMEOUT  seconds to wait for /-/ready (default 60)
#   ALERTMANAGER_BIN            alertmanager binary (default /usr/bin/prometheus-alertmanager)
set -euo pipefail

STATE_DIR="${ALERTMANAGER_STATE_DIR:-${OTELPIPE_STATE:-/tmp/otelpipe-services}/alertmanager}"
PORT="${ALERTMANAGER_PORT:-19093}"
RESOLVE_TIMEOUT="${ALERTMANAGER_RESOLVE_TIMEOUT:-5m}"
START_TIMEOUT="${ALERTMANAGER_START_TIMEOUT:-60}"
ALERTMANAGER="${ALERTMANAGER_BIN:-/usr/bin/prometheus-alertmanager}"
ADDRESS="127.0.0.1:$PORT"
URL="http://$ADDRESS"

CONF="$STATE_DIR/alertmanager.yml"
DATA_DIR="$STATE_DIR/data"
PID_FILE="$STATE_DIR/alertmanager.pid"
LOG_FILE="$STATE_DIR/alertmanager.log"
MARKER="$STATE_DIR/.otelpipe-alertmanager-state"  # lets `wipe` refuse to delete a foreign dir

log() { printf 'alertmanager.sh: %s\n' "$*" >&2; }
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

# The package's maintainer scripts start the packaged service (port 9093, which
# Kafka's controller uses here) where an init system lets them. We never use
# it: stop and disable it, and kill a packaged instance (it runs as user
# `prometheus`; ours runs as the caller).
disable_packaged_service() {
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        as_root systemctl disable --now prometheus-alertmanager.service >/dev/null 2>&1 || true
    fi
    if [[ -x /etc/init.d/prometheus-alertmanager ]]; then
        as_root /etc/init.d/prometheus-alertmanager stop >/dev/null 2>&1 || true
        if command -v update-rc.d >/dev/null; then
            as_root update-rc.d prometheus-alertmanager disable >/dev/null 2>&1 || true
        fi
    fi
    local pid
    if id prometheus >/dev/null 2>&1; then
        for pid in $(pgrep -x -u prometheus prometheus-alert 2>/dev/null || true) \
                   $(pgrep -x -u prometheus alertmanager 2>/dev/null || true); do
            log "killing the packaged alertmanager service (pid $pid)"
            as_root kill -TERM "$pid" 2>/dev/null || true
        done
    fi
}

ensure_installed() {
    if [[ -x "$ALERTMANAGER" ]]; then
        return 0
    fi
    [[ "$ALERTMANAGER" == /usr/bin/prometheus-alertmanager ]] \
        || die "$ALERTMANAGER not found (ALERTMANAGER_BIN points at a missing binary)"
    command -v apt-get >/dev/null \
        || die "/usr/bin/prometheus-alertmanager missing and apt-get not available"
    log "installing the Debian package prometheus-alertmanager (one-time)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packaged service from starting where invoke-rc.d honours policy-rc.d.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    as_root apt-get update -qq >&2 || rc=$?
    if ((rc == 0)); then
        as_root apt-get install -y -qq --no-install-recommends prometheus-alertmanager >&2 \
            || rc=$?
    fi
    if ((created_policy)); then as_root rm -f "$policy"; fi
    ((rc == 0)) || die "apt-get update/install prometheus-alertmanager failed ($rc)"
    [[ -x "$ALERTMANAGER" ]] || die "the package did not install $ALERTMANAGER"
    disable_packaged_service
}

# --- config ------------------------------------------------------------------

write_config() {
    mkdir -p "$DATA_DIR"
    touch "$MARKER"
    cat >"$CONF" <<EOF
# Generated by scripts/alertmanager.sh - Alertmanager for otelpipe tests. Do not edit.
global:
  resolve_timeout: $RESOLVE_TIMEOUT
route:
  receiver: "null"
  group_by: [alertname, slo, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
EOF
    local amtool
    amtool="$(dirname "$ALERTMANAGER")/amtool"
    [[ -x "$amtool" ]] || amtool="$(command -v amtool || true)"
    if [[ -n "$amtool" ]]; then
        "$amtool" check-config "$CONF" >/dev/null 2>&1 \
            || { "$amtool" check-config "$CONF" >&2 || true; die "generated config is invalid"; }
    fi
}

show_logs() {
    log "---- tail of $LOG_FILE ----"
    tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
}

stop_alertmanager() {
    local pid
    pid="$(read_pid)"
    if ! pid_is_ours "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping alertmanager (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while pid_is_ours "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if pid_is_ours "$pid"; then
        log "alertmanager ignored SIGTERM for 30s; sending SIGKILL"
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
            die "alertmanager (pid $pid) exited during startup"
        fi
        if is_ready; then
            return 0
        fi
        sleep 0.2
    done
    show_logs
    stop_alertmanager
    die "alertmanager did not answer $URL/-/ready within ${START_TIMEOUT}s"
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
    disable_packaged_service
    if port_open "$PORT"; then
        die "port $PORT on 127.0.0.1 is already in use by another process"
    fi
    write_config
    log "starting $("$ALERTMANAGER" --version 2>&1 | head -n 1) on $URL (state: $STATE_DIR)"
    # setsid + nohup: outlive the calling shell; lock fd 9 is closed for the
    # child so the long-lived server does not hold the start/stop lock.
    # --cluster.listen-address= (empty) turns the gossip cluster off.
    # shellcheck disable=SC2016  # $$ is for the inner bash
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$ALERTMANAGER" \
        --config.file="$CONF" \
        --storage.path="$DATA_DIR" \
        --web.listen-address="$ADDRESS" \
        --web.external-url="$URL" \
        --cluster.listen-address= \
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
    stop_alertmanager
}

cmd_status() {
    local pid
    pid="$(read_pid)"
    if pid_is_ours "$pid" && is_ready; then
        echo "alertmanager running (pid $pid) on $URL"
        return 0
    fi
    if pid_is_ours "$pid"; then
        echo "alertmanager process $pid alive but $URL/-/ready not answering"
    else
        echo "alertmanager not running"
    fi
    return 1
}

cmd_wipe() {
    take_lock
    stop_alertmanager
    if [[ -d "$STATE_DIR" ]]; then
        [[ -f "$MARKER" ]] || die "$STATE_DIR is not an alertmanager.sh state dir; refusing to delete"
        rm -rf "$STATE_DIR"
        log "wiped $STATE_DIR"
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    wipe) cmd_wipe ;;
    *) echo "usage: $0 start|stop|status|wipe" >&2; exit 2 ;;
esac
