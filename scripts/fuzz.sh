#!/usr/bin/env bash
# Fuzzes Kenning for a bounded time per target with cargo-fuzz (fuzz/fuzz_targets): `parse`
# (content detection and every document parser), `chunk` (the chunker, with the real tokenizer)
# and `api_json` (the API's JSON request bodies and their validation). Optional in CI: not part
# of scripts/test. Installs cargo-fuzz when missing; needs the nightly toolchain.
#
#   scripts/fuzz.sh [target...]      all targets when none is named
#
# FUZZ_SECONDS    time per target (default 60)
# FUZZ_SANITIZER  none (default, fastest) or address
# FUZZ_TOOLCHAIN  the nightly toolchain to build with (default nightly)
# FUZZ_ARGS       more libFuzzer flags, e.g. "-max_len=65536"
#
# Each target runs on a copy of its seed corpus (fuzz/corpus/<target>) in a temporary directory,
# so the corpus in the repository does not grow. A crash, hang or out-of-memory input is kept in
# fuzz/artifacts/<target>/, its path printed, and the script exits non-zero: turn it into a
# seed named `regression-<what>` and a regular test next to the code it concerns.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ALL_TARGETS=(parse chunk api_json)
CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
SANITIZER="${FUZZ_SANITIZER:-none}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"

targets=("$@")
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  case " ${ALL_TARGETS[*]} " in
    *" $t "*) ;;
    *) echo "unknown fuzz target '$t' (targets: ${ALL_TARGETS[*]})" >&2; exit 2 ;;
  esac
done

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  log "installing the $TOOLCHAIN toolchain"
  rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
case " ${targets[*]} " in
  *" chunk "*) bash scripts/fetch-models.sh ;;
esac

fuzz() { cargo "+$TOOLCHAIN" fuzz "$@"; }

for t in "${targets[@]}"; do
  log "building fuzz target $t (sanitizer $SANITIZER; the first build takes a while)"
  fuzz build --sanitizer "$SANITIZER" "$t"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  log "fuzzing $t for ${SECONDS_PER_TARGET}s"
  mkdir -p "$work/$t"
  cp -R "fuzz/corpus/$t/." "$work/$t/"
  seeds="$(find "$work/$t" -type f | wc -l)"
  logfile="$work/$t.log"
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if fuzz run --sanitizer "$SANITIZER" "$t" "$work/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$logfile" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$logfile" | tail -n 1 >&2 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb|new_units_added)' \
      "$logfile" >&2 || true
    echo "$t: corpus grew from $seeds to $(find "$work/$t" -type f | wc -l) inputs (not kept)" >&2
  else
    failed+=("$t")
    tail -n 60 "$logfile" >&2
    artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logfile" | tail -n 1)"
    if [ -n "$artifact" ]; then
      echo "$t: FAILED; the input is $artifact" >&2
      echo "  reproduce: cargo +$TOOLCHAIN fuzz run --sanitizer $SANITIZER $t $artifact" >&2
      echo "  minimise:  cargo +$TOOLCHAIN fuzz tmin --sanitizer $SANITIZER $t $artifact" >&2
    else
      echo "$t: FAILED without writing an input (see the log above)" >&2
    fi
  fi
done

if ((${#failed[@]})); then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
log "no crashes in: ${targets[*]}"
