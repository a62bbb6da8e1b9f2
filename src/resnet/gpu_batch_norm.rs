//! Our GPU BatchNorm in training mode (`BatchNormOps` for burn's CubeCL backend): WebGPU in
//! the page, Vulkan, Metal or DX12 natively. Activations are read in the layout our
//! convolutions leave them, NHWC in memory (channels innermost), as `[rows, channels]` with
//! rows = batch x height x width, four channels to a vector: no permute copy.
//!
//! A reduction is one pass over the activation into partial results, `ROWS_PER_PART` rows per
//! invocation, then short combining passes of `FAN_IN` partials each until one is left. The
//! statistics' partials are (count, mean, M2), each taken around its first value (the shifted
//! data algorithm) and combined by Chan et al.'s formula, so float32 keeps the variance of
//! 400,000 values whose mean is far from zero. Input layouts other than float32 with a
//! multiple of 4 channels take the composite operations of `batch_norm.rs`.

use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, Shape, TensorMetadata};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::ops::{permute_nchw_to_nhwc, permute_nhwc_to_nchw};
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::num_traits::Zero;
use cubecl::prelude::*;

use super::batch_norm::{BatchNormOps, composite};

const VECTOR: usize = 4;
const WORKGROUP: u32 = 256;
/// Rows one invocation of a reduction's first pass reads: enough invocations to keep a large
/// GPU's memory busy (12,544 x 16 at 32x64x112x112), few enough partials to combine cheaply.
const ROWS_PER_PART: usize = 32;
/// Partials one invocation of a combining pass merges.
const FAN_IN: usize = 32;

/// What every kernel here reads of its launch.
#[derive(CubeLaunch, CubeType)]
struct NormLaunch {
    /// Batch x height x width.
    rows: u32,
    /// Channels in vectors of `VECTOR`.
    vectors: u32,
    /// A combining pass: partials read, and how many each invocation merges.
    inputs: u32,
    fan_in: u32,
    invocations: u32,
    epsilon: InputScalar,
}

/// The statistics' partials: for each part of `ROWS_PER_PART` rows and each channel, its
/// count, mean and M2 (the sum of squared deviations), as rows [part, 3, vector].
#[cube(launch_unchecked)]
fn statistics_parts_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    parts: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= launch.invocations {
        terminate!();
    }
    let vector = position % launch.vectors;
    let part = position / launch.vectors;
    let first = part * ROWS_PER_PART as u32;
    let end = select(
        first + (ROWS_PER_PART as u32) < launch.rows,
        first + ROWS_PER_PART as u32,
        launch.rows,
    );
    // Sums around the part's first value: no cancellation however far the mean is from zero.
    let pivot = input[(first * launch.vectors + vector) as usize];
    let mut sum = Vector::<E, N>::zero();
    let mut squares = Vector::<E, N>::zero();
    for row in first..end {
        let deviation = input[(row * launch.vectors + vector) as usize] - pivot;
        sum += deviation;
        squares += deviation * deviation;
    }
    let count = Vector::new(E::cast_from(end - first));
    let shift = sum / count;
    let at = part * 3 * launch.vectors + vector;
    parts[at as usize] = count;
    parts[(at + launch.vectors) as usize] = pivot + shift;
    parts[(at + 2 * launch.vectors) as usize] = squares - sum * shift;
}

/// The backward pass's partials: per part and channel, the sums of dy and of dy x (x - mean)
/// / std, as rows [part, 3, vector] (the first row unused, so that the combining pass is
/// the statistics' one).
#[cube(launch_unchecked)]
fn grad_parts_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    output_grad: &Tensor<Vector<E, N>>,
    statistics: &Tensor<Vector<E, N>>,
    parts: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= launch.invocations {
        terminate!();
    }
    let vector = position % launch.vectors;
    let part = position / launch.vectors;
    let first = part * ROWS_PER_PART as u32;
    let end = select(
        first + (ROWS_PER_PART as u32) < launch.rows,
        first + ROWS_PER_PART as u32,
        launch.rows,
    );
    let mean = statistics[vector as usize];
    let variance = statistics[(launch.vectors + vector) as usize];
    let inverse_std = Vector::recip(Vector::sqrt(
        variance + Vector::new(launch.epsilon.get::<E>()),
    ));
    let mut dy_sum = Vector::<E, N>::zero();
    let mut dy_x_sum = Vector::<E, N>::zero();
    for row in first..end {
        let at = (row * launch.vectors + vector) as usize;
        let dy = output_grad[at];
        dy_sum += dy;
        dy_x_sum += dy * (input[at] - mean);
    }
    let at = part * 3 * launch.vectors + vector;
    parts[at as usize] = Vector::zero();
    parts[(at + launch.vectors) as usize] = dy_sum;
    parts[(at + 2 * launch.vectors) as usize] = dy_x_sum * inverse_std;
}

/// Merges each `fan_in` partials [part, 3, vector] into one. `statistics`: (count, mean, M2)
/// by Chan et al.'s formula; else plain sums of the last two rows. `last`: the one result
/// goes out as [2, vector]: mean and biased variance, or the two sums.
#[cube(launch_unchecked)]
fn combine_kernel<E: Float, N: Size>(
    parts: &Tensor<Vector<E, N>>,
    combined: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[comptime] statistics: bool,
    #[comptime] last: bool,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= launch.invocations {
        terminate!();
    }
    let vectors = launch.vectors;
    let vector = position % vectors;
    let out = position / vectors;
    let first = out * launch.fan_in;
    let end = select(
        first + launch.fan_in < launch.inputs,
        first + launch.fan_in,
        launch.inputs,
    );
    let at = first * 3 * vectors + vector;
    let mut count = parts[at as usize];
    let mut a = parts[(at + vectors) as usize];
    let mut b = parts[(at + 2 * vectors) as usize];
    for part in first + 1..end {
        let at = part * 3 * vectors + vector;
        let other_a = parts[(at + vectors) as usize];
        let other_b = parts[(at + 2 * vectors) as usize];
        if statistics {
            let other_count = parts[at as usize];
            let total = count + other_count;
            let delta = other_a - a;
            a += delta * other_count / total;
            b += other_b + delta * delta * count * other_count / total;
            count = total;
        } else {
            a += other_a;
            b += other_b;
        }
    }
    if last {
        combined[vector as usize] = a;
        if statistics {
            combined[(vectors + vector) as usize] = b / count;
        } else {
            combined[(vectors + vector) as usize] = b;
        }
    } else {
        let at = out * 3 * vectors + vector;
        combined[at as usize] = count;
        combined[(at + vectors) as usize] = a;
        combined[(at + 2 * vectors) as usize] = b;
    }
}

/// Per channel, what the elementwise passes multiply and add, computed once: for the
/// normalisation, [scale, shift] with y = x scale + shift; for the input gradient, [a, b, c]
/// with dx = a dy + b x + c, where a = gamma / std, b = -a / std mean(dy x_hat) and c = -a
/// mean(dy) - b mean. One invocation per vector of channels.
#[cube(launch_unchecked)]
fn coefficients_kernel<E: Float, N: Size>(
    statistics: &Tensor<Vector<E, N>>,
    gamma: &Tensor<Vector<E, N>>,
    beta: &Tensor<Vector<E, N>>,
    sums: &Tensor<Vector<E, N>>,
    coefficients: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[comptime] gradient: bool,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= launch.invocations {
        terminate!();
    }
    let vectors = launch.vectors as usize;
    let vector = position as usize;
    let mean = statistics[vector];
    let inverse_std = Vector::recip(Vector::sqrt(
        statistics[vectors + vector] + Vector::new(launch.epsilon.get::<E>()),
    ));
    let scale = gamma[vector] * inverse_std;
    if gradient {
        let count = Vector::new(E::cast_from(launch.rows));
        let b = Vector::<E, N>::zero() - scale * inverse_std * sums[vectors + vector] / count;
        coefficients[vector] = scale;
        coefficients[vectors + vector] = b;
        coefficients[2 * vectors + vector] =
            Vector::<E, N>::zero() - scale * sums[vector] / count - b * mean;
    } else {
        coefficients[vector] = scale;
        coefficients[vectors + vector] = beta[vector] - mean * scale;
    }
}

/// y = x scale + shift, one vector per invocation.
#[cube(launch_unchecked)]
fn normalize_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    affine: &Tensor<Vector<E, N>>,
    output: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= launch.invocations {
        terminate!();
    }
    let vector = (position % launch.vectors) as usize;
    output[position as usize] =
        input[position as usize] * affine[vector] + affine[launch.vectors as usize + vector];
}

/// dx = a dy + b x + c, one vector per invocation.
#[cube(launch_unchecked)]
fn input_grad_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    output_grad: &Tensor<Vector<E, N>>,
    coefficients: &Tensor<Vector<E, N>>,
    input_grad: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= launch.invocations {
        terminate!();
    }
    let vectors = launch.vectors as usize;
    let vector = (position % launch.vectors) as usize;
    input_grad[position as usize] = coefficients[vector] * output_grad[position as usize]
        + coefficients[vectors + vector] * input[position as usize]
        + coefficients[2 * vectors + vector];
}

/// The per-channel coefficients of `coefficients_kernel`: [2, channels] for the
/// normalisation, [3, channels] for the input gradient (with `sums`).
fn coefficients(
    statistics: CubeTensor,
    gamma: CubeTensor,
    beta_or_sums: CubeTensor,
    rows: usize,
    epsilon: f64,
    gradient: bool,
) -> CubeTensor {
    let (client, device) = (statistics.client.clone(), statistics.device.clone());
    let channels = gamma.shape()[0];
    let rows_out = if gradient { 3 } else { 2 };
    let output = empty_device_dtype(
        client.clone(),
        device,
        [rows_out, channels].into(),
        DType::F32,
    );
    let invocations = channels / VECTOR;
    let beta_or_sums = into_contiguous(beta_or_sums);
    // SAFETY: one vector of channels per invocation, inside every tensor; the rest stop.
    unsafe {
        coefficients_kernel::launch_unchecked(
            &client,
            launch_count(&client, invocations),
            CubeDim::new_1d(WORKGROUP),
            VECTOR,
            into_contiguous(statistics).into_tensor_arg(),
            into_contiguous(gamma).into_tensor_arg(),
            beta_or_sums.clone().into_tensor_arg(),
            beta_or_sums.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            norm_launch(rows, channels, invocations, epsilon),
            gradient,
            burn::backend::cubecl::dtype_to_storage_type(DType::F32),
        );
    }
    output
}

/// Whether our kernels take this input: float32 NCHW with whole vectors of channels.
fn fits(input: &CubeTensor) -> bool {
    let shape = input.shape();
    shape.num_dims() == 4 && input.dtype == DType::F32 && shape[1].is_multiple_of(VECTOR)
}

/// `[rows, channels]`, contiguous: free for what our convolutions leave (NHWC in memory).
fn channels_last(tensor: CubeTensor) -> CubeTensor {
    into_contiguous(permute_nchw_to_nhwc(tensor))
}

/// (rows, channels) of an NCHW shape.
fn rows_and_channels(shape: &Shape) -> (usize, usize) {
    (shape[0] * shape[2] * shape[3], shape[1])
}

fn norm_launch(rows: usize, channels: usize, invocations: usize, epsilon: f64) -> NormLaunchLaunch {
    NormLaunchLaunch::new(
        rows as u32,
        (channels / VECTOR) as u32,
        0,
        FAN_IN as u32,
        invocations as u32,
        InputScalar::new(
            epsilon,
            burn::backend::cubecl::dtype_to_storage_type(DType::F32),
        ),
    )
}

fn launch_count(client: &Client, invocations: usize) -> CubeCount {
    calculate_cube_count_elemwise(client, invocations, CubeDim::new_1d(WORKGROUP))
}

/// Combines `parts` ([count, 3, channels]) down to [2, channels].
fn combine(
    mut parts: CubeTensor,
    mut count: usize,
    channels: usize,
    statistics: bool,
) -> CubeTensor {
    let (client, device) = (parts.client.clone(), parts.device.clone());
    loop {
        let outputs = count.div_ceil(FAN_IN);
        let last = outputs == 1;
        let shape: Shape = if last {
            [2, channels].into()
        } else {
            [outputs, 3, channels].into()
        };
        let combined = empty_device_dtype(client.clone(), device.clone(), shape, DType::F32);
        let invocations = outputs * channels / VECTOR;
        let mut launch = norm_launch(0, channels, invocations, 0.0);
        launch.inputs = count as u32;
        // SAFETY: each invocation reads parts first..end < count and writes its own output.
        unsafe {
            combine_kernel::launch_unchecked(
                &client,
                launch_count(&client, invocations),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                parts.into_tensor_arg(),
                combined.clone().into_tensor_arg(),
                launch,
                statistics,
                last,
                burn::backend::cubecl::dtype_to_storage_type(DType::F32),
            );
        }
        if last {
            return combined;
        }
        parts = combined;
        count = outputs;
    }
}

impl BatchNormOps for CubeBackend {
    fn batch_norm_statistics(input: FloatTensor<Self>) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite::statistics::<Self>(input);
        }
        let (rows, channels) = rows_and_channels(&input.shape());
        let (client, device) = (input.client.clone(), input.device.clone());
        let input = channels_last(input);
        let count = rows.div_ceil(ROWS_PER_PART);
        let parts = empty_device_dtype(
            client.clone(),
            device,
            [count, 3, channels].into(),
            DType::F32,
        );
        let invocations = count * channels / VECTOR;
        // SAFETY: each invocation reads its part's rows (< rows) and writes its own partial.
        unsafe {
            statistics_parts_kernel::launch_unchecked(
                &client,
                launch_count(&client, invocations),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                input.into_tensor_arg(),
                parts.clone().into_tensor_arg(),
                norm_launch(rows, channels, invocations, 0.0),
                burn::backend::cubecl::dtype_to_storage_type(DType::F32),
            );
        }
        combine(parts, count, channels, true)
    }

    fn batch_norm_normalize(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite::train::<Self>(input, statistics, gamma, beta, epsilon);
        }
        let shape = input.shape();
        let (rows, channels) = rows_and_channels(&shape);
        let (client, device) = (input.client.clone(), input.device.clone());
        let input = channels_last(input);
        let output = empty_device_dtype(
            client.clone(),
            device,
            [shape[0], shape[2], shape[3], channels].into(),
            DType::F32,
        );
        let affine = coefficients(statistics, gamma, beta, rows, epsilon, false);
        let invocations = rows * channels / VECTOR;
        // SAFETY: one vector per invocation, inside every tensor; the rest stop.
        unsafe {
            normalize_kernel::launch_unchecked(
                &client,
                launch_count(&client, invocations),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                input.into_tensor_arg(),
                affine.into_tensor_arg(),
                output.clone().into_tensor_arg(),
                norm_launch(rows, channels, invocations, epsilon),
                burn::backend::cubecl::dtype_to_storage_type(DType::F32),
            );
        }
        permute_nhwc_to_nchw(output)
    }

    fn batch_norm_grad_sums(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite::grad_sums::<Self>(input, statistics, output_grad, epsilon);
        }
        let (rows, channels) = rows_and_channels(&input.shape());
        let (client, device) = (input.client.clone(), input.device.clone());
        let count = rows.div_ceil(ROWS_PER_PART);
        let parts = empty_device_dtype(
            client.clone(),
            device,
            [count, 3, channels].into(),
            DType::F32,
        );
        let invocations = count * channels / VECTOR;
        // SAFETY: as for the statistics' partials.
        unsafe {
            grad_parts_kernel::launch_unchecked(
                &client,
                launch_count(&client, invocations),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                channels_last(input).into_tensor_arg(),
                channels_last(output_grad).into_tensor_arg(),
                into_contiguous(statistics).into_tensor_arg(),
                parts.clone().into_tensor_arg(),
                norm_launch(rows, channels, invocations, epsilon),
                burn::backend::cubecl::dtype_to_storage_type(DType::F32),
            );
        }
        combine(parts, count, channels, false)
    }

    fn batch_norm_input_grad(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        sums: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite::input_grad::<Self>(
                input,
                statistics,
                gamma,
                output_grad,
                sums,
                epsilon,
            );
        }
        let shape = input.shape();
        let (rows, channels) = rows_and_channels(&shape);
        let (client, device) = (input.client.clone(), input.device.clone());
        let input_grad = empty_device_dtype(
            client.clone(),
            device,
            [shape[0], shape[2], shape[3], channels].into(),
            DType::F32,
        );
        let coefficients = coefficients(statistics, gamma, sums, rows, epsilon, true);
        let invocations = rows * channels / VECTOR;
        // SAFETY: one vector per invocation, inside every tensor; the rest stop.
        unsafe {
            input_grad_kernel::launch_unchecked(
                &client,
                launch_count(&client, invocations),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                channels_last(input).into_tensor_arg(),
                channels_last(output_grad).into_tensor_arg(),
                coefficients.into_tensor_arg(),
                input_grad.clone().into_tensor_arg(),
                norm_launch(rows, channels, invocations, epsilon),
                burn::backend::cubecl::dtype_to_storage_type(DType::F32),
            );
        }
        permute_nhwc_to_nchw(input_grad)
    }
}
