#!/usr/bin/env bash
# Builds switchboard and starts the local stack in the foreground (Ctrl-C stops it):
# a Postgres cluster kept in .local/pg (schema, demo data and the demo knowledge base
# loaded), and switchboard.
# On first run it writes .env from env.example with a fresh inbound API key.
# The two commands, switchboard and switchboard-ingest, are linked into .local/bin
# (export PATH="$PWD/.local/bin:$PATH" puts them on the PATH, as the README uses them).
# Once switchboard answers, it prints a link to the browser console (CONSOLE, on in the .env it
# writes) with a session token in the link's fragment.
#   deploy/local.sh           the whole local stack
#   deploy/local.sh db        the local Postgres alone, loaded and left running
#   deploy/local.sh db-stop   stops it
#   deploy/local.sh console [SESSION_ID]
#                             a new console link for the running stack (with an id: the same conversation)
# SWITCHBOARD_BUILD_DIR names the meson build directory to build and run (default: build,
# set up in release mode when it does not exist yet).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the server will use: a variable already set wins over .env, as in switchboard itself.
setting() { [ ! -f .env ] || sed -n "s/^$1=//p" .env | tail -1; }
port_of() { local p=${PORT:-$(setting PORT)}; echo "${p:-3000}"; }
key_of() { local k=${SWITCHBOARD_API_KEYS:-$(setting SWITCHBOARD_API_KEYS)}; echo "${k%%,*}"; }
console_of() { local c=${CONSOLE:-$(setting CONSOLE)}; echo "${c:-true}"; } # .env files older than the console: on

# A console link: a session minted by the switchboard on port $1 with key $2 (for session $3, when
# given). The token rides in the fragment (#...), which a browser never sends to a server or logs.
console_link() {
  local body='{}' answer id token
  [ -n "${3:-}" ] && body="{\"id\":\"$3\"}"
  answer=$(curl -sf -X POST "http://127.0.0.1:$1/v1/sessions" -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' -d "$body") || return 1
  id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$answer")
  token=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' <<<"$answer")
  [ -n "$id" ] && [ -n "$token" ] || return 1
  echo "http://localhost:$1/console#token=$token&session=$id"
}

case "${1:-}" in # before anything is built or started
db-stop)
  tests/pg/cluster.sh stop "$PWD/.local/pg"
  exit 0
  ;;
console)
  [[ "${2:-}" =~ ^[A-Za-z0-9_-]{0,64}$ ]] || { echo "usage: deploy/local.sh console [SESSION_ID]" >&2; exit 2; }
  [ "$(console_of)" = true ] || { echo "the console is off (CONSOLE=$(console_of)); CONSOLE=true in .env turns it on" >&2; exit 1; }
  port=${PORT:-$(cat .local/port 2>/dev/null || port_of)} # the port the running stack serves
  if ! console_link "$port" "$(key_of)" "${2:-}"; then
    echo "no switchboard answered on port $port with the key in .env: start the stack with deploy/local.sh" >&2
    exit 1
  fi
  exit 0
  ;;
esac

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
  sed -e "s|^# SWITCHBOARD_API_KEYS=.*|SWITCHBOARD_API_KEYS=$key|" -e 's|^CONSOLE=false$|CONSOLE=true|' env.example > .env
  chmod 600 .env
  echo "wrote .env with a new inbound API key (SWITCHBOARD_API_KEYS) and the browser console on (CONSOLE=true)"
fi

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
helper=""
stop_all() {
  [ -z "$helper" ] || kill "$helper" 2>/dev/null || true
  rm -f .local/port
  [ $started -eq 0 ] || tests/pg/cluster.sh stop "$PWD/.local/pg"
}
trap stop_all EXIT
"$build/src/switchboard" migrate --seed
"$build/rag/switchboard-ingest" --sync rag/knowledge

port=$(port_of)
key=$(key_of)
console=$(console_of)
export CONSOLE=$console
mkdir -p .local
echo "$port" >.local/port # for `deploy/local.sh console` in another terminal
cat <<TEXT
switchboard is starting on http://localhost:$port — try:
  curl -N http://localhost:$port/v1/chat/completions \\
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \\
    -d '{"stream":true,"messages":[{"role":"user","content":"Where is my order 4417?"}]}'
  (or ask "how long do refunds take?")
switchboard and switchboard-ingest are in .local/bin; to run them by hand: $path_line
TEXT
if [ "$console" = true ]; then
  # switchboard runs in the foreground (Ctrl-C stops it): the link is minted beside it once it answers
  (
    for _ in $(seq 600); do
      if link=$(console_link "$port" "$key"); then
        echo "open the console: $link"
        echo "  (a new link later: deploy/local.sh console)"
        exit 0
      fi
      sleep 0.1
    done
    echo "no console link: switchboard did not answer POST /v1/sessions within a minute" >&2
  ) &
  helper=$!
else
  echo "the console is off (CONSOLE=$console); CONSOLE=true in .env turns it on"
fi
"$build/src/switchboard"
