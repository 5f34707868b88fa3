#!/usr/bin/env bash
# Start a throw-away Redis server for the `redis`-marked tests and print its URL.
#
#   url=$(bash .ci/redis.sh start DIR)   # installs Debian's redis-server when none is on the machine
#   bash .ci/redis.sh stop DIR
#
# The server binds 127.0.0.1 on a free port, keeps nothing on disk (no RDB snapshots, no AOF) and
# has its pidfile, log and working directory in DIR; `stop` shuts it down and removes DIR. Redis
# runs as root without complaint, so CI needs no extra user.
set -euo pipefail
cmd=${1:?usage: redis.sh start|stop DIR}
dir=${2:?usage: redis.sh start|stop DIR}

# PING the server on port $1: redis-cli when installed, else a raw RESP PING over a socket.
redis_ping() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
    else
        python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
    sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
EOF
    fi
}

case "$cmd" in
start)
    if ! command -v redis-server >/dev/null 2>&1; then
        t0=$(date +%s)
        echo "redis: installing Debian's redis-server (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends redis-server >&2
        echo "redis: installed in $(( $(date +%s) - t0 ))s" >&2
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)  # redis-server resolves relative paths after its chdir into `dir`
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "$port" >"$dir/port"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >&2 \
        || { cat "$dir/redis.log" >&2 2>/dev/null; exit 1; }
    for _ in $(seq 1 300); do  # up to 30 s
        if redis_ping "$port"; then
            echo "redis://127.0.0.1:$port/0"
            exit 0
        fi
        sleep 0.1
    done
    echo "redis: no PONG on 127.0.0.1:$port after 30 s" >&2
    cat "$dir/redis.log" >&2 2>/dev/null || true
    exit 1
    ;;
stop)
    if [ -f "$dir/port" ] && command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/redis.pid" ]; then
        pid=$(cat "$dir/redis.pid")
        kill "$pid" 2>/dev/null || true  # SIGTERM: Redis shuts down (nothing to save)
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: redis.sh start|stop DIR" >&2
    exit 2
    ;;
esac
