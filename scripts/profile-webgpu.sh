#!/usr/bin/env bash
# Where WebGPU time goes on this machine's adapter: bench/webgpu_profile.rs (a WebGPU training
# step of the benchmark taken apart, and one layer of each stage alone) in headless Chromium,
# then bench/conv-kernels.html (hand-written WGSL convolutions: what a kernel's tile is worth).
# Prints one JSON line per figure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
export WASM_BINDGEN_TEST_TIMEOUT=900
mkdir -p artifacts
log=artifacts/webgpu-profile.log
if ! env "${wasm_cargo_env[@]}" wasm-pack test --headless --chrome --release \
  --mode "$WASM_TEST_MODE" "$ROOT" --test webgpu_profile -- --nocapture >"$log" 2>&1; then
  tail -40 "$log" >&2
  exit 1
fi
sed -n 's/^PROFILE //p' "$log"
node scripts/conv-kernels.mjs
