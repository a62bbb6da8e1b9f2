#!/usr/bin/env bash
# The GPU benchmark: `resnet bench --device gpu` (the adapter; inference; two training steps,
# with our BatchNorm and burn's; each convolution of ResNet-18 and ResNet-20, and each again on
# each tile of the tiled kernel; BatchNorm in training mode, ours and burn's; a plain copy),
# then, where PyTorch has CUDA, PyTorch's figures for the same work (TF32 off, and its default)
# and ours over PyTorch's. One JSON line per figure on stdout; the adapter line says whether it
# is a CPU (lavapipe here).
#   scripts/gpu-bench.sh [--quick] [--only=SECTIONS] [--models=PRESETS]
# --quick: 1 warm-up and 3 timed runs per figure (a CPU adapter takes minutes per figure
# otherwise). --models: `resnet bench --models` (ours only). RESNET=PATH runs that binary
# instead of building one; scripts/gpu-lent.sh runs this on a lent GPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
runs=(--warmup 3 --runs 10)
only=()
models=()
for arg in "$@"; do
  case "$arg" in
    --quick) runs=(--warmup 1 --runs 3) ;;
    --only=*) only=(--only "${arg#--only=}") ;;
    --models=*) models=(--models "${arg#--models=}") ;;
    *) echo "usage: scripts/gpu-bench.sh [--quick] [--only=inference,training,convolutions,tiles,batch-norm] [--models=resnet18,resnet50,resnet20]" >&2; exit 2 ;;
  esac
done
if [ -z "${RESNET:-}" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  CARGO_TARGET_DIR="$ROOT/target/native" cargo build --release --quiet --bin resnet
  RESNET="$ROOT/target/native/release/resnet"
fi
lines="$(mktemp)"
trap 'rm -f "$lines"' EXIT
"$RESNET" bench --device gpu "${runs[@]}" "${only[@]}" "${models[@]}" | tee "$lines"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  for tf32 in off default; do
    python3 scripts/gpu_bench_torch.py --tf32 "$tf32" "${runs[@]}" | tee -a "$lines"
  done
  python3 scripts/gpu_bench_torch.py --ratios "$lines"
else
  echo '{"figure": "pytorch", "skipped": "python3 has no torch with CUDA here"}'
fi
