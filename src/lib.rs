//! resnet-web: ResNets in Rust with burn, for the browser (WebGPU or CPU, through wasm) and
//! for the command line (`main.rs`, `cli.rs`, `bench.rs`). Everything but `web` is
//! target-independent and natively tested. The folders, each using only those above it in
//! this list and `error` (`tests/layout.rs` checks it):
//!
//! - [`ops`]: the backend operations (convolution, BatchNorm) with their CPU defaults,
//!   autodiff and GPU kernels; reading tensors back; natively, opening a device.
//! - [`resnet`]: the model family, backend-generic.
//! - [`weights`]: torchvision and burnpack weight files, `torch.save` files, NumPy arrays.
//! - [`data`]: labelled image sets, image folders, preprocessing, what ships, random numbers.
//! - [`inference`]: the classifier, and the packed model of our CPU kernels.
//! - [`training`]: the loop, sessions, fine-tuning, transfer learning, gradient flow.
//! - `web` (wasm32 only): the `#[wasm_bindgen]` surface.

pub mod data;
pub mod error;
pub mod inference;
pub mod ops;
pub mod resnet;
pub mod training;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
