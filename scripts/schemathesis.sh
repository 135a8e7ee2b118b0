#!/usr/bin/env bash
# Fuzzes the REST API against its own OpenAPI description (`/api/openapi.json`) with
# Schemathesis: no 5xx, every response matches the documented status, content type and schema,
# and schema-violating requests are refused. Starts a release server on a fresh data directory
# (or uses KENNING_ST_URL), seeds a space with a document, a conversation and a point, then runs
# a bounded number of examples per operation (KENNING_ST_EXAMPLES, default 25).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

version=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/kenning/schemathesis-$version"
if [ ! -x "$venv/bin/schemathesis" ]; then
  log "installing schemathesis $version (PyPI)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

url="${KENNING_ST_URL:-}"
if [ -z "$url" ]; then
  binary="$ROOT/target/release/kenning"
  [ -x "$binary" ] || { log "building the release server"; cargo build --release -p kenning; }
  # Short answers keep the chat operations quick; the chat rate limit is off so every
  # generated question reaches the answer logic instead of a 429.
  # Created before the server starts, so the first read cannot race the redirect.
  : >"$work/out"
  KENNING_MODELS_DIR="$ROOT/models" DATA_DIR="$work/data" KENNING_ADDR=127.0.0.1:0 \
    KENNING_MAX_ANSWER_TOKENS=8 KENNING_RATE_LIMIT_CHAT=off \
    "$binary" serve >"$work/out" 2>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 300); do
    url="$(sed -n 's/^Kenning is running at //p' "$work/out")"
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
fi

log "seeding $url"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
space="$(curl -fsS -X POST "$url/api/v1/spaces" -H 'Content-Type: application/json' \
  -d "{\"name\": \"schemathesis $$ $(date +%s)\"}" | field "['id']")"
printf '# Tides\n\nTides are caused by the gravity of the Moon and the Sun.\n' >"$work/tides.md"
doc_json="$(curl -fsS -F "file=@$work/tides.md;type=text/markdown" "$url/api/v1/spaces/$space/documents")"
document="$(printf '%s' "$doc_json" | field "['id']")"
job="$(printf '%s' "$doc_json" | field "['job_id']")"
for _ in $(seq 1 300); do
  status="$(curl -fsS "$url/api/v1/spaces/$space/documents/$document" | field "['status']")"
  [ "$status" = ready ] && break
  [ "$status" = failed ] && { echo "seed document failed to ingest" >&2; exit 1; }
  sleep 0.2
done
[ "$status" = ready ] || { echo "seed document not ready in 60 s" >&2; exit 1; }
conversation="$(curl -fsS -N -X POST "$url/api/v1/spaces/$space/chat" -H 'Content-Type: application/json' \
  -d '{"question": "What causes tides?"}' | sed -n 's/^data: \({"conversation_id".*\)/\1/p' | head -1 | field "['conversation_id']")"
curl -fsS -X PUT "$url/api/v1/spaces/$space/points" -H 'Content-Type: application/json' \
  -d '{"points": [{"id": 1, "vector": [0.1, 0.2, 0.3], "payload": {"kind": "seed"}}]}' >/dev/null
export KENNING_ST_SPACE="$space" KENNING_ST_DOCUMENT="$document" KENNING_ST_JOB="$job" \
  KENNING_ST_CONVERSATION="$conversation"

st_run() {
  "$venv/bin/schemathesis" "$@" \
    --checks all --exclude-checks positive_data_acceptance \
    --exclude-operation-id spaces_remove \
    --max-examples "${KENNING_ST_EXAMPLES:-25}" --seed "${KENNING_ST_SEED:-1}" \
    --request-timeout 60 --no-color
}
# Deleting the seeded space would turn every later operation into a 404, so that one operation
# is left to the integration tests. `positive_data_acceptance` is off: the API refuses some
# schema-valid values on purpose (an all-zero vector, a file type it cannot read, `30.0` where
# an integer is expected), which a JSON Schema cannot express.
log "schemathesis: every operation, on the seeded ids ($url/api/openapi.json)"
st_run --config-file "$ROOT/tests/schemathesis.toml" run "$url/api/openapi.json" --phases examples,coverage,fuzzing
# Sequences (create, then read, change, delete) follow the ids the API itself returns.
log "schemathesis: stateful sequences"
st_run run "$url/api/openapi.json" --phases stateful
