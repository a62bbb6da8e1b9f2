#!/usr/bin/env bash
# Builds the page's wasm (release): pkg/ with WebGPU and a one-thread CPU, and pkg-threads/,
# the CPU on a pool of threads for cross-origin isolated pages (scripts/setup.sh); and the
# same two with relaxed SIMD's fused multiply-add in the CPU kernels, pkg-fma/ and
# pkg-threads-fma/, for browsers that validate it (js/worker.js). Each FMA twin shares its
# twin's build of the dependencies: only crates/cpu-kernels and this crate are rebuilt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
build() { # OUT_DIR CARGO_ENV_ARRAY_NAME [cargo arguments]
  local out="$1" env_name="$2[@]"
  shift 2
  local started=$SECONDS
  env "${!env_name}" wasm-pack build --release --target web --no-typescript \
    --mode "$WASM_PACK_MODE" --out-dir "$out" "$ROOT" -- "$@"
  echo "[build-wasm] $out built in $((SECONDS - started)) s"
}
build pkg wasm_cargo_env
build pkg-fma wasm_cargo_env --features fma
build pkg-threads threads_cargo_env --no-default-features
build pkg-threads-fma threads_cargo_env --no-default-features --features fma
ls -l pkg*/*.wasm
