#!/usr/bin/env bash
# Run a throw-away single-node Apache Kafka (KRaft, broker+controller in one JVM)
# for otelpipe's tests and CI, built only from Maven Central jars: this machine
# (and CI) reach package registries but not the Kafka download mirrors, and we
# do not want a container runtime as a test dependency.
#
# Usage: scripts/kafka.sh start|stop|status|wipe
#
# Environment (all optional):
#   KAFKA_VERSION          kafka_2.13 version to run (default 4.1.1; any 4.x works)
#   OTELPIPE_CACHE         jar cache root (default ~/.cache/otelpipe); jars go to
#                          $OTELPIPE_CACHE/kafka/<version>/libs, never into the repo
#   OTELPIPE_STATE         services state root (default /tmp/otelpipe-services)
#   KAFKA_STATE_DIR        this broker's state dir (default $OTELPIPE_STATE/kafka)
#   KAFKA_PORT             client listener port on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default 9093)
#   KAFKA_PARTITIONS       partitions for auto-created topics (default 4)
#   KAFKA_HEAP_OPTS        broker heap (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to serve metadata (default 90)
#   JAVA_HOME              Java 17+ to use (default: java on PATH)
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
# log4j-slf4j2-impl is pinned to the log4j-core version Kafka itself pulls in,
# so the binding and the core never disagree.
LOG4J_VERSION="${KAFKA_LOG4J_VERSION:-2.24.3}"
# Kafka 4.x still declares slf4j-api 1.7.x, which cannot see an SLF4J 2 binding
# (it looks for StaticLoggerBinder, not ServiceLoader providers) and would
# silently fall back to the no-op logger. Declaring slf4j-api 2.x directly makes
# Maven's nearest-wins pick it; the 2.x API is call-compatible with 1.7 callers.
SLF4J_VERSION="${KAFKA_SLF4J_VERSION:-2.0.17}"
# ${HOME:-...}: CI may run as root with a sparse environment; never trip set -u.
CACHE_ROOT="${OTELPIPE_CACHE:-${HOME:-/tmp}/.cache/otelpipe}"
CACHE_DIR="$CACHE_ROOT/kafka/$KAFKA_VERSION"
LIBS="$CACHE_DIR/libs"
STATE_DIR="${KAFKA_STATE_DIR:-${OTELPIPE_STATE:-/tmp/otelpipe-services}/kafka}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
PARTITIONS="${KAFKA_PARTITIONS:-4}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
BOOTSTRAP="127.0.0.1:$PORT"

DATA_DIR="$STATE_DIR/data"
CONF="$STATE_DIR/server.properties"
LOG4J_CONF="$STATE_DIR/log4j2.properties"
TOOLS_LOG4J_CONF="$STATE_DIR/tools-log4j2.properties"
CLIENT_CONF="$STATE_DIR/client.properties"
PID_FILE="$STATE_DIR/kafka.pid"
BROKER_LOG="$STATE_DIR/server.log"     # written by log4j2
STDOUT_LOG="$STATE_DIR/kafka.out"      # JVM stdout/stderr (crashes before log4j is up)
MARKER="$STATE_DIR/.otelpipe-kafka-state"  # lets `wipe` refuse to delete a foreign dir

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- process helpers -------------------------------------------------------

read_pid() {
    if [[ -s "$PID_FILE" ]]; then tr -dc '0-9' <"$PID_FILE"; fi
}

# True if $1 is a live (non-zombie) process that is our broker. Checking the
# command line guards against pid reuse after a reboot or a crash; the zombie
# check matters because the broker is reparented and, under some supervisors,
# may linger unreaped after it exited.
pid_is_broker() {
    local pid="$1"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    local state
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" && -n "$state" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $CONF"
}

# Cheap TCP probe with bash's /dev/tcp (no nc dependency); bounded by timeout.
port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

is_running() {
    local pid
    pid="$(read_pid)"
    pid_is_broker "$pid" && port_open "$PORT"
}

# Serialise start/stop/wipe so two test runners cannot launch two brokers on
# the same data dir. The lock file lives next to (not inside) the state dir so
# `wipe` can remove the dir while holding it.
take_lock() {
    mkdir -p "$(dirname "$STATE_DIR")"
    exec 9>"$STATE_DIR.lock"
    flock -w 180 9 || die "timed out waiting for lock $STATE_DIR.lock"
}

# --- jar cache -------------------------------------------------------------

ensure_jars() {
    # The .complete marker (written last) means a previous download finished;
    # an interrupted one is simply redone.
    if [[ -f "$CACHE_DIR/.complete" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (needed once to fetch Kafka $KAFKA_VERSION jars)"
    mkdir -p "$CACHE_DIR"
    exec 8>"$CACHE_DIR/.lock"
    flock -w 600 8 || die "timed out waiting for jar cache lock"
    [[ -f "$CACHE_DIR/.complete" ]] && return 0
    log "fetching kafka_2.13:$KAFKA_VERSION + runtime deps into $LIBS (one-time)"
    # kafka-tools provides org.apache.kafka.tools.TopicCommand, used for the
    # readiness probe; it is not a dependency of the broker artifact itself.
    # Its Connect/Jetty/Jersey dependencies (~40 jars, only for connect tools)
    # are excluded so they do not bloat the download or the broker classpath.
    cat >"$CACHE_DIR/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by otelpipe scripts/kafka.sh: resolves a runnable Kafka broker classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>otelpipe.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
        <exclusion><groupId>com.fasterxml.jackson.jakarta.rs</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
    local tmp="$CACHE_DIR/libs.tmp.$$"
    rm -rf "$tmp"
    # Plugin version pinned: Maven 3.8's default maven-dependency-plugin is old.
    if ! mvn -q -B -f "$CACHE_DIR/pom.xml" \
            org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$CACHE_DIR/mvn.log" 2>&1; then
        tail -n 40 "$CACHE_DIR/mvn.log" >&2 || true
        rm -rf "$tmp"
        die "maven could not resolve kafka_2.13:$KAFKA_VERSION (try KAFKA_VERSION=4.0.0 .. 4.4.0)"
    fi
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    touch "$CACHE_DIR/.complete"
    log "cached $(find "$LIBS" -name '*.jar' | wc -l) jars"
}

# --- config ------------------------------------------------------------------

# Rewritten on every start so env changes (ports, partitions) take effect;
# storage formatting is only done once, so data survives restarts.
write_config() {
    mkdir -p "$DATA_DIR"
    touch "$MARKER"
    cat >"$CONF" <<EOF
# Generated by scripts/kafka.sh - single-node KRaft broker for tests. Do not edit.
process.roles=broker,controller
node.id=1
# Static voter set: no --standalone/--initial-controllers needed at format time.
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# Tests create topics implicitly and run on one node.
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=$PARTITIONS
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Internal topics default to 50 partitions each; creating them on first use of
# a consumer group/transaction is slow on a small box and pointless here.
offsets.topic.num.partitions=$PARTITIONS
transaction.state.log.num.partitions=$PARTITIONS
share.coordinator.state.topic.num.partitions=$PARTITIONS
# Consumers in tests should join immediately, not after the 3 s default delay.
group.initial.rebalance.delay.ms=0

# Be gentle on a 2-core machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1

# Keep the state dir from growing without bound across long test sessions.
log.retention.hours=24
log.retention.bytes=1073741824
log.segment.bytes=104857600
EOF

    # Broker log goes to a size-capped file in the state dir.
    cat >"$LOG4J_CONF" <<EOF
# Generated by scripts/kafka.sh
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $BROKER_LOG
appender.file.filePattern = $BROKER_LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Per-request/state-change chatter is noise for test debugging.
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF

    # CLI tools (StorageTool, TopicCommand) must not write into the broker log.
    cat >"$TOOLS_LOG4J_CONF" <<EOF
# Generated by scripts/kafka.sh
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF

    # Fail the readiness probe fast instead of the AdminClient's 60 s default.
    cat >"$CLIENT_CONF" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=8000
EOF
}

# Run a Kafka CLI class on the cached classpath with a small, fast-starting JVM.
run_tool() {
    "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONF" \
        -cp "$LIBS/*" "$@"
}

format_storage() {
    if [[ -f "$DATA_DIR/meta.properties" ]]; then
        return 0
    fi
    local cluster_id
    cluster_id="$(run_tool kafka.tools.StorageTool random-uuid | tail -n 1)"
    [[ -n "$cluster_id" ]] || die "StorageTool random-uuid returned nothing"
    log "formatting storage in $DATA_DIR (cluster id $cluster_id)"
    run_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" --ignore-formatted >/dev/null
}

broker_serves_metadata() {
    timeout 30 "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONF" -cp "$LIBS/*" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
        --command-config "$CLIENT_CONF" --list >/dev/null 2>&1
}

show_logs() {
    log "---- tail of $BROKER_LOG ----"
    tail -n 60 "$BROKER_LOG" >&2 2>/dev/null || true
    log "---- tail of $STDOUT_LOG ----"
    tail -n 30 "$STDOUT_LOG" >&2 2>/dev/null || true
}

# Poll until the broker answers a metadata (ListTopics) request, it dies, or
# the timeout passes. Port-open is checked first because it costs no JVM.
wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! pid_is_broker "$pid"; then
            show_logs
            die "broker process $pid exited during startup"
        fi
        if port_open "$PORT" && broker_serves_metadata; then
            return 0
        fi
        sleep 1
    done
    show_logs
    # Don't leave a half-started JVM eating memory behind a failed CI step.
    stop_broker
    die "broker did not serve metadata on $BOOTSTRAP within ${START_TIMEOUT}s"
}

# --- subcommands -------------------------------------------------------------

cmd_start() {
    command -v "$JAVA" >/dev/null || die "java not found (need Java 17+)"
    take_lock
    local pid t0=$SECONDS
    pid="$(read_pid)"
    if pid_is_broker "$pid"; then
        if port_open "$PORT"; then
            log "already running (pid $pid) on $BOOTSTRAP"
            return 0
        fi
        # Alive but not listening yet: another start is still in progress.
        log "broker pid $pid is starting; waiting for it"
        wait_ready "$pid"
        log "ready on $BOOTSTRAP (pid $pid)"
        return 0
    fi
    rm -f "$PID_FILE"
    # Someone else on our ports would make the broker die with a bind error
    # that is easy to misread; say so up front.
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            die "port $p on 127.0.0.1 is already in use by another process"
        fi
    done

    ensure_jars
    write_config
    format_storage

    log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (state: $STATE_DIR)"
    # setsid + nohup: detach from the caller's session/process group so the
    # broker outlives the shell (and a Ctrl-C in it). The inner bash records
    # its own pid and then execs java, so the pid file holds the JVM's pid even
    # if setsid had to fork.
    # Lock fds 8/9 are closed for the child, or the long-lived broker would
    # hold the start/stop lock forever.
    # shellcheck disable=SC2086,SC2016  # HEAP_OPTS is meant to split; $$ is for the inner bash
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dkafka.logs.dir="$STATE_DIR" \
        -Dlog4j2.configurationFile="$LOG4J_CONF" \
        -cp "$LIBS/*" kafka.Kafka "$CONF" \
        >"$STDOUT_LOG" 2>&1 </dev/null 8>&- 9>&- &
    local _
    for _ in $(seq 50); do
        pid="$(read_pid)"
        [[ -n "$pid" ]] && break
        sleep 0.1
    done
    [[ -n "$pid" ]] || die "broker launcher did not record a pid"
    wait_ready "$pid"
    log "ready on $BOOTSTRAP (pid $pid, $((SECONDS - t0))s)"
}

stop_broker() {
    local pid
    pid="$(read_pid)"
    if ! pid_is_broker "$pid"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while pid_is_broker "$pid" && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if pid_is_broker "$pid"; then
        log "broker ignored SIGTERM for 30s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_stop() {
    take_lock
    stop_broker
}

cmd_status() {
    local pid
    pid="$(read_pid)"
    if is_running; then
        echo "kafka running (pid $pid) on $BOOTSTRAP"
        return 0
    fi
    if pid_is_broker "$pid"; then
        echo "kafka process $pid alive but $BOOTSTRAP not answering"
    else
        echo "kafka not running"
    fi
    return 1
}

cmd_wipe() {
    take_lock
    stop_broker
    [[ -e "$STATE_DIR" ]] || { log "nothing to wipe"; return 0; }
    # Only delete a dir this script created (guards against a mistyped
    # KAFKA_STATE_DIR such as $HOME).
    case "$STATE_DIR" in
        "" | "/" | "${HOME:-/}" | "${HOME:-}/") die "refusing to wipe '$STATE_DIR'" ;;
    esac
    if [[ ! -f "$MARKER" ]] && [[ -n "$(ls -A "$STATE_DIR" 2>/dev/null)" ]]; then
        die "refusing to wipe $STATE_DIR: not created by scripts/kafka.sh"
    fi
    rm -rf "$STATE_DIR"
    log "wiped $STATE_DIR (jar cache $CACHE_DIR kept)"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    wipe) cmd_wipe ;;
    *)
        echo "usage: $0 start|stop|status|wipe" >&2
        exit 2
        ;;
esac
