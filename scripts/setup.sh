#!/usr/bin/env bash
# Installs what building, serving and testing need, once; quick when all is there.
# Sourced by scripts/serve.sh and scripts/test.sh. Afterwards:
#   wasm_cargo_env   - the environment for wasm32 builds (an array of VAR=value)
#   threads_cargo_env - the same for the threaded CPU module (pkg-threads/)
#   WASM_PACK_MODE   - the wasm-pack --mode for builds (normal, or force on the Debian route)
#   WASM_TEST_MODE   - the wasm-pack --mode for tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

have_debian_packages() { command -v apt-get >/dev/null; }

# Browsers (Chromium, Firefox for tests/firefox.test.mjs, and WebKitGTK's MiniBrowser with its
# WebDriver and an X server without a screen for tests/webkit.test.mjs), the data sets `resnet train`
# and `resnet eval` read, and Vulkan on the CPU (the loader and Mesa's lavapipe) for the
# native GPU tests (tests/gpu.rs) on a machine without a GPU.
if have_debian_packages; then
  apt_install chromium chromium-driver firefox-esr webkit2gtk-driver xvfb dataset-fashion-mnist libvulkan1 mesa-vulkan-drivers
fi
if ! cmp -s "$ROOT/package-lock.json" "$TOOLS/npm-installed.lock"; then
  log "installing npm packages (package-lock.json)"
  (cd "$ROOT" && npm ci --silent --no-audit --no-fund)
  cp "$ROOT/package-lock.json" "$TOOLS/npm-installed.lock"
fi
# The page's training panel reads Fashion-MNIST from the server, as data/fashion-mnist/.
FASHION_DIR="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
if [ -d "$FASHION_DIR" ] && [ ! -e "$ROOT/data/fashion-mnist" ]; then
  mkdir -p "$ROOT/data"
  ln -s "$FASHION_DIR" "$ROOT/data/fashion-mnist"
fi
export CHROME_BIN="${CHROME_BIN:-$(command -v chromium || command -v google-chrome || echo /usr/bin/chromium)}"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/bin/chromedriver)}"

# The wasm32 standard library: rustup's where it can be had, else Debian's Rust with std built
# from source (rustup cannot download the wasm32 target on some machines).
# RESNET_WEB_WASM_ROUTE=rustup|debian forces a route (to test the other one).
route_file="$TOOLS/wasm-route"
if [ -n "${RESNET_WEB_WASM_ROUTE:-}" ]; then
  echo "$RESNET_WEB_WASM_ROUTE" > "$route_file"
elif [ ! -f "$route_file" ]; then
  if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' \
    || timeout 120 rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
    echo rustup > "$route_file"
  else
    echo debian > "$route_file"
  fi
fi
WASM_ROUTE="$(cat "$route_file")"
# The wasm is optimised for size (opt-level s halves it, and the CPU backend is no slower;
# docs/design.md "The wasm build"). Through the environment, so that native builds keep
# opt-level 3 and `wasm-pack build` and `wasm-pack test` share one build of the dependencies.
# SIMD (simd128) is in .cargo/config.toml.
# One codegen unit: the gzipped wasm 6% smaller (3.76 MB instead of 4.01 MB), WebGPU and
# CPU training faster, CPU inference as fast with the kernels' crate kept at 16 units
# (Cargo.toml); docs/design.md "The wasm build".
wasm_cargo_env=(CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1)
if [ "$WASM_ROUTE" = debian ]; then
  apt_install rustc-web cargo-web rust-web-src rust-web-llvm lld-22
  rustup toolchain list | grep -q '^debian' || rustup toolchain link debian /usr
  # build-std through the environment: `wasm-pack test` drops extra cargo arguments on its
  # first build. `test` is in the std set for builds too, so tests reuse every dependency.
  wasm_cargo_env+=(RUSTUP_TOOLCHAIN=debian RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort,test)
  WASM_PACK_MODE=force
  WASM_TEST_MODE=no-install
else
  WASM_PACK_MODE=normal
  WASM_TEST_MODE=normal
fi
log "wasm32 route: $WASM_ROUTE"

# The threaded CPU module (pkg-threads/): atomics, bulk memory and SIMD, with the standard
# library rebuilt for them (build-std: rust-src on the rustup route, rust-web-src on Debian's;
# RUSTC_BOOTSTRAP lets stable take it) and a shared memory the page's workers import, with
# the thread-local storage exports wasm-bindgen-rayon's workers start from. A shared memory
# cannot grow past its declared maximum, so that is wasm32's whole 4 GiB, which the other
# module can grow to as well. A target directory of its own, as every dependency is built
# with other flags.
threads_rustflags="-C target-feature=+atomics,+bulk-memory,+simd128 -C link-arg=--shared-memory"
threads_rustflags+=" -C link-arg=--max-memory=4294967296 -C link-arg=--import-memory"
for symbol in __wasm_init_tls __tls_size __tls_align __tls_base; do
  threads_rustflags+=" -C link-arg=--export=$symbol"
done
threads_cargo_env=("${wasm_cargo_env[@]}" RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
  "CARGO_TARGET_DIR=$ROOT/target/wasm-threads"
  "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS=$threads_rustflags")
if [ "$WASM_ROUTE" = rustup ] && ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  log "installing rust-src (the threaded module rebuilds std)"
  rustup component add rust-src >/dev/null
fi

# wasm-bindgen-cli must be exactly the version in Cargo.lock.
bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' "$ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')"
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$bindgen_version" ]; then
  log "installing wasm-bindgen-cli $bindgen_version (a few minutes)"
  cargo install -q wasm-bindgen-cli --version "=$bindgen_version"
fi
if ! command -v wasm-pack >/dev/null; then
  log "installing wasm-pack (a few minutes)"
  cargo install -q --locked wasm-pack
fi
