#!/usr/bin/env bash
# README command 2, and CI's only step: the single gate.
# fmt, clippy -D warnings, native tests, a bounded fuzzing run of the weight readers, the
# wasm32 builds and each module's wasm features, the in-browser tests (WebGPU and CPU, and the
# FMA build's CPU) in headless Chromium, the examples' types, the page itself end to end, the
# npm package installed into a fresh project, and the page and the package in headless Firefox
# and in WebKit (WebKitGTK under Xvfb), and the package in Deno and Node.js. Exits non-zero at the
# first failure; artefacts (logs, a screenshot) go to artifacts/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
ARTIFACTS="$ROOT/artifacts"
mkdir -p "$ARTIFACTS"

# Each step says when it starts, in seconds since the gate began: a slow CI run's log then
# shows which step took the time.
step() { printf '\n\033[1;32m==> [%4d s] %s\033[0m\n' "$SECONDS" "$*"; }

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

step "wasm32 build (the page's pkg/, the threaded pkg-threads/ and their FMA twins, -D warnings)"
"$ROOT/scripts/build-wasm.sh" 2>&1 | tee "$ARTIFACTS/wasm-build.log"
# A compiler warning: any but the one rustc gives every crate of the threaded build for its
# (still unstable) atomics target feature, which cargo then sums up as "generated 1 warning".
if grep '^warning: ' "$ARTIFACTS/wasm-build.log" | grep -v -e 'unstable feature specified for `-Ctarget-feature`' \
  -e 'generated 1 warning$' -e 'custom section is missing' | grep -q .; then
  echo "the wasm32 build has warnings (see above)" >&2
  exit 1
fi

step "the wasm modules against what each engine validates (wasmparser): no relaxed SIMD outside the FMA twins"
native cargo run -q --release -p wasm-feature-check -- "$ROOT" 2>&1 | tee "$ARTIFACTS/wasm-features.log"

step "in-browser tests: wasm-pack test --headless --chrome (WebGPU and CPU)"
# After the crate path, one `--`: what follows reaches the test runner (--nocapture shows the
# BENCH lines). A second `--` would make "--nocapture" a test filter that matches nothing.
export WASM_BINDGEN_TEST_TIMEOUT=900
env "${wasm_cargo_env[@]}" wasm-pack test --headless --chrome --release \
  --mode "$WASM_TEST_MODE" "$ROOT" -- --nocapture 2>&1 | tee "$ARTIFACTS/browser-tests.log"

step "in-browser tests of the FMA build: the CPU's logits against PyTorch's (relaxed SIMD)"
# The test filter `cpu_resnet`: ResNet-18, -50 and -20 on the CPU, the only code the feature
# changes. A build of the kernels and the tests alone (the dependencies are shared).
env "${wasm_cargo_env[@]}" wasm-pack test --headless --chrome --release \
  --mode "$WASM_TEST_MODE" "$ROOT" --features fma -- --nocapture cpu_resnet 2>&1 | tee "$ARTIFACTS/browser-tests-fma.log"

step "TypeScript: the examples against the package's declarations (tsc --noEmit)"
npx tsc -p examples

# node:test's spec reporter ends with "ℹ pass N" and "ℹ fail N"; those lines are the summary.
export ARTIFACTS
step "page tests: the page in headless Chromium (playwright-core, node:test)"
node --test-reporter=spec tests/page.test.mjs 2>&1 | tee "$ARTIFACTS/page-tests.log"

step "package test: npm pack, installed into a fresh project, used from its page"
node --test-reporter=spec tests/package.test.mjs 2>&1 | tee "$ARTIFACTS/package-tests.log"

step "Firefox tests: the page and the package in headless firefox-esr (puppeteer-core, WebDriver BiDi)"
node --test-reporter=spec tests/firefox.test.mjs 2>&1 | tee "$ARTIFACTS/firefox-tests.log"

step "WebKit tests: the page and the package in WebKitGTK's MiniBrowser under Xvfb (WebDriver)"
node --test-reporter=spec tests/webkit.test.mjs 2>&1 | tee "$ARTIFACTS/webkit-tests.log"

step "runtimes tests: the package in Deno (npm's deno; the CPU and its WebGPU on lavapipe) and in Node.js (the CPU)"
node --test-reporter=spec tests/runtimes.test.mjs 2>&1 | tee "$ARTIFACTS/runtimes-tests.log"

count() { # sums "N passed" / "N ignored" of every "test result:" line of a log
  grep -h 'test result:' "$1" | sed -n "s/.* \([0-9]\+\) $2.*/\1/p" | awk '{ sum += $1 } END { print sum + 0 }'
}
node_count() { # "ℹ pass N" / "ℹ fail N" of node:test's spec reporter
  sed -n "s/^ℹ $2 \([0-9]\+\)$/\1/p" "$1" | tail -1
}
native_passed=$(count "$ARTIFACTS/native-tests.log" passed)
native_ignored=$(count "$ARTIFACTS/native-tests.log" ignored)
browser_passed=$(count "$ARTIFACTS/browser-tests.log" passed)
browser_ignored=$(count "$ARTIFACTS/browser-tests.log" ignored)
fma_passed=$(count "$ARTIFACTS/browser-tests-fma.log" passed)
fma_ignored=$(count "$ARTIFACTS/browser-tests-fma.log" ignored)
step "summary"
echo "native tests:     $native_passed passed, $native_ignored ignored"
echo "in-browser tests: $browser_passed passed, $browser_ignored ignored"
echo "in-browser tests of the FMA build: $fma_passed passed, $fma_ignored ignored"
grep -h '^\[fuzz\] .*no finding' "$ARTIFACTS/fuzz.log"
grep -h '^\[wasm features\]' "$ARTIFACTS/wasm-features.log"
for suite in page package firefox webkit runtimes; do
  echo "$suite tests: $(node_count "$ARTIFACTS/$suite-tests.log" pass) passed, $(node_count "$ARTIFACTS/$suite-tests.log" fail) failed"
done
grep -h 'time to first prediction' "$ARTIFACTS/page-tests.log" || true
grep -h 'BENCH' "$ARTIFACTS/browser-tests.log" || true
grep -h 'max |browser - pytorch|' "$ARTIFACTS/browser-tests-fma.log" || true
for suite in page package firefox webkit runtimes; do
  if [ "$(node_count "$ARTIFACTS/$suite-tests.log" skipped)" != 0 ] || [ "$(node_count "$ARTIFACTS/$suite-tests.log" todo)" != 0 ] \
    || [ "$(node_count "$ARTIFACTS/$suite-tests.log" pass)" = 0 ]; then
    echo "the $suite tests skipped some, or none ran" >&2
    exit 1
  fi
done
if [ "$native_ignored" != 0 ] || [ "$browser_ignored" != 0 ] || [ "$browser_passed" = 0 ] \
  || [ "$fma_ignored" != 0 ] || [ "$fma_passed" != 3 ]; then
  echo "no test may be skipped, and the browser tests must have run" >&2
  exit 1
fi
