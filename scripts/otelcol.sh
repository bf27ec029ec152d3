#!/usr/bin/env bash
# Build the benchmark PEER: a custom OpenTelemetry Collector made with the official
# builder (ocb) from scripts/otelcol/builder-config.yaml, plus telemetrygen as load generator.
# A second peer, "sampling", is built from builder-config-sampling.yaml with every module
# at v0.161.0: the newest release line at which the Go module proxy serves contrib's
# tailsamplingprocessor with all its dependencies.
#
#   scripts/otelcol.sh build [sampling]               # build (skipped if up to date)
#   scripts/otelcol.sh path [sampling]                # print the collector binary path
#   scripts/otelcol.sh telemetrygen-path              # print the telemetrygen binary path
set -euo pipefail

BUILDER_VERSION=v0.165.0
# The Go module proxy serves telemetrygen only up to v0.161.0 (v0.165.x answers 403);
# it just speaks OTLP, so an older release line is fine for a load generator.
TELEMETRYGEN_VERSION=v0.161.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEER="${2:-main}"
case "$PEER" in
  main) MANIFEST="$HERE/otelcol/builder-config.yaml"; NAME=otelcol-peer ;;
  sampling) MANIFEST="$HERE/otelcol/builder-config-sampling.yaml"; NAME=otelcol-sampling
    BUILDER_VERSION=v0.161.0 ;;
  *) echo "unknown peer '$PEER' (main or sampling)" >&2; exit 2 ;;
esac
OUT="${OTELPIPE_CACHE:-$HOME/.cache/otelpipe}/otelcol"
BIN="$OUT/$NAME"
TG="$OUT/telemetrygen"
STAMP="$OUT/$NAME.sha256"

# Everything (tools, module + build caches, generated sources) stays outside the repo.
# -modcacherw so the cache dir can be removed with a plain `rm -rf`.
export GOBIN="$OUT/bin" GOMODCACHE="$OUT/gomod" GOCACHE="$OUT/gocache"
export GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0  # static binaries

# Rebuild when the manifest or a pinned version changes.
want_hash() { { cat "$MANIFEST"; echo "$BUILDER_VERSION $TELEMETRYGEN_VERSION"; } | sha256sum | cut -d' ' -f1; }

build() {
  local hash; hash="$(want_hash)"
  if [[ -x "$BIN" && -x "$TG" && "$(cat "$STAMP" 2>/dev/null)" == "$hash" ]]; then
    echo "otelcol: up to date ($BIN)"; return
  fi
  mkdir -p "$OUT"
  go install "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION"
  # ocb resolves the relative output_path against the working directory.
  # Each builder release is installed under its own name: the two peers pin different ones.
  local builder="$GOBIN/builder-$BUILDER_VERSION"
  if [[ ! -x "$builder" ]]; then
    GOBIN="$OUT/bin/tmp-$BUILDER_VERSION" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
    mv "$OUT/bin/tmp-$BUILDER_VERSION/builder" "$builder" && rmdir "$OUT/bin/tmp-$BUILDER_VERSION"
  fi
  (cd "$OUT" && "$builder" --config "$MANIFEST")
  cp "$OUT/build-$NAME/$NAME" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  cp "$GOBIN/telemetrygen" "$TG.tmp" && mv "$TG.tmp" "$TG"
  echo "$hash" > "$STAMP"
  echo "otelcol: built $BIN and $TG"
}

case "${1:-}" in
  build) build ;;
  path) echo "$BIN" ;;
  telemetrygen-path) echo "$TG" ;;
  *) echo "usage: $0 {build|path|telemetrygen-path} [main|sampling]" >&2; exit 2 ;;
esac
