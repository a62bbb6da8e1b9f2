//! The ResNet family, backend-generic: tensors carry their device, so nothing here knows
//! whether it runs on WebGPU, on the CPU, or with autodiff.

mod block;
mod config;
mod convolve;
mod fold;
mod model;
#[cfg(webgpu)]
mod webgpu_convolution;

pub use block::{BasicBlock, Bottleneck, DownsampleLayer, PadShortcut, ResidualBlock};
pub use config::{Arch, BlockKind, ResNetConfig, Shortcut, Stem};
pub use convolve::{ConvolveOps, convolve, output_shape as convolve_output_shape};
pub use model::{ResNet, is_running_statistic};
