#!/usr/bin/env bash
# The benchmark (scripts/bench.mjs, bench/index.html): builds the wasm, serves the
# repository on 127.0.0.1 and prints the figures. --quick: fewer runs, to check it works.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build-wasm.sh" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$ROOT" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
cd "$ROOT"
node scripts/bench.mjs "http://127.0.0.1:$port/" "$@"
