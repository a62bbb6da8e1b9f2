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
echo "resnet-web is served at http://127.0.0.1:$PORT/  (Ctrl-C stops it)"
exec python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$ROOT"
