#!/usr/bin/env bash
# The one test command (README, .ci/run): installs otelpipe with its test needs,
# starts every real service the tests talk to, runs lint, types and the suite,
# and stops the services again. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
# The JavaScript SDK is the real OTLP/HTTP JSON client of tests/e2e (cached outside the repo).
scripts/js-sdk.sh >/dev/null

# Real services used by tests/integration and tests/e2e (scripts/<name>.sh start|stop).
SERVICES=(${OTELPIPE_TEST_SERVICES:-kafka})
stop_services() {
  for s in "${SERVICES[@]}"; do scripts/"$s".sh stop || true; done
}
trap stop_services EXIT
for s in "${SERVICES[@]}"; do scripts/"$s".sh start; done

python3 -m ruff check pipeline tests benchmarks
python3 -m mypy pipeline
python3 -m pytest -q -p no:cacheprovider "$@"
