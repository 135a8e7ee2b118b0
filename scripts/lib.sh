# Shared helpers for Kenning's set-up scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.cargo/bin:$PATH"

# Each step is stamped with the minutes and seconds since the first script of the run started,
# so a slow CI run shows where its time went.
: "${KENNING_RUN_STARTED:=$(date +%s)}"
export KENNING_RUN_STARTED
log() {
  local t=$(($(date +%s) - KENNING_RUN_STARTED))
  printf '\033[1;34m==>\033[0m [%dm%02ds] %s\n' $((t / 60)) $((t % 60)) "$*" >&2
}

# Runs apt-get install only for packages that are missing, so a warm machine pays nothing.
apt_ensure() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Set-up scripts may run side by side; each waits its turn for apt's locks.
    $sudo apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=900 install -y -q \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Starts `kenning serve` (the binary $KENNING_BINARY, by default the debug build) named $1 on a
# free loopback port, with its data and logs under $work and the extra settings that follow
# (NAME=value ...). Appends its pid to the caller's server_pids array and sets $url once the
# server has printed its address.
start_kenning() {
  local name="$1"
  shift
  local binary="${KENNING_BINARY:-$ROOT/target/debug/kenning}"
  [ -x "$binary" ] || { echo "no server binary at $binary (build it with cargo build -p kenning)" >&2; exit 1; }
  # Created before the server starts, so the first read cannot race the redirect.
  : >"$work/$name.out"
  env KENNING_MODELS_DIR="$ROOT/models" DATA_DIR="$work/$name-data" KENNING_ADDR=127.0.0.1:0 "$@" \
    "$binary" serve >"$work/$name.out" 2>"$work/$name.log" &
  server_pids+=("$!")
  url=""
  for _ in $(seq 1 300); do
    url="$(sed -n 's/^Kenning is running at //p' "$work/$name.out")"
    [ -n "$url" ] && break
    kill -0 "${server_pids[-1]}" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "server $name did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$url/health/readiness" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server $name did not become ready" >&2
  cat "$work/$name.log" >&2
  exit 1
}

# Stops the servers start_kenning started and removes $work; for `trap stop_kenning EXIT`.
stop_kenning() {
  for pid in "${server_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
