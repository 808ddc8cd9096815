#!/bin/bash
# The container's entrypoint: before serving, optionally prepares the database, then
# replaces itself with the command (by default `switchboard`, which then gets SIGTERM
# directly and drains). Its own variables, read here and not by switchboard:
#   SWITCHBOARD_MIGRATE_ON_START=true   run `switchboard migrate` first
#   SWITCHBOARD_MIGRATE_ON_START=seed   run `switchboard migrate --seed` (the demo store's data)
#   SWITCHBOARD_INGEST_ON_START=true    then load SWITCHBOARD_KNOWLEDGE_DIR (the bundled demo
#                                       knowledge base by default) with `switchboard-ingest --sync`
# Any other command runs as given: `docker run IMAGE switchboard migrate`.
set -euo pipefail

if [ $# -eq 0 ]; then
  set -- switchboard
fi

# Only when serving: a one-off command (migrate, ingest, --settings) is left alone.
if [ $# -eq 1 ] && [ "$1" = switchboard ]; then
  case "${SWITCHBOARD_MIGRATE_ON_START:-false}" in
    true) switchboard migrate ;;
    seed) switchboard migrate --seed ;;
    false | "") ;;
    *) echo "SWITCHBOARD_MIGRATE_ON_START must be true, seed or false" >&2; exit 2 ;;
  esac
  case "${SWITCHBOARD_INGEST_ON_START:-false}" in
    true) switchboard-ingest --sync "${SWITCHBOARD_KNOWLEDGE_DIR:?the folder of documents to load}" ;;
    false | "") ;;
    *) echo "SWITCHBOARD_INGEST_ON_START must be true or false" >&2; exit 2 ;;
  esac
fi

exec "$@"
