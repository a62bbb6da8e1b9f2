//! `cfg(webgpu)`: the wasm module with WebGPU. The threaded module (built with atomics and
//! shared memory, scripts/build-wasm.sh) leaves it out: burn's WebGPU backend does not build
//! with atomics.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(webgpu)");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let atomics = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|feature| feature == "atomics"));
    if wasm && !atomics {
        println!("cargo::rustc-cfg=webgpu");
    }
}
