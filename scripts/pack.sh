#!/usr/bin/env bash
# Makes the npm package resnet-web from pkg/ and pkg-threads/ (scripts/build-wasm.sh) and js/:
# both wasm modules and their glue, the ES module API with its TypeScript declarations, and
# the shipped models. The package keeps the repository's layout (js/, pkg/, pkg-threads/,
# models/), so that the relative URLs between them hold in both. Prints the tarball's path
# as its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
for built in pkg/resnet_web.js pkg/resnet_web_bg.wasm pkg-threads/resnet_web.js pkg-threads/resnet_web_bg.wasm; do
  [ -f "$built" ] || { echo "no $built: run scripts/build-wasm.sh first" >&2; exit 1; }
done
STAGE="$ROOT/target/package"
rm -rf "$STAGE"
mkdir -p "$STAGE/js" "$STAGE/pkg" "$STAGE/pkg-threads" "$STAGE/models"
cp js/resnet-web.js js/resnet-web.d.ts js/protocol.js js/worker.js js/imagenet-classes.json "$STAGE/js/"
cp pkg/resnet_web.js pkg/resnet_web_bg.wasm "$STAGE/pkg/"
# The threaded module's pool workers start from wasm-bindgen-rayon's snippet.
cp -r pkg-threads/resnet_web.js pkg-threads/resnet_web_bg.wasm pkg-threads/snippets "$STAGE/pkg-threads/"
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
  "files": ["js/", "pkg/", "pkg-threads/", "models/", "README.md"],
  "sideEffects": false
}
JSON
mkdir -p "$ROOT/target"
(cd "$STAGE" && npm pack --silent --pack-destination "$ROOT/target" >/dev/null)
echo "$ROOT/target/resnet-web-$version.tgz"
