#!/usr/bin/env bash
# Control the local Redis used as the control-center queue. No periodic snapshots, but
# `stop` saves the dataset (SHUTDOWN SAVE) and `start` loads it again, so a restart keeps
# the queue, as a production Redis with persistence would. `wipe` deletes the dump.
#
#   scripts/redis-ctl.sh start    # start (installing redis-server when root), wait for PONG
#   scripts/redis-ctl.sh stop     # SHUTDOWN SAVE; SIGTERM, then SIGKILL, as fallbacks
#   scripts/redis-ctl.sh restart  # stop + start, data kept
#   scripts/redis-ctl.sh wipe     # delete the saved dump (only when stopped)
#   scripts/redis-ctl.sh status   # exit 0 if it answers PING
#
# Env: REDIS_PORT (6379), REDIS_READY_TIMEOUT_S (30).
# State: .local/redis/{redis.pid,redis.log,dump.rdb}, or .local/redis-$REDIS_PORT for another port.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "$REDIS_PORT" == 6379 ]]; then
    REDIS_DIR="$LOCAL_DIR/redis"
else
    REDIS_DIR="$LOCAL_DIR/redis-$REDIS_PORT"
fi
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
READY_TIMEOUT_S="${REDIS_READY_TIMEOUT_S:-30}"

is_ready() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

cmd_start() {
    command -v redis-server >/dev/null || apt_install redis-server
    if is_ready; then
        log "redis already answering on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    if ! pid_alive "$REDIS_PID"; then
        rm -f "$REDIS_PID"
        port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by something that is not Redis"
        mkdir -p "$REDIS_DIR"
        log "starting redis on 127.0.0.1:$REDIS_PORT; log: $REDIS_LOG"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
            --daemonize yes --dir "$REDIS_DIR" --pidfile "$REDIS_PID" --logfile "$REDIS_LOG"
    fi
    local i
    for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
        if is_ready; then
            log "redis ready on 127.0.0.1:$REDIS_PORT"
            return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$REDIS_LOG" >&2 || true
    die "redis not answering after ${READY_TIMEOUT_S}s; see $REDIS_LOG"
}

cmd_stop() {
    if pid_alive "$REDIS_PID" && is_ready; then
        log "redis: SHUTDOWN SAVE"
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown save >/dev/null 2>&1 || true
        wait_pid_gone "$REDIS_PID" 20 && log "redis: stopped"
    fi
    # Fallback for a hung Redis; with --save '' a SIGTERM'd Redis exits at once.
    stop_pidfile redis "$REDIS_PID" 10
    wait_port_closed "$REDIS_PORT" 5 || log "warning: port $REDIS_PORT still open"
}

cmd_wipe() {
    pid_alive "$REDIS_PID" && die "redis is running; stop it before wiping"
    rm -f "$REDIS_DIR/dump.rdb"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    wipe) cmd_wipe ;;
    status) is_ready ;;
    *) echo "usage: $0 start|stop|restart|wipe|status" >&2; exit 2 ;;
esac
