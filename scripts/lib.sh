# Shared helpers for Kenning's set-up scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export PATH="$HOME/.cargo/bin:$PATH"

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
