//! resnet-web: ResNets in Rust with burn, for the browser (WebGPU or CPU, through wasm) and
//! for the command line.
//!
//! - [`resnet`]: the model family, backend-generic.
//! - [`weights`]: torchvision and burnpack weight files.
//! - [`data`] and [`train`]: labelled image sets and the one training loop.
//! - [`inference`]: turning arrays into input tensors and logits back into arrays.
//! - [`packed`]: a folded ResNet laid out once for fast CPU inference.
//! - [`preprocess`]: canvas pixels to model input, per model family.
//! - `web` (wasm32 only): the `#[wasm_bindgen]` surface.

pub mod data;
pub mod error;
pub mod inference;
pub mod npy;
pub mod packed;
pub mod preprocess;
pub mod resnet;
pub mod train;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
