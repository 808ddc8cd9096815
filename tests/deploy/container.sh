#!/usr/bin/env bash
# Builds switchboard's container image from deploy/Dockerfile and runs it, with no image
# registry and no container engine: a Debian 12 base is made from Debian's package archive
# (debootstrap), the Dockerfile is built on it with buildah (chroot isolation), and the
# image's filesystem is run under chroot, on the host's network, as the image's own user.
# Checks the image's settings, `switchboard migrate`, the entrypoint's start-up steps,
# /healthz and /readyz, and a sandbox turn that calls a tool against Postgres.
# Prints "ok"/"not ok" per check and ends with "N passed, N failed".
#   tests/deploy/container.sh      (as root; tests/run --deploy runs it)
# Uses the Postgres in SB_TEST_DATABASE_URL, or starts its own. The base image and
# buildah's storage stay in build-deploy/, so a second run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env=SB_TEST_DATABASE_URL "$0" "$@"

area=$PWD/build-deploy
base=localhost/switchboard-base:bookworm
image=localhost/switchboard:test
key=container-test-key-0123456789abcdef
mkdir -p "$area"
bah() { buildah --root "$area/storage" --runroot "$area/run" "$@"; }

passed=0
failed=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $what"; else failed=$((failed + 1)); echo "not ok - $what"; fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }
give_up() { echo "not ok - $1"; failed=$((failed + 1)); finish; exit 1; }

# Everything set up below is undone on exit, in reverse order.
cleanup=()
on_exit() {
  local i
  for ((i = ${#cleanup[@]} - 1; i >= 0; i--)); do eval "${cleanup[$i]}" >/dev/null 2>&1 || true; done
}
trap on_exit EXIT

# --- The base: Debian 12 from the archive this machine's apt uses (deb.debian.org otherwise).
if ! bah inspect --type image "$base" >/dev/null 2>&1; then
  mirror=$(sed -nE 's/^URIs: *(\S+).*/\1/p; s/^deb +(\[[^]]*\] +)?(\S+) +bookworm .*/\2/p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -m1 '/debian/\?$' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$area/rootfs.tmp
  rm -rf "$rootfs"
  cleanup+=("rm -rf '$rootfs'")
  echo "# debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$area/debootstrap.log" 2>&1 ||
    { tail -20 "$area/debootstrap.log" | sed "s/^/# /"; give_up "debootstrap a Debian 12 base"; }
  rm -f "$rootfs"/var/cache/apt/archives/*.deb
  ctr=$(bah from scratch)
  cleanup+=("buildah --root '$area/storage' --runroot '$area/run' rm '$ctr'")
  tar -C "$rootfs" -c . | tar -C "$(bah mount "$ctr")" -x --numeric-owner -p
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
  bah commit --quiet "$ctr" "$base" >/dev/null
  rm -rf "$rootfs"
fi

# --- The image, built as `docker build -f deploy/Dockerfile .` would (docker format keeps HEALTHCHECK).
start=$SECONDS
if ! bah bud --quiet --isolation=chroot --format docker --layers --build-arg BASE="$base" \
  -f deploy/Dockerfile -t "$image" . >"$area/build.log" 2>&1; then
  tail -30 "$area/build.log" | sed 's/^/# /'
  give_up "build deploy/Dockerfile"
fi
echo "# image built in $((SECONDS - start)) s"

# The image's settings, as `docker inspect` would show them.
bah inspect --type image "$image" >"$area/inspect.json"
conf() { python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["Docker"]["config"]; print(eval(sys.argv[2]))' "$area/inspect.json" "$1"; }
is() { [ "$(conf "$1")" = "$2" ]; }
check "the image runs as the numeric non-root user 10001" is 'c["User"]' 10001:10001
check "the image exposes port 3000" is '" ".join(c["ExposedPorts"])' 3000/tcp
check "the image stops with SIGTERM" is 'c["StopSignal"]' SIGTERM
check "the image has a health check on /healthz" is '"/healthz" in c["Healthcheck"]["Test"][1]' True
check "the entrypoint runs switchboard by default" is 'c["Entrypoint"] + c["Cmd"]' "['switchboard-entrypoint', 'switchboard']"

# --- Its filesystem, with /proc, /dev and /sys as a container would have them.
ctr=$(bah from --quiet "$image")
cleanup+=("buildah --root '$area/storage' --runroot '$area/run' rm '$ctr'")
root=$(bah mount "$ctr")
cleanup+=("buildah --root '$area/storage' --runroot '$area/run' umount '$ctr'")
for fs in proc dev sys; do
  case $fs in
  proc) mount -t proc proc "$root/proc" ;;
  *) mount --rbind "/$fs" "$root/$fs" && mount --make-rslave "$root/$fs" ;;
  esac
  cleanup+=("umount -R '$root/$fs'")
done
check "the final stage has no compiler" test ! -e "$root/usr/bin/cc"
check "the knowledge base is inside" test -f "$root/usr/local/share/switchboard/knowledge/refunds.md"
check "the entrypoint is executable" test -x "$root/usr/local/bin/switchboard-entrypoint"

# A command in the image, as its user, in its working directory, with only the variables
# given after it: "${in_image[@]}" VAR=value... command...
in_image=(chroot --userspec=10001:10001 "$root" /usr/bin/env -i -C /srv/switchboard
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/srv/switchboard)

# --- A database of its own on the test Postgres.
if [ -z "${SB_TEST_DATABASE_URL:-}" ]; then
  pgdir=$(mktemp -d)
  chmod 755 "$pgdir"
  cleanup+=("tests/pg/cluster.sh stop '$pgdir/pg'; rm -rf '$pgdir'")
  SB_TEST_DATABASE_URL=$(tests/pg/cluster.sh start "$pgdir/pg" | sed -n 's/^DATABASE_URL=//p')
fi
db=sb_container_$$
psql -X -q -v ON_ERROR_STOP=1 "$SB_TEST_DATABASE_URL" -c "create database $db"
cleanup+=("psql -X -q '$SB_TEST_DATABASE_URL' -c 'drop database if exists $db with (force)'")
db_url=${SB_TEST_DATABASE_URL%/*}/$db
sql() { psql -X -q -At "$db_url" -c "$1"; }

out=$("${in_image[@]}" DATABASE_URL="$db_url" switchboard migrate 2>&1) || true
check "switchboard migrate applies the schema from inside the image" \
  test "$(sql "select count(*) from schema_migrations" 2>/dev/null || echo 0)" -gt 0
[ "$(sql "select count(*) from schema_migrations" 2>/dev/null || echo 0)" -gt 0 ] || echo "$out" | sed 's/^/# /'

# --- Serving, through the entrypoint: the demo data and the knowledge base loaded first.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
base_url=http://127.0.0.1:$port
log=$area/serve.log
"${in_image[@]}" HOST=127.0.0.1 PORT="$port" WORKERS=1 SWITCHBOARD_API_KEYS="$key" DATABASE_URL="$db_url" SANDBOX_WORD_MS=1 \
  SWITCHBOARD_MIGRATE_ON_START=seed SWITCHBOARD_INGEST_ON_START=true \
  SWITCHBOARD_KNOWLEDGE_DIR=/usr/local/share/switchboard/knowledge switchboard-entrypoint >"$log" 2>&1 &
server=$!
cleanup+=("kill -KILL $server")
deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null "$base_url/healthz" 2>/dev/null; do
  if ! kill -0 "$server" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
    sed 's/^/# /' "$log" | tail -20
    give_up "switchboard starts in the image and answers /healthz"
  fi
  sleep 0.1
done
check "/healthz answers ok" grep -q '"status":"ok"' <<<"$(curl -fsS "$base_url/healthz")"
check "/readyz answers 200" curl -fsS -o /dev/null "$base_url/readyz"
check "the entrypoint seeded the demo store" test "$(sql "select count(*) from orders where order_number = '4417'")" -eq 1
check "the entrypoint loaded the bundled knowledge base" test "$(sql "select count(*) from rag_chunks")" -gt 0
check "the image's health check command passes" \
  "${in_image[@]}" PORT="$port" /bin/sh -c "$(conf 'c["Healthcheck"]["Test"][1]')"

turn=$(curl -sS -N "$base_url/v1/chat/completions" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"stream":true,"messages":[{"role":"user","content":"Where is my order 4417?"}]}')
check "a sandbox turn streams to [DONE]" grep -q '^data: \[DONE\]$' <<<"$turn"
check "the sandbox model answered" grep -q '"model":"switchboard-sandbox"' <<<"$turn"
# The tracking number is only in the database: the tool ran there.
check "its tool call read the order from Postgres" grep -q '1Z8K4C7E0344170417' <<<"$(sed -n 's/.*"content":"\([^"]*\)".*/\1/p' <<<"$turn" | tr -d '\n')"
check "a wrong key is refused" test "$(curl -sS -o /dev/null -w '%{http_code}' "$base_url/v1/chat/completions" \
  -H 'Authorization: Bearer wrong-key-0123456789abcdef' -H 'Content-Type: application/json' -d '{"messages":[]}')" = 401

kill -TERM "$server"
deadline=$((SECONDS + 20))
while kill -0 "$server" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
kill -KILL "$server" 2>/dev/null || true # still draining with nothing open: the check below fails
code=0
wait "$server" || code=$?
check "SIGTERM stops it cleanly (exit 0)" test "$code" -eq 0

finish
