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
