#!/usr/bin/env bash
# Installs what building Kenning needs: the pinned Rust toolchain with the wasm target,
# cargo-leptos (without its GitHub downloads) and the wasm-bindgen CLI matching Cargo.lock.
# Idempotent: each step is skipped when the right version is already there.
# `setup-toolchain.sh rust` stops after the compilers (enough to build the server);
# `setup-toolchain.sh tools` does only the rest (what the browser bundle needs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
part="${1:-all}"
case "$part" in
  all | rust | tools) ;;
  *) echo "usage: setup-toolchain.sh [all|rust|tools]" >&2; exit 2 ;;
esac

if [ "$part" != tools ]; then
  apt_ensure build-essential pkg-config cmake clang libclang-dev

  if ! rustup run 1.99.1 rustc --version >/dev/null 2>&1 \
    || ! rustup +1.99.1 target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
    log "installing the Rust toolchain from rust-toolchain.toml"
    rustup toolchain install
  fi
fi
[ "$part" = rust ] && exit 0

# The tools are built unoptimised: cargo-leptos compiles in 5 min instead of 12 (alone on two
# cores), and their part of a bundle build stays small (measured: the split takes 1.2-1.6 s,
# wasm-bindgen 3.5 s over the 18 MB module; wasm-opt, from npm, does the heavy part).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

CARGO_LEPTOS_VERSION=0.3.11
if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  log "installing cargo-leptos $CARGO_LEPTOS_VERSION (takes a while once)"
  cargo install --locked cargo-leptos --version "$CARGO_LEPTOS_VERSION" --features no_downloads
fi

WASM_BINDGEN_VERSION="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lock file pins a crate version the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# Release builds run wasm-opt; Debian's binaryen is too old for current wasm, npm's is not.
if ! wasm-opt --version 2>/dev/null | grep -q "version 1[2-9][0-9]"; then
  log "installing binaryen (wasm-opt) from npm"
  npm install -g binaryen@132 >/dev/null 2>&1 || npm install -g binaryen >/dev/null
fi
