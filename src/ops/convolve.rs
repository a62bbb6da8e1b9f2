//! The model's convolutions, through a backend extension so that a backend can run its own
//! kernels: on a GPU, `src/ops/gpu/convolution.rs`. Elsewhere (the CPU) the default bodies are
//! burn's own convolution and its gradients. With autodiff, the forward and both gradients go
//! through the extension too, so training on WebGPU runs our kernels.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

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
    Cube: cfg(feature = "gpu"),
    Fusion: cfg(feature = "gpu"),
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

    /// The gradient of `convolve` with respect to its input (`input` gives the shape).
    #[fusion(dtype = input, shape = input)]
    fn convolve_input_grad(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(
            input,
            weight,
            output_grad,
            ConvOptions::new(stride, padding, [1, 1], 1),
        )
    }

    /// A weight that will not change (a folded model's), stored as this backend's
    /// convolutions read it: on a GPU, the same [out, in, kernel rows, kernel columns] tensor
    /// with its memory in [kernel rows, kernel columns, in, out] order, so that no convolution
    /// copies it again. Elsewhere the weight itself.
    #[fusion(dtype = weight, shape = weight)]
    fn pack_weight(weight: FloatTensor<Self>) -> FloatTensor<Self> {
        weight
    }

    /// `relu(convolve(input, weight, bias))`: on a GPU, one kernel that clamps as it stores.
    #[fusion(dtype = input, shape = output_shape(input, weight, stride, padding))]
    fn convolve_relu(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::relu(Self::convolve(input, weight, bias, stride, padding))
    }

    /// `relu(convolve(input, weight, bias) + residual)`, a residual block's end: on a GPU,
    /// one kernel that adds and clamps as it stores.
    #[fusion(dtype = input, shape = output_shape(input, weight, stride, padding))]
    fn convolve_add_relu(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::relu(Self::float_add(
            Self::convolve(input, weight, bias, stride, padding),
            residual,
        ))
    }

    /// The gradient of `convolve` with respect to its weight.
    #[fusion(dtype = weight, shape = weight)]
    fn convolve_weight_grad(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(
            input,
            weight,
            output_grad,
            ConvOptions::new(stride, padding, [1, 1], 1),
        )
    }
}

impl ConvolveOps for Flex {}

/// What the backward pass of `convolve` keeps: the input and weight, stride and padding.
type ConvolveState = (NodeId, NodeId, [usize; 2], [usize; 2]);

#[derive(Debug)]
struct ConvolveBackward;

impl<B: Backend + ConvolveOps> Backward<B, 3> for ConvolveBackward {
    type State = ConvolveState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [input_node, weight_node, bias_node] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let (input_state, weight_state, stride, padding) = ops.state;
        let input = checkpointer.retrieve_node_output::<FloatTensor<B>>(input_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        if let Some(node) = input_node {
            let grad = B::convolve_input_grad(
                input.clone(),
                weight.clone(),
                output_grad.clone(),
                stride,
                padding,
            );
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = bias_node {
            // Summed over the batch and the pixels: one value per output channel.
            let channels = output_grad.shape()[1];
            let grad = B::float_reshape(
                B::float_sum_dims(output_grad.clone(), &[0, 2, 3]),
                [channels].into(),
            );
            grads.register::<B>(node.id, grad);
        }
        if let Some(node) = weight_node {
            let grad = B::convolve_weight_grad(input, weight, output_grad, stride, padding);
            grads.register::<B>(node.id, grad);
        }
    }
}

impl<B: Backend + ConvolveOps, C: CheckpointStrategy> ConvolveOps for Autodiff<B, C> {
    fn convolve(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        match ConvolveBackward
            .prepare::<C>([input.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let input_state = prep.checkpoint(&input);
                let weight_state = prep.checkpoint(&weight);
                let output = B::convolve(
                    input.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    stride,
                    padding,
                );
                prep.finish((input_state, weight_state, stride, padding), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::convolve(
                input.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
                padding,
            )),
        }
    }
}

/// A layer's weight, bias, stride and padding as `ConvolveOps` takes them; `None` where it
/// does not fit them (asymmetric or same padding, groups, dilation).
fn convolve_arguments(conv: &Conv2d) -> Option<(Tensor<4>, Tensor<1>, [usize; 2], [usize; 2])> {
    let symmetric = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            (top == bottom && left == right).then_some([top, left])
        }
        PaddingConfig2d::Valid => Some([0, 0]),
        _ => None,
    };
    let padding = symmetric.filter(|_| conv.groups == 1 && conv.dilation == [1, 1])?;
    let weight = conv.weight.val();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([weight.dims()[0]], &weight.device()),
    };
    Some((weight, bias, conv.stride, padding))
}

/// `conv.forward(input)`, through [`ConvolveOps`] where the layer fits it.
pub fn convolve(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    let Some((weight, bias, stride, padding)) = convolve_arguments(conv) else {
        return conv.forward(input);
    };
    Tensor::from_dispatch(<burn::backend::Dispatch as ConvolveOps>::convolve(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

/// `relu(conv.forward(input))`, in one kernel on a GPU.
pub fn convolve_relu(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    let Some((weight, bias, stride, padding)) = convolve_arguments(conv) else {
        return relu(conv.forward(input));
    };
    Tensor::from_dispatch(<burn::backend::Dispatch as ConvolveOps>::convolve_relu(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

/// `relu(conv.forward(input) + residual)`, in one kernel on a GPU.
pub fn convolve_add_relu(conv: &Conv2d, input: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
    let Some((weight, bias, stride, padding)) = convolve_arguments(conv) else {
        return relu(conv.forward(input) + residual);
    };
    Tensor::from_dispatch(<burn::backend::Dispatch as ConvolveOps>::convolve_add_relu(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        residual.into_dispatch(),
        stride,
        padding,
    ))
}

/// A weight that will not change, stored as the device's convolutions read it
/// ([`ConvolveOps::pack_weight`]).
pub fn pack_weight(weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as ConvolveOps>::pack_weight(
        weight.into_dispatch(),
    ))
}

/// Which forward kernel a GPU's convolutions run (`src/ops/gpu/convolution.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuConvolutionKernel {
    /// 4 pixels by 4 channels an invocation, straight from global memory: the faster on
    /// software adapters (SwiftShader, lavapipe), which load each lane apart.
    Direct,
    /// Tiles staged in workgroup memory (`src/ops/gpu/tiled_convolution.rs`): for GPUs,
    /// where each value loaded should serve many multiply-adds.
    Tiled,
}

impl GpuConvolutionKernel {
    /// The rule a device opens with: by the adapter's type, which needs no timing and so costs
    /// the first prediction nothing.
    pub fn for_adapter(is_cpu: bool) -> Self {
        if is_cpu { Self::Direct } else { Self::Tiled }
    }
}

static TILED_CONVOLUTIONS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Chooses the GPU convolution kernel for every GPU device of this process (one is opened at
/// a time: the CLI's, or the page's WebGPU device).
pub fn use_gpu_convolution_kernel(kernel: GpuConvolutionKernel) {
    TILED_CONVOLUTIONS.store(
        kernel == GpuConvolutionKernel::Tiled,
        std::sync::atomic::Ordering::Relaxed,
    );
}

pub fn gpu_convolution_kernel() -> GpuConvolutionKernel {
    if TILED_CONVOLUTIONS.load(std::sync::atomic::Ordering::Relaxed) {
        GpuConvolutionKernel::Tiled
    } else {
        GpuConvolutionKernel::Direct
    }
}

/// The tiled kernel's tiles, output pixels by output channels (`TileShape` in
/// `src/ops/gpu/tiled_convolution.rs`). A rule picks one per layer; `resnet bench --only
/// tiles` times each on each layer, which is what that rule is to be tuned by on a real GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTile {
    /// 128 by 16.
    Narrow,
    /// 64 by 64.
    Small,
    /// 128 by 64.
    Tall,
    /// 64 by 128: a candidate the rule does not pick yet, for the 14 and 7 px layers of
    /// 256 and 512 channels, which get the small tile.
    Wide,
    /// 128 by 128.
    Large,
}

impl GpuTile {
    pub const ALL: [GpuTile; 5] = [
        GpuTile::Narrow,
        GpuTile::Small,
        GpuTile::Tall,
        GpuTile::Wide,
        GpuTile::Large,
    ];
}

/// 0 where the rule picks the tile, else 1 + the tile's index in `GpuTile::ALL`.
static FIXED_TILE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Fixes the tiled kernel's tile for every layer (forward and input gradient), or gives the
/// choice back to the rule with `None`: for the bench and the tests, one switch per process.
pub fn use_gpu_tile(tile: Option<GpuTile>) {
    // `GpuTile::ALL` lists the tiles in their declaration order.
    let index = tile.map_or(0, |tile| tile as usize + 1);
    FIXED_TILE.store(index, std::sync::atomic::Ordering::Relaxed);
}

/// The tile `use_gpu_tile` fixed, if any.
pub fn fixed_gpu_tile() -> Option<GpuTile> {
    match FIXED_TILE.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        index => GpuTile::ALL.get(index - 1).copied(),
    }
}

static BROKEN_ON_PURPOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every GPU convolution wrong on purpose (its epilogue's ReLU flipped), or right again:
/// for the tests of the check that compares WebGPU's answers with the CPU's, which must
/// refuse a GPU that computes wrong (a missing barrier or a race in workgroup memory shows on
/// a real GPU, never on the CPU adapters the tests run on). Nothing but a test sets it.
pub fn break_gpu_convolutions_for_tests(broken: bool) {
    BROKEN_ON_PURPOSE.store(broken, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "gpu")]
pub fn gpu_convolutions_broken() -> bool {
    BROKEN_ON_PURPOSE.load(std::sync::atomic::Ordering::Relaxed)
}

static PREFETCH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the tiled kernel issues each stage's loads before the previous stage's arithmetic
/// (registers standing in for a second buffer of workgroup memory), for every layer. Off
/// until a real GPU's `resnet bench --only tiles`, which times both, shows it pays: on a CPU
/// adapter it cannot.
pub fn use_gpu_prefetch(prefetch: bool) {
    PREFETCH.store(prefetch, std::sync::atomic::Ordering::Relaxed);
}

pub fn gpu_prefetch() -> bool {
    PREFETCH.load(std::sync::atomic::Ordering::Relaxed)
}
