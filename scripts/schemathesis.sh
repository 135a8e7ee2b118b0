#!/usr/bin/env bash
# Fuzzes the REST API against its own OpenAPI description (`/api/openapi.json`) with
# Schemathesis: no 5xx, every response matches the documented status, content type and schema,
# and schema-violating requests are refused. Starts a server (KENNING_BINARY, by default the
# debug build) on a fresh data directory (or uses KENNING_ST_URL), seeds a space with a
# document, a conversation and a point, then runs a bounded number of examples per operation
# (KENNING_ST_EXAMPLES, default 25). With KENNING_TEST_POSTGRES_URL set (as `./scripts/test`
# does) it also fuzzes a password-mode server on PostgreSQL, as an admin's API key and as a
# viewer of the seeded space.
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
server_pids=()
trap stop_kenning EXIT

# Short answers keep the chat operations quick; the chat rate limit is off so every generated
# question reaches the answer logic instead of a 429.
start_server() {
  local name="$1"
  shift
  start_kenning "$name" KENNING_MAX_ANSWER_TOKENS=8 KENNING_RATE_LIMIT_CHAT=off "$@"
}

field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Seeds a space with a document, a conversation and a point on $url as the caller whose
# curl arguments follow (none in single-user mode), and exports their ids for the config file.
seed() {
  log "seeding $url"
  local space document job conversation doc_json status=""
  space="$(curl -fsS "$@" -X POST "$url/api/v1/spaces" -H 'Content-Type: application/json' \
    -d "{\"name\": \"schemathesis $$ $(date +%s)\"}" | field "['id']")"
  printf '# Tides\n\nTides are caused by the gravity of the Moon and the Sun.\n' >"$work/tides.md"
  doc_json="$(curl -fsS "$@" -F "file=@$work/tides.md;type=text/markdown" "$url/api/v1/spaces/$space/documents")"
  document="$(printf '%s' "$doc_json" | field "['id']")"
  job="$(printf '%s' "$doc_json" | field "['job_id']")"
  for _ in $(seq 1 300); do
    status="$(curl -fsS "$@" "$url/api/v1/spaces/$space/documents/$document" | field "['status']")"
    [ "$status" = ready ] && break
    [ "$status" = failed ] && { echo "seed document failed to ingest" >&2; exit 1; }
    sleep 0.2
  done
  [ "$status" = ready ] || { echo "seed document not ready in 60 s" >&2; exit 1; }
  conversation="$(curl -fsS "$@" -N -X POST "$url/api/v1/spaces/$space/chat" -H 'Content-Type: application/json' \
    -d '{"question": "What causes tides?"}' | sed -n 's/^data: \({"conversation_id".*\)/\1/p' | head -1 | field "['conversation_id']")"
  curl -fsS "$@" -X PUT "$url/api/v1/spaces/$space/points" -H 'Content-Type: application/json' \
    -d '{"points": [{"id": 1, "vector": [0.1, 0.2, 0.3], "payload": {"kind": "seed"}}]}' >/dev/null
  export KENNING_ST_SPACE="$space" KENNING_ST_DOCUMENT="$document" KENNING_ST_JOB="$job" \
    KENNING_ST_CONVERSATION="$conversation"
}

# Deleting the seeded space would turn every later operation into a 404, so that one operation
# is left to the integration tests. `positive_data_acceptance` is off: the API refuses some
# schema-valid values on purpose (an all-zero vector, a file type it cannot read, `30.0` where
# an integer is expected), which a JSON Schema cannot express.
st_run() {
  "$venv/bin/schemathesis" "$@" \
    --checks all --exclude-checks "${st_exclude:-positive_data_acceptance}" \
    --exclude-operation-id spaces_remove \
    --max-examples "${KENNING_ST_EXAMPLES:-25}" --seed "${KENNING_ST_SEED:-1}" \
    --request-timeout 60 --no-color
}

url="${KENNING_ST_URL:-}"
[ -n "$url" ] || start_server single
seed
log "schemathesis: every operation, on the seeded ids ($url/api/openapi.json)"
st_run --config-file "$ROOT/tests/schemathesis.toml" run "$url/api/openapi.json" --phases examples,coverage,fuzzing
# Sequences (create, then read, change, delete) follow the ids the API itself returns.
log "schemathesis: stateful sequences"
st_run run "$url/api/openapi.json" --phases stateful

# With accounts, on PostgreSQL: the same operations as an admin's API key, then as a viewer of
# the seeded space (roles refuse with 403/404, never a 5xx).
if [ -z "${KENNING_ST_URL:-}" ] && [ -n "${KENNING_TEST_POSTGRES_URL:-}" ]; then
  db="kenning_test_st_$$"
  psql -q "$KENNING_TEST_POSTGRES_URL" -c "CREATE DATABASE $db" >/dev/null
  # Sign-in is fuzzed too; its limit would otherwise refuse the viewer's own sign-in below.
  start_server accounts KENNING_AUTH=password KENNING_RATE_LIMIT_SIGN_IN=off \
    DATABASE_URL="${KENNING_TEST_POSTGRES_URL%/*}/$db"
  jar="$work/cookies"
  curl -fsS -c "$jar" -X POST "$url/api/v1/auth/setup" -H 'Content-Type: application/json' \
    -d '{"email": "admin@example.org", "password": "schemathesis admin"}' >/dev/null
  admin_key="$(curl -fsS -b "$jar" -X POST "$url/api/v1/auth/keys" -H 'Content-Type: application/json' \
    -d '{"name": "schemathesis"}' | field "['key']")"
  seed -H "Authorization: Bearer $admin_key"
  log "schemathesis: password mode on PostgreSQL, as the admin ($url)"
  st_run --config-file "$ROOT/tests/schemathesis.toml" run "$url/api/openapi.json" \
    --phases coverage,fuzzing -H "Authorization: Bearer $admin_key"
  curl -fsS -H "Authorization: Bearer $admin_key" -X POST "$url/api/v1/users" -H 'Content-Type: application/json' \
    -d '{"email": "viewer@example.org", "password": "schemathesis viewer"}' >/dev/null
  curl -fsS -H "Authorization: Bearer $admin_key" -X PUT "$url/api/v1/spaces/$KENNING_ST_SPACE/members" \
    -H 'Content-Type: application/json' -d '{"email": "viewer@example.org", "role": "viewer"}' >/dev/null
  viewer_jar="$work/viewer-cookies"
  curl -fsS -c "$viewer_jar" -X POST "$url/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d '{"email": "viewer@example.org", "password": "schemathesis viewer"}' >/dev/null
  viewer_key="$(curl -fsS -b "$viewer_jar" -X POST "$url/api/v1/auth/keys" -H 'Content-Type: application/json' \
    -d '{"name": "schemathesis"}' | field "['key']")"
  log "schemathesis: password mode on PostgreSQL, as a viewer of the seeded space"
  # The access layer answers before routing, so a viewer's TRACE on a route gets 403 (no role
  # for it), not 405; the single-user and admin passes above check undeclared methods.
  st_exclude=positive_data_acceptance,unsupported_method st_run --config-file "$ROOT/tests/schemathesis.toml" run "$url/api/openapi.json" \
    --phases coverage -H "Authorization: Bearer $viewer_key"
fi
