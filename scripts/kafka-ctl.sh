#!/usr/bin/env bash
# Control the local single-node Kafka 4.1 (KRaft, broker+controller in one JVM).
#
#   scripts/kafka-ctl.sh start    # fetch jars if needed, format if needed, start, wait ready
#   scripts/kafka-ctl.sh stop     # SIGTERM (SIGKILL as last resort); keeps the data
#   scripts/kafka-ctl.sh restart  # stop + start, data kept (used by the reliability tests)
#   scripts/kafka-ctl.sh wipe     # delete the data dir (only when stopped)
#   scripts/kafka-ctl.sh status   # exit 0 if it answers
#
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT + 1), KAFKA_READY_TIMEOUT_S (90),
#      KAFKA_HEAP_OPTS ("-Xmx512m -Xms256m").
# State: .local/kafka/{lib,data,server.properties,kafka.pid,kafka.log}; with a non-default
# KAFKA_PORT the per-instance files go to .local/kafka-$KAFKA_PORT (lib stays shared).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_LIB="$LOCAL_DIR/kafka/lib"
if [[ "$KAFKA_PORT" == 9092 ]]; then
    KAFKA_DIR="$LOCAL_DIR/kafka"
else
    KAFKA_DIR="$LOCAL_DIR/kafka-$KAFKA_PORT"
fi
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_CONF="$KAFKA_DIR/server.properties"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
READY_TIMEOUT_S="${KAFKA_READY_TIMEOUT_S:-90}"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

require_java() {
    local missing=()
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    if ((${#missing[@]})); then
        log "ERROR: Kafka needs Java 17+ and Maven (to fetch the broker jars)."
        log "install with: apt-get install -y openjdk-17-jre-headless maven"
        exit 1
    fi
}

fetch_jars() {
    if compgen -G "$KAFKA_LIB/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    log "fetching Kafka jars into $KAFKA_LIB (cached in ~/.m2 after the first time)"
    local tmp="$KAFKA_LIB.tmp.$$"
    rm -rf "$tmp"
    mvn -B -q -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
}

write_config() {
    mkdir -p "$KAFKA_DIR"
    cat >"$KAFKA_CONF" <<CONF
# Written by scripts/kafka-ctl.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
# A static voter set stores no endpoint in the data dir, so a changed port needs no wipe.
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
CONF
}

java_opts() {
    echo "${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}" \
        -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$ROOT/scripts/kafka/log4j2.properties"
}

format_storage() {
    [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
    local cluster_id
    cluster_id="$(java -cp "$KAFKA_LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    log "formatting $KAFKA_DATA (cluster id $cluster_id)"
    mkdir -p "$KAFKA_DATA"
    # shellcheck disable=SC2046
    java $(java_opts) -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$KAFKA_CONF" >>"$KAFKA_LOG" 2>&1 \
        || die "kafka storage format failed; see $KAFKA_LOG"
}

is_ready() { "$(python_bin)" "$ROOT/scripts/wait_kafka.py" --bootstrap "$BOOTSTRAP" "$@"; }

cmd_start() {
    if pid_alive "$KAFKA_PID" && is_ready --quick --timeout-s 3 2>/dev/null; then
        log "kafka already running on $BOOTSTRAP (pid $(cat "$KAFKA_PID"))"
        return 0
    fi
    if ! pid_alive "$KAFKA_PID"; then
        rm -f "$KAFKA_PID"
        if port_open "$KAFKA_PORT"; then
            # Not ours (no live pid file): use it if it is a working broker, else refuse.
            is_ready --quick --timeout-s 3 2>/dev/null \
                || die "port $KAFKA_PORT is taken by something that is not a Kafka broker"
            log "a Kafka broker not started by this script already answers on $BOOTSTRAP"
            return 0
        fi
        port_open "$KAFKA_CONTROLLER_PORT" \
            && die "controller port $KAFKA_CONTROLLER_PORT is taken; set KAFKA_CONTROLLER_PORT"
        require_java
        fetch_jars
        write_config
        format_storage
        log "starting kafka on $BOOTSTRAP; log: $KAFKA_LOG"
        # shellcheck disable=SC2046
        nohup setsid java $(java_opts) -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONF" \
            >>"$KAFKA_LOG" 2>&1 </dev/null &
        echo $! >"$KAFKA_PID"
    else
        log "kafka process $(cat "$KAFKA_PID") is up but not answering yet; waiting"
    fi
    local start_s=$SECONDS
    if ! is_ready --timeout-s "$READY_TIMEOUT_S"; then
        if ! pid_alive "$KAFKA_PID"; then
            log "kafka exited during start-up; last lines of $KAFKA_LOG:"
            tail -n 30 "$KAFKA_LOG" >&2 || true
        fi
        die "kafka not ready after ${READY_TIMEOUT_S}s; see $KAFKA_LOG"
    fi
    log "kafka ready on $BOOTSTRAP after $((SECONDS - start_s))s (pid $(cat "$KAFKA_PID"))"
}

cmd_stop() {
    # A combined broker+controller shuts down cleanly in a few seconds; 60s is generous.
    stop_pidfile kafka "$KAFKA_PID" 60
    wait_port_closed "$KAFKA_PORT" 10 || log "warning: port $KAFKA_PORT still open"
}

cmd_wipe() {
    pid_alive "$KAFKA_PID" && die "kafka is running; stop it before wiping"
    rm -rf "$KAFKA_DATA"
    log "wiped $KAFKA_DATA"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    wipe) cmd_wipe ;;
    status) is_ready --quick --timeout-s 3 ;;
    *) echo "usage: $0 start|stop|restart|wipe|status" >&2; exit 2 ;;
esac
