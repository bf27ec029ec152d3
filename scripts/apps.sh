#!/usr/bin/env bash
# Real instrumented apps for tests/integration/test_real_apps.py, each instrumented
# by its own ecosystem's OpenTelemetry distribution (no otelpipe code in the client
# path). Everything is installed or built into a cache outside the repo.
#
# Usage:
#   scripts/apps.sh build [APP...]   install/build the apps (default: all); idempotent
#   scripts/apps.sh APP PORT         run APP's HTTP server on 127.0.0.1:PORT (exec: the
#                                    caller's pid is the app's); OTLP settings come
#                                    from the caller's OTEL_* environment
# APP: python | node | java | go
#   python  Flask under `opentelemetry-instrument` (tests/apps/python/requirements.txt)
#   node    Express under @opentelemetry/auto-instrumentations-node/register
#           (tests/apps/node/package.json)
#   java    JDK HttpServer under the OpenTelemetry Java agent (Maven Central)
#   go      net/http with otelhttp and the OTLP/HTTP exporters (tests/apps/go/go.mod)
#
# Environment: OTELPIPE_CACHE (default ~/.cache/otelpipe); apps live in $OTELPIPE_CACHE/apps.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SRC="$(cd "$HERE/../tests/apps" && pwd)"
APPS_CACHE="$CACHE_ROOT/apps"
ALL_APPS=(python node java go)
JAVAAGENT_VERSION="${JAVAAGENT_VERSION:-2.33.1}"

# A stamp of the inputs: rebuild when a pinned file changes.
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- python --------------------------------------------------------------------
PY_VENV="$APPS_CACHE/python-venv"
build_python() {
    local want
    want="$(stamp_of "$SRC/python/requirements.txt")"
    [[ -x "$PY_VENV/bin/opentelemetry-instrument" && "$(cat "$PY_VENV/.stamp" 2>/dev/null)" == "$want" ]] && return 0
    log "python: installing $SRC/python/requirements.txt into $PY_VENV"
    rm -rf "$PY_VENV"
    python3 -m venv "$PY_VENV"
    "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$SRC/python/requirements.txt"
    echo "$want" >"$PY_VENV/.stamp"
}
run_python() {
    exec "$PY_VENV/bin/opentelemetry-instrument" "$PY_VENV/bin/python" "$SRC/python/app.py" "$1"
}

# --- node ----------------------------------------------------------------------
NODE_DIR="$APPS_CACHE/node"
build_node() {
    command -v npm >/dev/null || die "node: npm is not installed"
    local want
    want="$(stamp_of "$SRC/node/package.json" "$SRC/node/package-lock.json")"
    [[ -d "$NODE_DIR/node_modules" && "$(cat "$NODE_DIR/.stamp" 2>/dev/null)" == "$want" ]] && return 0
    log "node: npm ci of $SRC/node/package.json into $NODE_DIR"
    rm -rf "$NODE_DIR"
    mkdir -p "$NODE_DIR"
    cp "$SRC/node/package.json" "$SRC/node/package-lock.json" "$NODE_DIR/"
    cp "$SRC/node/app.js" "$NODE_DIR/app.js"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$NODE_DIR/.stamp"
}
run_node() {
    cp "$SRC/node/app.js" "$NODE_DIR/app.js"
    cd "$NODE_DIR"
    exec node --require @opentelemetry/auto-instrumentations-node/register ./app.js "$1"
}

# --- java ----------------------------------------------------------------------
JAVA_DIR="$APPS_CACHE/java"
JAVAAGENT="$JAVA_DIR/opentelemetry-javaagent-$JAVAAGENT_VERSION.jar"
build_java() {
    command -v javac >/dev/null || die "java: javac is not installed"
    command -v mvn >/dev/null || die "java: mvn is not installed"
    mkdir -p "$JAVA_DIR"
    if [[ ! -s "$JAVAAGENT" ]]; then
        log "java: fetching io.opentelemetry.javaagent:opentelemetry-javaagent:$JAVAAGENT_VERSION"
        mvn -q -B dependency:copy \
            -Dartifact="io.opentelemetry.javaagent:opentelemetry-javaagent:$JAVAAGENT_VERSION" \
            -DoutputDirectory="$JAVA_DIR" >&2
    fi
    local want
    want="$(stamp_of "$SRC/java/RealApp.java")"
    [[ -s "$JAVA_DIR/classes/RealApp.class" && "$(cat "$JAVA_DIR/.stamp" 2>/dev/null)" == "$want" ]] && return 0
    rm -rf "$JAVA_DIR/classes"
    javac -d "$JAVA_DIR/classes" "$SRC/java/RealApp.java"
    echo "$want" >"$JAVA_DIR/.stamp"
}
run_java() {
    exec java -javaagent:"$JAVAAGENT" -cp "$JAVA_DIR/classes" RealApp "$1"
}

# --- go ------------------------------------------------------------------------
GO_DIR="$APPS_CACHE/go"
GO_BIN="$GO_DIR/realapp-go"
build_go() {
    command -v go >/dev/null || die "go: go is not installed"
    local want
    want="$(stamp_of "$SRC/go/go.mod" "$SRC/go/go.sum" "$SRC/go/main.go")"
    [[ -x "$GO_BIN" && "$(cat "$GO_DIR/.stamp" 2>/dev/null)" == "$want" ]] && return 0
    log "go: building $SRC/go into $GO_BIN"
    mkdir -p "$GO_DIR"
    (cd "$SRC/go" && GOMODCACHE="$GO_DIR/mod" GOCACHE="$GO_DIR/build" GOFLAGS=-modcacherw \
        go build -trimpath -o "$GO_BIN" .)
    echo "$want" >"$GO_DIR/.stamp"
}
run_go() { exec "$GO_BIN" "$1"; }

is_app() { local a; for a in "${ALL_APPS[@]}"; do [[ "$a" == "$1" ]] && return 0; done; return 1; }

case "${1:-}" in
    build)
        shift
        apps=("$@")
        ((${#apps[@]})) || apps=("${ALL_APPS[@]}")
        failed=()
        for app in "${apps[@]}"; do
            is_app "$app" || die "unknown app $app"
            t0=$SECONDS
            # A subshell outside any `if`: set -e stays on inside the build function.
            set +e
            (set -e; "build_$app")
            rc=$?
            set -e
            if ((rc == 0)); then log "$app: ready ($((SECONDS - t0))s)"; else failed+=("$app"); fi
        done
        ((${#failed[@]} == 0)) || die "could not build: ${failed[*]}"
        ;;
    *)
        is_app "${1:-}" && [[ -n "${2:-}" ]] || {
            echo "usage: $0 build [APP...] | APP PORT   (APP: ${ALL_APPS[*]})" >&2; exit 2; }
        "run_$1" "$2"
        ;;
esac
