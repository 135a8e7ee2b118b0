#!/usr/bin/env bash
# Drives a running Kenning with the clients people already use: the official `openai` SDKs for
# Python (PyPI) and Node (npm) against `/v1`, and the official MCP Python SDK against `/mcp`. Starts a password-mode server (KENNING_BINARY, by
# default the debug build) with the extractive generator so answers are deterministic, creates
# an admin and an API key, seeds a space, then runs both suites. Installs the pinned client
# packages first (idempotent, quick when present).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

python_packages=(openai==3.63.0 mcp==2.3.0)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/kenning/clients-$(printf '%s\n' "${python_packages[@]}" | sha256sum | cut -c1-12)"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai, mcp' 2>/dev/null; then
  log "installing the Python clients (${python_packages[*]})"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_packages[@]}"
fi
node_dir="$ROOT/tests/clients/node"
if [ ! -d "$node_dir/node_modules/openai" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules" ]; then
  log "installing the Node clients (npm ci)"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

work="$(mktemp -d)"
server_pids=()
trap stop_kenning EXIT
start_kenning clients KENNING_AUTH=password KENNING_GENERATORS=extractive KENNING_RATE_LIMIT_CHAT=off

field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
jar="$work/cookies"
curl -fsS -c "$jar" -X POST "$url/api/v1/auth/setup" -H 'Content-Type: application/json' \
  -d '{"email": "admin@example.org", "password": "client tests admin"}' >/dev/null
key="$(curl -fsS -b "$jar" -X POST "$url/api/v1/auth/keys" -H 'Content-Type: application/json' \
  -d '{"name": "client tests"}' | field "['key']")"
auth=(-H "Authorization: Bearer $key")
space_name="Handbook"
space="$(curl -fsS "${auth[@]}" -X POST "$url/api/v1/spaces" -H 'Content-Type: application/json' \
  -d "{\"name\": \"$space_name\"}" | field "['id']")"
printf '# Vacation\n\nEvery employee receives twenty-five days of paid vacation each year.\n\n## Carry-over\n\nUp to five unused vacation days carry over into the next year; the rest lapse on 31 March.\n' >"$work/vacation.md"
printf '# Meals\n\nThe canteen serves lunch from noon to two.\n\n## Vouchers\n\nUnused meal vouchers expire at the end of each month and are not refunded.\n' >"$work/meals.md"
for file in vacation.md meals.md; do
  document="$(curl -fsS "${auth[@]}" -F "file=@$work/$file;type=text/markdown" "$url/api/v1/spaces/$space/documents" | field "['id']")"
  status=""
  for _ in $(seq 1 300); do
    status="$(curl -fsS "${auth[@]}" "$url/api/v1/spaces/$space/documents/$document" | field "['status']")"
    [ "$status" = ready ] && break
    [ "$status" = failed ] && { echo "$file failed to ingest" >&2; exit 1; }
    sleep 0.2
  done
  [ "$status" = ready ] || { echo "$file not ready in 60 s" >&2; exit 1; }
done
export KENNING_URL="$url" KENNING_KEY="$key" KENNING_SPACE="$space_name"

log "openai Python SDK against $url/v1"
timeout 5m "$venv/bin/python" tests/clients/python/test_openai.py
log "openai Node SDK against $url/v1"
(cd "$node_dir" && timeout 5m node --test)
log "MCP Python SDK against $url/mcp"
timeout 5m "$venv/bin/python" tests/clients/python/test_mcp.py
