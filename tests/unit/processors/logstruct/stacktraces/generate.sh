#!/bin/sh
# Regenerates the stack-trace fixtures with the real runtimes (python3, java 17, go, node).
# The captured text is committed; run this only to refresh it:
#   sh tests/unit/processors/logstruct/stacktraces/generate.sh
set -u
cd "$(dirname "$0")"
python3 shop.py > python_logging.log 2>&1
python3 shop.py uncaught > python_uncaught.txt 2>&1
python3 shop.py group > python_group.log 2>&1
java Shop.java > java_app.log 2>&1
java Shop.java uncaught > java_uncaught.txt 2>&1
go run panic.go index > go_panic.txt 2>&1
go run panic.go error > go_panic_error.txt 2>&1
node server.js > node_logged.txt 2>&1
node server.js uncaught > node_uncaught.txt 2>&1
# Paths of this machine's checkout in the traces are kept as they are (real text).
exit 0
