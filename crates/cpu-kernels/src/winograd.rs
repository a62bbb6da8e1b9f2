//! Winograd convolutions for the 3x3, stride-1, padding-1 layers that hold nearly all of a
//! ResNet's work, in two tile sizes (`Tile`): F(2x2, 3x3), where each 2x2 block of output
//! pixels takes 16 multiplies per input and output channel pair instead of 36 (2.25x fewer),
//! with transforms that are adds only; and F(4x4, 3x3), 36 per 4x4 block instead of 144 (4x
//! fewer), with transforms by small constants and a larger rounding error.
//!
//! Lavin and Gray (2015), "Fast Algorithms for Convolutional Neural Networks": with the
//! n x n input patch d of a tile (n = tile + 2), and g the 3x3 kernel,
//! Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A; summed over input channels, the ⊙ is n² matrix products
//! (one per point of the transformed patch) of tiles x input channels by input channels x
//! output channels. F(4x4, 3x3) uses the points 0, ±1, ±2 and ∞.
//!
//! As `conv2d`: NHWC data, the bias, the residual and the ReLU added as each output is
//! stored, and the output split across rayon's threads by whole rows of tiles, each tile
//! summed alone in one order, so any thread count gives the same bits.

use std::mem::MaybeUninit;

use crate::lanes::F32x4;
use crate::{ConvShape, PANEL, as_uninit, threads, written_by};

/// The most points of a transformed patch (F(4x4, 3x3)'s 6x6).
const MAX_POINTS: usize = 36;
/// Tiles per micro-kernel call: 4 tiles x 2 f32x4 = 8 accumulators, as `conv2d`'s.
const TILE_GROUP: usize = 4;
/// Aim for this many bytes of transformed input per block of tiles, so that it and the
/// products stay in cache while every panel of weights goes over them.
const BLOCK_BYTES: usize = 1 << 19;

/// The block of output pixels that one transformed patch gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// F(2x2, 3x3): a 4x4 patch, 16 products per 4 outputs.
    F2,
    /// F(4x4, 3x3): a 6x6 patch, 36 products per 16 outputs.
    F4,
}

impl Tile {
    /// The side of the tile's block of output pixels.
    pub const fn side(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// The side of the input patch under it.
    const fn patch(self) -> usize {
        self.side() + 2
    }

    const fn points(self) -> usize {
        self.patch() * self.patch()
    }

    /// G g for the 3 values of one kernel column (or row): the tile's `patch()` values.
    fn kernel_transform(self, [a, b, c]: [f32; 3]) -> [f32; 6] {
        match self {
            // G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
            Tile::F2 => [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c, 0.0, 0.0],
            // G = [¼ 0 0; -⅙ -⅙ -⅙; -⅙ ⅙ -⅙; 1/24 1/12 ⅙; 1/24 -1/12 ⅙; 0 0 1].
            Tile::F4 => [
                a / 4.0,
                -(a + b + c) / 6.0,
                -(a - b + c) / 6.0,
                a / 24.0 + b / 12.0 + c / 6.0,
                a / 24.0 - b / 12.0 + c / 6.0,
                c,
            ],
        }
    }
}

/// Whether `shape` is a convolution this module computes.
pub fn fits(shape: &ConvShape) -> bool {
    shape.kernel == 3 && shape.stride == 1 && shape.padding == 1
}

/// Above this many input channels, F(4x4, 3x3)'s rounding error passes 1e-4 relative to the
/// direct kernel (6.4e-5 up to 32 channels; 1.9e-4 on ResNet-18's 64-channel layer, 5.7e-4
/// on its 512-channel one, where F(2x2, 3x3)'s is 1.6e-5 and 9.8e-5), so those layers take
/// F(2x2, 3x3); measured by `winograd_matches_the_direct_convolution`.
pub const F4_MAX_IN_CHANNELS: usize = 32;

/// The tile a 3x3 stride-1 convolution runs fastest on within 1e-4 of the direct kernel:
/// F(4x4, 3x3) up to `F4_MAX_IN_CHANNELS` input channels, F(2x2, 3x3) above; `None` for
/// the shapes this module does not compute. Natively F(4x4, 3x3) ran ResNet-20's 16- and
/// 32-channel layers at batch 64 1.7x and 2.4x as fast as the direct kernel, where F(2x2,
/// 3x3) ran them 0.8x and 1.3x as fast (`examples/conv_speed.rs`).
pub fn tile_for(shape: &ConvShape) -> Option<Tile> {
    match fits(shape) {
        false => None,
        true if shape.in_channels <= F4_MAX_IN_CHANNELS => Some(Tile::F4),
        true => Some(Tile::F2),
    }
}

/// Weights `[out, in, 3, 3]` as G g Gᵀ per output and input channel, laid out
/// `[points][out / 8][in][8]`, the last panel padded with zeros.
pub fn pack_weights(tile: Tile, shape: &ConvShape, weights: &[f32]) -> Vec<f32> {
    assert!(fits(shape), "Winograd is for 3x3 stride-1 convolutions");
    let (inputs, outputs) = (shape.in_channels, shape.out_channels);
    assert_eq!(weights.len(), outputs * inputs * 9);
    let n = tile.patch();
    let point_len = shape.panels() * inputs * PANEL;
    let mut packed = vec![0.0; tile.points() * point_len];
    for output in 0..outputs {
        for input in 0..inputs {
            let g: &[f32; 9] = weights[(output * inputs + input) * 9..][..9]
                .try_into()
                .unwrap();
            // G g: n x 3, a column at a time; then (G g) Gᵀ: n x n, a row at a time.
            let columns: [[f32; 6]; 3] =
                std::array::from_fn(|col| tile.kernel_transform([g[col], g[3 + col], g[6 + col]]));
            let rows = (0..n).map(|row| columns.map(|column| column[row]));
            for (row, values) in rows.enumerate() {
                let transformed = tile.kernel_transform(values);
                for (col, &value) in transformed[..n].iter().enumerate() {
                    let point = row * n + col;
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
/// padding-1 `shape`; `packed` comes from this module's `pack_weights` for the same `tile`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    tile: Tile,
    shape: &ConvShape,
    packed: &[f32],
    bias: &[f32],
    input: &[f32],
    [batch, height, width]: [usize; 3],
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    assert!(fits(shape), "Winograd is for 3x3 stride-1 convolutions");
    let (inputs, outputs) = (shape.in_channels, shape.out_channels);
    assert_eq!(input.len(), batch * height * width * inputs);
    assert_eq!(
        packed.len(),
        tile.points() * shape.panels() * inputs * PANEL
    );
    assert_eq!(bias.len(), outputs);
    let len = batch * height * width * outputs;
    if let Some(residual) = residual {
        assert_eq!(residual.len(), len);
    }
    if len == 0 {
        return Vec::new();
    }
    let side = tile.side();
    let geometry = Geometry {
        tile,
        height,
        width,
        inputs,
        outputs,
        tiles_across: width.div_ceil(side),
        tile_rows: batch * height.div_ceil(side),
    };
    let kernel = Kernel {
        geometry: &geometry,
        packed,
        bias,
        input,
        residual,
        relu,
    };
    // Runs of whole rows of tiles: a row of tiles is `side` rows of output pixels (fewer at
    // the bottom of an image whose height it does not divide), contiguous in NHWC.
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
    tile: Tile,
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
        let side = self.tile.side();
        let rows_per_image = self.height.div_ceil(side);
        let (image, row) = (tile_row / rows_per_image, tile_row % rows_per_image);
        (image * self.height + side * row) * self.width
    }

    fn panels(&self) -> usize {
        self.outputs.div_ceil(PANEL)
    }
}

/// As `conv2d`'s split: one run on one thread or for a small convolution, else a share per
/// thread.
fn rows_per_run(geometry: &Geometry) -> usize {
    let threads = threads();
    let work = geometry.tile_rows
        * geometry.tiles_across
        * geometry.tile.points()
        * geometry.inputs
        * geometry.outputs;
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
        match self.geometry.tile {
            Tile::F2 => self.run_with::<4>(rows, out),
            Tile::F4 => self.run_with::<6>(rows, out),
        }
    }

    /// `run` for patches of side `N` (the tile's side + 2), which the transforms' loops are
    /// unrolled for.
    fn run_with<const N: usize>(&self, rows: std::ops::Range<usize>, out: &mut [MaybeUninit<f32>]) {
        let g = self.geometry;
        let (side, points) = (N - 2, N * N);
        let first_pixel = g.first_pixel(rows.start);
        let tiles: Vec<(usize, usize, usize)> = rows
            .flat_map(|row| {
                let rows_per_image = g.height.div_ceil(side);
                let (image, y) = (row / rows_per_image, side * (row % rows_per_image));
                (0..g.tiles_across).map(move |tile| (image, y, side * tile))
            })
            .collect();
        let block = (BLOCK_BYTES / (4 * points * g.inputs.max(g.panels() * PANEL)))
            .next_multiple_of(TILE_GROUP)
            .max(TILE_GROUP)
            .min(tiles.len());
        let out_panels = g.panels() * PANEL;
        let mut transformed = vec![0.0; points * block * g.inputs];
        let mut products = vec![0.0; points * block * out_panels];
        for tiles in tiles.chunks(block) {
            self.transform_input::<N>(tiles, &mut transformed);
            self.multiply(points, tiles.len(), &transformed, &mut products);
            self.transform_output::<N>(tiles, &products, first_pixel, out);
        }
    }

    /// Bᵀ d B of every tile's N x N input patch (zeros outside the image), as
    /// `[N² points][tile][input channel]`.
    fn transform_input<const N: usize>(
        &self,
        tiles: &[(usize, usize, usize)],
        transformed: &mut [f32],
    ) {
        let g = self.geometry;
        let channels = g.inputs;
        let point_len = tiles.len() * channels;
        for (index, &(image, top, left)) in tiles.iter().enumerate() {
            // The patch's pixels: rows top-1..top+N-1, columns left-1..left+N-1.
            let pixel = |i: usize, j: usize| -> Option<&[f32]> {
                let (y, x) = ((top + i).checked_sub(1)?, (left + j).checked_sub(1)?);
                (y < g.height && x < g.width).then(|| {
                    let start = ((image * g.height + y) * g.width + x) * channels;
                    &self.input[start..start + channels]
                })
            };
            let patch: [Option<&[f32]>; MAX_POINTS] =
                std::array::from_fn(|p| if p < N * N { pixel(p / N, p % N) } else { None });
            let at = index * channels;
            let mut channel = 0;
            while channel + 4 <= channels {
                let d: [F32x4; MAX_POINTS] = std::array::from_fn(|p| match patch[p] {
                    Some(values) => F32x4::load(values[channel..channel + 4].try_into().unwrap()),
                    None => F32x4::splat(0.0),
                });
                let v = input_transform::<N>(d);
                for (point, value) in v.into_iter().take(N * N).enumerate() {
                    let start = point * point_len + at + channel;
                    value.store((&mut transformed[start..start + 4]).try_into().unwrap());
                }
                channel += 4;
            }
            for channel in channel..channels {
                let d: [f32; MAX_POINTS] =
                    std::array::from_fn(|p| patch[p].map_or(0.0, |v| v[channel]));
                let v = input_transform::<N>(d.map(F32x4::splat));
                for (point, value) in v.into_iter().take(N * N).enumerate() {
                    let mut lanes = [0.0; 4];
                    value.store(&mut lanes);
                    transformed[point * point_len + at + channel] = lanes[0];
                }
            }
        }
    }

    /// For each of the `points`, tiles x input channels by input channels x output
    /// channels, into `[points][tile][output channel, panels of 8]`.
    #[cfg_attr(fma, target_feature(enable = "relaxed-simd"))]
    fn multiply(&self, points: usize, tiles: usize, transformed: &[f32], products: &mut [f32]) {
        let g = self.geometry;
        let (channels, out_panels) = (g.inputs, g.panels() * PANEL);
        let weights_per_point = g.panels() * channels * PANEL;
        for point in 0..points {
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

    /// Aᵀ m A of every tile's N² products, plus the bias and the residual, through the
    /// ReLU, into the output pixels of the tile that are in the image.
    fn transform_output<const N: usize>(
        &self,
        tiles: &[(usize, usize, usize)],
        products: &[f32],
        first_pixel: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        let g = self.geometry;
        let side = N - 2;
        let (outputs, out_panels) = (g.outputs, g.panels() * PANEL);
        let point_len = tiles.len() * out_panels;
        let zero = F32x4::splat(0.0);
        for (index, &(image, top, left)) in tiles.iter().enumerate() {
            let mut channel = 0;
            while channel < outputs {
                let m: [F32x4; MAX_POINTS] = std::array::from_fn(|point| {
                    if point >= N * N {
                        return zero;
                    }
                    let start = point * point_len + index * out_panels + channel;
                    F32x4::load(products[start..start + 4].try_into().unwrap())
                });
                let y = output_transform::<N>(m);
                let lanes = 4.min(outputs - channel);
                let mut bias = [0.0; 4];
                bias[..lanes].copy_from_slice(&self.bias[channel..channel + lanes]);
                let bias = F32x4::load(&bias);
                for (k, value) in y.into_iter().take(side * side).enumerate() {
                    let (row, col) = (top + k / side, left + k % side);
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

/// Bᵀ d B of an N x N patch `d` (row-major, in the first N² entries).
#[inline(always)]
fn input_transform<const N: usize>(d: [F32x4; MAX_POINTS]) -> [F32x4; MAX_POINTS] {
    let transform = if N == 4 { input_1d_f2 } else { input_1d_f4 };
    // Bᵀ d: each column; then (Bᵀ d) B: each row.
    let mut columns = [[F32x4::splat(0.0); 6]; 6];
    for (c, column) in columns.iter_mut().enumerate().take(N) {
        *column = transform(std::array::from_fn(
            |r| if r < N { d[r * N + c] } else { d[0] },
        ));
    }
    let mut v = [F32x4::splat(0.0); MAX_POINTS];
    for r in 0..N {
        let row = transform(std::array::from_fn(|c| columns[c][r]));
        v[r * N..r * N + N].copy_from_slice(&row[..N]);
    }
    v
}

/// Bᵀ x for F(2x2, 3x3): Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] (4 of the 6 used).
#[inline(always)]
fn input_1d_f2(x: [F32x4; 6]) -> [F32x4; 6] {
    let zero = F32x4::splat(0.0);
    [
        x[0].sub(x[2]),
        x[1].add(x[2]),
        x[2].sub(x[1]),
        x[1].sub(x[3]),
        zero,
        zero,
    ]
}

/// Bᵀ x for F(4x4, 3x3): Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
/// 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
#[inline(always)]
fn input_1d_f4(x: [F32x4; 6]) -> [F32x4; 6] {
    let (two, four, five) = (F32x4::splat(2.0), F32x4::splat(4.0), F32x4::splat(5.0));
    let x4_minus_x2 = x[4].sub(x[2]);
    let twice_x3_minus_x1 = x[3].sub(x[1]).mul(two);
    [
        x[0].mul(four).sub(x[2].mul(five)).add(x[4]),
        x[3].add(x[4]).sub(x[1].add(x[2]).mul(four)),
        x[4].sub(x[3]).add(x[1].sub(x[2]).mul(four)),
        x4_minus_x2.add(twice_x3_minus_x1),
        x4_minus_x2.sub(twice_x3_minus_x1),
        x[1].mul(four).sub(x[3].mul(five)).add(x[5]),
    ]
}

/// Aᵀ m A: the tile's (N-2) x (N-2) outputs, row-major, from its N² products.
#[inline(always)]
fn output_transform<const N: usize>(m: [F32x4; MAX_POINTS]) -> [F32x4; 16] {
    let transform = if N == 4 { output_1d_f2 } else { output_1d_f4 };
    let side = N - 2;
    // Aᵀ m: each column; then (Aᵀ m) A: each row.
    let mut columns = [[F32x4::splat(0.0); 4]; 6];
    for (c, column) in columns.iter_mut().enumerate().take(N) {
        *column = transform(std::array::from_fn(
            |r| if r < N { m[r * N + c] } else { m[0] },
        ));
    }
    let mut y = [F32x4::splat(0.0); 16];
    for r in 0..side {
        let row = transform(std::array::from_fn(|c| columns[c][r]));
        y[r * side..r * side + side].copy_from_slice(&row[..side]);
    }
    y
}

/// Aᵀ x for F(2x2, 3x3): Aᵀ = [1 1 1 0; 0 1 -1 -1] (2 of the 4 outputs used).
#[inline(always)]
fn output_1d_f2(x: [F32x4; 6]) -> [F32x4; 4] {
    let zero = F32x4::splat(0.0);
    [
        x[0].add(x[1]).add(x[2]),
        x[1].sub(x[2]).sub(x[3]),
        zero,
        zero,
    ]
}

/// Aᵀ x for F(4x4, 3x3): Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
#[inline(always)]
fn output_1d_f4(x: [F32x4; 6]) -> [F32x4; 4] {
    let (sum12, difference12) = (x[1].add(x[2]), x[1].sub(x[2]));
    let (sum34, difference34) = (x[3].add(x[4]), x[3].sub(x[4]));
    [
        x[0].add(sum12).add(sum34),
        difference12.add(difference34.mul(F32x4::splat(2.0))),
        sum12.add(sum34.mul(F32x4::splat(4.0))),
        difference12
            .add(difference34.mul(F32x4::splat(8.0)))
            .add(x[5]),
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

    /// The largest relative error of `tile` against the textbook convolution and the direct
    /// kernel, over all cases and over those `tile_for` picks it for: ResNet-20's and
    /// ResNet-18's channel counts at small sizes and their layers at full size, odd sides
    /// (tiles partly outside the image), channel counts that are no multiple of 4 or 8, and
    /// batches 1 and 3.
    fn largest_errors(tile: Tile) -> [f32; 2] {
        let cases = [
            (16, 16, [1, 8, 8]),
            (16, 16, [3, 9, 7]),
            (32, 32, [2, 5, 6]),
            (64, 64, [1, 7, 7]),
            (64, 64, [1, 14, 14]),
            (64, 32, [2, 9, 11]),
            (3, 16, [2, 5, 5]),
            (5, 13, [1, 3, 4]),
            (1, 8, [1, 1, 1]),
            (128, 24, [1, 2, 3]),
            (128, 32, [1, 14, 14]),
            (256, 16, [1, 14, 14]),
            (512, 8, [2, 7, 7]),
            // Every 3x3 stride-1 layer of ResNet-18 and -50 (224 px) and ResNet-20 (32 px).
            (64, 64, [1, 56, 56]),
            (128, 128, [1, 28, 28]),
            (256, 256, [1, 14, 14]),
            (512, 512, [1, 7, 7]),
            (16, 16, [1, 32, 32]),
            (32, 32, [1, 16, 16]),
            (64, 64, [1, 8, 8]),
        ];
        let mut largest: f32 = 0.0;
        let mut largest_chosen: f32 = 0.0;
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
            let packed = pack_weights(tile, &shape, &weights);
            let plain = conv2d(tile, &shape, &packed, &bias, &input, size, None, false);
            let direct = crate::conv2d(
                &shape,
                &pack_direct(&shape, &weights),
                &bias,
                &input,
                size,
                Some(&residual),
                true,
            );
            let fused = conv2d(
                tile,
                &shape,
                &packed,
                &bias,
                &input,
                size,
                Some(&residual),
                true,
            );
            let errors = [
                relative_error(&plain, &expected),
                relative_error(&fused, &direct),
            ];
            println!(
                "{tile:?} {cin}->{cout} {size:?}: {:.1e} {:.1e}",
                errors[0], errors[1]
            );
            largest = largest.max(errors[0]).max(errors[1]);
            if tile_for(&shape) == Some(tile) {
                largest_chosen = largest_chosen.max(errors[0]).max(errors[1]);
            }
        }
        [largest, largest_chosen]
    }

    #[test]
    fn winograd_matches_the_direct_convolution() {
        for tile in [Tile::F2, Tile::F4] {
            let [error, where_chosen] = largest_errors(tile);
            println!(
                "{tile:?}: largest relative error {error:.1e}, {where_chosen:.1e} where `tile_for` picks it"
            );
            // Within 1e-4 wherever it is used; elsewhere rounding alone stays near 1e-3,
            // and a wrong transform is off by the outputs' own size.
            assert!(where_chosen < 1e-4, "{tile:?}: {where_chosen}");
            assert!(error < 1e-2, "{tile:?}: {error}");
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
        for tile in [Tile::F2, Tile::F4] {
            let packed = pack_weights(tile, &shape, &weights);
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    conv2d(
                        tile,
                        &shape,
                        &packed,
                        &bias,
                        &input,
                        size,
                        Some(&residual),
                        true,
                    )
                })
            };
            let one = on(1);
            for threads in [2, 3] {
                assert!(
                    one.iter()
                        .zip(&on(threads))
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{tile:?}: {threads} threads differ from one"
                );
            }
        }
    }
}
