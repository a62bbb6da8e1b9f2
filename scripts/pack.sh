#!/usr/bin/env bash
# Makes the npm package resnet-web from pkg/, pkg-threads/ and their FMA twins pkg-fma/ and
# pkg-threads-fma/ (scripts/build-wasm.sh) and js/: the four wasm modules and their glue, the
# ES module API with its TypeScript declarations, and the shipped models. The package keeps
# the repository's layout (js/, pkg*/, models/), so that the relative URLs between them hold
# in both. Prints the tarball's path as its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODULES=(pkg pkg-fma pkg-threads pkg-threads-fma)
for module in "${MODULES[@]}"; do
  for built in "$module/resnet_web.js" "$module/resnet_web_bg.wasm"; do
    [ -f "$built" ] || { echo "no $built: run scripts/build-wasm.sh first" >&2; exit 1; }
  done
done
STAGE="$ROOT/target/package"
rm -rf "$STAGE"
mkdir -p "$STAGE/js" "$STAGE/models"
cp js/resnet-web.js js/resnet-web.d.ts js/protocol.js js/worker.js js/worker-node.js js/imagenet-classes.json "$STAGE/js/"
cp -r js/worker "$STAGE/js/" # the worker's parts, one file per job
for module in "${MODULES[@]}"; do
  mkdir -p "$STAGE/$module"
  cp "$module/resnet_web.js" "$module/resnet_web_bg.wasm" "$STAGE/$module/"
  # The threaded modules' pool workers start from wasm-bindgen-rayon's snippet.
  if [ -d "$module/snippets" ]; then cp -r "$module/snippets" "$STAGE/$module/"; fi
done
cp models/models.json models/*.bpk "$STAGE/models/"
cp README.md "$STAGE/README.md"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > "$STAGE/package.json" <<JSON
{
  "name": "resnet-web",
  "version": "$version",
  "description": "ResNet classification and training in the browser, on WebGPU or the CPU (Rust, burn, WebAssembly)",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "./js/resnet-web.js",
  "types": "./js/resnet-web.d.ts",
  "exports": {
    ".": { "types": "./js/resnet-web.d.ts", "default": "./js/resnet-web.js" },
    "./package.json": "./package.json"
  },
  "files": ["js/", "pkg/", "pkg-fma/", "pkg-threads/", "pkg-threads-fma/", "models/", "README.md"],
  "sideEffects": false
}
JSON
mkdir -p "$ROOT/target"
(cd "$STAGE" && npm pack --silent --pack-destination "$ROOT/target" >/dev/null)
echo "$ROOT/target/resnet-web-$version.tgz"
