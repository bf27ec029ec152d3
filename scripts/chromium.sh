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

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SERVICE=chromium
CHROMIUM="${CHROMIUM_BIN:-/usr/bin/chromium}"

install() {
    if [[ ! -x "$CHROMIUM" ]]; then
        take_lock 900 "$STATE_ROOT/chromium.lock"
        # Fonts come as dependencies (fonts-liberation …); recommends are not
        # needed for --headless --dump-dom / --screenshot. A no-op when another
        # caller installed it while we waited for the lock.
        ensure_package "$CHROMIUM" /usr/bin/chromium CHROMIUM_BIN chromium fonts-dejavu-core
    fi
    echo "$CHROMIUM"
}

case "${1:-install}" in
    install) install ;;
    path)
        if [[ -x "$CHROMIUM" ]]; then echo "$CHROMIUM"; else log "not installed"; exit 1; fi ;;
    version) "$CHROMIUM" --version ;;
    *) echo "usage: $0 [install|path|version]" >&2; exit 2 ;;
esac
