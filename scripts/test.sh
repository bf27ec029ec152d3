#!/usr/bin/env bash
# The one test command (README, .ci/run): installs otelpipe with its test needs,
# starts every real service the tests talk to, runs lint, types and the suite,
# and stops the services again. Extra arguments go to pytest.
#
# Downloads and builds are cached outside the repository (~/.cache/otelpipe, the
# Maven and Go caches, Debian's package cache), so a warm run starts in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${OTELPIPE_STATE:-/tmp/otelpipe-services}"
mkdir -p "$STATE/logs"

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Debian packages of the real services, installed in one apt run (parallel apt runs
# would fight over the dpkg lock); each service script skips its install when present.
# podman, debootstrap, runc, uidmap and catatonit: the container tests (tests/container,
# scripts/container.sh) build the image and run it and the sidecar pod with rootful podman.
DEBS=(prometheus postgresql-15 prometheus-alertmanager chromium openssl
      podman debootstrap runc uidmap catatonit)
missing=()
for pkg in "${DEBS[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Real services used by tests/integration and tests/e2e (scripts/<name>.sh start|stop),
# started in parallel: Go builds and jar downloads overlap on a cold machine.
SERVICES=(${OTELPIPE_TEST_SERVICES:-kafka prometheus jaeger postgres alertmanager victorialogs})
stop_services() {
  for s in "${SERVICES[@]}"; do scripts/"$s".sh stop >/dev/null 2>&1 || true; done
  # Containers and pods the container tests left behind; IPv4 forwarding as it was.
  scripts/container.sh clean >/dev/null 2>&1 || true
}
trap stop_services EXIT
pids=()
for s in "${SERVICES[@]}"; do
  scripts/"$s".sh start >"$STATE/logs/$s.start.log" 2>&1 &
  pids+=($!)
done
# The real instrumented apps of tests/integration/test_real_apps.py (Python venv, npm,
# Java agent, Go build; cached outside the repo), built alongside the services. A failed
# build is shown here and fails those tests (they build again and report why).
scripts/apps.sh build >"$STATE/logs/apps.log" 2>&1 &
apps_pid=$!
# The container image (base image made with debootstrap, then the Dockerfile; cached in
# podman's storage under ~/.cache/otelpipe/podman) and helm v4 (a Go build, cached),
# for tests/container; a failure is shown here and fails those tests (they build again
# and report why).
scripts/container.sh build >"$STATE/logs/container.log" 2>&1 &
container_pid=$!
scripts/helm.sh build >"$STATE/logs/helm.log" 2>&1 &
helm_pid=$!
# The JavaScript SDK is the real OTLP/HTTP JSON client of tests/e2e (cached outside the repo).
scripts/js-sdk.sh >"$STATE/logs/js-sdk.log" 2>&1 || { cat "$STATE/logs/js-sdk.log"; exit 1; }
failed=0
for i in "${!SERVICES[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "test.sh: ${SERVICES[$i]} failed to start:" >&2
    tail -n 40 "$STATE/logs/${SERVICES[$i]}.start.log" >&2
    failed=1
  fi
done
((failed == 0)) || exit 1
wait "$apps_pid" || { echo "test.sh: scripts/apps.sh build failed:" >&2; tail -n 40 "$STATE/logs/apps.log" >&2; }
wait "$container_pid" || { echo "test.sh: scripts/container.sh build failed:" >&2; tail -n 40 "$STATE/logs/container.log" >&2; }
wait "$helm_pid" || { echo "test.sh: scripts/helm.sh build failed:" >&2; tail -n 40 "$STATE/logs/helm.log" >&2; }
# The Go real app in an image, for the sidecar pod test (after the apps' Go build).
scripts/container.sh app-image >>"$STATE/logs/container.log" 2>&1 \
  || { echo "test.sh: scripts/container.sh app-image failed:" >&2; tail -n 40 "$STATE/logs/container.log" >&2; }
grep -h 'container.sh: built' "$STATE/logs/container.log" >&2 || true

python3 -m ruff check pipeline tests benchmarks
python3 -m mypy pipeline tests
lint-imports
python3 -m pytest -q -p no:cacheprovider "$@"
