//! resnet-web: ResNets in Rust with burn, for the browser (WebGPU or CPU, through wasm) and
//! for the command line. Everything but `web` is target-independent and natively tested.
//!
//! - [`resnet`]: the model family, backend-generic.
//! - [`weights`]: torchvision and burnpack weight files; [`pth`]: `torch.save` files.
//! - [`preprocess`]: canvas pixels to model input, per input kind.
//! - `bench` (native): `resnet bench`'s figures, on the CPU or a GPU.
//! - [`classifier`]: a folded model that classifies images, on burn or our CPU kernels.
//! - [`packed`]: a folded ResNet laid out once for fast CPU inference.
//! - [`data`]: labelled image sets, batches and augmentation; `image_folder` (native):
//!   torchvision `ImageFolder` layouts.
//! - [`train`]: the training loop, its options and evaluation.
//! - [`finetune`]: a trained model made ready for new data.
//! - [`session`]: a training session (validation split, fresh or fine-tuned model, the run).
//! - [`transfer`]: a new classifier trained on kept embeddings, Teachable Machine's way.
//! - [`shipped`]: the shipped models and data sets (`models/models.json`).
//! - `device` (native): `--device cpu|gpu`, and what is missing where a GPU cannot be opened.
//! - [`readback`]: tensors read back into host memory.
//! - [`rng`]: the seeded random number generator.
//! - `web` (wasm32 only): the `#[wasm_bindgen]` surface.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod classifier;
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod device;
pub mod error;
pub mod finetune;
pub mod gradient_flow;
#[cfg(not(target_arch = "wasm32"))]
pub mod image_folder;
pub mod npy;
pub mod packed;
pub mod preprocess;
pub mod pth;
pub mod readback;
pub mod resnet;
pub mod rng;
pub mod session;
pub mod shipped;
pub mod train;
pub mod transfer;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
