#!/usr/bin/env bash
# Builds switchboard and starts the local stack in the foreground (Ctrl-C stops it):
# a Postgres cluster kept in .local/pg (schema, demo data and the demo knowledge base
# loaded), and switchboard.
# On first run it writes .env from env.example with a fresh inbound API key.
# The two commands, switchboard and switchboard-ingest, are linked into .local/bin
# (export PATH="$PWD/.local/bin:$PATH" puts them on the PATH, as the README uses them).
#   deploy/local.sh           the whole local stack
#   deploy/local.sh db        the local Postgres alone, loaded and left running
#   deploy/local.sh db-stop   stops it
# SWITCHBOARD_BUILD_DIR names the meson build directory to build and run (default: build,
# set up in release mode when it does not exist yet).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = db-stop ]; then # before anything is built or started
  tests/pg/cluster.sh stop "$PWD/.local/pg"
  exit 0
fi

deploy/install-deps.sh
build=${SWITCHBOARD_BUILD_DIR:-build}
[ -d "$build" ] || meson setup "$build" --buildtype=release >/dev/null
ninja -C "$build" src/switchboard rag/switchboard-ingest >/dev/null
build=$(cd "$build" && pwd)
# Links, not copies: what a rebuild makes is what runs. `meson install -C build` is the system install.
mkdir -p .local/bin
ln -sfn "$build/src/switchboard" .local/bin/switchboard
ln -sfn "$build/rag/switchboard-ingest" .local/bin/switchboard-ingest
path_line="export PATH=\"$PWD/.local/bin:\$PATH\""

if [ ! -f .env ]; then
  key="sb-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  sed "s|^# SWITCHBOARD_API_KEYS=.*|SWITCHBOARD_API_KEYS=$key|" env.example > .env
  chmod 600 .env
  echo "wrote .env with a new inbound API key (SWITCHBOARD_API_KEYS)"
fi
setting() { sed -n "s/^$1=//p" .env | tail -1; }

# The local database (kept in .local/pg, on the same port every run), unless DATABASE_URL
# names another one. Its URL is written into .env, so `switchboard migrate` and
# switchboard-ingest run by hand find it too.
local_url() { [ -f .local/pg/port ] && echo "postgresql://postgres@127.0.0.1:$(cat .local/pg/port)/switchboard"; }
local_running() {
  [ -f .local/pg/port ] && "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_isready" -q -h 127.0.0.1 -p "$(cat .local/pg/port)"
}
db_url=${DATABASE_URL:-$(setting DATABASE_URL)}
started=0
if [ -z "$db_url" ] || [ "$db_url" = "$(local_url || true)" ]; then
  mkdir -p .local
  if local_running; then
    url=$(local_url)
  else
    url=$(tests/pg/cluster.sh start "$PWD/.local/pg" | sed -n 's/^DATABASE_URL=//p')
    started=1
  fi
  if [ -z "$(setting DATABASE_URL)" ]; then
    if grep -q '^# DATABASE_URL=' .env; then
      sed -i "s|^# DATABASE_URL=.*|DATABASE_URL=$url|" .env
    else
      printf '\n# the local database (deploy/local.sh)\nDATABASE_URL=%s\n' "$url" >>.env
    fi
    echo "wrote DATABASE_URL=$url into .env"
  fi
  export DATABASE_URL="$url"
fi

if [ "${1:-}" = db ]; then # the database alone: ready, loaded, and left running
  "$build/src/switchboard" migrate --seed
  "$build/rag/switchboard-ingest" --sync rag/knowledge
  echo "Postgres is running at $DATABASE_URL (stop it with: deploy/local.sh db-stop)"
  echo "switchboard and switchboard-ingest are in .local/bin; to run them by hand: $path_line"
  exit 0
fi
[ $started -eq 1 ] && trap 'tests/pg/cluster.sh stop "$PWD/.local/pg"' EXIT
"$build/src/switchboard" migrate --seed
"$build/rag/switchboard-ingest" --sync rag/knowledge

# What the server will use: a variable already set wins over .env, as in switchboard itself.
port=${PORT:-$(setting PORT)}; port=${port:-3000}
key=${SWITCHBOARD_API_KEYS:-$(setting SWITCHBOARD_API_KEYS)}; key=${key%%,*}
cat <<TEXT
switchboard is starting on http://localhost:$port — try:
  curl -N http://localhost:$port/v1/chat/completions \\
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \\
    -d '{"stream":true,"messages":[{"role":"user","content":"Where is my order 4417?"}]}'
  (or ask "how long do refunds take?")
switchboard and switchboard-ingest are in .local/bin; to run them by hand: $path_line
TEXT
"$build/src/switchboard"
