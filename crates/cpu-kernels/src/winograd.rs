//! Winograd F(2x2, 3x3) for the 3x3, stride-1, padding-1 convolutions that hold nearly all
//! of a ResNet's work: each 2x2 block of output pixels ("tile") takes 16 multiplies per input
//! and output channel pair instead of 36 (2.25x fewer), at the cost of transforms that are
//! adds only.
//!
//! Lavin and Gray (2015), "Fast Algorithms for Convolutional Neural Networks": with the 4x4
//! input patch d of a tile, and g the 3x3 kernel, Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A; summed over
//! input channels, the ⊙ is 16 matrix products (one per point of the 4x4 transformed patch)
//! of tiles x input channels by input channels x output channels.
//!
//! As `conv2d`: NHWC data, the bias, the residual and the ReLU added as each output is
//! stored, and the output split across rayon's threads by whole rows of tiles, each tile
//! summed alone in one order, so any thread count gives the same bits.

use std::mem::MaybeUninit;

use crate::lanes::F32x4;
use crate::{ConvShape, PANEL, as_uninit, threads, written_by};

/// Points of a transformed 4x4 patch.
const POINTS: usize = 16;
/// Tiles per micro-kernel call: 4 tiles x 2 f32x4 = 8 accumulators, as `conv2d`'s.
const TILE_GROUP: usize = 4;
/// Aim for this many bytes of transformed input per block of tiles, so that it and the
/// products stay in cache while every panel of weights goes over them.
const BLOCK_BYTES: usize = 1 << 19;

/// Whether `shape` is a convolution this module computes.
pub fn fits(shape: &ConvShape) -> bool {
    shape.kernel == 3 && shape.stride == 1 && shape.padding == 1
}

/// Weights `[out, in, 3, 3]` as G g Gᵀ per output and input channel, laid out
/// `[16 points][out / 8][in][8]`, the last panel padded with zeros.
pub fn pack_weights(shape: &ConvShape, weights: &[f32]) -> Vec<f32> {
    assert!(
        fits(shape),
        "Winograd F(2x2, 3x3) is for 3x3 stride-1 convolutions"
    );
    let (inputs, outputs) = (shape.in_channels, shape.out_channels);
    assert_eq!(weights.len(), outputs * inputs * 9);
    let point_len = shape.panels() * inputs * PANEL;
    let mut packed = vec![0.0; POINTS * point_len];
    for output in 0..outputs {
        for input in 0..inputs {
            let g: &[f32; 9] = weights[(output * inputs + input) * 9..][..9]
                .try_into()
                .unwrap();
            // G g: 4x3; then (G g) Gᵀ: 4x4. G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
            let gg: [[f32; 3]; 4] = std::array::from_fn(|row| {
                std::array::from_fn(|col| {
                    let (a, b, c) = (g[col], g[3 + col], g[6 + col]);
                    match row {
                        0 => a,
                        1 => 0.5 * (a + b + c),
                        2 => 0.5 * (a - b + c),
                        _ => c,
                    }
                })
            });
            for (row, values) in gg.iter().enumerate() {
                let [a, b, c] = *values;
                let transformed = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (col, value) in transformed.into_iter().enumerate() {
                    let point = row * 4 + col;
                    packed[point * point_len
                        + (output / PANEL * inputs + input) * PANEL
                        + output % PANEL] = value;
                }
            }
        }
    }
    packed
}

/// `relu(conv3x3(input) + bias + residual)`, as `conv2d` computes it for a 3x3, stride-1,
/// padding-1 `shape`; `packed` comes from this module's `pack_weights`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    shape: &ConvShape,
    packed: &[f32],
    bias: &[f32],
    input: &[f32],
    [batch, height, width]: [usize; 3],
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    assert!(
        fits(shape),
        "Winograd F(2x2, 3x3) is for 3x3 stride-1 convolutions"
    );
    let (inputs, outputs) = (shape.in_channels, shape.out_channels);
    assert_eq!(input.len(), batch * height * width * inputs);
    assert_eq!(packed.len(), POINTS * shape.panels() * inputs * PANEL);
    assert_eq!(bias.len(), outputs);
    let len = batch * height * width * outputs;
    if let Some(residual) = residual {
        assert_eq!(residual.len(), len);
    }
    if len == 0 {
        return Vec::new();
    }
    let geometry = Geometry {
        height,
        width,
        inputs,
        outputs,
        tiles_across: width.div_ceil(2),
        tile_rows: batch * height.div_ceil(2),
    };
    let kernel = Kernel {
        geometry: &geometry,
        packed,
        bias,
        input,
        residual,
        relu,
    };
    // Runs of whole rows of tiles: a row of tiles is two rows of output pixels (one at the
    // bottom of an odd-height image), contiguous in NHWC.
    let rows_per_run = rows_per_run(&geometry);
    let write_runs = |uninit: &mut [MaybeUninit<f32>]| {
        let mut runs = Vec::new();
        let mut rest = uninit;
        let mut row = 0;
        while row < geometry.tile_rows {
            let end = (row + rows_per_run).min(geometry.tile_rows);
            let (first_pixel, end_pixel) = (geometry.first_pixel(row), geometry.first_pixel(end));
            let (run, after) = rest.split_at_mut((end_pixel - first_pixel) * outputs);
            runs.push((row..end, run));
            rest = after;
            row = end;
        }
        match runs.len() {
            #[cfg(feature = "threads")]
            2.. => {
                use rayon::prelude::*;
                runs.into_par_iter()
                    .for_each(|(rows, out)| kernel.run(rows, out));
            }
            _ => runs
                .into_iter()
                .for_each(|(rows, out)| kernel.run(rows, out)),
        }
    };
    // SAFETY: the runs cover every row of tiles, and a run writes each of its pixels.
    unsafe { written_by(len, write_runs) }
}

/// The sizes a convolution's tiles are laid out by.
struct Geometry {
    height: usize,
    width: usize,
    inputs: usize,
    outputs: usize,
    tiles_across: usize,
    /// Rows of tiles in the whole batch.
    tile_rows: usize,
}

impl Geometry {
    /// The first output pixel of a row of tiles (or the end of the batch).
    fn first_pixel(&self, tile_row: usize) -> usize {
        let rows_per_image = self.height.div_ceil(2);
        let (image, row) = (tile_row / rows_per_image, tile_row % rows_per_image);
        (image * self.height + 2 * row) * self.width
    }

    fn panels(&self) -> usize {
        self.outputs.div_ceil(PANEL)
    }
}

/// As `conv2d`'s split: one run on one thread or for a small convolution, else a share per
/// thread.
fn rows_per_run(geometry: &Geometry) -> usize {
    let threads = threads();
    let work =
        geometry.tile_rows * geometry.tiles_across * POINTS * geometry.inputs * geometry.outputs;
    if threads == 1 || work < crate::MIN_PARALLEL_WORK {
        return geometry.tile_rows.max(1);
    }
    geometry.tile_rows.div_ceil(threads)
}

/// What every run of one convolution shares.
struct Kernel<'a> {
    geometry: &'a Geometry,
    packed: &'a [f32],
    bias: &'a [f32],
    input: &'a [f32],
    residual: Option<&'a [f32]>,
    relu: bool,
}

impl Kernel<'_> {
    /// The rows of tiles `rows`, into `out`, their output pixels.
    fn run(&self, rows: std::ops::Range<usize>, out: &mut [MaybeUninit<f32>]) {
        let g = self.geometry;
        let first_pixel = g.first_pixel(rows.start);
        let tiles: Vec<(usize, usize, usize)> = rows
            .flat_map(|row| {
                let rows_per_image = g.height.div_ceil(2);
                let (image, y) = (row / rows_per_image, 2 * (row % rows_per_image));
                (0..g.tiles_across).map(move |tile| (image, y, 2 * tile))
            })
            .collect();
        let block = (BLOCK_BYTES / (4 * POINTS * g.inputs.max(g.panels() * PANEL)))
            .next_multiple_of(TILE_GROUP)
            .max(TILE_GROUP)
            .min(tiles.len());
        let out_panels = g.panels() * PANEL;
        let mut transformed = vec![0.0; POINTS * block * g.inputs];
        let mut products = vec![0.0; POINTS * block * out_panels];
        for tiles in tiles.chunks(block) {
            self.transform_input(tiles, &mut transformed);
            self.multiply(tiles.len(), &transformed, &mut products);
            self.transform_output(tiles, &products, first_pixel, out);
        }
    }

    /// Bᵀ d B of every tile's 4x4 input patch (zeros outside the image), as
    /// `[16 points][tile][input channel]`.
    fn transform_input(&self, tiles: &[(usize, usize, usize)], transformed: &mut [f32]) {
        let g = self.geometry;
        let channels = g.inputs;
        let point_len = tiles.len() * channels;
        for (index, &(image, top, left)) in tiles.iter().enumerate() {
            // The patch's 16 pixels: rows top-1..top+3, columns left-1..left+3.
            let pixel = |i: usize, j: usize| -> Option<&[f32]> {
                let (y, x) = ((top + i).checked_sub(1)?, (left + j).checked_sub(1)?);
                (y < g.height && x < g.width).then(|| {
                    let start = ((image * g.height + y) * g.width + x) * channels;
                    &self.input[start..start + channels]
                })
            };
            let patch: [Option<&[f32]>; 16] = std::array::from_fn(|p| pixel(p / 4, p % 4));
            let at = index * channels;
            let mut channel = 0;
            while channel + 4 <= channels {
                let d: [F32x4; 16] = std::array::from_fn(|p| match patch[p] {
                    Some(values) => F32x4::load(values[channel..channel + 4].try_into().unwrap()),
                    None => F32x4::splat(0.0),
                });
                let v = input_transform(d);
                for (point, value) in v.into_iter().enumerate() {
                    let start = point * point_len + at + channel;
                    value.store((&mut transformed[start..start + 4]).try_into().unwrap());
                }
                channel += 4;
            }
            for channel in channel..channels {
                let d: [f32; 16] = std::array::from_fn(|p| patch[p].map_or(0.0, |v| v[channel]));
                let v = input_transform(d.map(F32x4::splat));
                for (point, value) in v.into_iter().enumerate() {
                    let mut lanes = [0.0; 4];
                    value.store(&mut lanes);
                    transformed[point * point_len + at + channel] = lanes[0];
                }
            }
        }
    }

    /// For each of the 16 points, tiles x input channels by input channels x output
    /// channels, into `[16 points][tile][output channel, panels of 8]`.
    #[cfg_attr(fma, target_feature(enable = "relaxed-simd"))]
    fn multiply(&self, tiles: usize, transformed: &[f32], products: &mut [f32]) {
        let g = self.geometry;
        let (channels, out_panels) = (g.inputs, g.panels() * PANEL);
        let weights_per_point = g.panels() * channels * PANEL;
        for point in 0..POINTS {
            let v = &transformed[point * tiles * channels..][..tiles * channels];
            let m = &mut products[point * tiles * out_panels..][..tiles * out_panels];
            let weights = &self.packed[point * weights_per_point..][..weights_per_point];
            for (panel, weights) in weights.chunks_exact(channels * PANEL).enumerate() {
                let (weights, _) = weights.as_chunks::<4>();
                let mut tile = 0;
                while tile + TILE_GROUP <= tiles {
                    let sums = dot::<TILE_GROUP>(weights, v, tile, channels);
                    store(sums, m, tile, out_panels, panel);
                    tile += TILE_GROUP;
                }
                for tile in tile..tiles {
                    store(
                        dot::<1>(weights, v, tile, channels),
                        m,
                        tile,
                        out_panels,
                        panel,
                    );
                }
            }
        }
    }

    /// Aᵀ m A of every tile's 16 products, plus the bias and the residual, through the
    /// ReLU, into the output pixels of the tile that are in the image.
    fn transform_output(
        &self,
        tiles: &[(usize, usize, usize)],
        products: &[f32],
        first_pixel: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let g = self.geometry;
        let (outputs, out_panels) = (g.outputs, g.panels() * PANEL);
        let point_len = tiles.len() * out_panels;
        let zero = F32x4::splat(0.0);
        for (index, &(image, top, left)) in tiles.iter().enumerate() {
            let mut channel = 0;
            while channel < outputs {
                let m: [F32x4; 16] = std::array::from_fn(|point| {
                    let start = point * point_len + index * out_panels + channel;
                    F32x4::load(products[start..start + 4].try_into().unwrap())
                });
                let y = output_transform(m);
                let lanes = 4.min(outputs - channel);
                let mut bias = [0.0; 4];
                bias[..lanes].copy_from_slice(&self.bias[channel..channel + lanes]);
                let bias = F32x4::load(&bias);
                for (k, value) in y.into_iter().enumerate() {
                    let (row, col) = (top + k / 2, left + k % 2);
                    if row >= g.height || col >= g.width {
                        continue;
                    }
                    let pixel = (image * g.height + row) * g.width + col;
                    let start = pixel * outputs + channel;
                    let mut value = value.add(bias);
                    if let Some(residual) = self.residual {
                        let mut lanes_of = [0.0; 4];
                        lanes_of[..lanes].copy_from_slice(&residual[start..start + lanes]);
                        value = value.add(F32x4::load(&lanes_of));
                    }
                    if self.relu {
                        value = value.max(zero);
                    }
                    let mut stored = [0.0; 4];
                    value.store(&mut stored);
                    let local = start - first_pixel * outputs;
                    out[local..local + lanes].copy_from_slice(as_uninit(&stored[..lanes]));
                }
                channel += 4;
            }
        }
    }
}

/// Σ over input channels of `v[tile + t][c]` times the panel's 8 weights of channel c, for
/// `TILES` tiles: the 8 sums of each.
#[cfg_attr(not(fma), inline(always))]
#[cfg_attr(fma, inline, target_feature(enable = "relaxed-simd"))]
fn dot<const TILES: usize>(
    weights: &[[f32; 4]],
    v: &[f32],
    first: usize,
    channels: usize,
) -> [[F32x4; 2]; TILES] {
    let zero = F32x4::splat(0.0);
    let mut low = [zero; TILES];
    let mut high = [zero; TILES];
    let weights = &weights[..2 * channels];
    let rows: [&[f32]; TILES] = std::array::from_fn(|t| &v[(first + t) * channels..][..channels]);
    for channel in 0..channels {
        let weight_low = F32x4::load(&weights[2 * channel]);
        let weight_high = F32x4::load(&weights[2 * channel + 1]);
        for t in 0..TILES {
            let value = F32x4::load_splat(&rows[t][channel]);
            low[t] = low[t].mul_add(value, weight_low);
            high[t] = high[t].mul_add(value, weight_high);
        }
    }
    std::array::from_fn(|t| [low[t], high[t]])
}

#[inline(always)]
fn store<const TILES: usize>(
    sums: [[F32x4; 2]; TILES],
    m: &mut [f32],
    first: usize,
    out_panels: usize,
    panel: usize,
) {
    for (t, [low, high]) in sums.into_iter().enumerate() {
        let start = (first + t) * out_panels + panel * PANEL;
        low.store((&mut m[start..start + 4]).try_into().unwrap());
        high.store((&mut m[start + 4..start + 8]).try_into().unwrap());
    }
}

/// Bᵀ d B with Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], d row-major 4x4.
#[inline(always)]
fn input_transform(d: [F32x4; 16]) -> [F32x4; 16] {
    let at = |row: usize, col: usize| d[row * 4 + col];
    // Bᵀ d: combine rows.
    let rows: [[F32x4; 4]; 4] = [
        std::array::from_fn(|c| at(0, c).sub(at(2, c))),
        std::array::from_fn(|c| at(1, c).add(at(2, c))),
        std::array::from_fn(|c| at(2, c).sub(at(1, c))),
        std::array::from_fn(|c| at(1, c).sub(at(3, c))),
    ];
    // (Bᵀ d) B: combine columns the same way.
    let mut v = [F32x4::splat(0.0); 16];
    for (r, row) in rows.iter().enumerate() {
        v[r * 4] = row[0].sub(row[2]);
        v[r * 4 + 1] = row[1].add(row[2]);
        v[r * 4 + 2] = row[2].sub(row[1]);
        v[r * 4 + 3] = row[1].sub(row[3]);
    }
    v
}

/// Aᵀ m A with Aᵀ = [1 1 1 0; 0 1 -1 -1]: the tile's 2x2 outputs, row-major.
#[inline(always)]
fn output_transform(m: [F32x4; 16]) -> [F32x4; 4] {
    let at = |row: usize, col: usize| m[row * 4 + col];
    let top: [F32x4; 4] = std::array::from_fn(|c| at(0, c).add(at(1, c)).add(at(2, c)));
    let bottom: [F32x4; 4] = std::array::from_fn(|c| at(1, c).sub(at(2, c)).sub(at(3, c)));
    [
        top[0].add(top[1]).add(top[2]),
        top[1].sub(top[2]).sub(top[3]),
        bottom[0].add(bottom[1]).add(bottom[2]),
        bottom[1].sub(bottom[2]).sub(bottom[3]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{reference, values};
    use crate::{nchw_to_nhwc, pack_weights as pack_direct};

    fn shape(in_channels: usize, out_channels: usize) -> ConvShape {
        ConvShape {
            in_channels,
            out_channels,
            kernel: 3,
            stride: 1,
            padding: 1,
        }
    }

    /// Largest |a - b| over max(1, |b|) of two outputs.
    fn relative_error(ours: &[f32], expected: &[f32]) -> f32 {
        assert_eq!(ours.len(), expected.len());
        ours.iter()
            .zip(expected)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0, f32::max)
    }

    #[test]
    fn winograd_matches_the_direct_convolution() {
        // ResNet-20's and ResNet-18's channel counts at small sizes, odd sides (a tile half
        // outside the image), channel counts that are no multiple of 4 or 8, batches 1 and 3.
        let cases = [
            (16, 16, [1, 8, 8]),
            (16, 16, [3, 9, 7]),
            (32, 32, [2, 5, 6]),
            (64, 64, [1, 7, 7]),
            (3, 16, [2, 5, 5]),
            (5, 13, [1, 3, 4]),
            (1, 8, [1, 1, 1]),
            (128, 24, [1, 2, 3]),
        ];
        for (index, (cin, cout, [batch, height, width])) in cases.into_iter().enumerate() {
            let shape = shape(cin, cout);
            let seed = 10 + index as u64;
            let weights = values(cout * cin * 9, seed);
            let bias = values(cout, seed + 100);
            let input_nchw = values(batch * cin * height * width, seed + 200);
            let input = nchw_to_nhwc(&input_nchw, [batch, cin, height, width]);
            let residual = values(batch * height * width * cout, seed + 300);
            let size = [batch, height, width];
            let expected = reference(&shape, &weights, &bias, &input_nchw, size);
            let packed = pack_weights(&shape, &weights);
            let plain = conv2d(&shape, &packed, &bias, &input, size, None, false);
            assert!(
                relative_error(&plain, &expected) < 1e-4,
                "case {index}: {}",
                relative_error(&plain, &expected)
            );
            let direct = crate::conv2d(
                &shape,
                &pack_direct(&shape, &weights),
                &bias,
                &input,
                size,
                Some(&residual),
                true,
            );
            let fused = conv2d(&shape, &packed, &bias, &input, size, Some(&residual), true);
            assert!(
                relative_error(&fused, &direct) < 1e-4,
                "case {index} with residual and ReLU: {}",
                relative_error(&fused, &direct)
            );
        }
    }

    #[cfg(feature = "threads")]
    #[test]
    fn winograd_on_several_threads_matches_one_thread_bit_for_bit() {
        let shape = shape(16, 20);
        let size = [3, 15, 13];
        let weights = values(20 * 16 * 9, 1);
        let bias = values(20, 2);
        let input = values(3 * 15 * 13 * 16, 3);
        let residual = values(3 * 15 * 13 * 20, 4);
        let packed = pack_weights(&shape, &weights);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| conv2d(&shape, &packed, &bias, &input, size, Some(&residual), true))
        };
        let one = on(1);
        for threads in [2, 3] {
            assert!(
                one.iter()
                    .zip(&on(threads))
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{threads} threads differ from one"
            );
        }
    }
}
