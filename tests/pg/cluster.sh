#!/usr/bin/env bash
# A throwaway Postgres cluster for tests: initdb in a temp dir, started on a
# free loopback port as the postgres user (Postgres refuses to run as root).
#   tests/pg/cluster.sh start DIR   prints DATABASE_URL=... once it accepts connections
#   tests/pg/cluster.sh stop DIR
#   tests/pg/cluster.sh restart DIR (same port; for tests of an outage)
set -euo pipefail
cmd=${1:?start|stop|restart}
dir=${2:?data directory}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {
  local port=$1 deadline=$((SECONDS + 30))
  until as_pg "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; do
    [ $SECONDS -lt $deadline ] || { echo "postgres did not start" >&2; tail -20 "$dir/log" >&2; exit 1; }
    sleep 0.05
  done
}

case $cmd in
start)
  if [ -d "$dir/data" ]; then # an existing cluster (the local stack keeps its data): start it on its port
    port=$(cat "$dir/port")
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null
    wait_ready "$port"
    echo "DATABASE_URL=postgresql://postgres@127.0.0.1:$port/switchboard"
    exit 0
  fi
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chmod o+x "$(dirname "$dir")"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
  port=$(free_port)
  echo "$port" > "$dir/port"
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null
  wait_ready "$port"
  as_pg "$bindir/psql" -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE switchboard" >/dev/null
  echo "DATABASE_URL=postgresql://postgres@127.0.0.1:$port/switchboard"
  ;;
stop)
  [ -d "$dir/data" ] && as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  ;;
restart)
  port=$(cat "$dir/port")
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null
  wait_ready "$port"
  ;;
*) echo "usage: $0 start|stop|restart DIR" >&2; exit 2 ;;
esac
