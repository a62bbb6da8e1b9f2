#!/usr/bin/env bash
# The Firefox tests over and over, with every core loaded by something else (a busy loop per
# core), as a CI machine busy with other work is: `scripts/firefox-soak.sh [RUNS]` (20).
# Each run's log goes to artifacts/soak/run-N.log; a line per run, and the count of runs that
# passed, to the terminal. Needs the wasm built (scripts/build-wasm.sh). Exits non-zero if
# any run failed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS="${1:-20}"
LOGS="$ROOT/artifacts/soak"
mkdir -p "$LOGS"
hogs=()
for _ in $(seq "$(nproc)"); do
  (while :; do :; done) &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
passed=0
for run in $(seq "$RUNS"); do
  started=$SECONDS
  if node --test-reporter=spec tests/firefox.test.mjs > "$LOGS/run-$run.log" 2>&1; then
    passed=$((passed + 1))
    echo "run $run: passed in $((SECONDS - started)) s"
  else
    echo "run $run: FAILED in $((SECONDS - started)) s: $(grep -c '^✖' "$LOGS/run-$run.log") failing lines, see $LOGS/run-$run.log"
  fi
done
echo "$passed of $RUNS runs passed, $(nproc) cores loaded"
[ "$passed" = "$RUNS" ]
