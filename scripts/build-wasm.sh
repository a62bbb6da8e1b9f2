#!/usr/bin/env bash
# Builds the page's wasm (release): pkg/ with WebGPU and a one-thread CPU, and pkg-threads/,
# the CPU on a pool of threads for cross-origin isolated pages (scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
env "${wasm_cargo_env[@]}" wasm-pack build --release --target web --no-typescript \
  --mode "$WASM_PACK_MODE" "$ROOT"
env "${threads_cargo_env[@]}" wasm-pack build --release --target web --no-typescript \
  --mode "$WASM_PACK_MODE" --out-dir pkg-threads "$ROOT" -- --no-default-features
ls -l pkg/*.wasm pkg-threads/*.wasm
