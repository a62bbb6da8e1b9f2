#!/usr/bin/env bash
# Builds the page's wasm into pkg/ (release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
env "${wasm_cargo_env[@]}" wasm-pack build --release --target web --no-typescript \
  --mode "$WASM_PACK_MODE" "$ROOT"
ls -l pkg/*.wasm
