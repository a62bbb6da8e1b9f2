//! Everything wasm-only: the backends as a browser provides them and the `#[wasm_bindgen]`
//! surface that JavaScript calls. The model code knows nothing of this module.

mod backend;
mod classifier;
mod conv_kernel;
mod training;

pub use backend::{Backend, BackendKind};
pub use classifier::{Classifier, InputKind, Prediction, describe_weights};
pub use training::{TrainingData, TrainingSession};

use wasm_bindgen::prelude::*;

use crate::error::Error;

#[wasm_bindgen(start)]
pub fn start() {
    run_constructors_once();
    // A panic still kills the module, but the console then says where.
    console_error_panic_hook::set_once();
}

/// Runs the static constructors (the `inventory` registrations of cubecl's `pliron`) once.
/// A module that never calls `__wasm_call_ctors` itself has wasm-ld wrap every export to run
/// them again on each call ("command" linkage): that was a quarter of the time of a ResNet-20
/// prediction on the CPU. Called from `start` and, as tests do not run `start`, before any
/// backend is used.
pub(crate) fn run_constructors_once() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    static DONE: std::sync::Once = std::sync::Once::new();
    // SAFETY: wasm-ld defines it; it runs each constructor, and `Once` makes that happen once.
    DONE.call_once(|| unsafe { __wasm_call_ctors() });
}

/// Every exported function fails with a JavaScript `Error` carrying our message, never with a
/// panic, which would kill the module.
pub(crate) fn js_error(error: Error) -> JsValue {
    JsError::new(&error.to_string()).into()
}

/// RGBA bytes from JavaScript, checked before they are copied into wasm memory: an
/// 8000x8000 picture is refused without allocating its 256 MB here.
pub(crate) fn rgba_bytes(
    pixels: &js_sys::Uint8Array,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, JsValue> {
    crate::preprocess::Rgba::check(pixels.length() as usize, width, height).map_err(js_error)?;
    Ok(pixels.to_vec())
}
