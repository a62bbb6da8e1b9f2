//! Our GPU BatchNorm in training mode (`BatchNormOps` for burn's CubeCL backend): WebGPU in
//! the page, Vulkan, Metal or DX12 natively. Activations are read in the layout our
//! convolutions leave them, NHWC in memory (channels innermost), as `[rows, channels]` with
//! rows = batch x height x width, four channels to a vector: no permute copy.
//!
//! Three launches a pass: a reduction over the activation into partial results (a part of
//! rows per invocation), one workgroup per vector of channels that combines the parts and
//! computes what the elementwise pass multiplies and adds, and that elementwise pass. The
//! statistics' partials are (count, mean, M2), each taken around its part's first value (the
//! shifted data algorithm) and combined by Chan et al.'s formula, so float32 keeps the
//! variance of 400,000 values whose mean is far from zero. Inputs other than float32 with a
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

use crate::ops::batch_norm::{
    BatchNormOps, composite_grad_sums, composite_input_grad, composite_normalize,
    composite_statistics,
};

const VECTOR: usize = 4;
/// Invocations per workgroup: WebGPU's largest, which every adapter has.
const WORKGROUP: u32 = 256;
/// Parts a reduction aims at per vector of channels: enough invocations to keep a large GPU's
/// memory busy (4,096 x 16 at 32x64x112x112), few enough for one workgroup to combine.
const PARTS: usize = 4096;

/// What every kernel here reads of its launch.
#[derive(CubeLaunch, CubeType)]
struct NormLaunch {
    /// Batch x height x width.
    rows: u32,
    /// Channels in vectors of `VECTOR`.
    vectors: u32,
    /// Rows per part of a reduction's first pass, and how many parts.
    rows_per_part: u32,
    parts: u32,
    invocations: u32,
    epsilon: InputScalar,
}

/// The first row of `part`, and the end of its rows.
#[cube]
fn part_rows(part: u32, rows_per_part: u32, rows: u32) -> (u32, u32) {
    let first = part * rows_per_part;
    let end = select(first + rows_per_part < rows, first + rows_per_part, rows);
    (first, end)
}

/// The statistics' partials: for each part of the rows and each vector of channels, its
/// count, mean and M2 (the sum of squared deviations), as [3, vector, part].
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
    let (first, end) = part_rows(part, launch.rows_per_part, launch.rows);
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
    let at = vector * launch.parts + part;
    let row = launch.vectors * launch.parts;
    parts[at as usize] = count;
    parts[(row + at) as usize] = pivot + shift;
    parts[(2 * row + at) as usize] = squares - sum * shift;
}

/// The backward pass's partials: per part and vector of channels, the sums of dy and of dy x
/// (x - mean) / std, as [3, vector, part] (the first row unused, so that the layout is the
/// statistics' one).
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
    let (first, end) = part_rows(part, launch.rows_per_part, launch.rows);
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
    let at = vector * launch.parts + part;
    let row = launch.vectors * launch.parts;
    parts[at as usize] = Vector::zero();
    parts[(row + at) as usize] = dy_sum;
    parts[(2 * row + at) as usize] = dy_x_sum * inverse_std;
}

/// One workgroup per vector of channels combines its parts ([3, vector, part]): each
/// invocation a strided share of them, then a tree in workgroup memory. `statistics`: the
/// parts are (count, mean, M2), combined by Chan et al.'s formula, and the result is [4,
/// vector]: mean, biased variance, scale = gamma / std and shift = beta - mean x scale
/// (`second` is beta). Else the parts are the backward pass's two sums, and the result is
/// [5, vector]: the sums, and the a, b, c of dx = a dy + b x + c (`second` is the statistics).
#[cube(launch_unchecked)]
fn finish_kernel<E: Float, N: Size>(
    parts: &Tensor<Vector<E, N>>,
    gamma: &Tensor<Vector<E, N>>,
    second: &Tensor<Vector<E, N>>,
    output: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[comptime] statistics: bool,
    #[define(E)] _dtype: ElemType,
) {
    let vectors = launch.vectors;
    let vector = CUBE_POS as u32;
    let unit = UNIT_POS;
    let row = vectors * launch.parts;
    // 1e-30 keeps an empty share (count 0) from dividing 0 by 0; next to a count of 1 or
    // more it is nothing in float32.
    let tiny = Vector::new(E::cast_from(1e-30f32));
    let mut count = Vector::<E, N>::zero();
    let mut a = Vector::<E, N>::zero();
    let mut b = Vector::<E, N>::zero();
    for part in range_stepped(unit, launch.parts, WORKGROUP) {
        let at = vector * launch.parts + part;
        let other_a = parts[(row + at) as usize];
        let other_b = parts[(2 * row + at) as usize];
        if statistics {
            let other_count = parts[at as usize];
            let total = count + other_count;
            let delta = other_a - a;
            a += delta * other_count / (total + tiny);
            b += other_b + delta * delta * count * other_count / (total + tiny);
            count = total;
        } else {
            a += other_a;
            b += other_b;
        }
    }
    let mut counts = Shared::new_slice(WORKGROUP as usize);
    let mut firsts = Shared::new_slice(WORKGROUP as usize);
    let mut seconds = Shared::new_slice(WORKGROUP as usize);
    counts[unit as usize] = count;
    firsts[unit as usize] = a;
    seconds[unit as usize] = b;
    sync_cube();
    // A runtime value: the workgroup is WORKGROUP wide.
    let mut stride = CUBE_DIM / 2;
    while stride > 0 {
        if unit < stride {
            let other = (unit + stride) as usize;
            let (other_count, other_a, other_b) = (counts[other], firsts[other], seconds[other]);
            let (count, a, b) = (
                counts[unit as usize],
                firsts[unit as usize],
                seconds[unit as usize],
            );
            if statistics {
                let total = count + other_count;
                let delta = other_a - a;
                counts[unit as usize] = total;
                firsts[unit as usize] = a + delta * other_count / (total + tiny);
                seconds[unit as usize] =
                    b + other_b + delta * delta * count * other_count / (total + tiny);
            } else {
                firsts[unit as usize] = a + other_a;
                seconds[unit as usize] = b + other_b;
            }
        }
        sync_cube();
        stride /= 2;
    }
    if unit == 0 {
        let (a, b) = (firsts[0], seconds[0]);
        let epsilon = Vector::new(launch.epsilon.get::<E>());
        let v = vector as usize;
        let vectors = vectors as usize;
        if statistics {
            let variance = b / counts[0];
            let scale = gamma[v] * Vector::recip(Vector::sqrt(variance + epsilon));
            output[v] = a;
            output[vectors + v] = variance;
            output[2 * vectors + v] = scale;
            output[3 * vectors + v] = second[v] - a * scale;
        } else {
            let rows = Vector::new(E::cast_from(launch.rows));
            let mean = second[v];
            let inverse_std = Vector::recip(Vector::sqrt(second[vectors + v] + epsilon));
            let scale = gamma[v] * inverse_std;
            let b_coefficient = Vector::<E, N>::zero() - scale * inverse_std * b / rows;
            output[v] = a;
            output[vectors + v] = b;
            output[2 * vectors + v] = scale;
            output[3 * vectors + v] = b_coefficient;
            output[4 * vectors + v] =
                Vector::<E, N>::zero() - scale * a / rows - b_coefficient * mean;
        }
    }
}

/// y = x scale + shift (rows 2 and 3 of the statistics), one vector per invocation.
#[cube(launch_unchecked)]
fn normalize_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    statistics: &Tensor<Vector<E, N>>,
    output: &mut Tensor<Vector<E, N>>,
    launch: NormLaunch,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= launch.invocations {
        terminate!();
    }
    let vectors = launch.vectors as usize;
    let vector = (position % launch.vectors) as usize;
    output[position as usize] = input[position as usize] * statistics[2 * vectors + vector]
        + statistics[3 * vectors + vector];
}

/// dx = a dy + b x + c (rows 2 to 4 of the sums), one vector per invocation.
#[cube(launch_unchecked)]
fn input_grad_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    output_grad: &Tensor<Vector<E, N>>,
    sums: &Tensor<Vector<E, N>>,
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
    input_grad[position as usize] = sums[2 * vectors + vector] * output_grad[position as usize]
        + sums[3 * vectors + vector] * input[position as usize]
        + sums[4 * vectors + vector];
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

/// A launch over `rows` rows of `channels`, with the parts of a reduction.
fn norm_launch(rows: usize, channels: usize, invocations: usize, epsilon: f64) -> NormLaunchLaunch {
    let (rows_per_part, parts) = parts(rows);
    NormLaunchLaunch::new(
        rows as u32,
        (channels / VECTOR) as u32,
        rows_per_part as u32,
        parts as u32,
        invocations as u32,
        InputScalar::new(epsilon, dtype()),
    )
}

/// How a reduction's first pass cuts `rows`: rows per part (16 to 256, for about `PARTS`
/// parts), and how many parts.
fn parts(rows: usize) -> (usize, usize) {
    let rows_per_part = rows.div_ceil(PARTS).clamp(16, 256);
    (rows_per_part, rows.div_ceil(rows_per_part))
}

fn dtype() -> ElemType {
    burn::backend::cubecl::dtype_to_storage_type(DType::F32)
}

fn launch_count(client: &Client, invocations: usize) -> CubeCount {
    calculate_cube_count_elemwise(client, invocations, CubeDim::new_1d(WORKGROUP))
}

/// What a reduction of `input` ([rows, channels], and `output_grad` for the backward pass)
/// finishes with: [4, channels] statistics, or [5, channels] sums and coefficients.
fn reduce(
    input: CubeTensor,
    output_grad: Option<CubeTensor>,
    gamma: CubeTensor,
    second: CubeTensor,
    [rows, channels]: [usize; 2],
    epsilon: f64,
) -> CubeTensor {
    let (client, device) = (input.client.clone(), input.device.clone());
    let vectors = channels / VECTOR;
    let (_, parts_per_vector) = parts(rows);
    let second = into_contiguous(second);
    let parts = empty_device_dtype(
        client.clone(),
        device.clone(),
        [3, channels, parts_per_vector].into(),
        DType::F32,
    );
    let invocations = parts_per_vector * vectors;
    let launch = || norm_launch(rows, channels, invocations, epsilon);
    // SAFETY: each invocation reads its part's rows (< rows) and writes its own partial.
    unsafe {
        match &output_grad {
            None => statistics_parts_kernel::launch_unchecked(
                &client,
                launch_count(&client, invocations),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                input.into_tensor_arg(),
                parts.clone().into_tensor_arg(),
                launch(),
                dtype(),
            ),
            Some(output_grad) => grad_parts_kernel::launch_unchecked(
                &client,
                launch_count(&client, invocations),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                input.into_tensor_arg(),
                output_grad.clone().into_tensor_arg(),
                second.clone().into_tensor_arg(),
                parts.clone().into_tensor_arg(),
                launch(),
                dtype(),
            ),
        }
    }
    let statistics = output_grad.is_none();
    let out_rows = if statistics { 4 } else { 5 };
    let output = empty_device_dtype(
        client.clone(),
        device,
        [out_rows, channels].into(),
        DType::F32,
    );
    // SAFETY: one workgroup per vector of channels reads that vector's parts and writes its
    // own column of the output.
    unsafe {
        finish_kernel::launch_unchecked(
            &client,
            CubeCount::Static(vectors as u32, 1, 1),
            CubeDim::new_1d(WORKGROUP),
            VECTOR,
            parts.into_tensor_arg(),
            into_contiguous(gamma).into_tensor_arg(),
            second.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            launch(),
            statistics,
            dtype(),
        );
    }
    output
}

/// An elementwise pass over an NCHW input: its output, laid out as our convolutions leave
/// theirs (NHWC in memory), and one vector per invocation.
struct ElementwisePass {
    client: Client,
    output: CubeTensor,
    size: [usize; 2],
    count: CubeCount,
}

impl ElementwisePass {
    fn new(input: &CubeTensor) -> Self {
        let shape = input.shape();
        let size = rows_and_channels(&shape);
        let client = input.client.clone();
        let output = empty_device_dtype(
            client.clone(),
            input.device.clone(),
            [shape[0], shape[2], shape[3], size[1]].into(),
            DType::F32,
        );
        let count = launch_count(&client, size[0] * size[1] / VECTOR);
        Self {
            client,
            output,
            size,
            count,
        }
    }

    fn launch(&self) -> NormLaunchLaunch {
        let [rows, channels] = self.size;
        norm_launch(rows, channels, rows * channels / VECTOR, 0.0)
    }

    /// The output, seen as NCHW.
    fn finish(self) -> CubeTensor {
        permute_nhwc_to_nchw(self.output)
    }
}

/// (rows, channels) of an NCHW shape.
fn rows_and_channels(shape: &Shape) -> [usize; 2] {
    [shape[0] * shape[2] * shape[3], shape[1]]
}

impl BatchNormOps for CubeBackend {
    fn batch_norm_statistics(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite_statistics::<Self>(input, gamma, beta, epsilon);
        }
        let size = rows_and_channels(&input.shape());
        reduce(channels_last(input), None, gamma, beta, size, epsilon)
    }

    fn batch_norm_normalize(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _epsilon: f64,
    ) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite_normalize::<Self>(input, statistics);
        }
        let pass = ElementwisePass::new(&input);
        // SAFETY: one vector per invocation, inside every tensor; the rest stop.
        unsafe {
            normalize_kernel::launch_unchecked(
                &pass.client,
                pass.count.clone(),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                channels_last(input).into_tensor_arg(),
                into_contiguous(statistics).into_tensor_arg(),
                pass.output.clone().into_tensor_arg(),
                pass.launch(),
                dtype(),
            );
        }
        pass.finish()
    }

    fn batch_norm_grad_sums(
        input: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite_grad_sums::<Self>(input, statistics, gamma, output_grad, epsilon);
        }
        let size = rows_and_channels(&input.shape());
        let output_grad = Some(channels_last(output_grad));
        reduce(
            channels_last(input),
            output_grad,
            gamma,
            statistics,
            size,
            epsilon,
        )
    }

    fn batch_norm_input_grad(
        input: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        sums: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if !fits(&input) {
            return composite_input_grad::<Self>(input, output_grad, sums);
        }
        let pass = ElementwisePass::new(&input);
        // SAFETY: one vector per invocation, inside every tensor; the rest stop.
        unsafe {
            input_grad_kernel::launch_unchecked(
                &pass.client,
                pass.count.clone(),
                CubeDim::new_1d(WORKGROUP),
                VECTOR,
                channels_last(input).into_tensor_arg(),
                channels_last(output_grad).into_tensor_arg(),
                into_contiguous(sums).into_tensor_arg(),
                pass.output.clone().into_tensor_arg(),
                pass.launch(),
                dtype(),
            );
        }
        pass.finish()
    }
}
