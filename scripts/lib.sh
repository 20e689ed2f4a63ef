# Shared helpers for the local-infra scripts. Source it; don't run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="${CITYBRAIN_LOCAL_DIR:-$ROOT/.local}"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
REDIS_PORT="${REDIS_PORT:-6379}"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Python used by the probes: the active venv, else the repo's .venv, else the system one.
python_bin() {
    if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
        echo "$VIRTUAL_ENV/bin/python"
    elif [[ -x "$ROOT/.venv/bin/python" ]]; then
        echo "$ROOT/.venv/bin/python"
    else
        command -v python3
    fi
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE: true if the file names a running process.
pid_alive() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# stop_pidfile NAME PIDFILE TIMEOUT_S: SIGTERM, wait up to TIMEOUT_S, then SIGKILL.
stop_pidfile() {
    local name="$1" pidfile="$2" timeout_s="$3" pid i
    if ! pid_alive "$pidfile"; then
        [[ -e "$pidfile" ]] && log "$name: removing stale pid file $pidfile"
        rm -f "$pidfile"
        return 0
    fi
    pid="$(cat "$pidfile")"
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout_s * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: still running after ${timeout_s}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    log "$name: stopped"
}

# wait_pid_gone PIDFILE TIMEOUT_S: true once the process named in PIDFILE has exited.
wait_pid_gone() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        pid_alive "$1" || return 0
        sleep 0.2
    done
    return 1
}

# wait_port_closed PORT TIMEOUT_S: the OS can lag a moment behind the process exit.
wait_port_closed() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        port_open "$1" || return 0
        sleep 0.2
    done
    return 1
}

# apt_install PKG...: install when we are root, otherwise say how and fail.
apt_install() {
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing $* with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
            || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -q --no-install-recommends "$@"; }
    else
        die "missing $*; install with: sudo apt-get install -y $*"
    fi
}
