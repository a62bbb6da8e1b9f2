#!/usr/bin/env bash
# Kernels per inference forward pass on the GPU, by kind, with each convolution kernel: CubeCL's
# profiling log ("minimal": one line per kernel run) of `resnet bench --only inference`, whose
# median_ms runs the forward pass 3 times in a row with --warmup 0 --runs 1 on a slow adapter
# (a warm-up, a sizing run, a timed run). The first pass of a model also initialises its lazy
# parameters, so one forward pass is the block that repeats at least twice back to back (or a
# rotation of it: the same count).
#   scripts/gpu-kernel-count.sh [ARCH] [BATCH]     (default resnet20 1)
# RESNET=PATH runs that binary instead of building one. Counts do not depend on the adapter;
# on a fast GPU the timed run may repeat more than once, which the search below allows.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="${1:-resnet20}"
batch="${2:-1}"
if [ -z "${RESNET:-}" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  (cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/native" cargo build --release --quiet --bin resnet)
  RESNET="$ROOT/target/native/release/resnet"
fi
RESNET="$(realpath "$RESNET")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# CubeCL reads cubecl.toml from the working directory.
printf '[profiling.logger]\nlevel = "minimal"\nfile = "%s/kernels.log"\n' "$work" > "$work/cubecl.toml"
(cd "$work" && "$RESNET" bench --device gpu --only inference --models "$arch" --batches "$batch" \
  --warmup 0 --runs 1 > "$work/figures.jsonl")
python3 - "$work/kernels.log" "$arch" "$batch" <<'EOF'
import collections, json, sys
path, arch, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
kernels = [line.split("Executing ", 1)[1].strip() for line in open(path) if line.startswith("Executing ")]
def kind(name):
    name = name.split(" | ")[0].rsplit("_", 1)[0]
    return {"ConvTilesKernel": "convolution (direct)", "ConvTiledKernel": "convolution (tiled)"}.get(name, name)
# Forward passes: blocks with convolutions and the one matrix product of the classifier that
# repeat back to back (stages of identical blocks repeat too, but hold no matrix product); the
# direct kernel's first, then the tiled kernel's.
passes, at = [], 0
while at < len(kernels):
    for period in range(10, (len(kernels) - at) // 2 + 1):
        block = kernels[at:at + period]
        heads = sum(kind(k) == "MatmulEntry" for k in block)
        if heads == 1 and kernels[at + period:at + 2 * period] == block \
                and any(kind(k).startswith("convolution") for k in block):
            repeats = 2
            while kernels[at + repeats * period:at + (repeats + 1) * period] == block:
                repeats += 1
            passes.append(block)
            at += repeats * period
            break
    else:
        at += 1
if len(passes) != 2:
    sys.exit(f"expected one repeating forward pass per GPU kernel, found {len(passes)}")
for gpu_kernel, block in zip(["direct", "tiled"], passes):
    kinds = collections.Counter(kind(name) for name in block)
    print(json.dumps({"figure": "kernels_per_forward", "arch": arch, "batch": batch,
                      "gpu_kernel": gpu_kernel, "kernels": len(block), "by_kind": dict(kinds.most_common())}))
EOF
