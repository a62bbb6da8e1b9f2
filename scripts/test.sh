#!/usr/bin/env bash
# README command 2, and CI's only step: the single gate.
# fmt, clippy -D warnings, native tests, a bounded fuzzing run of the weight readers, the
# wasm32 build, the in-browser tests (WebGPU and CPU) in headless Chromium, then the page
# itself end to end. Exits non-zero at the first failure; artefacts (logs, a screenshot) go
# to artifacts/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
ARTIFACTS="$ROOT/artifacts"
mkdir -p "$ARTIFACTS"

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

# Native and wasm32 builds use separate target directories so that neither waits on the
# other's lock, and neither evicts the other's artefacts.
native() { CARGO_TARGET_DIR="$ROOT/target/native" "$@"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (native, -D warnings)"
native cargo clippy --release --workspace --all-targets -q -- -D warnings

step "native tests"
native cargo test --release --workspace 2>&1 | tee "$ARTIFACTS/native-tests.log"

step "fuzzing each weight reader for ${FUZZ_SECONDS:-60} s (cargo fuzz)"
"$ROOT/scripts/fuzz.sh" "${FUZZ_SECONDS:-60}" 2>&1 | tee "$ARTIFACTS/fuzz.log"

step "wasm32 build (the page's pkg/, -D warnings)"
"$ROOT/scripts/build-wasm.sh" 2>&1 | tee "$ARTIFACTS/wasm-build.log"
# cargo sums up a crate's compiler warnings as "`resnet-web` (lib) generated N warnings".
if grep -q 'generated [0-9]* warning' "$ARTIFACTS/wasm-build.log"; then
  echo "the wasm32 build has warnings (see above)" >&2
  exit 1
fi

step "in-browser tests: wasm-pack test --headless --chrome (WebGPU and CPU)"
# After the crate path, one `--`: what follows reaches the test runner (--nocapture shows the
# BENCH lines). A second `--` would make "--nocapture" a test filter that matches nothing.
export WASM_BINDGEN_TEST_TIMEOUT=900
env "${wasm_cargo_env[@]}" wasm-pack test --headless --chrome --release \
  --mode "$WASM_TEST_MODE" "$ROOT" -- --nocapture 2>&1 | tee "$ARTIFACTS/browser-tests.log"

step "page tests: the page in headless Chromium (playwright-core)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$ROOT" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
node tests/page.mjs "http://127.0.0.1:$port/" "$ARTIFACTS" 2>&1 | tee "$ARTIFACTS/page-tests.log"

count() { # sums "N passed" / "N ignored" of every "test result:" line of a log
  grep -h 'test result:' "$1" | sed -n "s/.* \([0-9]\+\) $2.*/\1/p" | awk '{ sum += $1 } END { print sum + 0 }'
}
native_passed=$(count "$ARTIFACTS/native-tests.log" passed)
native_ignored=$(count "$ARTIFACTS/native-tests.log" ignored)
browser_passed=$(count "$ARTIFACTS/browser-tests.log" passed)
browser_ignored=$(count "$ARTIFACTS/browser-tests.log" ignored)
step "summary"
echo "native tests:     $native_passed passed, $native_ignored ignored"
echo "in-browser tests: $browser_passed passed, $browser_ignored ignored"
grep -h '^\[fuzz\] .*no finding' "$ARTIFACTS/fuzz.log"
grep -h '^page tests:' "$ARTIFACTS/page-tests.log"
grep -h 'time to first prediction' "$ARTIFACTS/page-tests.log" || true
grep -h 'BENCH' "$ARTIFACTS/browser-tests.log" || true
if [ "$native_ignored" != 0 ] || [ "$browser_ignored" != 0 ] || [ "$browser_passed" = 0 ]; then
  echo "no test may be skipped, and the browser tests must have run" >&2
  exit 1
fi
