//! Everything wasm-only: the backends as a browser provides them and the `#[wasm_bindgen]`
//! surface that JavaScript calls, each a thin call into the library. The library knows
//! nothing of this module.

mod backend;
mod classifier;
mod convert;
mod heap;
mod threads;
mod training;
mod transfer;

#[cfg(webgpu)]
pub use backend::webgpu_pool_bytes;
pub use backend::{Backend, BackendKind};
pub use classifier::{Classifier, Prediction, convert_weights, describe_weights};
pub use convert::decode_image;
pub use heap::{heap_bytes, heap_peak_bytes, mark_heap_peak};
#[cfg(target_feature = "atomics")]
pub use threads::init_thread_pool;
pub use threads::{cpu_threads, has_threads, set_cpu_threads};
pub use training::{TrainingData, TrainingSession};
pub use transfer::{TrainedHead, train_head};

use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
pub fn start() {
    backend::run_constructors_once();
    // A panic still kills the module, but the console then says where.
    console_error_panic_hook::set_once();
}

/// For tests only: `tests/worker-prelude.mjs` calls it from the module's exports (the worker
/// never does), so that a test sees the check of WebGPU's answers against the CPU's refuse a
/// GPU that computes wrong.
#[cfg(webgpu)]
#[wasm_bindgen(js_name = testOnlyBreakGpuConvolutions)]
pub fn test_only_break_gpu_convolutions(broken: bool) {
    crate::ops::break_gpu_convolutions_for_tests(broken);
}

/// Opens the WebGPU device, once per module (later calls share it), and resolves to what it
/// runs on. The worker opens it before anything else uses WebGPU: two openings at the same
/// time fail in burn's wgpu runtime ("a server is still registered for device").
#[cfg(webgpu)]
#[wasm_bindgen(js_name = openWebgpu)]
pub fn open_webgpu() -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async {
        let backend = Backend::init(BackendKind::WebGpu)
            .await
            .map_err(convert::js_error)?;
        Ok(JsValue::from(backend.description))
    })
}
