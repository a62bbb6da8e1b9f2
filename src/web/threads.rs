//! The CPU's threads. The threaded module (built with atomics) exports `initThreadPool`,
//! which starts rayon's pool as Web Workers once; `setCpuThreads` then says how many of them
//! a prediction's convolutions use. The other module has one thread and says so.

use wasm_bindgen::prelude::*;

#[cfg(target_feature = "atomics")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Whether this module runs the CPU on a pool of threads (the pool starts with
/// `initThreadPool`).
#[wasm_bindgen(js_name = hasThreads)]
pub fn has_threads() -> bool {
    cfg!(target_feature = "atomics")
}

/// Whether this module's CPU kernels use relaxed SIMD's fused multiply-add (pkg-fma/,
/// pkg-threads-fma/), which only a browser with relaxed SIMD can run.
#[wasm_bindgen(js_name = hasFma)]
pub fn has_fma() -> bool {
    cfg!(feature = "fma")
}

/// How many threads a prediction's convolutions are split over now.
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    cpu_kernels::threads()
}

/// Splits a prediction's convolutions over at most `threads` of the pool's threads (0: all);
/// training uses the whole pool. Returns the count now used.
#[wasm_bindgen(js_name = setCpuThreads)]
pub fn set_cpu_threads(threads: usize) -> usize {
    #[cfg(target_feature = "atomics")]
    cpu_kernels::set_thread_limit(threads);
    let _ = threads;
    cpu_kernels::threads()
}
