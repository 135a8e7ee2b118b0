#!/usr/bin/env bash
# Measures retrieval quality on the labeled set in tests/eval: installs the toolchain's
# rust-docs component (the corpus) when missing, starts a server (KENNING_BINARY, by default the
# debug build) on a fresh data directory, and runs scripts/eval.py against it. Arguments go to
# eval.py, e.g. `--min-recall5 0.8` to fail below a floor, `--json out.json`, `--answers` to score
# answers too, or question files.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
html="$(rustc --print sysroot)/share/doc/rust/html"
if [ ! -f "$html/cargo/index.html" ]; then
  log "installing the rust-docs component of $toolchain (the evaluation corpus)"
  rustup component add rust-docs --toolchain "$toolchain" >/dev/null
fi

work="$(mktemp -d)"
server_pids=()
trap stop_kenning EXIT
# EVAL_GENERATORS picks the answer chain to score with --answers (default: extractive alone).
start_kenning eval KENNING_RATE_LIMIT_SEARCH=off KENNING_RATE_LIMIT_CHAT=off \
  KENNING_GENERATORS="${EVAL_GENERATORS:-extractive}"
log "evaluating retrieval on $url"
python3 scripts/eval.py --url "$url" --html "$html" "$@"
