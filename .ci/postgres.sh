#!/usr/bin/env bash
# A throwaway PostgreSQL for the storage tests: installed from Debian's packages when missing, a cluster in
# a temporary data directory, listening on 127.0.0.1 only, trusted local connections, stopped afterwards.
#   eval "$(.ci/postgres.sh start)"   # prints: export TUNESMITH_TEST_POSTGRES_URL=...; export TUNESMITH_PG_DIR=...
#   .ci/postgres.sh stop "$TUNESMITH_PG_DIR"
set -euo pipefail

bindir() {
    local initdb
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)
    if [[ -z "$initdb" ]]; then
        echo "installing PostgreSQL from Debian's packages" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        initdb=$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)
    fi
    dirname "$initdb"
}

as_postgres() {
    # initdb and postgres refuse to run as root.
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
start)
    bin=$(bindir)
    dir=$(mktemp -d /tmp/tunesmith-pg.XXXXXX)
    [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null
    as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres tunesmith_test
    echo "export TUNESMITH_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/tunesmith_test"
    echo "export TUNESMITH_PG_DIR=$dir"
    ;;
stop)
    dir="${2:?usage: postgres.sh stop DIR}"
    bin=$(bindir)
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
