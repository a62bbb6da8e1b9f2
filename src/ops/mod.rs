//! The backend operations the model is made of, as backend extensions: convolution (with its
//! fused epilogues) and BatchNorm, each with a CPU default and its autodiff, and their GPU
//! kernels in `gpu`. Beside them, what every backend needs of the host: reading tensors back
//! (`readback`), and natively, opening a device (`device`). Uses nothing of the crate but
//! `error`.

mod batch_norm;
mod convolve;
#[cfg(not(target_arch = "wasm32"))]
pub mod device;
#[cfg(feature = "gpu")]
mod gpu;
pub mod readback;

pub use batch_norm::{BatchNormOps, batch_norm_forward, use_batch_norm_kernels};
pub use convolve::{
    ConvolveOps, GpuConvolutionKernel, GpuTile, break_gpu_convolutions_for_tests, convolve,
    convolve_add_relu, convolve_relu, fixed_gpu_tile, gpu_convolution_kernel, gpu_prefetch,
    output_shape as convolve_output_shape, pack_weight, use_gpu_convolution_kernel,
    use_gpu_prefetch, use_gpu_tile,
};
#[cfg(feature = "gpu")]
pub use gpu::rule_tile;
