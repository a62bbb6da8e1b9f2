#!/usr/bin/env bash
# Wasm memory and GPU buffer use over 1,000 classifications and a 20-minute training run
# (scripts/memory.mjs). Arguments: [classifications] [training minutes] [training images]
# [validation share].
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build-wasm.sh"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$ROOT" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
cd "$ROOT"
node scripts/memory.mjs "http://127.0.0.1:$port/" "${1:-1000}" "${2:-20}" "${3:-2000}" "${4:-0.1}"
