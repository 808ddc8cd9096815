#!/usr/bin/env bash
# Gives the local switchboard a public HTTPS URL with ngrok, so a voice engine in the cloud
# (Agora's) can call it while you build, and prints the `llm` block of an Agora `join`
# request with that URL and one of switchboard's keys. Runs until Ctrl-C, then stops ngrok.
# Start switchboard first (deploy/local.sh), then in another terminal:
#   deploy/tunnel.sh
# The local port is PORT, else .env's PORT, else 3000 (as deploy/local.sh); the key is the
# first of SWITCHBOARD_API_KEYS (environment, else .env). NGROK_API_URL names ngrok's local
# API if it is not at http://127.0.0.1:4040/api/tunnels.
set -euo pipefail
cd "$(dirname "$0")/.."

setting() { [ -f .env ] && sed -n "s/^$1=//p" .env | tail -1; }
port=${PORT:-$(setting PORT || true)}; port=${port:-3000}
key=${SWITCHBOARD_API_KEYS:-$(setting SWITCHBOARD_API_KEYS || true)}; key=${key%%,*}
model=${OPENAI_MODEL:-$(setting OPENAI_MODEL || true)}; model=${model:-gpt-4o-mini}
api=${NGROK_API_URL:-http://127.0.0.1:4040/api/tunnels}

if ! command -v ngrok >/dev/null 2>&1; then
  cat >&2 <<TEXT
ngrok is not installed. Get it from https://ngrok.com/download, or on Debian from ngrok's apt repository:
  curl -sSL https://ngrok-agent.s3.amazonaws.com/ngrok.asc | sudo tee /etc/apt/trusted.gpg.d/ngrok.asc >/dev/null
  echo "deb https://ngrok-agent.s3.amazonaws.com buster main" | sudo tee /etc/apt/sources.list.d/ngrok.list
  sudo apt-get update && sudo apt-get install ngrok
and give it your account's token once: ngrok config add-authtoken <token>
Or, without an account, Cloudflare's quick tunnel: cloudflared tunnel --url http://localhost:$port
TEXT
  exit 1
fi
if [ -z "$key" ]; then
  echo "no SWITCHBOARD_API_KEYS in the environment or .env: the block below needs one of your keys" >&2
  key="<one of SWITCHBOARD_API_KEYS>"
fi

log=$(mktemp)
ngrok http "$port" --log=stdout >"$log" 2>&1 &
ngrok_pid=$!
# A background job of a script ignores Ctrl-C, so ngrok is stopped here, however this ends.
trap 'kill "$ngrok_pid" 2>/dev/null || true; wait "$ngrok_pid" 2>/dev/null || true; rm -f "$log"' EXIT
trap 'exit 0' INT TERM

# The https tunnel ngrok opened to this port, from its local API's tunnel list.
public_url() {
  curl -fsS --max-time 2 "$api" 2>/dev/null | python3 -c '
import json, sys
port = sys.argv[1]
for t in json.load(sys.stdin).get("tunnels", []):
    addr = str(t.get("config", {}).get("addr", ""))
    if t.get("public_url", "").startswith("https://") and (addr == port or addr.endswith(":" + port)):
        print(t["public_url"])
        break
' "$port" 2>/dev/null
}

url=""
deadline=$((SECONDS + 30))
until url=$(public_url) && [ -n "$url" ]; do
  if ! kill -0 "$ngrok_pid" 2>/dev/null; then
    echo "ngrok stopped:" >&2; tail -20 "$log" >&2; exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "ngrok opened no https tunnel to port $port within 30 s (its API: $api):" >&2; tail -20 "$log" >&2; exit 1
  fi
  sleep 0.2
done

cat <<TEXT
switchboard on localhost:$port is reachable at $url
In the agent's join request:

"llm": {
  "url": "$url/v1/chat/completions",
  "api_key": "$key",
  "vendor": "custom",
  "params": { "model": "$model", "max_tokens": 512 }
}

Ctrl-C stops the tunnel.
TEXT
wait "$ngrok_pid"
