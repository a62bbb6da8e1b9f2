#!/usr/bin/env bash
# scripts/gpu-bench.sh on a lent GPU machine, which has an NVIDIA driver and PyTorch but no Rust
# and no Vulkan loader, and takes at most 64 MiB of working tree.
#   scripts/gpu-lent.sh pack          here: the release binary, compressed, and the Vulkan
#                                     loader's Debian packages, into .gpu/ (ignored by git)
#   scripts/gpu-lent.sh run [ARGS]    there: installs the loader, unpacks the binary and runs
#                                     scripts/gpu-bench.sh ARGS; its lines go to stdout and
#                                     to $OUT/gpu-bench.jsonl
# `pack` prints the device call to make. Where a loader is already installed (lavapipe here),
# `run` uses it, so the same command can be tried here first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KIT=.gpu
# Where the lent machines keep NVIDIA's Vulkan driver manifest (the device tool's README).
NVIDIA_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json

pack() {
  export PATH="$HOME/.cargo/bin:$PATH"
  CARGO_TARGET_DIR="$ROOT/target/native" cargo build --release --quiet --bin resnet
  rm -rf "$KIT" && mkdir -p "$KIT/debs"
  # 75 MB to about 11: a call's working tree travels only up to 64 MiB.
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], 'rb'), lzma.open(sys.argv[2], 'wb', preset=6))" \
    target/native/release/resnet "$KIT/resnet.xz"
  # The loaders for amd64, whatever this machine is, from package lists of its own: the
  # packages the device tool's README names (wgpu also probes EGL).
  local lists
  lists="$(mktemp -d)"
  local apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists"
    -oAPT::Sandbox::User=root)
  mkdir -p "$lists/partial"
  apt-get "${apt[@]}" update -qq
  (cd "$KIT/debs" && apt-get "${apt[@]}" download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  rm -rf "$lists"
  du -sh "$KIT"
  echo "now: run(command=\"bash scripts/gpu-lent.sh run\", carry=[\"$KIT\"], timeout_s=540)"
}

run() {
  if ! ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
    for deb in "$KIT"/debs/*.deb; do dpkg -x "$deb" /; done
    ldconfig
  fi
  if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$NVIDIA_ICD" ]; then
    export VK_DRIVER_FILES="$NVIDIA_ICD"
  fi
  local binary
  binary="$(mktemp -d)/resnet"
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    "$KIT/resnet.xz" "$binary"
  chmod +x "$binary"
  local out="${OUT:-$ROOT/$KIT}"
  mkdir -p "$out"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv \
      | tee "$out/nvidia-smi.csv"
  fi
  RESNET="$binary" scripts/gpu-bench.sh "$@" | tee "$out/gpu-bench.jsonl"
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "usage: scripts/gpu-lent.sh pack | run [scripts/gpu-bench.sh's arguments]" >&2; exit 2 ;;
esac
