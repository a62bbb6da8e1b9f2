//! Everything wasm-only: the backends as a browser provides them and the `#[wasm_bindgen]`
//! surface that JavaScript calls. The model code knows nothing of this module.

mod backend;
mod classifier;
mod training;

pub use backend::{Backend, BackendKind};
pub use classifier::{Classifier, InputKind, Prediction, describe_weights};
pub use training::{TrainingData, TrainingSession};

use wasm_bindgen::prelude::*;

use crate::error::Error;

#[wasm_bindgen(start)]
pub fn start() {
    // A panic still kills the module, but the console then says where.
    console_error_panic_hook::set_once();
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
