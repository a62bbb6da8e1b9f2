//! Our GPU convolutions (`ConvolveOps` for burn's CubeCL backend), built with the `gpu`
//! feature: on the page's WebGPU and natively on Vulkan or Metal. The direct forward kernel
//! computes 4 consecutive output pixels of a row by 4 output channels per invocation, so each
//! input vector (4 channels) it loads serves 16 multiply-adds and each weight vector 4
//! pixels; burn's direct kernel computes one pixel by 4 channels. SwiftShader loads each SIMD
//! lane's values apart, so loads per multiply-add decide its speed there: 1.4x to 1.6x
//! burn's kernel on ResNet-20's 3x3 layers (`scripts/profile-webgpu.sh`, docs/design.md "The wasm
//! build"). The input gradient at stride 1 is the same kernel; the weight gradient
//! has its own. Activations are NHWC in memory, as burn's own convolutions leave them.
//! On a GPU (`GpuConvolutionKernel::Tiled`, by the adapter's type) the forward pass and both
//! gradients, strides included, go to `gpu_tiled_convolution.rs`. Either forward kernel can
//! add a residual and apply the ReLU as it stores (`convolve_relu`, `convolve_add_relu`), and
//! folded weights are kept in the layout the kernels read (`pack_weight`), so inference
//! launches little besides its convolutions.

use burn::backend::ops::{ActivationOps, ConvOptions, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, FloatDType, Shape, Slice};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::ops::{permute, permute_nchw_to_nhwc, permute_nhwc_to_nchw};
use cubecl::calculate_cube_count_elemwise;
use cubecl::num_traits::Zero;
use cubecl::prelude::*;

use super::tiled_convolution::{
    TileShape, TiledConvShapeLaunch, WeightGradTiles, conv_tiled_kernel,
    conv_tiled_weight_grad_kernel, epilogue_of,
};
use crate::ops::convolve::{
    ConvolveOps, GpuConvolutionKernel, GpuTile, fixed_gpu_tile, gpu_convolution_kernel,
    gpu_convolutions_broken, gpu_prefetch, output_shape as convolve_output_shape,
};

/// Output pixels per invocation; each computes one vector of `VECTOR` output channels.
const PIXELS: usize = 4;
const VECTOR: usize = 4;
const WORKGROUP: u32 = 64;

/// What both kernels read of a convolution's shape.
#[derive(CubeLaunch, CubeType)]
struct GpuConvShape {
    in_height: u32,
    in_width: u32,
    /// Channel counts in vectors of `VECTOR`.
    in_vectors: u32,
    out_height: u32,
    out_width: u32,
    out_vectors: u32,
    kernel_height: u32,
    kernel_width: u32,
    stride_height: u32,
    stride_width: u32,
    pad_height: u32,
    pad_width: u32,
    images: u32,
    /// The forward kernel: tiles of `PIXELS` per output row.
    row_tiles: u32,
    /// The weight-gradient kernel: the batch is cut into this many interleaved parts, each
    /// summed apart.
    splits: u32,
    invocations: u32,
}

/// Which kernel a `GpuConvShape` is for, and so what its invocations are.
enum ConvWork {
    /// Tiles of `PIXELS` output pixels by one vector of output channels.
    Forward,
    /// A tap by `VECTOR` by `VECTOR` channels, for each of `splits` parts of the batch.
    WeightGrad { splits: usize },
}

/// `GpuConvShape` for an NCHW input and output and a weight [out, in, kernel rows, kernel
/// columns], both channel counts multiples of `VECTOR`; and the invocation count.
fn conv_shape(
    input: &Shape,
    weight: &Shape,
    output: &Shape,
    stride: [usize; 2],
    padding: [usize; 2],
    work: ConvWork,
) -> (GpuConvShapeLaunch, usize) {
    let (in_vectors, out_vectors) = (weight[1] / VECTOR, weight[0] / VECTOR);
    let row_tiles = output[3].div_ceil(PIXELS);
    let (splits, invocations) = match work {
        ConvWork::Forward => (1, input[0] * output[2] * row_tiles * out_vectors),
        ConvWork::WeightGrad { splits } => (
            splits,
            splits * weight[2] * weight[3] * in_vectors * out_vectors,
        ),
    };
    let shape = GpuConvShapeLaunch::new(
        input[2] as u32,
        input[3] as u32,
        in_vectors as u32,
        output[2] as u32,
        output[3] as u32,
        out_vectors as u32,
        weight[2] as u32,
        weight[3] as u32,
        stride[0] as u32,
        stride[1] as u32,
        padding[0] as u32,
        padding[1] as u32,
        input[0] as u32,
        row_tiles as u32,
        splits as u32,
        invocations as u32,
    );
    (shape, invocations)
}

/// input: NHWC; weight: [kernel row, kernel column, in channel, out channel]; output: NHWC;
/// all read and written as vectors of channels.
#[cube(launch_unchecked)]
fn conv_tiles_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    weight: &Tensor<Vector<E, N>>,
    bias: &Tensor<Vector<E, N>>,
    residual: &Tensor<Vector<E, N>>,
    output: &mut Tensor<Vector<E, N>>,
    shape: GpuConvShape,
    #[comptime] add_residual: bool,
    #[comptime] relu: bool,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= shape.invocations {
        terminate!();
    }
    let out_vector = position % shape.out_vectors;
    let rest = position / shape.out_vectors;
    let tile = rest % shape.row_tiles;
    let rest = rest / shape.row_tiles;
    let out_y = rest % shape.out_height;
    let image = rest / shape.out_height;
    let first_x = tile * PIXELS as u32;

    let mut sums = Array::<Vector<E, N>>::new(PIXELS);
    #[unroll]
    for pixel in 0..PIXELS {
        sums[pixel] = bias[out_vector as usize];
    }

    for ky in 0..shape.kernel_height {
        let in_y = (out_y * shape.stride_height + ky) as i32 - shape.pad_height as i32;
        if in_y >= 0 && in_y < shape.in_height as i32 {
            let row = (image * shape.in_height + in_y as u32) * shape.in_width;
            for kx in 0..shape.kernel_width {
                // Where each pixel's input starts, and whether it falls in the padding.
                let mut offsets = Array::<u32>::new(PIXELS);
                let mut inside = Array::<bool>::new(PIXELS);
                #[unroll]
                for pixel in 0..PIXELS {
                    let out_x = first_x + pixel as u32;
                    let in_x = (out_x * shape.stride_width + kx) as i32 - shape.pad_width as i32;
                    let valid =
                        out_x < shape.out_width && in_x >= 0 && in_x < shape.in_width as i32;
                    inside[pixel] = valid;
                    offsets[pixel] = select(valid, (row + in_x as u32) * shape.in_vectors, 0);
                }
                // The weights of this tap, one row of out-channel vectors per in channel.
                let tap = (ky * shape.kernel_width + kx) * shape.in_vectors * VECTOR as u32;
                for in_vector in 0..shape.in_vectors {
                    let at = (tap + in_vector * VECTOR as u32) * shape.out_vectors + out_vector;
                    let w0 = weight[at as usize];
                    let w1 = weight[(at + shape.out_vectors) as usize];
                    let w2 = weight[(at + 2 * shape.out_vectors) as usize];
                    let w3 = weight[(at + 3 * shape.out_vectors) as usize];
                    #[unroll]
                    for pixel in 0..PIXELS {
                        if inside[pixel] {
                            let value = input[(offsets[pixel] + in_vector) as usize];
                            sums[pixel] += w0 * Vector::new(value.extract(0usize))
                                + w1 * Vector::new(value.extract(1usize))
                                + w2 * Vector::new(value.extract(2usize))
                                + w3 * Vector::new(value.extract(3usize));
                        }
                    }
                }
            }
        }
    }

    #[unroll]
    for pixel in 0..PIXELS {
        let out_x = first_x + pixel as u32;
        if out_x < shape.out_width {
            let at = ((image * shape.out_height + out_y) * shape.out_width + out_x)
                * shape.out_vectors
                + out_vector;
            output[at as usize] = epilogue_of(sums[pixel], residual, at, add_residual, relu);
        }
    }
}

/// What a convolution does to its sums as it stores them, besides adding the bias.
#[derive(Clone, Copy)]
struct Epilogue {
    residual: bool,
    relu: bool,
}

/// The weight gradient, one tap by `VECTOR` input channels by `VECTOR` output channels per
/// invocation, summed over one part of the batch: `partial` is [part, kernel row, kernel
/// column, in channel, out channel]. input and output_grad: NHWC; all vectors of channels.
#[cube(launch_unchecked)]
fn conv_weight_grad_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    output_grad: &Tensor<Vector<E, N>>,
    partial: &mut Tensor<Vector<E, N>>,
    shape: GpuConvShape,
    #[define(E)] _dtype: ElemType,
) {
    let position = ABSOLUTE_POS as u32;
    if position >= shape.invocations {
        terminate!();
    }
    let out_vector = position % shape.out_vectors;
    let rest = position / shape.out_vectors;
    let in_vector = rest % shape.in_vectors;
    let rest = rest / shape.in_vectors;
    let kx = rest % shape.kernel_width;
    let rest = rest / shape.kernel_width;
    let ky = rest % shape.kernel_height;
    let split = rest / shape.kernel_height;

    let mut sums = Array::<Vector<E, N>>::new(VECTOR);
    #[unroll]
    for channel in 0..VECTOR {
        sums[channel] = Vector::zero();
    }
    for image in range_stepped(split, shape.images, shape.splits) {
        for out_y in 0..shape.out_height {
            let in_y = (out_y * shape.stride_height + ky) as i32 - shape.pad_height as i32;
            if in_y >= 0 && in_y < shape.in_height as i32 {
                let in_row = (image * shape.in_height + in_y as u32) * shape.in_width;
                let grad_row = (image * shape.out_height + out_y) * shape.out_width;
                for out_x in 0..shape.out_width {
                    let in_x = (out_x * shape.stride_width + kx) as i32 - shape.pad_width as i32;
                    if in_x >= 0 && in_x < shape.in_width as i32 {
                        let grad = output_grad
                            [((grad_row + out_x) * shape.out_vectors + out_vector) as usize];
                        let value =
                            input[((in_row + in_x as u32) * shape.in_vectors + in_vector) as usize];
                        sums[0] += grad * Vector::new(value.extract(0usize));
                        sums[1] += grad * Vector::new(value.extract(1usize));
                        sums[2] += grad * Vector::new(value.extract(2usize));
                        sums[3] += grad * Vector::new(value.extract(3usize));
                    }
                }
            }
        }
    }
    let at = (((split * shape.kernel_height + ky) * shape.kernel_width + kx) * shape.in_vectors
        + in_vector)
        * VECTOR as u32
        * shape.out_vectors
        + out_vector;
    #[unroll]
    for channel in 0..VECTOR {
        partial[(at + channel as u32 * shape.out_vectors) as usize] = sums[channel];
    }
}

/// Partial weight gradients kept at most (floats), which bounds how many parts the batch is
/// cut into.
const WEIGHT_GRAD_PARTIALS: usize = 4 << 20;

/// Workgroups for `invocations` (spread over two dimensions past WebGPU's 65,535 per
/// dimension; `ABSOLUTE_POS` stays linear).
fn launch_count(client: &Client, invocations: usize) -> CubeCount {
    calculate_cube_count_elemwise(client, invocations, CubeDim::new_1d(WORKGROUP))
}

/// How `pad_channels` lays out its output's memory: as our kernels read activations (NHWC)
/// or weights ([kernel row, kernel column, in, out]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum PaddedLayout {
    ChannelsLast,
    WeightRows,
}

/// `input` [a, channels, h, w] (any strides) as `output` with the channels padded with zeros
/// to `output`'s: [a, h, w, padded] (`weight_rows` false) or [h, w, padded, a].
// The coordinates are declared before the comptime branch that sets them.
#[allow(unused_assignments)]
#[cube(launch_unchecked)]
fn pad_channels_kernel<E: Float>(
    input: &Tensor<E>,
    output: &mut Tensor<E>,
    #[comptime] weight_rows: bool,
    #[define(E)] _dtype: ElemType,
) {
    let at = ABSOLUTE_POS;
    if at >= output.len() {
        terminate!();
    }
    let (count, channels) = (input.shape(0), input.shape(1));
    let (height, width) = (input.shape(2), input.shape(3));
    let mut a = 0;
    let mut channel = 0;
    let mut y = 0;
    let mut x = 0;
    if weight_rows {
        let padded = output.shape(2);
        a = at % count;
        let rest = at / count;
        channel = rest % padded;
        let rest = rest / padded;
        x = rest % width;
        y = rest / width;
    } else {
        let padded = output.shape(3);
        channel = at % padded;
        let rest = at / padded;
        x = rest % width;
        let rest = rest / width;
        y = rest % height;
        a = rest / height;
    }
    let mut value = E::from_int(0);
    if channel < channels {
        value = input[a * input.stride(0)
            + channel * input.stride(1)
            + y * input.stride(2)
            + x * input.stride(3)];
    }
    output[at] = value;
}

/// `tensor` (NCHW, or a weight [out, in, kernel rows, kernel columns]) with zero channels
/// added along axis 1 up to a multiple of `VECTOR`, in one kernel that also lays it out as
/// the convolution kernels read it (the permuted view of that memory is returned), so that
/// an RGB image or the stem's weight costs one pass instead of a fill, a concatenation and a
/// copy.
fn pad_channels(
    tensor: FloatTensor<CubeBackend>,
    layout: PaddedLayout,
) -> FloatTensor<CubeBackend> {
    let shape = tensor.meta.shape().clone();
    let [a, channels, height, width] = [shape[0], shape[1], shape[2], shape[3]];
    let padded = channels.next_multiple_of(VECTOR);
    let out_shape = match layout {
        PaddedLayout::ChannelsLast => [a, height, width, padded],
        PaddedLayout::WeightRows => [height, width, padded, a],
    };
    let client = tensor.client.clone();
    let output = empty_device_dtype(
        client.clone(),
        tensor.device.clone(),
        out_shape.into(),
        tensor.dtype,
    );
    let count = out_shape.iter().product::<usize>();
    let dtype = tensor.dtype;
    // SAFETY: invocations past the output's end stop; every input index is inside its shape.
    unsafe {
        pad_channels_kernel::launch_unchecked(
            &client,
            launch_count(&client, count),
            CubeDim::new_1d(WORKGROUP),
            tensor.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            layout == PaddedLayout::WeightRows,
            burn::backend::cubecl::dtype_to_storage_type(dtype),
        );
    }
    match layout {
        PaddedLayout::ChannelsLast => permute_nhwc_to_nchw(output),
        PaddedLayout::WeightRows => permute(output, &[3, 2, 0, 1]),
    }
}

/// Each tile by its name.
const TILES: [(GpuTile, TileShape); 5] = [
    (GpuTile::Narrow, TileShape::NARROW),
    (GpuTile::Small, TileShape::SMALL),
    (GpuTile::Tall, TileShape::TALL),
    (GpuTile::Wide, TileShape::WIDE),
    (GpuTile::Large, TileShape::LARGE),
];

/// The tile for a layer of `pixels` output pixels and `channels` output channels:
/// `use_gpu_tile`'s where one is fixed, else the rule's.
fn tile_for(pixels: usize, channels: usize) -> TileShape {
    let fixed = fixed_gpu_tile().and_then(|tile| TILES.iter().find(|(name, _)| *name == tile));
    match fixed {
        Some(&(_, shape)) => shape,
        None => TileShape::for_layer(pixels, channels),
    }
}

/// The tile the rule picks for a layer's forward pass (`pixels` output pixels, `channels`
/// output channels), by name: what `resnet bench --only tiles` sets the others beside.
pub fn rule_tile(pixels: usize, channels: usize) -> GpuTile {
    let shape = TileShape::for_layer(pixels, channels);
    TILES
        .iter()
        .find(|(_, named)| *named == shape)
        .map_or(GpuTile::Small, |&(name, _)| name)
}

/// Launches the tiled kernel on NHWC `input` and `output` and [kernel row, kernel column, in,
/// out] `weight`, all contiguous; false, with nothing launched, where its workgroups would not
/// fit WebGPU's 65,535 per dimension.
fn launch_tiled(
    [input, weight, bias, residual, output]: [&FloatTensor<CubeBackend>; 5],
    epilogue: Epilogue,
    stride: [usize; 2],
    padding: [usize; 2],
) -> bool {
    let (in_shape, weight_shape, out_shape) =
        (input.meta.shape(), weight.meta.shape(), output.meta.shape());
    let pixels = out_shape[0] * out_shape[1] * out_shape[2];
    let (in_vectors, out_channels) = (in_shape[3] / VECTOR, out_shape[3]);
    let tile = tile_for(pixels, out_channels);
    let count = [
        pixels.div_ceil(tile.tile_pixels()),
        out_channels.div_ceil(tile.tile_channels()),
        1,
    ];
    if count.iter().any(|&n| n > 65_535) || pixels > u32::MAX as usize / 2 {
        return false;
    }
    let shape = TiledConvShapeLaunch::new(
        in_shape[1] as u32,
        in_shape[2] as u32,
        in_vectors as u32,
        out_shape[1] as u32,
        out_shape[2] as u32,
        (out_channels / VECTOR) as u32,
        weight_shape[0] as u32,
        weight_shape[1] as u32,
        stride[0] as u32,
        stride[1] as u32,
        padding[0] as u32,
        padding[1] as u32,
        out_shape[0] as u32,
        pixels as u32,
        (weight_shape[0] * weight_shape[1] * in_vectors) as u32,
        0,
    );
    launch_conv_tiled(
        [input, weight, bias, residual, output],
        shape,
        tile,
        count,
        epilogue,
        false,
    );
    true
}

/// The input gradient [images, in channels, height, width] of a convolution by `weight`
/// [out, in, kernel rows, kernel columns] from `output_grad` (NCHW), by the tiled kernel run
/// transposed, phase by phase (strides included, no kernel flipped or zero inserted); `None`,
/// with nothing launched, where the channel counts are not whole vectors or the workgroups
/// would not fit WebGPU's 65,535 per dimension.
fn tiled_input_grad(
    in_shape: &Shape,
    weight: FloatTensor<CubeBackend>,
    output_grad: FloatTensor<CubeBackend>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<FloatTensor<CubeBackend>> {
    let weight_shape = weight.meta.shape().clone();
    let grad_shape = output_grad.meta.shape().clone();
    let [out_channels, in_channels, kernel_height, kernel_width] = [
        weight_shape[0],
        weight_shape[1],
        weight_shape[2],
        weight_shape[3],
    ];
    let [images, height, width] = [in_shape[0], in_shape[2], in_shape[3]];
    if output_grad.dtype != DType::F32
        || weight.dtype != DType::F32
        || !in_channels.is_multiple_of(VECTOR)
        || !out_channels.is_multiple_of(VECTOR)
    {
        return None;
    }
    let pixels = images * height * width;
    let tile = tile_for(pixels, in_channels);
    // Phase (0, 0) has the most pixels.
    let phase_pixels = images * height.div_ceil(stride[0]) * width.div_ceil(stride[1]);
    let count = [
        phase_pixels.div_ceil(tile.tile_pixels()),
        in_channels.div_ceil(tile.tile_channels()),
        stride[0] * stride[1],
    ];
    if count.iter().any(|&n| n > 65_535) || pixels > u32::MAX as usize / 2 {
        return None;
    }
    let shape = TiledConvShapeLaunch::new(
        grad_shape[2] as u32,
        grad_shape[3] as u32,
        (out_channels / VECTOR) as u32,
        height as u32,
        width as u32,
        (in_channels / VECTOR) as u32,
        kernel_height as u32,
        kernel_width as u32,
        stride[0] as u32,
        stride[1] as u32,
        padding[0] as u32,
        padding[1] as u32,
        images as u32,
        // The kernel counts each phase's pixels and K itself.
        0,
        0,
        0,
    );
    let (client, device, dtype) = (
        output_grad.client.clone(),
        output_grad.device.clone(),
        output_grad.dtype,
    );
    let output_grad = into_contiguous(permute_nchw_to_nhwc(output_grad));
    // [kernel row, kernel column, out, in]: a K row (a tap's gathered channel) is a run of
    // the computed channels, as the forward pass's weights are.
    let weight = into_contiguous(permute(weight, &[2, 3, 0, 1]));
    let input_grad = empty_device_dtype(
        client,
        device,
        [images, height, width, in_channels].into(),
        dtype,
    );
    // Transposed, the kernel reads no bias and no residual: it is given the weights for both.
    launch_conv_tiled(
        [&output_grad, &weight, &weight, &weight, &input_grad],
        shape,
        tile,
        count,
        Epilogue {
            residual: false,
            relu: false,
        },
        true,
    );
    Some(permute_nhwc_to_nchw(input_grad))
}

/// `conv_tiled_kernel` over `count` workgroups.
fn launch_conv_tiled(
    [input, weight, bias, residual, output]: [&FloatTensor<CubeBackend>; 5],
    shape: TiledConvShapeLaunch,
    tile: TileShape,
    count: [usize; 3],
    epilogue: Epilogue,
    transposed: bool,
) {
    // WebGPU's least maxComputeWorkgroupStorageSize.
    debug_assert!(tile.workgroup_bytes() <= 16 << 10);
    // SAFETY: every read is guarded by its tensor's extent (pixels, K and channel vectors past
    // the end read nothing and store nothing; a transposed phase's pixels land on its own rows
    // and columns of the output), and every invocation reaches both barriers.
    unsafe {
        conv_tiled_kernel::launch_unchecked(
            &input.client,
            CubeCount::new_3d(count[0] as u32, count[1] as u32, count[2] as u32),
            CubeDim::new_1d(256),
            VECTOR,
            input.clone().into_tensor_arg(),
            weight.clone().into_tensor_arg(),
            bias.clone().into_tensor_arg(),
            residual.clone().into_tensor_arg(),
            output.clone().into_tensor_arg(),
            shape,
            tile.pixels,
            tile.vectors,
            tile.columns,
            epilogue.residual,
            epilogue.relu,
            transposed,
            gpu_prefetch(),
            burn::backend::cubecl::dtype_to_storage_type(input.dtype),
        );
    }
}

/// The weight gradient [out, in, kernel rows, kernel columns] by the tiled kernel, from NHWC
/// `input` and `output_grad`, both contiguous; `None`, with nothing launched, where its
/// workgroups would not fit WebGPU's 65,535 per dimension.
fn tiled_weight_grad(
    input: &FloatTensor<CubeBackend>,
    output_grad: &FloatTensor<CubeBackend>,
    weight_shape: &Shape,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<FloatTensor<CubeBackend>> {
    let (in_shape, grad_shape) = (input.meta.shape(), output_grad.meta.shape());
    let [out_channels, in_channels, kernel_height, kernel_width] = [
        weight_shape[0],
        weight_shape[1],
        weight_shape[2],
        weight_shape[3],
    ];
    let pixels = grad_shape[0] * grad_shape[1] * grad_shape[2];
    let in_vectors = in_channels / VECTOR;
    let k_vectors = kernel_height * kernel_width * in_vectors;
    let tiles = WeightGradTiles::for_layer(k_vectors, out_channels, pixels, WEIGHT_GRAD_PARTIALS);
    debug_assert!(tiles.workgroup_bytes() <= 16 << 10);
    let count = [
        k_vectors.div_ceil(16 * tiles.k_vectors),
        out_channels.div_ceil(16 * tiles.vectors * VECTOR),
        tiles.splits,
    ];
    if count.iter().any(|&n| n > 65_535) || pixels > u32::MAX as usize / 2 {
        return None;
    }
    let rows = k_vectors * VECTOR;
    let partial = empty_device_dtype(
        input.client.clone(),
        input.device.clone(),
        [tiles.splits, rows, out_channels].into(),
        input.dtype,
    );
    let shape = TiledConvShapeLaunch::new(
        in_shape[1] as u32,
        in_shape[2] as u32,
        in_vectors as u32,
        grad_shape[1] as u32,
        grad_shape[2] as u32,
        (out_channels / VECTOR) as u32,
        kernel_height as u32,
        kernel_width as u32,
        stride[0] as u32,
        stride[1] as u32,
        padding[0] as u32,
        padding[1] as u32,
        grad_shape[0] as u32,
        pixels as u32,
        k_vectors as u32,
        tiles.split_pixels(pixels) as u32,
    );
    // SAFETY: reads are guarded by the pixel, K and channel extents; each part writes its own
    // rows of `partial`, which holds every (part, row, out vector); every invocation reaches
    // both barriers.
    unsafe {
        conv_tiled_weight_grad_kernel::launch_unchecked(
            &input.client,
            CubeCount::new_3d(count[0] as u32, count[1] as u32, count[2] as u32),
            CubeDim::new_1d(256),
            VECTOR,
            input.clone().into_tensor_arg(),
            output_grad.clone().into_tensor_arg(),
            partial.clone().into_tensor_arg(),
            shape,
            tiles.k_vectors,
            tiles.vectors,
            burn::backend::cubecl::dtype_to_storage_type(input.dtype),
        );
    }
    let summed = CubeBackend::float_reshape(
        CubeBackend::float_sum_dim(partial, 0),
        [kernel_height, kernel_width, in_channels, out_channels].into(),
    );
    Some(CubeBackend::float_permute(summed, &[3, 2, 0, 1]))
}

/// `convolve`, with the residual added and the ReLU applied as the output is stored where
/// asked.
fn convolve_fused(
    input: FloatTensor<CubeBackend>,
    weight: FloatTensor<CubeBackend>,
    bias: FloatTensor<CubeBackend>,
    residual: Option<FloatTensor<CubeBackend>>,
    relu: bool,
    stride: [usize; 2],
    padding: [usize; 2],
) -> FloatTensor<CubeBackend> {
    let in_shape = input.meta.shape().clone();
    let weight_shape = weight.meta.shape().clone();
    let out_channels = weight_shape[0];
    let in_channels = in_shape[1];
    // burn's convolution reports shapes that do not fit; ours would read past the weights.
    let fits = in_channels == weight_shape[1] && in_shape.num_dims() == 4;
    if fits && input.dtype == DType::F32 && !in_channels.is_multiple_of(VECTOR) {
        // An RGB or grayscale image: zero channels make it a whole vector.
        let (input, weight) = (
            pad_channels(input, PaddedLayout::ChannelsLast),
            pad_channels(weight, PaddedLayout::WeightRows),
        );
        return convolve_fused(input, weight, bias, residual, relu, stride, padding);
    }
    let out_shape = convolve_output_shape(&in_shape, &weight_shape, &stride, &padding);
    // The epilogue reads the residual at the output's indices: another shape (which burn
    // would broadcast) takes the composite path.
    let residual_fits = residual
        .as_ref()
        .is_none_or(|residual| *residual.meta.shape() == out_shape);
    if !fits || !residual_fits || input.dtype != DType::F32 || !out_channels.is_multiple_of(VECTOR)
    {
        let output = CubeBackend::conv2d(
            input,
            weight,
            Some(bias),
            ConvOptions::new(stride, padding, [1, 1], 1),
        );
        let output = match residual {
            Some(residual) => CubeBackend::float_add(output, residual),
            None => output,
        };
        return if relu {
            CubeBackend::relu(output)
        } else {
            output
        };
    }
    let (client, device, dtype) = (input.client.clone(), input.device.clone(), input.dtype);
    let input = into_contiguous(permute_nchw_to_nhwc(input));
    let weight = into_contiguous(permute(weight, &[2, 3, 1, 0]));
    let bias = into_contiguous(bias);
    // Read as NHWC like the output; without one, the kernel is given the bias, which it
    // does not read (a buffer bound twice in one dispatch, read and written, is invalid).
    let epilogue = Epilogue {
        residual: residual.is_some(),
        relu: relu != gpu_convolutions_broken(),
    };
    let residual = match residual {
        Some(residual) => into_contiguous(permute_nchw_to_nhwc(residual)),
        None => bias.clone(),
    };
    let output = empty_device_dtype(
        client.clone(),
        device,
        [out_shape[0], out_shape[2], out_shape[3], out_channels].into(),
        dtype,
    );
    if gpu_convolution_kernel() == GpuConvolutionKernel::Tiled
        && launch_tiled(
            [&input, &weight, &bias, &residual, &output],
            epilogue,
            stride,
            padding,
        )
    {
        return permute_nhwc_to_nchw(output);
    }
    let (shape, invocations) = conv_shape(
        &in_shape,
        &weight_shape,
        &out_shape,
        stride,
        padding,
        ConvWork::Forward,
    );
    // SAFETY: every index the kernel reads or writes is inside its tensor: invocations past
    // the end stop, and padded taps are skipped.
    unsafe {
        conv_tiles_kernel::launch_unchecked(
            &client,
            launch_count(&client, invocations),
            CubeDim::new_1d(WORKGROUP),
            VECTOR,
            input.into_tensor_arg(),
            weight.into_tensor_arg(),
            bias.into_tensor_arg(),
            residual.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            shape,
            epilogue.residual,
            epilogue.relu,
            burn::backend::cubecl::dtype_to_storage_type(dtype),
        );
    }
    permute_nhwc_to_nchw(output)
}

impl ConvolveOps for CubeBackend {
    fn convolve(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        convolve_fused(input, weight, bias, None, false, stride, padding)
    }

    fn convolve_relu(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        convolve_fused(input, weight, bias, None, true, stride, padding)
    }

    fn convolve_add_relu(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        convolve_fused(input, weight, bias, Some(residual), true, stride, padding)
    }

    fn pack_weight(weight: FloatTensor<Self>) -> FloatTensor<Self> {
        if weight.meta.shape().num_dims() != 4 || weight.dtype != DType::F32 {
            return weight;
        }
        // A view of [kernel row, kernel column, in, out] memory; `convolve`'s permute of it is
        // contiguous, so `into_contiguous` there copies nothing.
        permute(
            into_contiguous(permute(weight, &[2, 3, 1, 0])),
            &[3, 2, 0, 1],
        )
    }

    /// The tiled kernel computes it transposed, at any stride. Elsewhere, at stride 1, the
    /// input gradient is a convolution of the output gradient by the weights turned around
    /// (in and out channels swapped, kernel flipped), padded by `kernel - 1 - padding`: the
    /// direct kernel again.
    fn convolve_input_grad(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        if gpu_convolution_kernel() == GpuConvolutionKernel::Tiled
            && let Some(grad) = tiled_input_grad(
                input.meta.shape(),
                weight.clone(),
                output_grad.clone(),
                stride,
                padding,
            )
        {
            return grad;
        }
        let kernel = [weight.meta.shape()[2], weight.meta.shape()[3]];
        let in_channels = weight.meta.shape()[1];
        if stride != [1, 1] || padding[0] >= kernel[0] || padding[1] >= kernel[1] {
            return Self::conv2d_x_backward(
                input,
                weight,
                output_grad,
                ConvOptions::new(stride, padding, [1, 1], 1),
            );
        }
        let turned = Self::float_swap_dims(Self::float_flip(weight, &[2, 3]), 0, 1);
        let no_bias = Self::float_zeros([in_channels].into(), &input.device, FloatDType::F32);
        Self::convolve(
            output_grad,
            turned,
            no_bias,
            [1, 1],
            [kernel[0] - 1 - padding[0], kernel[1] - 1 - padding[1]],
        )
    }

    fn convolve_weight_grad(
        input: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let weight_shape = weight.meta.shape().clone();
        let [out_channels, in_channels, kernel_height, kernel_width] = [
            weight_shape[0],
            weight_shape[1],
            weight_shape[2],
            weight_shape[3],
        ];
        if input.dtype != DType::F32 || !out_channels.is_multiple_of(VECTOR) {
            return Self::conv2d_weight_backward(
                input,
                weight,
                output_grad,
                ConvOptions::new(stride, padding, [1, 1], 1),
            );
        }
        if in_channels.is_multiple_of(VECTOR) {
            return weight_grad(input, &weight_shape, output_grad, stride, padding);
        }
        // The stem, on the image: computed on zero channels too, which are then cut off. Only
        // the weight's shape is read, so the weight itself is not padded.
        let padded = [
            out_channels,
            in_channels.next_multiple_of(VECTOR),
            kernel_height,
            kernel_width,
        ];
        let input = pad_channels(input, PaddedLayout::ChannelsLast);
        let grad = weight_grad(input, &padded.into(), output_grad, stride, padding);
        let keep = [
            0..out_channels,
            0..in_channels,
            0..kernel_height,
            0..kernel_width,
        ];
        Self::float_slice(grad, &keep.map(Slice::from))
    }
}

/// The gradient of a weight of `weight_shape` [out, in, kernel rows, kernel columns], float32
/// with whole vectors of channels both ways, from NCHW `input` and `output_grad`: the tiled
/// kernel where it is chosen and fits, else the direct one.
fn weight_grad(
    input: FloatTensor<CubeBackend>,
    weight_shape: &Shape,
    output_grad: FloatTensor<CubeBackend>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> FloatTensor<CubeBackend> {
    let [out_channels, in_channels, kernel_height, kernel_width] = [
        weight_shape[0],
        weight_shape[1],
        weight_shape[2],
        weight_shape[3],
    ];
    let in_shape = input.meta.shape().clone();
    let grad_shape = output_grad.meta.shape().clone();
    let (client, device, dtype) = (input.client.clone(), input.device.clone(), input.dtype);
    let input = into_contiguous(permute_nchw_to_nhwc(input));
    let output_grad = into_contiguous(permute_nchw_to_nhwc(output_grad));
    if gpu_convolution_kernel() == GpuConvolutionKernel::Tiled
        && let Some(grad) = tiled_weight_grad(&input, &output_grad, weight_shape, stride, padding)
    {
        return grad;
    }
    let weights = weight_shape.num_elements();
    let images = in_shape[0];
    let splits = (WEIGHT_GRAD_PARTIALS / weights).clamp(1, images);
    let partial = empty_device_dtype(
        client.clone(),
        device,
        [
            splits,
            kernel_height,
            kernel_width,
            in_channels,
            out_channels,
        ]
        .into(),
        dtype,
    );
    let (shape, invocations) = conv_shape(
        &in_shape,
        weight_shape,
        &grad_shape,
        stride,
        padding,
        ConvWork::WeightGrad { splits },
    );
    // SAFETY: as for the forward kernel: invocations past the end stop, padded taps are
    // skipped, and `partial` holds every (part, tap, in channel, out channel).
    unsafe {
        conv_weight_grad_kernel::launch_unchecked(
            &client,
            launch_count(&client, invocations),
            CubeDim::new_1d(WORKGROUP),
            VECTOR,
            input.into_tensor_arg(),
            output_grad.into_tensor_arg(),
            partial.clone().into_tensor_arg(),
            shape,
            burn::backend::cubecl::dtype_to_storage_type(dtype),
        );
    }
    let summed = CubeBackend::float_reshape(
        CubeBackend::float_sum_dim(partial, 0),
        [kernel_height, kernel_width, in_channels, out_channels].into(),
    );
    CubeBackend::float_permute(summed, &[3, 2, 0, 1])
}
