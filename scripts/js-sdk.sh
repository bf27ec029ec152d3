#!/usr/bin/env bash
# Installs the OpenTelemetry JavaScript SDK and its OTLP/HTTP exporters (which send
# OTLP JSON) into a cache outside the repo, for tests/e2e/test_otlp_sdk.py.
# The Python SDK has no OTLP/HTTP JSON exporter, so the JS SDK is the real JSON client.
#   scripts/js-sdk.sh          install (idempotent); prints the directory
# The test finds it at ${OTELPIPE_CACHE:-$HOME/.cache/otelpipe}/js-sdk/node_modules.
set -euo pipefail

DIR="${OTELPIPE_CACHE:-$HOME/.cache/otelpipe}/js-sdk"
PACKAGES=(
  @opentelemetry/api@1.9.1
  @opentelemetry/api-logs@0.223.1
  @opentelemetry/resources@2.12.1
  @opentelemetry/sdk-trace-base@2.12.1
  @opentelemetry/sdk-metrics@2.12.1
  @opentelemetry/sdk-logs@0.223.1
  @opentelemetry/exporter-trace-otlp-http@0.223.1
  @opentelemetry/exporter-logs-otlp-http@0.223.1
  @opentelemetry/exporter-metrics-otlp-http@0.223.0
)

command -v node >/dev/null || { echo "js-sdk.sh: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "js-sdk.sh: npm is not installed" >&2; exit 1; }
mkdir -p "$DIR"
cd "$DIR"
stamp="$(printf '%s\n' "${PACKAGES[@]}")"
if [[ -f .installed && "$(cat .installed)" == "$stamp" && -d node_modules ]]; then
  echo "$DIR"
  exit 0
fi
[[ -f package.json ]] || echo '{"name": "otelpipe-js-sdk", "private": true}' > package.json
npm install --no-audit --no-fund --save-exact --loglevel=error "${PACKAGES[@]}" >&2
printf '%s' "$stamp" > .installed
echo "$DIR"
