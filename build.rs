//! `cfg(webgpu)`: the wasm module with WebGPU, the `gpu` feature on wasm32. The threaded module
//! (built with atomics and shared memory, scripts/build-wasm.sh) is built without `gpu`: burn's
//! WebGPU backend does not build with atomics. Natively, `gpu` is the `--device gpu` of the CLI.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(webgpu)");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let gpu = std::env::var_os("CARGO_FEATURE_GPU").is_some();
    if wasm && gpu {
        println!("cargo::rustc-cfg=webgpu");
    }
}
