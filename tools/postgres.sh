#!/usr/bin/env bash
# Start or stop a throwaway local PostgreSQL server (for the multi-worker sweep tests).
#
#   tools/postgres.sh start        -> prints "dir=DIR" and "url=postgresql://postgres@127.0.0.1:PORT/postgres"
#   tools/postgres.sh stop DIR     -> stops that server and deletes DIR
#
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
# user (runuser) in a fresh folder under /tmp owned by it. Trust auth, 127.0.0.1
# only, a free port, fsync off: for tests, never for data you care about.
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
  echo "postgres.sh: PostgreSQL not found under /usr/lib/postgresql/*/bin; run 'make system-deps'" >&2
  exit 1
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    dir=$(mktemp -d /tmp/dropkit-pg.XXXXXX)
    chmod 700 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2; exit 1; }
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "dir=$dir"
    echo "url=postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    dir=${2:?usage: postgres.sh stop DIR}
    case "$dir" in /tmp/dropkit-pg.*) ;; *) echo "postgres.sh: refusing to remove $dir" >&2; exit 1;; esac
    if [ -d "$dir/data" ]; then
      as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
