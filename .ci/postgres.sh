#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the `postgres`-marked tests and print its SQLAlchemy URL.
#
#   url=$(bash .ci/postgres.sh start DIR)   # installs Debian's postgresql-15 when no server is on the machine
#   bash .ci/postgres.sh stop DIR
#
# The cluster lives in DIR (trust auth, loopback only, a free port); `stop` removes it. As root
# (CI), the server runs as the `postgres` user that the Debian package creates (initdb refuses root).
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
    if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
        t0=$(date +%s)
        echo "postgres: installing Debian's postgresql-15 (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends postgresql-15 >&2
        echo "postgres: installed in $(( $(date +%s) - t0 ))s" >&2
    fi
    bin=$(pg_bin)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$bin/initdb" -D "$dir/data" -U kgnlp -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # fsync off: the tests kill clients, never this server, and a CI database is thrown away.
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql+psycopg://kgnlp@127.0.0.1:$port/postgres"
    ;;
stop)
    bin=$(pg_bin)
    if [ -d "$dir/data" ]; then as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true; fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: postgres.sh start|stop DIR" >&2
    exit 2
    ;;
esac
