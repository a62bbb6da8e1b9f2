#!/usr/bin/env bash
# README command 3, the benchmark: builds the wasm, installs the peers (bench/package.json:
# onnxruntime-web, TensorFlow.js) and generates their ONNX models (scripts/make_peer_models.py,
# in a venv with the `onnx` package), then runs scripts/bench.mjs: every subject in headless
# Chromium, one JSON line per figure, then the tables.
#   scripts/bench.sh [--quick] [--only=SUBJECT,...]   (flags go to scripts/bench.mjs)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build-wasm.sh" >/dev/null
source "$ROOT/scripts/setup.sh" # quick the second time; for apt_install
cd "$ROOT"
if [ ! -f bench/node_modules/.package-lock.json ] || [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f bench/models/resnet20-32.onnx ] || [ scripts/make_peer_models.py -nt bench/models/resnet20-32.onnx ]; then
  venv="$ROOT/.tools/bench-venv"
  if [ ! -x "$venv/bin/python" ]; then
    command -v dpkg-query >/dev/null && apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -c 'import onnx, numpy' 2>/dev/null || "$venv/bin/pip" install -q onnx numpy
  "$venv/bin/python" scripts/make_peer_models.py bench/models
fi
node scripts/bench.mjs "$@"
