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

/// `[4, channels]`: what `batch_norm_statistics` returns (for burn's fusion, on a GPU).
#[cfg(feature = "gpu")]
fn statistics_shape(input: &Shape) -> Shape {
    Shape::new([4, input[1]])
}

/// `[5, channels]`: what `batch_norm_grad_sums` returns (for burn's fusion, on a GPU).
#[cfg(feature = "gpu")]
fn grad_sums_shape(input: &Shape) -> Shape {
    Shape::new([5, input[1]])
}

#[backend_extension(
    Flex,
    Cube: cfg(feature = "gpu"),
    Fusion: cfg(feature = "gpu"),
    Autodiff
)]
pub trait BatchNormOps: Backend {
    /// The batch's statistics of an NCHW input, per channel, and what normalises with them:
    /// rows mean, biased variance (over batch, height and width), scale = gamma / sqrt(variance
    /// + epsilon) and shift = beta - mean * scale.
    #[fusion(dtype = input, shape = statistics_shape(input))]
    fn batch_norm_statistics(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        composite_statistics::<Self>(input, gamma, beta, epsilon)
    }

    /// `x * scale + shift` with the `statistics` of this very input, which `gamma`, `beta` and
    /// `epsilon` made: the backward pass differentiates through the statistics, and to gamma
    /// and beta. A backend's forward pass reads only the statistics' scale and shift.
    #[fusion(dtype = input, shape = input)]
    fn batch_norm_normalize(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let _ = (gamma, beta, epsilon);
        composite_normalize::<Self>(input, statistics)
    }

    /// The backward pass's reduction, per channel: rows the sum of the output gradient
    /// (beta's gradient), the sum of the output gradient times the normalised input (gamma's),
    /// and the a, b and c of the input gradient dx = a dy + b x + c (the statistics' own
    /// gradients included).
    #[fusion(dtype = input, shape = grad_sums_shape(input))]
    fn batch_norm_grad_sums(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        composite_grad_sums::<Self>(input, statistics, gamma, output_grad, epsilon)
    }

    /// The input's gradient, a dy + b x + c, from `batch_norm_grad_sums`' `sums`.
    #[fusion(dtype = input, shape = input)]
    fn batch_norm_input_grad(
        input: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        sums: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composite_input_grad::<Self>(input, output_grad, sums)
    }
}

// The operations in burn's tensor operations: the trait's default bodies, and what a backend
// with kernels of its own falls back to on an input they do not take.

pub(crate) fn composite_statistics<B: Backend>(
    input: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    let [batch, channels, height, width] = dims4(&input);
    let flat = B::float_reshape(input, Shape::new([batch, channels, height * width]));
    let per_channel = |t| {
        let mean = B::float_mean_dim(B::float_mean_dim(t, 2), 0);
        B::float_reshape(mean, Shape::new([1, channels]))
    };
    let mean = per_channel(flat.clone());
    let centered = B::float_sub(
        flat,
        B::float_reshape(mean.clone(), Shape::new([1, channels, 1])),
    );
    let variance = per_channel(B::float_mul(centered.clone(), centered));
    let row = |t| B::float_reshape(t, Shape::new([1, channels]));
    let scale = B::float_mul(row(gamma), inverse_std::<B>(variance.clone(), epsilon));
    let shift = B::float_sub(row(beta), B::float_mul(mean.clone(), scale.clone()));
    B::float_cat(vec![mean, variance, scale, shift], 0)
}

pub(crate) fn composite_normalize<B: Backend>(
    input: FloatTensor<B>,
    statistics: FloatTensor<B>,
) -> FloatTensor<B> {
    let channels = dims4(&input)[1];
    let [scale, shift] = [2, 3].map(|index| row::<B>(statistics.clone(), index, channels));
    B::float_add(B::float_mul(input, scale), shift)
}

pub(crate) fn composite_grad_sums<B: Backend>(
    input: FloatTensor<B>,
    statistics: FloatTensor<B>,
    gamma: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    let [batch, channels, height, width] = dims4(&input);
    let count = (batch * height * width) as f64;
    let [mean, variance] = [0, 1].map(|index| row::<B>(statistics.clone(), index, channels));
    let inv_std = inverse_std::<B>(variance, epsilon);
    let normalized = B::float_mul(B::float_sub(input, mean.clone()), inv_std.clone());
    let flat = |t| B::float_reshape(t, Shape::new([batch, channels, height * width]));
    let per_channel = |t| {
        let sum = B::float_sum_dim(B::float_sum_dim(flat(t), 2), 0);
        B::float_reshape(sum, Shape::new([1, channels, 1, 1]))
    };
    let dy_x = B::float_mul(output_grad.clone(), normalized);
    let (dy_sum, dy_x_sum) = (per_channel(output_grad), per_channel(dy_x));
    let a = B::float_mul(per_channel_shape::<B>(gamma, channels), inv_std.clone());
    let mean_of = |t| B::float_div_scalar(t, Scalar::Float(count));
    let b = B::float_neg(B::float_mul(
        B::float_mul(a.clone(), inv_std),
        mean_of(dy_x_sum.clone()),
    ));
    let c = B::float_neg(B::float_add(
        B::float_mul(a.clone(), mean_of(dy_sum.clone())),
        B::float_mul(b.clone(), mean),
    ));
    let rows = [dy_sum, dy_x_sum, a, b, c].map(|t| B::float_reshape(t, Shape::new([1, channels])));
    B::float_cat(rows.to_vec(), 0)
}

pub(crate) fn composite_input_grad<B: Backend>(
    input: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    sums: FloatTensor<B>,
) -> FloatTensor<B> {
    let channels = dims4(&input)[1];
    let [a, b, c] = [2, 3, 4].map(|index| row::<B>(sums.clone(), index, channels));
    B::float_add(
        B::float_add(B::float_mul(output_grad, a), B::float_mul(input, b)),
        c,
    )
}

fn dims4<T: TensorMetadata>(tensor: &T) -> [usize; 4] {
    let shape = tensor.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A `[channels]` tensor as `[1, channels, 1, 1]`, to broadcast over NCHW.
fn per_channel_shape<B: Backend>(tensor: FloatTensor<B>, channels: usize) -> FloatTensor<B> {
    B::float_reshape(tensor, Shape::new([1, channels, 1, 1]))
}

/// Row `index` of a `[rows, channels]` tensor, as `[1, channels, 1, 1]`.
fn row<B: Backend>(rows: FloatTensor<B>, index: usize, channels: usize) -> FloatTensor<B> {
    let one = B::float_slice(rows, s![index..index + 1, 0..channels].as_slice());
    B::float_reshape(one, Shape::new([1, channels, 1, 1]))
}

/// 1 / sqrt(variance + epsilon).
fn inverse_std<B: Backend>(variance: FloatTensor<B>, epsilon: f64) -> FloatTensor<B> {
    B::float_recip(B::float_sqrt(B::float_add_scalar(
        variance,
        Scalar::Float(epsilon),
    )))
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

/// The rows of a `[rows, channels]` Flex tensor.
fn flex_rows<const ROWS: usize>(rows: &FlexTensor) -> [Vec<f32>; ROWS] {
    let values = flex_values(rows);
    let channels = values.len() / ROWS;
    std::array::from_fn(|row| values[row * channels..(row + 1) * channels].to_vec())
}

/// Whether our CPU loops take this input: float32 NCHW.
fn flex_takes(input: &FlexTensor) -> bool {
    input.dtype() == burn::backend::DType::F32 && input.shape().num_dims() == 4
}

/// Flex: our loops over each image's contiguous channel runs (`cpu_kernels::batch_norm`),
/// where the input is float32; burn's tensor operations otherwise.
impl BatchNormOps for Flex {
    fn batch_norm_statistics(
        input: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        if !flex_takes(&input) {
            return composite_statistics::<Flex>(input, gamma, beta, epsilon);
        }
        let shape = norm_shape(&input);
        let (mean, variance) = cpu::statistics(&flex_values(&input), shape);
        let [scale, shift] = cpu::affine(
            [&mean, &variance],
            [&flex_values(&gamma), &flex_values(&beta)],
            epsilon,
        );
        flex_tensor([mean, variance, scale, shift].concat(), [4, shape.channels])
    }

    fn batch_norm_normalize(
        input: FlexTensor,
        statistics: FlexTensor,
        _gamma: FlexTensor,
        _beta: FlexTensor,
        _epsilon: f64,
    ) -> FlexTensor {
        if !flex_takes(&input) {
            return composite_normalize::<Flex>(input, statistics);
        }
        let [_, _, scale, shift] = flex_rows::<4>(&statistics);
        let output = cpu::normalize(&flex_values(&input), norm_shape(&input), [&scale, &shift]);
        flex_tensor(output, input.shape())
    }

    fn batch_norm_grad_sums(
        input: FlexTensor,
        statistics: FlexTensor,
        gamma: FlexTensor,
        output_grad: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        if !flex_takes(&input) {
            return composite_grad_sums::<Flex>(input, statistics, gamma, output_grad, epsilon);
        }
        let shape = norm_shape(&input);
        let [mean, variance, ..] = flex_rows::<4>(&statistics);
        let [dy_sum, dy_x_sum] = cpu::grad_sums(
            &flex_values(&input),
            &flex_values(&output_grad),
            shape,
            [&mean, &variance],
            epsilon,
        );
        let [a, b, c] = cpu::grad_coefficients(
            [&mean, &variance],
            &flex_values(&gamma),
            [&dy_sum, &dy_x_sum],
            shape.count(),
            epsilon,
        );
        flex_tensor([dy_sum, dy_x_sum, a, b, c].concat(), [5, shape.channels])
    }

    fn batch_norm_input_grad(
        input: FlexTensor,
        output_grad: FlexTensor,
        sums: FlexTensor,
    ) -> FlexTensor {
        if !flex_takes(&input) {
            return composite_input_grad::<Flex>(input, output_grad, sums);
        }
        let [_, _, a, b, c] = flex_rows::<5>(&sums);
        let output = cpu::input_grad(
            &flex_values(&input),
            &flex_values(&output_grad),
            norm_shape(&input),
            [&a, &b, &c],
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
            statistics,
            gamma,
            output_grad.clone(),
            epsilon,
        );
        let row = |index: usize| {
            B::float_reshape(
                row::<B>(sums.clone(), index, channels),
                Shape::new([channels]),
            )
        };
        if let Some(node) = beta_node {
            grads.register::<B>(node.id, row(0));
        }
        if let Some(node) = gamma_node {
            grads.register::<B>(node.id, row(1));
        }
        if let Some(node) = input_node {
            grads.register::<B>(node.id, B::batch_norm_input_grad(input, output_grad, sums));
        }
    }
}

impl<B: Backend + BatchNormOps, C: CheckpointStrategy> BatchNormOps for Autodiff<B, C> {
    /// Not tracked: the gradient through the statistics is `batch_norm_normalize`'s.
    fn batch_norm_statistics(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::batch_norm_statistics(
            input.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            epsilon,
        ))
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
            norm.gamma.val().detach().into_dispatch(),
            norm.beta.val().detach().into_dispatch(),
            norm.epsilon,
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
