//! The GPU kernels of `ops`, written in CubeCL for burn's wgpu runtime (WebGPU in the
//! browser; Vulkan, Metal or DX12 natively): the direct and tiled convolutions with their
//! fused epilogues and gradients, and BatchNorm's statistics and normalisation. Each
//! implements its operation's backend extension for the GPU backend; uses `ops` and `error`.

mod batch_norm;
mod convolution;
mod tiled_convolution;

pub use convolution::rule_tile;
