#!/usr/bin/env bash
# Builds switchboard and starts the local stack in the foreground (Ctrl-C stops it).
# On first run it writes .env from env.example with a fresh inbound API key.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
ninja -C build src/switchboard >/dev/null

if [ ! -f .env ]; then
  key="sb-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  sed "s|^# SWITCHBOARD_API_KEYS=.*|SWITCHBOARD_API_KEYS=$key|" env.example > .env
  chmod 600 .env
  echo "wrote .env with a new inbound API key (SWITCHBOARD_API_KEYS)"
fi
set -a
. ./.env
set +a
port="${PORT:-3000}"
first_key="${SWITCHBOARD_API_KEYS%%,*}"
cat <<TEXT
switchboard is starting on http://localhost:$port — try:
  curl -N http://localhost:$port/v1/chat/completions \\
    -H "Authorization: Bearer $first_key" -H 'Content-Type: application/json' \\
    -d '{"stream":true,"messages":[{"role":"user","content":"Hello!"}]}'
TEXT
exec build/src/switchboard
