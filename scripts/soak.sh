#!/usr/bin/env bash
# The long load test: a release server on a fresh data directory under a steady mixed load
# (searches, questions answered by the local model, uploads, dashboard polls) for
# SOAK_MINUTES (default 20) at SOAK_RATE requests per second (default 2). Every 30 s it records
# resident memory, open files, threads and the server's own last-minute p99 and error ratio,
# and prints them as a Markdown table, then the load generator's report. The caches are made
# small (SOAK_CACHE entries, default 500) so they fill early in the run and the memory curve
# shows whether anything else grows once they are full.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

minutes="${SOAK_MINUTES:-20}"
rate="${SOAK_RATE:-2}"
cache="${SOAK_CACHE:-500}"
binary="$ROOT/target/release/kenning"
[ -x "$binary" ] || { log "building the release server"; cargo build --release -p kenning; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

: >"$work/out"
KENNING_MODELS_DIR="$ROOT/models" DATA_DIR="$work/data" KENNING_ADDR=127.0.0.1:0 \
  KENNING_RATE_LIMIT_CHAT=off KENNING_SEARCH_CACHE_CAPACITY="$cache" \
  KENNING_QUERY_CACHE_CAPACITY="$cache" KENNING_ANSWER_CACHE_CAPACITY="$cache" \
  "$binary" serve >"$work/out" 2>"$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 1 300); do
  url="$(sed -n 's/^Kenning is running at //p' "$work/out")"
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "server did not start" >&2; exit 1; }

log "soak: $minutes min at $rate req/s against $url (caches of $cache entries)"
"$binary" bench mixed --url "$url" --documents 5 --document-bytes 8000 --concurrency 4 \
  --rate "$rate" --duration-secs $((minutes * 60)) --requests 100000000 >"$work/bench" 2>&1 &
bench_pid=$!

echo "| minute | resident memory | open files | threads | requests/s (last minute) | p99 (last minute) | errors (last minute) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
started=$(date +%s)
while kill -0 "$bench_pid" 2>/dev/null; do
  sleep 30
  kill -0 "$bench_pid" 2>/dev/null || break
  rss_kb="$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")"
  fds="$(ls "/proc/$server_pid/fd" | wc -l)"
  threads="$(awk '/^Threads/ {print $2}' "/proc/$server_pid/status")"
  stats="$(curl -fsS "$url/api/v1/metrics/snapshot" | python3 -c '
import json, sys
w = json.load(sys.stdin)["last_minute"]
rps, p99, errors = w["requests_per_second"], w.get("p99_ms"), w["error_ratio"] * 100
print("%.2f | %s | %.1f %%" % (rps, "-" if p99 is None else "%.0f ms" % p99, errors))
')"
  minute="$(awk -v s="$started" -v n="$(date +%s)" 'BEGIN { printf "%.1f", (n - s) / 60 }')"
  printf '| %s | %d MB | %s | %s | %s |\n' "$minute" $((rss_kb / 1024)) "$fds" "$threads" "$stats"
done
wait "$bench_pid"
cat "$work/bench"
