//! The ResNet family, backend-generic: tensors carry their device, so nothing here knows
//! whether it runs on a GPU (WebGPU, Vulkan, Metal), on the CPU, or with autodiff.

mod batch_norm;
mod block;
mod config;
mod convolve;
mod fold;
#[cfg(feature = "gpu")]
mod gpu_batch_norm;
#[cfg(feature = "gpu")]
mod gpu_convolution;
#[cfg(feature = "gpu")]
mod gpu_tiled_convolution;
mod model;

pub use batch_norm::{BatchNormOps, batch_norm_forward, use_batch_norm_kernels};
pub use block::{BasicBlock, Bottleneck, DownsampleLayer, PadShortcut, ResidualBlock};
pub use config::{Arch, BlockKind, Preset, ResNetConfig, Shortcut, Stem};
pub use convolve::{
    ConvolveOps, GpuConvolutionKernel, GpuTile, convolve, fixed_gpu_tile, gpu_convolution_kernel,
    gpu_prefetch, output_shape as convolve_output_shape, use_gpu_convolution_kernel,
    use_gpu_prefetch, use_gpu_tile,
};
#[cfg(feature = "gpu")]
pub use gpu_convolution::rule_tile;
pub use model::{ResNet, is_running_statistic};
