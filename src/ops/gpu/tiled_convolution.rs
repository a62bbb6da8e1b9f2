//! A tiled implicit-GEMM convolution for real GPUs: the convolution as the matrix product it
//! is, output pixels (N·H·W) by output channels, with K = kernel taps x input channels. Each
//! workgroup of 256 invocations computes a tile of outputs. Stage by stage it gathers a slice of
//! the input patches (K_STAGE values of K for each of the tile's pixels; no im2col buffer is
//! written) and the matching rows of the weights into workgroup memory, and each invocation
//! keeps a block of outputs in registers. A value loaded from global memory then serves every
//! output of its row or column of the tile, instead of 4 as in `gpu_convolution.rs`'s kernel.
//! Only what every WebGPU device has: 256 invocations, at most 16 KiB of workgroup memory,
//! float32, no subgroups. Layouts are that kernel's: input and output NHWC, weights [kernel row,
//! kernel column, in channel, out channel], all as vectors of 4 channels.

use cubecl::num_traits::Zero;
use cubecl::prelude::*;

/// Channels in a vector, the unit every load and store moves.
pub(super) const VECTOR: usize = 4;
/// Invocations per workgroup: a grid over the tile's pixels and channel vectors, 16 by 16 but
/// for the narrow tile's 64 by 4.
const WORKGROUP: u32 = 256;
const GRID: usize = 16;
/// Vectors of K (4 input channels of one tap each) staged at once.
const K_STAGE: usize = 4;

/// The block of outputs each invocation keeps in registers, and how the workgroup's
/// invocations lie over the tile: `columns` across the channel vectors, 256 / `columns` down
/// the pixels. Each invocation gathers whole pixels (4 K vectors), so the tile has a multiple
/// of 64 pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileShape {
    /// Output pixels per invocation.
    pub pixels: usize,
    /// Vectors of 4 output channels per invocation.
    pub vectors: usize,
    /// Invocations across the channel vectors.
    pub columns: usize,
}

impl TileShape {
    /// 128 pixels by 16 channels, for layers of 16 channels (ResNet-20's first stage), where
    /// the 64-channel tiles would leave 3 invocations of 4 idle; 9 KiB of workgroup memory.
    pub const NARROW: TileShape = TileShape {
        pixels: 2,
        vectors: 1,
        columns: 4,
    };
    /// 64 pixels by 64 channels; 8 KiB.
    pub const SMALL: TileShape = TileShape {
        pixels: 4,
        vectors: 1,
        columns: GRID,
    };
    /// 128 pixels by 64 channels; 12 KiB.
    pub const TALL: TileShape = TileShape {
        pixels: 8,
        vectors: 1,
        columns: GRID,
    };
    /// 64 pixels by 128 channels; 12 KiB. The rule does not pick it: a candidate that `resnet
    /// bench --only tiles` times beside the others (docs/design.md "A performance model").
    pub const WIDE: TileShape = TileShape {
        pixels: 4,
        vectors: 2,
        columns: GRID,
    };
    /// 128 pixels by 128 channels; 16 KiB, WebGPU's least limit.
    pub const LARGE: TileShape = TileShape {
        pixels: 8,
        vectors: 2,
        columns: GRID,
    };

    pub fn tile_pixels(self) -> usize {
        WORKGROUP as usize / self.columns * self.pixels
    }

    pub fn tile_channels(self) -> usize {
        self.columns * self.vectors * VECTOR
    }

    /// Bytes of workgroup memory: the staged patches and weights.
    pub fn workgroup_bytes(self) -> usize {
        (self.tile_pixels() * K_STAGE + K_STAGE * self.tile_channels()) * VECTOR * 4
    }

    /// The tile for a layer: the large one where there are channels and pixels to fill it
    /// (an invocation then loads 16 vectors from workgroup memory for 64 vector
    /// multiply-adds, against 8 for 16 with the small one), the small one where the layer is
    /// too small to give a GPU enough workgroups otherwise, the narrow one where there are
    /// at most 16 channels.
    pub fn for_layer(pixels: usize, out_channels: usize) -> TileShape {
        let workgroups = |tile: TileShape| {
            pixels.div_ceil(tile.tile_pixels()) * out_channels.div_ceil(tile.tile_channels())
        };
        // About two workgroups per compute unit of a large GPU.
        const ENOUGH: usize = 256;
        if out_channels <= Self::NARROW.tile_channels() {
            Self::NARROW
        } else if out_channels >= 128 && workgroups(Self::LARGE) >= ENOUGH {
            Self::LARGE
        } else if workgroups(Self::TALL) >= ENOUGH {
            Self::TALL
        } else {
            Self::SMALL
        }
    }
}

/// `sum`, plus `residual[at]` where `add_residual`, clamped at 0 where `relu`.
#[cube]
pub(super) fn epilogue_of<E: Float, N: Size>(
    sum: Vector<E, N>,
    residual: &Tensor<Vector<E, N>>,
    at: u32,
    #[comptime] add_residual: bool,
    #[comptime] relu: bool,
) -> Vector<E, N> {
    let mut value = sum;
    if add_residual {
        value += residual[at as usize];
    }
    if relu {
        value = clamp_min(value, Vector::zero());
    }
    value
}

/// Output pixel `pixel` of a grid of `height` by `width` pixels an image, as (image, row,
/// column).
#[cube]
fn grid_position(pixel: u32, height: u32, width: u32) -> (u32, u32, u32) {
    let rest = pixel / width;
    (rest / height, rest % height, pixel % width)
}

/// A stage's loads, from registers into workgroup memory: each invocation's gathered patch
/// vectors at `unit + gather·256`, its weight vectors at `unit + load·256` where that is inside
/// the stage's `stage_weights`.
#[cube]
fn store_stage<E: Float, N: Size>(
    patches: &mut Shared<[Vector<E, N>]>,
    weights: &mut Shared<[Vector<E, N>]>,
    patch_values: &Array<Vector<E, N>>,
    weight_values: &Array<Vector<E, N>>,
    stage_weights: u32,
    #[comptime] gathers: usize,
    #[comptime] weight_loads: usize,
) {
    let unit = UNIT_POS;
    #[unroll]
    for gather in 0..gathers {
        patches[(unit + gather as u32 * WORKGROUP) as usize] = patch_values[gather];
    }
    #[unroll]
    for load in 0..weight_loads {
        let at = unit + load as u32 * WORKGROUP;
        if at < stage_weights {
            weights[at as usize] = weight_values[load];
        }
    }
}

/// What the kernel reads of a convolution's shape.
#[derive(CubeLaunch, CubeType)]
pub(super) struct TiledConvShape {
    pub in_height: u32,
    pub in_width: u32,
    /// Channel counts in vectors of `VECTOR`.
    pub in_vectors: u32,
    pub out_height: u32,
    pub out_width: u32,
    pub out_vectors: u32,
    pub kernel_height: u32,
    pub kernel_width: u32,
    pub stride_height: u32,
    pub stride_width: u32,
    pub pad_height: u32,
    pub pad_width: u32,
    pub images: u32,
    /// Output pixels in all: images x output height x output width.
    pub pixels: u32,
    /// K in vectors: kernel taps x `in_vectors`.
    pub k_vectors: u32,
    /// The weight gradient: output pixels summed by each part of the split sum.
    pub split_pixels: u32,
}

/// Workgroup (x, y) covers pixels from x·tile_pixels and channel vectors from
/// y·columns·vectors.
/// The bias, then the residual where `add_residual`, are added and the ReLU applied where
/// `relu`, as the outputs are stored.
///
/// Where `transposed`, it computes a convolution's input gradient from its output gradient,
/// reading no bias and no residual: `input` is the output gradient and `output` the input
/// gradient, so the shape's "in" sizes are the convolution's output and its "out" sizes the
/// convolution's input (kernel, stride and padding stay the convolution's), and `weight` is
/// [kernel row, kernel column, out channel, in channel]. Input row y takes output-gradient
/// row (y + pad - kernel row) / stride only where that divides, so all rows of one phase (y
/// mod stride) take the same kernel rows: workgroup z is phase z, its pixels are that phase's
/// rows and columns alone, and no multiply-add is spent on a tap that does not divide.
#[cube(launch_unchecked)]
pub(super) fn conv_tiled_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    weight: &Tensor<Vector<E, N>>,
    bias: &Tensor<Vector<E, N>>,
    residual: &Tensor<Vector<E, N>>,
    output: &mut Tensor<Vector<E, N>>,
    shape: TiledConvShape,
    #[comptime] pixels_per_unit: usize,
    #[comptime] vectors_per_unit: usize,
    #[comptime] columns: usize,
    #[comptime] add_residual: bool,
    #[comptime] relu: bool,
    #[comptime] transposed: bool,
    #[comptime] prefetch: bool,
    #[define(E)] _dtype: ElemType,
) {
    // The grid of pixels this workgroup's tiles cover, K, and where a pixel's window starts:
    // forward, output row y reads input rows from y·stride - pad, tap row t at + t.
    let mut grid_height = shape.out_height;
    let mut grid_width = shape.out_width;
    let mut pixels = shape.pixels;
    let mut k_vectors = shape.k_vectors;
    let mut taps_x = shape.kernel_width;
    let mut window_step_y = shape.stride_height;
    let mut window_step_x = shape.stride_width;
    let mut window_start_y = -(shape.pad_height as i32);
    let mut window_start_x = -(shape.pad_width as i32);
    let mut phase_y = 0u32;
    let mut phase_x = 0u32;
    let mut first_tap_y = 0u32;
    let mut first_tap_x = 0u32;
    if transposed {
        // Phase row p (input rows p + stride·q) takes kernel rows first_tap + stride·j, where
        // first_tap = (p + pad) mod stride, from output-gradient row q + (p + pad) div stride - j.
        phase_y = CUBE_POS_Z / shape.stride_width;
        phase_x = CUBE_POS_Z % shape.stride_width;
        first_tap_y = (phase_y + shape.pad_height) % shape.stride_height;
        first_tap_x = (phase_x + shape.pad_width) % shape.stride_width;
        // Ceilings that are 0 where the phase has no rows or no taps, without going below 0.
        let taps_y =
            (shape.kernel_height + shape.stride_height - 1 - first_tap_y) / shape.stride_height;
        taps_x = (shape.kernel_width + shape.stride_width - 1 - first_tap_x) / shape.stride_width;
        grid_height = (shape.out_height + shape.stride_height - 1 - phase_y) / shape.stride_height;
        grid_width = (shape.out_width + shape.stride_width - 1 - phase_x) / shape.stride_width;
        pixels = shape.images * grid_height * grid_width;
        // An empty phase (an input of 1 row at stride 2) has no pixel to decode, but its
        // invocations still divide by its sizes.
        grid_height = select(grid_height > 0, grid_height, 1);
        grid_width = select(grid_width > 0, grid_width, 1);
        k_vectors = taps_y * taps_x * shape.in_vectors;
        window_step_y = 1;
        window_step_x = 1;
        window_start_y = ((phase_y + shape.pad_height) / shape.stride_height) as i32;
        window_start_x = ((phase_x + shape.pad_width) / shape.stride_width) as i32;
    }

    let unit = UNIT_POS;
    let tile_pixels = WORKGROUP as usize / columns * pixels_per_unit;
    let tile_vectors = columns * vectors_per_unit;
    let first_pixel = CUBE_POS_X * tile_pixels as u32;
    let first_vector = CUBE_POS_Y * tile_vectors as u32;

    // patches[pixel * K_STAGE + k]: the stage's K_STAGE vectors of K for each pixel of the
    // tile. weights[row * tile_vectors + v]: the stage's K_STAGE x 4 rows of the weights.
    let mut patches = Shared::<[Vector<E, N>]>::new_slice(tile_pixels * K_STAGE);
    let mut weights = Shared::<[Vector<E, N>]>::new_slice(K_STAGE * VECTOR * tile_vectors);

    // Each invocation gathers the same K vector of the same pixels at every stage: where those
    // pixels' windows start. A pixel past the end gets a window no row can fall in.
    let gathers = tile_pixels * K_STAGE / WORKGROUP as usize;
    let load_k = unit % K_STAGE as u32;
    let mut window_rows = Array::<u32>::new(gathers);
    let mut window_y = Array::<i32>::new(gathers);
    let mut window_x = Array::<i32>::new(gathers);
    #[unroll]
    for gather in 0..gathers {
        let pixel =
            first_pixel + unit / K_STAGE as u32 + gather as u32 * (WORKGROUP / K_STAGE as u32);
        let (image, out_y, out_x) = grid_position(pixel, grid_height, grid_width);
        window_rows[gather] = image * shape.in_height;
        window_y[gather] = select(
            pixel < pixels,
            (out_y * window_step_y) as i32 + window_start_y,
            -1_073_741_824i32,
        );
        window_x[gather] = (out_x * window_step_x) as i32 + window_start_x;
    }

    let unit_vector = unit % columns as u32;
    let unit_pixel = unit / columns as u32;
    let mut sums = Array::<Vector<E, N>>::new(pixels_per_unit * vectors_per_unit);
    #[unroll]
    for at in 0..pixels_per_unit * vectors_per_unit {
        sums[at] = Vector::zero();
    }
    let weight_rows = k_vectors * VECTOR as u32;

    // (cube functions have no div_ceil)
    #[allow(clippy::manual_div_ceil)]
    let stages = (k_vectors + K_STAGE as u32 - 1) / K_STAGE as u32;
    // The stage's weights: one vector an invocation and load (the narrow tile's 64 by the
    // first quarter of the workgroup).
    let stage_weights = K_STAGE * VECTOR * tile_vectors;
    #[allow(clippy::manual_div_ceil)]
    let weight_loads = (stage_weights + WORKGROUP as usize - 1) / WORKGROUP as usize;
    // What this invocation loads from global memory for a stage, held in registers until it
    // is stored into workgroup memory.
    let mut patch_values = Array::<Vector<E, N>>::new(gathers);
    let mut weight_values = Array::<Vector<E, N>>::new(weight_loads);
    // Round r loads stage r. Without `prefetch` it then stores and multiplies out that stage.
    // With it, it multiplies out stage r - 1 while stage r's loads are in flight, and stores
    // stage r after: one round more than stages, the first only loading and the last only
    // multiplying. The same two barriers a round either way, and a few registers more.
    let mut rounds = stages;
    let mut first_multiplying_round = 0u32;
    if prefetch {
        rounds = stages + 1;
        first_multiplying_round = 1u32;
    }
    for round in 0..rounds {
        if round < stages {
            let stage = round;
            // Gather: K vector k is tap k / in_vectors, channel vector k % in_vectors; the
            // transposed convolution walks its taps' rows and columns backwards.
            let k = stage * K_STAGE as u32 + load_k;
            let tap = k / shape.in_vectors;
            let channel_vector = k % shape.in_vectors;
            let mut tap_y = (tap / taps_x) as i32;
            let mut tap_x = (tap % taps_x) as i32;
            if transposed {
                tap_y = -tap_y;
                tap_x = -tap_x;
            }
            #[unroll]
            for gather in 0..gathers {
                let in_y = window_y[gather] + tap_y;
                let in_x = window_x[gather] + tap_x;
                let mut value = Vector::<E, N>::zero();
                if k < k_vectors
                    && in_y >= 0
                    && in_y < shape.in_height as i32
                    && in_x >= 0
                    && in_x < shape.in_width as i32
                {
                    let at = ((window_rows[gather] + in_y as u32) * shape.in_width + in_x as u32)
                        * shape.in_vectors
                        + channel_vector;
                    value = input[at as usize];
                }
                patch_values[gather] = value;
            }
            #[unroll]
            for load in 0..weight_loads {
                let at = unit + load as u32 * WORKGROUP;
                let row = stage * (K_STAGE * VECTOR) as u32 + at / tile_vectors as u32;
                let vector = first_vector + at % tile_vectors as u32;
                // Forward, the weights' rows are K's rows as they lie; transposed, the phase's
                // taps are every stride-th kernel row and column from its first.
                let mut weight_row = row;
                if transposed {
                    let k_row = row / VECTOR as u32;
                    let tap = k_row / shape.in_vectors;
                    let kernel_y = first_tap_y + (tap / taps_x) * shape.stride_height;
                    let kernel_x = first_tap_x + (tap % taps_x) * shape.stride_width;
                    weight_row = ((kernel_y * shape.kernel_width + kernel_x) * shape.in_vectors
                        + k_row % shape.in_vectors)
                        * VECTOR as u32
                        + row % VECTOR as u32;
                }
                let mut value = Vector::<E, N>::zero();
                if row < weight_rows && vector < shape.out_vectors {
                    value = weight[(weight_row * shape.out_vectors + vector) as usize];
                }
                weight_values[load] = value;
            }
        }
        if !prefetch {
            store_stage(
                &mut patches,
                &mut weights,
                &patch_values,
                &weight_values,
                stage_weights as u32,
                gathers,
                weight_loads,
            );
            sync_cube();
        }

        if round >= first_multiplying_round {
            #[unroll]
            for k_in_stage in 0..K_STAGE {
                // Four rows of weights (one per input channel of this K vector) for each of
                // this invocation's output vectors, which are `columns` apart so that
                // neighbours read neighbouring vectors.
                let mut rows = Array::<Vector<E, N>>::new(VECTOR * vectors_per_unit);
                #[unroll]
                for channel in 0..VECTOR {
                    #[unroll]
                    for v in 0..vectors_per_unit {
                        rows[channel * vectors_per_unit + v] =
                            weights[(k_in_stage * VECTOR + channel) * tile_vectors
                                + unit_vector as usize
                                + v * columns];
                    }
                }
                #[unroll]
                for p in 0..pixels_per_unit {
                    let patch =
                        patches[(unit_pixel as usize * pixels_per_unit + p) * K_STAGE + k_in_stage];
                    #[unroll]
                    for v in 0..vectors_per_unit {
                        sums[p * vectors_per_unit + v] += rows[v]
                            * Vector::new(patch.extract(0usize))
                            + rows[vectors_per_unit + v] * Vector::new(patch.extract(1usize))
                            + rows[2 * vectors_per_unit + v] * Vector::new(patch.extract(2usize))
                            + rows[3 * vectors_per_unit + v] * Vector::new(patch.extract(3usize));
                    }
                }
            }
        }
        sync_cube();

        if prefetch && round < stages {
            store_stage(
                &mut patches,
                &mut weights,
                &patch_values,
                &weight_values,
                stage_weights as u32,
                gathers,
                weight_loads,
            );
            sync_cube();
        }
    }

    #[unroll]
    for p in 0..pixels_per_unit {
        let pixel = first_pixel + unit_pixel * pixels_per_unit as u32 + p as u32;
        // Transposed, the phase's pixel (image, q_y, q_x) is row phase_y + stride·q_y.
        let mut out_pixel = pixel;
        if transposed {
            let (image, q_y, q_x) = grid_position(pixel, grid_height, grid_width);
            out_pixel = (image * shape.out_height + phase_y + q_y * shape.stride_height)
                * shape.out_width
                + phase_x
                + q_x * shape.stride_width;
        }
        #[unroll]
        for v in 0..vectors_per_unit {
            let vector = first_vector + unit_vector + (v * columns) as u32;
            if pixel < pixels && vector < shape.out_vectors {
                let at = out_pixel * shape.out_vectors + vector;
                // A gradient has no bias (so the caller need not make zeros for one).
                let mut sum = sums[p * vectors_per_unit + v];
                if !transposed {
                    sum += bias[vector as usize];
                }
                output[at as usize] = epilogue_of(sum, residual, at, add_residual, relu);
            }
        }
    }
}

/// Pixels staged at once by the weight-gradient kernel.
const STAGE_PIXELS: usize = 16;

/// The weight-gradient kernel's blocks: K vectors and output vectors per invocation (the tile
/// is 16 times that in each direction), and how many parts the sum over pixels is split into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightGradTiles {
    pub k_vectors: usize,
    pub vectors: usize,
    pub splits: usize,
}

impl WeightGradTiles {
    /// The gradient of a weight [K rows, out channels] summed over `pixels` output pixels, with
    /// at most `max_partials` floats of partial sums: 2 by 2 vectors an invocation where K and
    /// the channels fill the larger tile (16 KiB of workgroup memory), 1 by 1 (8 KiB)
    /// elsewhere; the sum over pixels split until there are about two workgroups per
    /// compute unit of a large GPU, each summing at least 256 pixels.
    pub fn for_layer(
        k_vectors: usize,
        out_channels: usize,
        pixels: usize,
        max_partials: usize,
    ) -> Self {
        let size = |fits: bool| if fits { 2 } else { 1 };
        let k_per_unit = size(k_vectors >= 128);
        let vectors = size(out_channels >= 128);
        let tiles =
            k_vectors.div_ceil(GRID * k_per_unit) * out_channels.div_ceil(GRID * vectors * VECTOR);
        let partial = k_vectors * VECTOR * out_channels;
        let splits = 512usize
            .div_ceil(tiles)
            .min(pixels.div_ceil(256))
            .min(max_partials / partial)
            .clamp(1, 65_535);
        Self {
            k_vectors: k_per_unit,
            vectors,
            splits,
        }
    }

    /// Pixels each part sums: whole stages.
    pub fn split_pixels(self, pixels: usize) -> usize {
        pixels.div_ceil(self.splits).next_multiple_of(STAGE_PIXELS)
    }

    pub fn workgroup_bytes(self) -> usize {
        STAGE_PIXELS * GRID * (self.k_vectors + self.vectors) * VECTOR * 4
    }
}

/// The weight gradient as a product over output pixels: `partial[split][row][out vector]`
/// holds part `split`'s sum of patch value (row: a tap's input channel, as the weights'
/// rows) times output gradient. Workgroup (x, y, z) covers K vectors from x·16·k_per_unit,
/// output vectors from y·16·vectors_per_unit, and part z of the pixels.
#[cube(launch_unchecked)]
pub(super) fn conv_tiled_weight_grad_kernel<E: Float, N: Size>(
    input: &Tensor<Vector<E, N>>,
    output_grad: &Tensor<Vector<E, N>>,
    partial: &mut Tensor<Vector<E, N>>,
    shape: TiledConvShape,
    #[comptime] k_per_unit: usize,
    #[comptime] vectors_per_unit: usize,
    #[define(E)] _dtype: ElemType,
) {
    let unit = UNIT_POS;
    let tile_k = GRID * k_per_unit;
    let tile_vectors = GRID * vectors_per_unit;
    let first_k = CUBE_POS_X * tile_k as u32;
    let first_vector = CUBE_POS_Y * tile_vectors as u32;
    let begin = CUBE_POS_Z * shape.split_pixels;
    let end = select(
        begin + shape.split_pixels < shape.pixels,
        begin + shape.split_pixels,
        shape.pixels,
    );

    // patches[pixel * tile_k + k] and grads[pixel * tile_vectors + v], for the stage's pixels.
    let mut patches = Shared::<[Vector<E, N>]>::new_slice(STAGE_PIXELS * tile_k);
    let mut grads = Shared::<[Vector<E, N>]>::new_slice(STAGE_PIXELS * tile_vectors);

    // Each invocation gathers the same K vector at every stage (256 is a multiple of tile_k):
    // its tap and channel vector.
    let load_k = first_k + unit % tile_k as u32;
    let tap = load_k / shape.in_vectors;
    let channel_vector = load_k % shape.in_vectors;
    let tap_y = (tap / shape.kernel_width) as i32 - shape.pad_height as i32;
    let tap_x = (tap % shape.kernel_width) as i32 - shape.pad_width as i32;
    let load_vector = first_vector + unit % tile_vectors as u32;

    let unit_vector = unit % GRID as u32;
    let unit_k = unit / GRID as u32;
    let mut sums = Array::<Vector<E, N>>::new(k_per_unit * VECTOR * vectors_per_unit);
    #[unroll]
    for at in 0..k_per_unit * VECTOR * vectors_per_unit {
        sums[at] = Vector::zero();
    }

    for stage in range_stepped(begin, end, STAGE_PIXELS as u32) {
        #[unroll]
        for load in 0..k_per_unit {
            let at = unit + load as u32 * WORKGROUP;
            let pixel = stage + at / tile_k as u32;
            let (image, out_y, out_x) = grid_position(pixel, shape.out_height, shape.out_width);
            let in_y = (out_y * shape.stride_height) as i32 + tap_y;
            let in_x = (out_x * shape.stride_width) as i32 + tap_x;
            let mut value = Vector::<E, N>::zero();
            if pixel < end
                && load_k < shape.k_vectors
                && in_y >= 0
                && in_y < shape.in_height as i32
                && in_x >= 0
                && in_x < shape.in_width as i32
            {
                let from = ((image * shape.in_height + in_y as u32) * shape.in_width + in_x as u32)
                    * shape.in_vectors
                    + channel_vector;
                value = input[from as usize];
            }
            patches[at as usize] = value;
        }
        #[unroll]
        for load in 0..vectors_per_unit {
            let at = unit + load as u32 * WORKGROUP;
            let pixel = stage + at / tile_vectors as u32;
            let mut value = Vector::<E, N>::zero();
            if pixel < end && load_vector < shape.out_vectors {
                value = output_grad[(pixel * shape.out_vectors + load_vector) as usize];
            }
            grads[at as usize] = value;
        }
        sync_cube();

        #[unroll]
        for p in 0..STAGE_PIXELS {
            let mut gradient = Array::<Vector<E, N>>::new(vectors_per_unit);
            #[unroll]
            for v in 0..vectors_per_unit {
                gradient[v] = grads[p * tile_vectors + unit_vector as usize + v * GRID];
            }
            #[unroll]
            for k in 0..k_per_unit {
                let patch = patches[p * tile_k + unit_k as usize + k * GRID];
                #[unroll]
                for v in 0..vectors_per_unit {
                    let g = gradient[v];
                    sums[(k * VECTOR) * vectors_per_unit + v] +=
                        g * Vector::new(patch.extract(0usize));
                    sums[(k * VECTOR + 1) * vectors_per_unit + v] +=
                        g * Vector::new(patch.extract(1usize));
                    sums[(k * VECTOR + 2) * vectors_per_unit + v] +=
                        g * Vector::new(patch.extract(2usize));
                    sums[(k * VECTOR + 3) * vectors_per_unit + v] +=
                        g * Vector::new(patch.extract(3usize));
                }
            }
        }
        sync_cube();
    }

    let rows = shape.k_vectors * VECTOR as u32;
    #[unroll]
    for k in 0..k_per_unit {
        let k_vector = first_k + unit_k + (k * GRID) as u32;
        #[unroll]
        for v in 0..vectors_per_unit {
            let vector = first_vector + unit_vector + (v * GRID) as u32;
            if k_vector < shape.k_vectors && vector < shape.out_vectors {
                #[unroll]
                for channel in 0..VECTOR {
                    let row = k_vector * VECTOR as u32 + channel as u32;
                    partial[((CUBE_POS_Z * rows + row) * shape.out_vectors + vector) as usize] =
                        sums[(k * VECTOR + channel) * vectors_per_unit + v];
                }
            }
        }
    }
}
