#!/usr/bin/env bash
# Fuzzes each weight reader (fuzz/: safetensors, burnpack, pytorch) with libFuzzer through
# cargo fuzz, for a bounded time: [seconds per reader], 60 by default. The findings are a
# panic, a crash, or an allocation past 1 GB. A finding is kept in fuzz/regressions/<reader>/,
# which the native tests (tests/weights.rs) read from then on, and the script fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_READER="${1:-60}"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$ROOT"
if ! command -v cargo-fuzz >/dev/null; then
  echo "[fuzz] installing cargo-fuzz (a minute)"
  cargo install -q --locked cargo-fuzz --version 0.13.2
fi
# No sanitizer: the stable toolchain has none, and safe Rust needs none to find panics.
cargo fuzz build -s none
shopt -s nullglob
declare -A seed=(
  [safetensors]=tests/fixtures/resnet20.safetensors
  [burnpack]=models/mnist-resnet20.bpk
  [pytorch]="tests/fixtures/resnet20.pth tests/fixtures/resnet8-legacy.pth tests/fixtures/resnet8-checkpoint.pth"
)
for reader in safetensors burnpack pytorch; do
  corpus="fuzz/corpus/$reader"
  findings="fuzz/artifacts/$reader"
  mkdir -p "$corpus" "$findings" "fuzz/regressions/$reader"
  read -ra seeds <<<"${seed[$reader]}"
  cp "${seeds[@]}" fuzz/regressions/"$reader"/* "$corpus/"
  log="fuzz/artifacts/$reader.log"
  if cargo fuzz run -s none "$reader" "$corpus" -- -max_total_time="$SECONDS_PER_READER" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "[fuzz] $reader: $runs inputs in ${SECONDS_PER_READER} s, no finding"
  else
    tail -n 30 "$log" >&2
    cp "$findings"/* "fuzz/regressions/$reader/" 2>/dev/null || true
    echo "[fuzz] $reader: a finding, kept in fuzz/regressions/$reader/ (log: $log)" >&2
    exit 1
  fi
done
