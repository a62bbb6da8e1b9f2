//! The model's convolutions, through a backend extension so that a backend can run its own
//! kernel: on WebGPU, `src/web/conv_kernel.rs` (tiles of 4 pixels by 4 output channels, about
//! twice as fast as burn's direct kernel on SwiftShader). Everywhere else, and for gradients,
//! the default body is burn's own `conv2d`.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// NCHW output shape of a convolution with dilation 1 and one group.
pub fn output_shape(
    input: &burn::tensor::Shape,
    weight: &burn::tensor::Shape,
    stride: &[usize; 2],
    padding: &[usize; 2],
) -> burn::tensor::Shape {
    let out = |size: usize, kernel: usize, axis: usize| {
        (size + 2 * padding[axis] - kernel) / stride[axis] + 1
    };
    burn::tensor::Shape::new([
        input[0],
        weight[0],
        out(input[2], weight[2], 0),
        out(input[3], weight[3], 1),
    ])
}

#[backend_extension(
    Flex,
    Cube: cfg(target_arch = "wasm32"),
    Fusion: cfg(target_arch = "wasm32"),
    Autodiff
)]
pub trait ConvolveOps: Backend {
    /// A convolution with symmetric padding, dilation 1 and one group; `bias` has one value
    /// per output channel.
    #[fusion(dtype = input, shape = output_shape(input, weight, stride, padding))]
    fn convolve(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv2d(
            input,
            weight,
            Some(bias),
            ConvOptions::new(stride, padding, [1, 1], 1),
        )
    }
}

impl ConvolveOps for Flex {}

// Training differentiates burn's convolution.
impl<B: Backend + ConvolveOps, C: CheckpointStrategy> ConvolveOps for Autodiff<B, C> {}

/// `conv.forward(input)`, through [`ConvolveOps`] where the layer fits it.
pub fn convolve(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    let symmetric = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            (top == bottom && left == right).then_some([top, left])
        }
        PaddingConfig2d::Valid => Some([0, 0]),
        _ => None,
    };
    let Some(padding) = symmetric.filter(|_| conv.groups == 1 && conv.dilation == [1, 1]) else {
        return conv.forward(input);
    };
    let weight = conv.weight.val();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([weight.dims()[0]], &weight.device()),
    };
    Tensor::from_dispatch(<burn::backend::Dispatch as ConvolveOps>::convolve(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        conv.stride,
        padding,
    ))
}
