//! resnet-web's CPU inference kernels on NHWC f32 data (channels innermost): a direct
//! convolution that adds the bias and the residual and applies the ReLU as it stores each
//! output, max pooling, and the layout changes around them; and BatchNorm in training mode
//! (`batch_norm`).
//!
//! No im2col: each tile of 4 output pixels x 8 output channels reads the padded input in
//! place, with its 8 accumulators in registers. A crate of its own so that these loops keep
//! opt-level 3 inside resnet-web's size-optimised wasm build: at opt-level s, a first
//! version of this code ran ResNet-20 at batch 64 2.3x as slowly (docs/design.md "The wasm
//! build"). With the `threads` feature, a convolution's output pixels are split across
//! rayon's pool (native builds and the threaded wasm), on at most `set_thread_limit` of them.

pub mod batch_norm;
mod lanes;
pub mod winograd;

use std::mem::MaybeUninit;

use lanes::F32x4;

#[cfg(feature = "threads")]
static THREAD_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Splits each convolution over at most `threads` of rayon's threads (0: all of them). A
/// wasm pool is started once, at its largest; this is how a page uses fewer of them.
#[cfg(feature = "threads")]
pub fn set_thread_limit(threads: usize) {
    THREAD_LIMIT.store(threads, std::sync::atomic::Ordering::Relaxed);
}

/// How many threads a convolution is split over.
pub fn threads() -> usize {
    #[cfg(feature = "threads")]
    {
        let pool = rayon::current_num_threads();
        match THREAD_LIMIT.load(std::sync::atomic::Ordering::Relaxed) {
            0 => pool,
            limit => limit.min(pool),
        }
    }
    #[cfg(not(feature = "threads"))]
    1
}

/// Output channels per weight panel: two f32x4.
const PANEL: usize = 8;
/// Output pixels per tile: 4 pixels x 2 f32x4 = 8 accumulators, which fit the 16 vector
/// registers V8 uses on x86-64 beside the weights and the input value.
const TILE: usize = 4;

/// A square convolution with the same padding on every side, as in the ResNets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvShape {
    /// The output side for an input side (PyTorch's floor rule).
    pub fn output_size(&self, size: usize) -> usize {
        window_output_size(size, self.kernel, self.stride, self.padding)
    }

    fn depth(&self) -> usize {
        self.kernel * self.kernel * self.in_channels
    }

    fn panels(&self) -> usize {
        self.out_channels.div_ceil(PANEL)
    }
}

/// Image, row and column of pixel `pixel` in a batch of `height x width` maps, pixels in
/// order (NHWC without the channels).
fn position(pixel: usize, height: usize, width: usize) -> (usize, usize, usize) {
    (
        pixel / (height * width),
        pixel / width % height,
        pixel % width,
    )
}

fn window_output_size(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding).saturating_sub(kernel) / stride + 1
}

/// Weights `[out, in, kernel, kernel]` (PyTorch's and burn's order) as `conv2d` reads them:
/// `[out / 8][kernel][kernel][in][8]`, the last panel padded with zeros.
pub fn pack_weights(shape: &ConvShape, weights: &[f32]) -> Vec<f32> {
    assert_eq!(weights.len(), shape.out_channels * shape.depth());
    let (kernel, channels) = (shape.kernel, shape.in_channels);
    let mut packed = vec![0.0; shape.panels() * shape.depth() * PANEL];
    for (index, &value) in weights.iter().enumerate() {
        let x = index % kernel;
        let y = index / kernel % kernel;
        let channel = index / (kernel * kernel) % channels;
        let output = index / (kernel * kernel * channels);
        let tap = (output / PANEL * kernel + y) * kernel + x;
        packed[(tap * channels + channel) * PANEL + output % PANEL] = value;
    }
    packed
}

/// `relu(conv(input) + bias + residual)` for `input` `[batch, height, width, in_channels]`,
/// without the ReLU when `relu` is false; `residual` is shaped as the output,
/// `[batch, out_height, out_width, out_channels]`. `packed` comes from `pack_weights`.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(fma, target_feature(enable = "relaxed-simd"))]
pub fn conv2d(
    shape: &ConvShape,
    packed: &[f32],
    bias: &[f32],
    input: &[f32],
    [batch, height, width]: [usize; 3],
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let channels_out = shape.out_channels;
    assert_eq!(input.len(), batch * height * width * shape.in_channels);
    assert_eq!(packed.len(), shape.panels() * shape.depth() * PANEL);
    assert_eq!(bias.len(), channels_out);
    let (out_height, out_width) = (shape.output_size(height), shape.output_size(width));
    let pixels = batch * out_height * out_width;
    if let Some(residual) = residual {
        assert_eq!(residual.len(), pixels * channels_out);
    }
    if pixels == 0 || channels_out == 0 {
        return Vec::new();
    }
    let pixels_per_run = pixels_per_run(pixels, shape.depth() * channels_out);
    let split = pixels_per_run < pixels;
    let padded_input;
    let (padded, padded_height, padded_width) = if shape.padding == 0 {
        (input, height, width)
    } else {
        let padding = shape.padding;
        padded_input = pad(
            input,
            [batch, height, width, shape.in_channels],
            padding,
            split,
        );
        (
            padded_input.as_slice(),
            height + 2 * padding,
            width + 2 * padding,
        )
    };
    let tiles = Tiles {
        shape,
        padded,
        padded_width,
        relu,
    };
    // The padded input pixel under an output pixel's top-left tap. Tiles run along the
    // output's pixels in order, across rows and images, so that only the batch's last few
    // pixels fall in a narrow tile (a 7x7 map is 12 tiles of 4 and 1 of 1, not 7 of 4 and 21
    // of 1): a narrow tile has too few accumulators to hide the adds' latency.
    let input_pixel = |pixel: usize| {
        let (image, y, x) = position(pixel, out_height, out_width);
        (image * padded_height + y * shape.stride) * padded_width + x * shape.stride
    };
    // Each run of pixels goes through every panel: runs are independent (each output value
    // is summed by one tile in one order, so any split gives the same bits), which lets the
    // `threads` feature hand them to rayon's pool.
    let run = |first: usize, out: &mut [MaybeUninit<f32>]| {
        let end = first + out.len() / channels_out;
        // The run's output starts as bias (plus residual), written here rather than before
        // the split (and never zeroed first): on one thread, those passes over the whole
        // output held back two threads' speed-up.
        match residual {
            Some(residual) => {
                let residual = &residual[first * channels_out..end * channels_out];
                for (out, residual) in out
                    .chunks_exact_mut(channels_out)
                    .zip(residual.chunks_exact(channels_out))
                {
                    for ((out, residual), bias) in out.iter_mut().zip(residual).zip(bias) {
                        out.write(residual + bias);
                    }
                }
            }
            None => out
                .chunks_exact_mut(channels_out)
                .for_each(|out| out.copy_from_slice(as_uninit(bias))),
        }
        // SAFETY: every value of `out` was written just above.
        let out = unsafe { assume_init(out) };
        for (panel, weights) in packed.chunks_exact(shape.depth() * PANEL).enumerate() {
            let lanes = PANEL.min(channels_out - panel * PANEL);
            let at = |pixel: usize| (pixel - first) * channels_out + panel * PANEL;
            let mut pixel = first;
            while pixel + TILE <= end {
                let inputs = std::array::from_fn(|offset| input_pixel(pixel + offset));
                tiles.run::<TILE>(weights, inputs, out, at(pixel), lanes);
                pixel += TILE;
            }
            for pixel in pixel..end {
                tiles.run::<1>(weights, [input_pixel(pixel)], out, at(pixel), lanes);
            }
        }
    };
    let write_runs = |uninit: &mut [MaybeUninit<f32>]| match split {
        #[cfg(feature = "threads")]
        true => {
            use rayon::prelude::*;
            uninit
                .par_chunks_mut(pixels_per_run * channels_out)
                .enumerate()
                .for_each(|(index, out)| run(index * pixels_per_run, out));
        }
        // Not through rayon at all: from outside its pool, even one job is handed to a
        // worker and waited for.
        _ => run(0, uninit),
    };
    // SAFETY: the runs write every one of the output's values.
    unsafe { written_by(pixels * channels_out, write_runs) }
}

/// A vector of `len` values that `write` writes into uninitialised memory, so that a
/// kernel's output is not zeroed first only to be overwritten.
///
/// # Safety
/// `write` must write every one of the `len` values it is handed.
pub(crate) unsafe fn written_by(
    len: usize,
    write: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut output = Vec::with_capacity(len);
    write(&mut output.spare_capacity_mut()[..len]);
    // SAFETY: the caller's promise: `write` wrote all `len` values.
    unsafe { output.set_len(len) };
    output
}

fn as_uninit(values: &[f32]) -> &[MaybeUninit<f32>] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and initialised values are valid ones.
    unsafe { &*(values as *const [f32] as *const [MaybeUninit<f32>]) }
}

/// # Safety
/// Every value of `values` has been written.
unsafe fn assume_init(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the caller wrote every value.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Below this many multiply-adds, a convolution stays on one thread: handing it out would
/// cost more than it saves. In wasm, waking the pool's workers (Atomics.wait) takes longer
/// than a 2.4 M multiply-add convolution saves on two threads: ResNet-20 at batch 1, whose
/// every convolution is that size, ran 0.68x as fast on 2 threads at 1 << 18.
#[cfg(not(target_family = "wasm"))]
const MIN_PARALLEL_WORK: usize = 1 << 18;
#[cfg(target_family = "wasm")]
const MIN_PARALLEL_WORK: usize = 1 << 22;

/// How many output pixels one run (one thread's share) takes: all of them on one thread,
/// else a share per thread, whole tiles, so only the batch's last pixels make a narrow tile.
fn pixels_per_run(pixels: usize, work_per_pixel: usize) -> usize {
    let threads = threads();
    if threads == 1 || pixels * work_per_pixel < MIN_PARALLEL_WORK {
        return pixels.max(1);
    }
    pixels.div_ceil(threads).next_multiple_of(TILE)
}

/// What every tile of one convolution shares.
struct Tiles<'a> {
    shape: &'a ConvShape,
    padded: &'a [f32],
    padded_width: usize,
    relu: bool,
}

impl Tiles<'_> {
    /// `PIXELS` consecutive output pixels, for the 8 output channels of `weights` (one
    /// panel): `inputs` are the padded input pixels under their top-left taps, `at` the index
    /// of the first one's first channel in `output`.
    #[cfg_attr(not(fma), inline(always))]
    #[cfg_attr(fma, inline, target_feature(enable = "relaxed-simd"))]
    fn run<const PIXELS: usize>(
        &self,
        weights: &[f32],
        inputs: [usize; PIXELS],
        output: &mut [f32],
        at: usize,
        lanes: usize,
    ) {
        let ConvShape {
            in_channels: channels,
            kernel,
            out_channels,
            ..
        } = *self.shape;
        let zero = F32x4::splat(0.0);
        let mut low = [zero; PIXELS];
        let mut high = [zero; PIXELS];
        // In NHWC, a kernel row's taps are `kernel * channels` consecutive input values, and
        // their weights are consecutive too: one long inner loop per kernel row.
        let row_len = kernel * channels;
        for (ky, row_weights) in weights.chunks_exact(row_len * PANEL).enumerate() {
            // Every slice exactly `row_len` long: the loop below then needs no bounds checks.
            let (row_weights, _) = row_weights.as_chunks::<4>();
            let row_weights = &row_weights[..2 * row_len];
            let inputs: [&[f32]; PIXELS] = std::array::from_fn(|pixel| {
                let start = (inputs[pixel] + ky * self.padded_width) * channels;
                &self.padded[start..start + row_len]
            });
            for index in 0..row_len {
                let weight_low = F32x4::load(&row_weights[2 * index]);
                let weight_high = F32x4::load(&row_weights[2 * index + 1]);
                for pixel in 0..PIXELS {
                    let value = F32x4::load_splat(&inputs[pixel][index]);
                    low[pixel] = low[pixel].mul_add(value, weight_low);
                    high[pixel] = high[pixel].mul_add(value, weight_high);
                }
            }
        }
        for pixel in 0..PIXELS {
            let start = at + pixel * out_channels;
            let out = &mut output[start..start + lanes];
            if lanes == PANEL {
                let out: &mut [f32; PANEL] = out.try_into().unwrap();
                let (out_low, out_high) = out.split_at_mut(4);
                for (out, sum) in [(out_low, low[pixel]), (out_high, high[pixel])] {
                    let out: &mut [f32; 4] = out.try_into().unwrap();
                    let value = F32x4::load(out).add(sum);
                    let value = if self.relu { value.max(zero) } else { value };
                    value.store(out);
                }
            } else {
                // The last panel of a channel count that is not a multiple of 8.
                let mut sums = [0.0; PANEL];
                let (sums_low, sums_high) = sums.split_at_mut(4);
                low[pixel].store(sums_low.try_into().unwrap());
                high[pixel].store(sums_high.try_into().unwrap());
                for (out, sum) in out.iter_mut().zip(sums) {
                    let value = *out + sum;
                    *out = if self.relu { value.max(0.0) } else { value };
                }
            }
        }
    }
}

/// `[batch, height, width, channels]` with `padding` zeros on every side; the images are
/// split across threads where `split` (the convolution is). Each value is written once.
fn pad(
    input: &[f32],
    [batch, height, width, channels]: [usize; 4],
    padding: usize,
    split: bool,
) -> Vec<f32> {
    let padded_width = width + 2 * padding;
    let padded_image_len = (height + 2 * padding) * padded_width * channels;
    let len = batch * padded_image_len;
    let (row_len, image_len) = (width * channels, height * width * channels);
    if row_len == 0 || height == 0 {
        return vec![0.0; len];
    }
    let zero = MaybeUninit::new(0.0);
    // Rows of zeros above and below the image, and the zeros that end one row and start
    // the next, between its rows.
    let edge = padding * padded_width * channels;
    let gap = 2 * padding * channels;
    let pad_image = |(padded, input): (&mut [MaybeUninit<f32>], &[f32])| {
        let (top, rest) = padded.split_at_mut(edge + padding * channels);
        top.fill(zero);
        for (y, source) in input.chunks_exact(row_len).enumerate() {
            let row = &mut rest[y * (row_len + gap)..];
            row[..row_len].copy_from_slice(as_uninit(source));
            let after = if y + 1 == height {
                padding * channels + edge
            } else {
                gap
            };
            row[row_len..row_len + after].fill(zero);
        }
    };
    let write_images = |uninit: &mut [MaybeUninit<f32>]| match split {
        #[cfg(feature = "threads")]
        true => {
            use rayon::prelude::*;
            uninit
                .par_chunks_exact_mut(padded_image_len)
                .zip(input.par_chunks_exact(image_len))
                .for_each(pad_image);
        }
        _ => uninit
            .chunks_exact_mut(padded_image_len)
            .zip(input.chunks_exact(image_len))
            .for_each(pad_image),
    };
    // SAFETY: each image's task writes its top rows, every row with the zeros around it,
    // and its bottom rows: all `len` values.
    unsafe { written_by(len, write_images) }
}

/// Max pooling over `kernel x kernel` windows; padding never wins (it counts as minus
/// infinity, as in PyTorch). Returns the output and its height and width.
pub fn max_pool(
    input: &[f32],
    [batch, height, width, channels]: [usize; 4],
    kernel: usize,
    stride: usize,
    padding: usize,
) -> (Vec<f32>, usize, usize) {
    assert_eq!(input.len(), batch * height * width * channels);
    let out_height = window_output_size(height, kernel, stride, padding);
    let out_width = window_output_size(width, kernel, stride, padding);
    let mut output = vec![f32::NEG_INFINITY; batch * out_height * out_width * channels];
    if channels == 0 {
        return (output, out_height, out_width);
    }
    for (pixel, out) in output.chunks_exact_mut(channels).enumerate() {
        let (image, y, x) = position(pixel, out_height, out_width);
        for input_y in (y * stride..y * stride + kernel)
            .filter_map(|row| row.checked_sub(padding))
            .filter(|&row| row < height)
        {
            for input_x in (x * stride..x * stride + kernel)
                .filter_map(|column| column.checked_sub(padding))
                .filter(|&column| column < width)
            {
                let start = ((image * height + input_y) * width + input_x) * channels;
                for (out, &value) in out.iter_mut().zip(&input[start..start + channels]) {
                    *out = out.max(value);
                }
            }
        }
    }
    (output, out_height, out_width)
}

/// `[batch, channels, height, width]` (PyTorch's and burn's layout) to
/// `[batch, height, width, channels]`.
pub fn nchw_to_nhwc(input: &[f32], [batch, channels, height, width]: [usize; 4]) -> Vec<f32> {
    assert_eq!(input.len(), batch * channels * height * width);
    let mut output = vec![0.0; input.len()];
    let plane = height * width;
    if plane * channels == 0 {
        return output;
    }
    for (image, out) in input
        .chunks_exact(channels * plane)
        .zip(output.chunks_exact_mut(channels * plane))
    {
        for (channel, values) in image.chunks_exact(plane).enumerate() {
            for (pixel, &value) in values.iter().enumerate() {
                out[pixel * channels + channel] = value;
            }
        }
    }
    output
}

/// Every `stride`-th pixel, with `before` and `after` zero channels around the input's
/// (the ResNet paper's option A shortcut). Returns the output and its height and width.
pub fn subsample_and_pad_channels(
    input: &[f32],
    [batch, height, width, channels]: [usize; 4],
    stride: usize,
    before: usize,
    after: usize,
) -> (Vec<f32>, usize, usize) {
    assert_eq!(input.len(), batch * height * width * channels);
    let out_height = window_output_size(height, 1, stride, 0);
    let out_width = window_output_size(width, 1, stride, 0);
    let out_channels = before + channels + after;
    let mut output = vec![0.0; batch * out_height * out_width * out_channels];
    if out_channels == 0 {
        return (output, out_height, out_width);
    }
    for (pixel, out) in output.chunks_exact_mut(out_channels).enumerate() {
        let (image, y, x) = position(pixel, out_height, out_width);
        let start = ((image * height + y * stride) * width + x * stride) * channels;
        out[before..before + channels].copy_from_slice(&input[start..start + channels]);
    }
    (output, out_height, out_width)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    pub(crate) fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The textbook convolution on NCHW data, for comparison.
    pub(crate) fn reference(
        shape: &ConvShape,
        weights: &[f32],
        bias: &[f32],
        input_nchw: &[f32],
        [batch, height, width]: [usize; 3],
    ) -> Vec<f32> {
        let (out_height, out_width) = (shape.output_size(height), shape.output_size(width));
        let (k, cin, cout) = (shape.kernel, shape.in_channels, shape.out_channels);
        let mut output = vec![0.0; batch * out_height * out_width * cout];
        for n in 0..batch {
            for o in 0..cout {
                for y in 0..out_height {
                    for x in 0..out_width {
                        let mut sum = bias[o];
                        for c in 0..cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy =
                                        (y * shape.stride + ky) as isize - shape.padding as isize;
                                    let ix =
                                        (x * shape.stride + kx) as isize - shape.padding as isize;
                                    if iy < 0
                                        || ix < 0
                                        || iy >= height as isize
                                        || ix >= width as isize
                                    {
                                        continue;
                                    }
                                    let input = input_nchw[((n * cin + c) * height + iy as usize)
                                        * width
                                        + ix as usize];
                                    sum += input * weights[((o * cin + c) * k + ky) * k + kx];
                                }
                            }
                        }
                        output[((n * out_height + y) * out_width + x) * cout + o] = sum;
                    }
                }
            }
        }
        output
    }

    #[test]
    fn conv2d_matches_the_textbook_convolution() {
        // Kernel sizes of the ResNets, strides 1 and 2, widths that leave partial tiles, and
        // channel counts that leave a partial panel.
        let cases = [
            (3, 16, 3, 1, 1, [2, 9, 7]),
            (16, 16, 3, 1, 1, [1, 8, 8]),
            (16, 32, 3, 2, 1, [2, 9, 11]),
            (3, 64, 7, 2, 3, [1, 13, 17]),
            (32, 12, 1, 1, 0, [2, 5, 6]),
            (24, 20, 1, 2, 0, [1, 7, 7]),
            (5, 3, 3, 1, 1, [1, 1, 1]),
        ];
        for (index, (cin, cout, kernel, stride, padding, [batch, height, width])) in
            cases.into_iter().enumerate()
        {
            let shape = ConvShape {
                in_channels: cin,
                out_channels: cout,
                kernel,
                stride,
                padding,
            };
            let seed = index as u64;
            let weights = values(cout * cin * kernel * kernel, seed);
            let bias = values(cout, seed + 100);
            let input_nchw = values(batch * cin * height * width, seed + 200);
            let input = nchw_to_nhwc(&input_nchw, [batch, cin, height, width]);
            let expected = reference(&shape, &weights, &bias, &input_nchw, [batch, height, width]);
            let packed = pack_weights(&shape, &weights);
            let plain = conv2d(
                &shape,
                &packed,
                &bias,
                &input,
                [batch, height, width],
                None,
                false,
            );
            let residual = values(expected.len(), seed + 300);
            let fused = conv2d(
                &shape,
                &packed,
                &bias,
                &input,
                [batch, height, width],
                Some(&residual),
                true,
            );
            for (i, ((&ours, &theirs), &residual)) in
                plain.iter().zip(&expected).zip(&residual).enumerate()
            {
                assert!(
                    (ours - theirs).abs() < 1e-5,
                    "case {index}, value {i}: {ours} against {theirs}"
                );
                let fused_expected = (theirs + residual).max(0.0);
                assert!(
                    (fused[i] - fused_expected).abs() < 1e-5,
                    "case {index}, value {i} with residual and ReLU"
                );
            }
            assert_eq!(plain.len(), expected.len());
        }
    }

    /// Split across threads (pools of 2 and 3, so one share is uneven), a convolution gives
    /// the bits it gives on one thread.
    #[cfg(feature = "threads")]
    #[test]
    fn conv2d_on_several_threads_matches_one_thread_bit_for_bit() {
        let shape = ConvShape {
            in_channels: 16,
            out_channels: 20,
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let size = [2, 15, 13];
        let weights = values(20 * 16 * 9, 1);
        let bias = values(20, 2);
        let input_nchw = values(2 * 16 * 15 * 13, 3);
        let input = nchw_to_nhwc(&input_nchw, [2, 16, 15, 13]);
        let packed = pack_weights(&shape, &weights);
        let residual = values(2 * 15 * 13 * 20, 4);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                assert!(
                    pixels_per_run(2 * 15 * 13, shape.depth() * 20) < 2 * 15 * 13 || threads == 1
                );
                conv2d(&shape, &packed, &bias, &input, size, Some(&residual), true)
            })
        };
        let one = on(1);
        let expected = reference(&shape, &weights, &bias, &input_nchw, size);
        for (i, (&ours, (&theirs, &residual))) in
            one.iter().zip(expected.iter().zip(&residual)).enumerate()
        {
            assert!(
                (ours - (theirs + residual).max(0.0)).abs() < 1e-5,
                "value {i}"
            );
        }
        for threads in [2, 3] {
            let split = on(threads);
            assert!(
                one.iter()
                    .zip(&split)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{threads} threads differ from one"
            );
        }
        // A limit of one thread keeps a convolution whole on a pool of three.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        set_thread_limit(1);
        let whole = pool.install(|| pixels_per_run(2 * 15 * 13, shape.depth() * 20));
        set_thread_limit(0);
        assert_eq!(whole, 2 * 15 * 13);
    }

    #[test]
    fn max_pool_ignores_padding() {
        // One channel, 3x3: every window of a 3x3/2 pool with padding 1 sees the border.
        let input: Vec<f32> = (0..9).map(|v| -(v as f32)).collect();
        let (output, height, width) = max_pool(&input, [1, 3, 3, 1], 3, 2, 1);
        assert_eq!((height, width), (2, 2));
        assert_eq!(output, [0.0, -1.0, -3.0, -4.0]);
    }

    #[test]
    fn subsampling_keeps_every_other_pixel_between_zero_channels() {
        let input: Vec<f32> = (1..=8).map(|v| v as f32).collect(); // [1, 2, 2, 2]
        let (output, height, width) = subsample_and_pad_channels(&input, [1, 2, 2, 2], 2, 1, 1);
        assert_eq!((height, width), (1, 1));
        assert_eq!(output, [0.0, 1.0, 2.0, 0.0]);
    }
}
