#!/usr/bin/env bash
# README command 1: builds the wasm and serves the page on 127.0.0.1.
#   scripts/serve.sh [PORT]    (default 8000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
PORT="${1:-8000}"

"$ROOT/scripts/build-wasm.sh"
echo
# With COOP/COEP, which the CPU's threads need (tests/static-server.mjs).
exec node "$ROOT/tests/static-server.mjs" "$ROOT" "$PORT"
