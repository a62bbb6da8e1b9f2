//! BatchNorm in training mode through a backend extension, as the convolutions go through
//! `ConvolveOps`: the batch's statistics, the normalisation, and a backward pass of one
//! reduction (two sums per channel) and one elementwise pass. burn 0.22's default swaps the
//! batch and channel axes (a copy of the whole activation) before each of its reductions: 85%
//! of a ResNet-18 training step on a GPU (docs/benchmark.md "Real GPU"). Our GPU kernels are in
//! `gpu_batch_norm.rs`, the CPU's in `cpu_kernels::batch_norm`; the default bodies below are
//! the same arithmetic in burn's tensor operations, without the copies, for any other backend.
//!
//! Running statistics are updated as PyTorch updates them: momentum 0.1 and the unbiased
//! variance. burn's own BatchNorm feeds the biased variance into `running_var`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, Scalar, Shape, TensorMetadata, backend_extension};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::{TensorData, s};
use burn_flex::FlexTensor;
use cpu_kernels::batch_norm::{self as cpu, NormShape};

/// `[2, channels]`: what `batch_norm_statistics` and `batch_norm_grad_sums` return.
pub fn statistics_shape(input: &Shape) -> Shape {
    Shape::new([2, input[1]])
}

#[backend_extension(
    Flex,
    Cube: cfg(feature = "gpu"),
    Fusion: cfg(feature = "gpu"),
    Autodiff
)]
pub trait BatchNormOps: Backend {
    /// The batch's statistics of an NCHW input, per channel: row 0 the mean, row 1 the
    /// biased variance (over batch, height and width).
    #[fusion(dtype = input, shape = statistics_shape(input))]
    fn batch_norm_statistics(input: FloatTensor<Self>) -> FloatTensor<Self> {
        composite::statistics::<Self>(input)
    }

    /// `(x - mean) / sqrt(variance + epsilon) * gamma + beta`, with the batch's `statistics`
    /// (`batch_norm_statistics` of this very input: the backward pass differentiates through
    /// them).
    #[fusion(dtype = input, shape = input)]
    fn batch_norm_normalize(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        composite::train::<Self>(input, statistics, gamma, beta, epsilon)
    }

    /// The backward pass's reduction: per channel, row 0 the sum of the output gradient
    /// (beta's gradient), row 1 the sum of the output gradient times the normalised input
    /// (gamma's gradient).
    #[fusion(dtype = input, shape = statistics_shape(input))]
    fn batch_norm_grad_sums(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        composite::grad_sums::<Self>(input, statistics, output_grad, epsilon)
    }

    /// The input's gradient, through the statistics too: gamma / std * (dy - mean(dy) -
    /// x_hat * mean(dy * x_hat)), from `batch_norm_grad_sums`' `sums`.
    #[fusion(dtype = input, shape = input)]
    fn batch_norm_input_grad(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        sums: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        composite::input_grad::<Self>(input, statistics, gamma, output_grad, sums, epsilon)
    }
}

/// The operations in burn's tensor operations: the trait's default bodies, and what a backend
/// with kernels of its own falls back to on an input they do not take.
pub(crate) mod composite {
    use super::*;

    pub fn statistics<B: Backend>(input: FloatTensor<B>) -> FloatTensor<B> {
        let [batch, channels, height, width] = dims4(&input);
        let flat = B::float_reshape(input, Shape::new([batch, channels, height * width]));
        let per_channel = |t| B::float_mean_dim(B::float_mean_dim(t, 2), 0);
        let mean = per_channel(flat.clone());
        let centered = B::float_sub(flat, mean.clone());
        let variance = per_channel(B::float_mul(centered.clone(), centered));
        let row = |t| B::float_reshape(t, Shape::new([1, channels]));
        B::float_cat(vec![row(mean), row(variance)], 0)
    }

    pub fn train<B: Backend>(
        input: FloatTensor<B>,
        statistics: FloatTensor<B>,
        gamma: FloatTensor<B>,
        beta: FloatTensor<B>,
        epsilon: f64,
    ) -> FloatTensor<B> {
        let channels = dims4(&input)[1];
        let [mean, variance] = rows::<B>(statistics, channels);
        let (scale, shift) = scale_shift::<B>(mean, variance, gamma, beta, epsilon);
        B::float_add(B::float_mul(input, scale), shift)
    }

    pub fn grad_sums<B: Backend>(
        input: FloatTensor<B>,
        statistics: FloatTensor<B>,
        output_grad: FloatTensor<B>,
        epsilon: f64,
    ) -> FloatTensor<B> {
        let [batch, channels, height, width] = dims4(&input);
        let normalized = normalized::<B>(input, statistics, epsilon);
        let flat = |t| B::float_reshape(t, Shape::new([batch, channels, height * width]));
        let per_channel = |t| {
            let sum = B::float_sum_dim(B::float_sum_dim(flat(t), 2), 0);
            B::float_reshape(sum, Shape::new([1, channels]))
        };
        let dy_x = B::float_mul(output_grad.clone(), normalized);
        B::float_cat(vec![per_channel(output_grad), per_channel(dy_x)], 0)
    }

    pub fn input_grad<B: Backend>(
        input: FloatTensor<B>,
        statistics: FloatTensor<B>,
        gamma: FloatTensor<B>,
        output_grad: FloatTensor<B>,
        sums: FloatTensor<B>,
        epsilon: f64,
    ) -> FloatTensor<B> {
        let [batch, channels, height, width] = dims4(&input);
        let count = (batch * height * width) as f64;
        let [_, variance] = rows::<B>(statistics.clone(), channels);
        let normalized = normalized::<B>(input, statistics, epsilon);
        let [dy_mean, dy_x_mean] =
            rows::<B>(B::float_div_scalar(sums, Scalar::Float(count)), channels);
        let scale = B::float_mul(
            per_channel_shape::<B>(gamma, channels),
            inverse_std::<B>(variance, epsilon),
        );
        let centered = B::float_sub(output_grad, dy_mean);
        let projected = B::float_mul(normalized, dy_x_mean);
        B::float_mul(scale, B::float_sub(centered, projected))
    }
}

fn dims4<T: TensorMetadata>(tensor: &T) -> [usize; 4] {
    let shape = tensor.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A `[channels]` tensor as `[1, channels, 1, 1]`, to broadcast over NCHW.
fn per_channel_shape<B: Backend>(tensor: FloatTensor<B>, channels: usize) -> FloatTensor<B> {
    B::float_reshape(tensor, Shape::new([1, channels, 1, 1]))
}

/// The two rows of a `[2, channels]` tensor, each as `[1, channels, 1, 1]`.
fn rows<B: Backend>(pair: FloatTensor<B>, channels: usize) -> [FloatTensor<B>; 2] {
    [0, 1].map(|row| {
        let one = B::float_slice(pair.clone(), s![row..row + 1, 0..channels].as_slice());
        B::float_reshape(one, Shape::new([1, channels, 1, 1]))
    })
}

/// 1 / sqrt(variance + epsilon).
fn inverse_std<B: Backend>(variance: FloatTensor<B>, epsilon: f64) -> FloatTensor<B> {
    B::float_recip(B::float_sqrt(B::float_add_scalar(
        variance,
        Scalar::Float(epsilon),
    )))
}

/// Per channel, the scale and shift that `x * scale + shift` normalises with.
fn scale_shift<B: Backend>(
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let channels = mean.shape()[1];
    let scale = B::float_mul(
        per_channel_shape::<B>(gamma, channels),
        inverse_std::<B>(variance, epsilon),
    );
    let shift = B::float_sub(
        per_channel_shape::<B>(beta, channels),
        B::float_mul(mean, scale.clone()),
    );
    (scale, shift)
}

/// `(x - mean) / sqrt(variance + epsilon)`.
fn normalized<B: Backend>(
    input: FloatTensor<B>,
    statistics: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    let channels = dims4(&input)[1];
    let [mean, variance] = rows::<B>(statistics, channels);
    B::float_mul(
        B::float_sub(input, mean),
        inverse_std::<B>(variance, epsilon),
    )
}

/// A Flex tensor's values, contiguous and in its logical order.
fn flex_values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => std::borrow::Cow::Borrowed(values),
        None => std::borrow::Cow::Owned(tensor.to_contiguous().storage::<f32>().to_vec()),
    }
}

fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

fn norm_shape(tensor: &FlexTensor) -> NormShape {
    let [batch, channels, height, width] = dims4(tensor);
    NormShape {
        batch,
        channels,
        pixels: height * width,
    }
}

/// The two rows of a `[2, channels]` Flex tensor.
fn flex_rows(pair: &FlexTensor) -> [Vec<f32>; 2] {
    let values = flex_values(pair);
    let channels = values.len() / 2;
    [values[..channels].to_vec(), values[channels..].to_vec()]
}

/// Flex: our loops over each image's contiguous channel runs (`cpu_kernels::batch_norm`),
/// where the input is float32; burn's tensor operations otherwise.
impl BatchNormOps for Flex {
    fn batch_norm_statistics(input: FlexTensor) -> FlexTensor {
        if input.dtype() != burn::backend::DType::F32 || input.shape().num_dims() != 4 {
            return composite::statistics::<Flex>(input);
        }
        let shape = norm_shape(&input);
        let (mean, variance) = cpu::statistics(&flex_values(&input), shape);
        flex_tensor([mean, variance].concat(), [2, shape.channels])
    }

    fn batch_norm_normalize(
        input: FlexTensor,
        statistics: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let shape = norm_shape(&input);
        let [mean, variance] = flex_rows(&statistics);
        let (gamma, beta) = (flex_values(&gamma), flex_values(&beta));
        let output = cpu::normalize(
            &flex_values(&input),
            shape,
            [&mean, &variance],
            [&gamma, &beta],
            epsilon,
        );
        flex_tensor(output, input.shape())
    }

    fn batch_norm_grad_sums(
        input: FlexTensor,
        statistics: FlexTensor,
        output_grad: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let shape = norm_shape(&input);
        let [mean, variance] = flex_rows(&statistics);
        let (dy_sum, dy_x_sum) = cpu::grad_sums(
            &flex_values(&input),
            &flex_values(&output_grad),
            shape,
            [&mean, &variance],
            epsilon,
        );
        flex_tensor([dy_sum, dy_x_sum].concat(), [2, shape.channels])
    }

    fn batch_norm_input_grad(
        input: FlexTensor,
        statistics: FlexTensor,
        gamma: FlexTensor,
        output_grad: FlexTensor,
        sums: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let shape = norm_shape(&input);
        let [mean, variance] = flex_rows(&statistics);
        let [dy_sum, dy_x_sum] = flex_rows(&sums);
        let output = cpu::input_grad(
            &flex_values(&input),
            &flex_values(&output_grad),
            shape,
            [&mean, &variance],
            &flex_values(&gamma),
            [&dy_sum, &dy_x_sum],
            epsilon,
        );
        flex_tensor(output, input.shape())
    }
}

/// What the backward pass of `batch_norm_normalize` keeps: the input and gamma, the statistics
/// and epsilon.
type BatchNormState<B> = (NodeId, NodeId, FloatTensor<B>, f64);

#[derive(Debug)]
struct BatchNormBackward;

impl<B: Backend + BatchNormOps> Backward<B, 3> for BatchNormBackward {
    type State = BatchNormState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [input_node, gamma_node, beta_node] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let (input_state, gamma_state, statistics, epsilon) = ops.state;
        let input = checkpointer.retrieve_node_output::<FloatTensor<B>>(input_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let channels = gamma.shape()[0];
        let sums = B::batch_norm_grad_sums(
            input.clone(),
            statistics.clone(),
            output_grad.clone(),
            epsilon,
        );
        let row = |row: usize| {
            let one = B::float_slice(sums.clone(), s![row..row + 1, 0..channels].as_slice());
            B::float_reshape(one, Shape::new([channels]))
        };
        if let Some(node) = beta_node {
            grads.register::<B>(node.id, row(0));
        }
        if let Some(node) = gamma_node {
            grads.register::<B>(node.id, row(1));
        }
        if let Some(node) = input_node {
            let grad =
                B::batch_norm_input_grad(input, statistics, gamma, output_grad, sums, epsilon);
            grads.register::<B>(node.id, grad);
        }
    }
}

impl<B: Backend + BatchNormOps, C: CheckpointStrategy> BatchNormOps for Autodiff<B, C> {
    /// Not tracked: the gradient through the statistics is `batch_norm_normalize`'s.
    fn batch_norm_statistics(input: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::batch_norm_statistics(input.into_primitive()))
    }

    fn batch_norm_normalize(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let statistics = statistics.into_primitive();
        match BatchNormBackward
            .prepare::<C>([input.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let input_state = prep.checkpoint(&input);
                let gamma_state = prep.checkpoint(&gamma);
                let output = B::batch_norm_normalize(
                    input.into_primitive(),
                    statistics.clone(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                prep.finish((input_state, gamma_state, statistics, epsilon), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::batch_norm_normalize(
                input.into_primitive(),
                statistics,
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }
}

static OUR_KERNELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether training runs our BatchNorm (the default) or burn's own: `resnet bench` times both
/// in one run.
pub fn use_batch_norm_kernels(ours: bool) {
    OUR_KERNELS.store(ours, std::sync::atomic::Ordering::Relaxed);
}

/// `norm.forward(input)`, with our kernels in training mode: where the device records
/// gradients and the layer is not frozen, as burn's BatchNorm decides. Updates the running
/// statistics as PyTorch does (the unbiased variance).
pub fn batch_norm_forward(norm: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
    let ours = OUR_KERNELS.load(std::sync::atomic::Ordering::Relaxed);
    if !(ours && input.device().is_autodiff() && norm.training.is_enabled()) {
        return norm.forward(input);
    }
    let [batch, _, height, width] = input.dims();
    let statistics = Tensor::<2>::from_dispatch(
        <burn::backend::Dispatch as BatchNormOps>::batch_norm_statistics(
            input.clone().detach().into_dispatch(),
        ),
    );
    let output = Tensor::from_dispatch(
        <burn::backend::Dispatch as BatchNormOps>::batch_norm_normalize(
            input.into_dispatch(),
            statistics.clone().into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm.beta.val().into_dispatch(),
            norm.epsilon,
        ),
    );
    update_running_statistics(norm, statistics, batch * height * width);
    output
}

/// running = (1 - momentum) * running + momentum * batch, with the batch's variance made
/// unbiased (times n / (n - 1)), as `torch.nn.BatchNorm2d` does.
fn update_running_statistics(norm: &BatchNorm, statistics: Tensor<2>, count: usize) {
    let device = statistics.device();
    let channels = statistics.dims()[1];
    let mean = statistics.clone().slice(s![0..1, ..]).reshape([channels]);
    let variance = statistics.slice(s![1..2, ..]).reshape([channels]);
    let unbiased = variance.mul_scalar(count as f64 / (count.max(2) - 1) as f64);
    let momentum = norm.momentum;
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.mul_scalar(momentum))
            .detach()
    };
    norm.running_mean
        .update(blend(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(blend(norm.running_var.value_sync(), unbiased));
}
