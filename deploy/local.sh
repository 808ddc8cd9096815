#!/usr/bin/env bash
# Builds switchboard and starts the local stack in the foreground (Ctrl-C stops it):
# a Postgres cluster kept in .local/pg (schema, demo data and the demo knowledge base
# loaded), and switchboard.
# On first run it writes .env from env.example with a fresh inbound API key.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build src/switchboard rag/switchboard-ingest >/dev/null

if [ ! -f .env ]; then
  key="sb-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  sed "s|^# SWITCHBOARD_API_KEYS=.*|SWITCHBOARD_API_KEYS=$key|" env.example > .env
  chmod 600 .env
  echo "wrote .env with a new inbound API key (SWITCHBOARD_API_KEYS)"
fi
setting() { sed -n "s/^$1=//p" .env | tail -1; }

# The local database, unless .env points at another one.
if [ -z "$(setting DATABASE_URL)" ]; then
  mkdir -p .local
  url=$(tests/pg/cluster.sh start "$PWD/.local/pg" | sed -n 's/^DATABASE_URL=//p')
  trap 'tests/pg/cluster.sh stop "$PWD/.local/pg"' EXIT
  export DATABASE_URL="$url"
fi
build/src/switchboard migrate --seed
build/rag/switchboard-ingest --sync rag/knowledge

port=$(setting PORT); port=${port:-3000}
key=$(setting SWITCHBOARD_API_KEYS); key=${key%%,*}
cat <<TEXT
switchboard is starting on http://localhost:$port — try:
  curl -N http://localhost:$port/v1/chat/completions \\
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \\
    -d '{"stream":true,"messages":[{"role":"user","content":"Where is my order 4417?"}]}'
  (or ask "how long do refunds take?")
TEXT
build/src/switchboard
