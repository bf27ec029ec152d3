# shellcheck shell=bash
# Helpers shared by the service scripts (scripts/<service>.sh): logging, locks,
# pid files that are checked to really be ours, detached launches, readiness
# waits with a log tail, state-dir markers, Debian package installs and cached
# Go builds. Sourced, never run:
#
#   HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
#   # shellcheck source=scripts/lib.sh
#   source "$HERE/lib.sh"
#
# Variables a script sets before calling the helpers that use them:
#   SERVICE        name in messages ("kafka", "prometheus" …)
#   STATE_DIR      this instance's state dir; the lock is "$STATE_DIR.lock"
#   PID_FILE       where the launcher records the server's pid
#   PID_MATCH      a string the server's command line contains (guards pid reuse)
#   LOG_FILES      files whose tail is shown when a start fails (array)
#   START_TIMEOUT  seconds `wait_ready` waits
# and the functions `is_ready` (the readiness probe) and `stop_server`
# (usually `stop_pid`).

# ${HOME:-...}: CI may run as root with a sparse environment; never trip set -u.
# shellcheck disable=SC2034  # used by the sourcing scripts
CACHE_ROOT="${OTELPIPE_CACHE:-${HOME:-/tmp}/.cache/otelpipe}"
# shellcheck disable=SC2034  # used by the sourcing scripts
STATE_ROOT="${OTELPIPE_STATE:-/tmp/otelpipe-services}"
SCRIPT_NAME="$(basename "$0")"

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- locks -------------------------------------------------------------------

# Serialise start/stop/wipe so two test runners cannot launch two servers on the
# same state dir. The lock file lives next to (not inside) the state dir so a
# wipe can remove the dir while holding it. Fd 9; launched servers close it.
# take_lock SECONDS [LOCK_FILE]
take_lock() {
    local lock="${2:-$STATE_DIR.lock}"
    mkdir -p "$(dirname "$lock")"
    exec 9>"$lock"
    flock -w "$1" 9 || die "timed out waiting for lock $lock"
}

# --- processes -----------------------------------------------------------------

read_pid() {
    if [[ -s "$PID_FILE" ]]; then tr -dc '0-9' <"$PID_FILE"; fi
}

# True if $1 is a live (non-zombie) process whose command line contains
# $PID_MATCH. The command line guards against pid reuse after a reboot or a
# crash; the zombie check matters because servers are reparented and, under
# some supervisors, may linger unreaped after they exited.
pid_is_ours() {
    local pid="$1" state
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" && -n "$state" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PID_MATCH"
}

# spawn OUT_FILE COMMAND...: run COMMAND detached (setsid + nohup: its own
# session, so it outlives the calling shell and a Ctrl-C in it), stdout and
# stderr to OUT_FILE. The inner bash records its own pid and then execs, so
# $PID_FILE holds the server's pid even if setsid had to fork. The lock fds 8/9
# are closed for the child, or the long-lived server would hold them forever.
# Sets SPAWNED_PID.
spawn() {
    local out="$1" _
    shift
    rm -f "$PID_FILE"
    # shellcheck disable=SC2016  # $$ is for the inner bash
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" "$@" \
        >"$out" 2>&1 </dev/null 8>&- 9>&- &
    SPAWNED_PID=""
    for _ in $(seq 50); do
        SPAWNED_PID="$(read_pid)"
        [[ -n "$SPAWNED_PID" ]] && break
        sleep 0.1
    done
    [[ -n "$SPAWNED_PID" ]] || die "$SERVICE launcher did not record a pid"
}

# stop_pid [GRACE_SECONDS]: SIGTERM our server, SIGKILL it after the grace period.
stop_pid() {
    local grace="${1:-30}" pid deadline
    pid="$(read_pid)"
    if ! pid_is_ours "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping $SERVICE (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while pid_is_ours "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if pid_is_ours "$pid"; then
        log "$SERVICE ignored SIGTERM for ${grace}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

show_logs() {
    local f
    for f in "${LOG_FILES[@]}"; do
        log "---- tail of $f ----"
        tail -n "${LOG_TAIL_LINES:-40}" "$f" >&2 2>/dev/null || true
    done
}

# wait_ready PID WHAT [POLL_SECONDS]: poll `is_ready` until it succeeds, the
# process dies or START_TIMEOUT passes. On failure: show the log tails, stop a
# half-started server (it would only eat memory behind a failed CI step) and
# die with "WHAT within Ns".
wait_ready() {
    local pid="$1" what="$2" poll="${3:-0.2}" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! pid_is_ours "$pid"; then
            show_logs
            die "$SERVICE (pid $pid) exited during startup"
        fi
        if is_ready; then
            return 0
        fi
        sleep "$poll"
    done
    show_logs
    stop_server
    die "$what within ${START_TIMEOUT}s"
}

# print_status DETAIL NOT_READY [PROBE...]: the `status` subcommand (DETAIL
# follows "running (pid N)", so starts with a space or a colon). Exit status
# 0 only if our process is alive and PROBE (default `is_ready`) succeeds.
print_status() {
    local detail="$1" not_ready="$2" pid
    shift 2
    (($#)) || set -- is_ready
    pid="$(read_pid)"
    if pid_is_ours "$pid" && "$@"; then
        echo "$SERVICE running (pid $pid)$detail"
        return 0
    fi
    if pid_is_ours "$pid"; then
        echo "$SERVICE process $pid alive but $not_ready"
    else
        echo "$SERVICE not running"
    fi
    return 1
}

# --- probes ----------------------------------------------------------------------

# Cheap TCP probe with bash's /dev/tcp (no nc dependency); bounded by timeout.
port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# die if any of the ports is taken: someone else on our port would make the
# server die with a bind error that is easy to misread.
ports_free() {
    local p
    for p in "$@"; do
        if port_open "$p"; then
            die "port $p on 127.0.0.1 is already in use by another process"
        fi
    done
}

# http_ok URL: a 2xx answer within 3 s (curl, or Python where curl is missing).
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

# --- state dir ---------------------------------------------------------------------

# The marker lets `wipe` refuse to delete a directory this script did not create.
state_marker() { echo "$STATE_DIR/.otelpipe-$SERVICE-state"; }

mark_state_dir() {
    mkdir -p "$STATE_DIR"
    touch "$(state_marker)"
}

# Delete $STATE_DIR (the caller has stopped the server), only if it is one of
# ours: never /, never $HOME, never a non-empty dir without our marker.
wipe_state_dir() {
    [[ -e "$STATE_DIR" ]] || { log "nothing to wipe"; return 0; }
    case "$STATE_DIR" in
        "" | "/" | "${HOME:-/}" | "${HOME:-}/") die "refusing to wipe '$STATE_DIR'" ;;
    esac
    if [[ ! -f "$(state_marker)" ]] && [[ -n "$(ls -A "$STATE_DIR" 2>/dev/null)" ]]; then
        die "refusing to wipe $STATE_DIR: not created by scripts/$SCRIPT_NAME"
    fi
    rm -rf "$STATE_DIR"
    log "wiped $STATE_DIR"
}

# --- Debian packages -----------------------------------------------------------------

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

# apt_install PACKAGE...: install Debian packages without recommends. Waits for
# the dpkg lock (another script or test.sh may be installing at the same time)
# instead of failing, and keeps the packages' services from being started where
# invoke-rc.d honours policy-rc.d: we only ever run our own instances.
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not available to install $*"
    log "installing the Debian package(s) $* (one-time)"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -qq -o "DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT:-600}")
    local policy=/usr/sbin/policy-rc.d created_policy=0 rc=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        created_policy=1
    fi
    as_root "${apt[@]}" update >&2 || rc=$?
    if ((rc == 0)); then
        as_root "${apt[@]}" install -y --no-install-recommends "$@" >&2 || rc=$?
    fi
    if ((created_policy)); then as_root rm -f "$policy"; fi
    ((rc == 0)) || die "apt-get update/install $* failed ($rc)"
}

# disable_packaged_service UNIT USER PROCESS...: stop and disable the service a
# Debian package's maintainer scripts started (systemd or SysV init), and kill
# its processes (they run as USER; ours run as the caller).
disable_packaged_service() {
    local unit="$1" user="$2" pid name
    shift 2
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        as_root systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
    fi
    if [[ -x "/etc/init.d/$unit" ]]; then
        as_root "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
        if command -v update-rc.d >/dev/null; then
            as_root update-rc.d "$unit" disable >/dev/null 2>&1 || true
        fi
    fi
    id "$user" >/dev/null 2>&1 || return 0
    for name in "$@"; do
        for pid in $(pgrep -x -u "$user" "$name" 2>/dev/null || true); do
            log "killing the packaged $unit service (pid $pid)"
            as_root kill -TERM "$pid" 2>/dev/null || true
        done
    done
}

# ensure_package BIN DEFAULT_BIN ENV_VAR PACKAGE...: install the packages if BIN
# is missing; a BIN other than the package's (set through ENV_VAR) is never
# installed, only reported.
ensure_package() {
    local bin="$1" default="$2" var="$3"
    shift 3
    [[ -x "$bin" ]] && return 0
    [[ "$bin" == "$default" ]] || die "$bin not found ($var points at a missing binary)"
    apt_install "$@"
    [[ -x "$bin" ]] || die "the package $1 did not install $bin"
}

# --- Go builds -------------------------------------------------------------------------

# go_build BIN PACKAGE VERSION [LOCK_TIMEOUT]: build the Go main package
# PACKAGE@VERSION into BIN once (a scratch module next to it), with the module
# and build caches in BIN's directory, never in the repository; concurrent
# callers wait for one build.
go_build() {
    local bin="$1" pkg="$2" version="$3" lock_timeout="${4:-1800}" out
    out="$(dirname "$bin")"
    [[ -x "$bin" ]] && return 0
    command -v go >/dev/null || die "go not found (needed once to build $pkg@$version)"
    mkdir -p "$out/src"
    exec 8>"$out/.build.lock"
    flock -w "$lock_timeout" 8 || die "timed out waiting for the build lock $out/.build.lock"
    [[ -x "$bin" ]] && { exec 8>&-; return 0; }
    log "building $pkg@$version into $bin (several minutes the first time)"
    (
        # -modcacherw so `rm -rf` of the cache works; static binaries.
        export GOMODCACHE="$out/gomod" GOCACHE="$out/gocache"
        export GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0
        cd "$out/src"
        [[ -f go.mod ]] || go mod init "otelpipe.local/$SERVICE-build" >/dev/null 2>&1
        go get "$pkg@$version"
        go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$pkg"
    ) || die "go build of $pkg@$version failed (see the go output above)"
    mv "$bin.tmp" "$bin"
    exec 8>&-
    log "built $bin"
}
