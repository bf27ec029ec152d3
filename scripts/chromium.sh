#!/usr/bin/env bash
# Make sure headless Chromium (Debian package `chromium`) is installed, for the
# status-page e2e test, and print its path.
#
# Usage: scripts/chromium.sh [install|path|version]
#   install (default)  install the package if /usr/bin/chromium is missing; print the path
#   path               print the path, exit 1 if not installed
#   version            print `chromium --version`
#
# Environment: CHROMIUM_BIN (default /usr/bin/chromium).
set -euo pipefail

CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"

log() { printf 'chromium.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

take_lock() {
    local lock="${OTELPIPE_STATE:-/tmp/otelpipe-services}/chromium.lock"
    mkdir -p "$(dirname "$lock")"
    exec 9>"$lock"
    flock -w 900 9 || die "timed out waiting for lock $lock"
}

install() {
    if [[ -x "$CHROMIUM" ]]; then
        echo "$CHROMIUM"
        return 0
    fi
    [[ "$CHROMIUM" == /usr/bin/chromium ]] \
        || die "$CHROMIUM not found (CHROMIUM_BIN points at a missing binary)"
    take_lock
    if [[ -x "$CHROMIUM" ]]; then  # another caller installed it while we waited
        echo "$CHROMIUM"
        return 0
    fi
    command -v apt-get >/dev/null || die "/usr/bin/chromium missing and apt-get not available"
    log "installing the Debian package chromium (one-time, a few minutes)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq >&2 || die "apt-get update failed"
    # Fonts come as dependencies (fonts-liberation …); recommends are not needed
    # for --headless --dump-dom / --screenshot.
    as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2 \
        || die "apt-get install chromium failed"
    [[ -x "$CHROMIUM" ]] || die "the chromium package did not install $CHROMIUM"
    echo "$CHROMIUM"
}

case "${1:-install}" in
    install) install ;;
    path)
        if [[ -x "$CHROMIUM" ]]; then echo "$CHROMIUM"; else log "not installed"; exit 1; fi ;;
    version) "$CHROMIUM" --version ;;
    *) echo "usage: $0 [install|path|version]" >&2; exit 2 ;;
esac
