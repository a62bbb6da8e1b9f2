//! `cfg(fma)`: the `fma` feature in a wasm32 build with SIMD, the only target whose kernels
//! have relaxed SIMD's fused multiply-add; elsewhere the feature changes nothing.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fma)");
    println!("cargo::rerun-if-changed=build.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let simd = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|feature| feature == "simd128"));
    if std::env::var_os("CARGO_FEATURE_FMA").is_some() && wasm && simd {
        println!("cargo::rustc-cfg=fma");
    }
}
