//! BatchNorm in training mode on NCHW f32 data: the batch's statistics per channel, the
//! normalisation, and the backward pass's two sums and its input gradient. Each image's
//! channel is one contiguous run of `pixels` values, so every loop streams memory once,
//! where a layout change to [channels, batch x pixels] would copy the whole activation.
//! With the `threads` feature, channels (reductions) and runs (elementwise) are split
//! across rayon's pool.

use std::mem::MaybeUninit;

/// The layout of an NCHW tensor, as these functions read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    pub batch: usize,
    pub channels: usize,
    /// Height x width.
    pub pixels: usize,
}

impl NormShape {
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.pixels
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per channel: the count the statistics are taken over.
    pub fn count(&self) -> usize {
        self.batch * self.pixels
    }

    fn runs<'a>(&self, values: &'a [f32], channel: usize) -> impl Iterator<Item = &'a [f32]> {
        let (pixels, channels) = (self.pixels, self.channels);
        (0..self.batch).map(move |image| {
            let start = (image * channels + channel) * pixels;
            &values[start..start + pixels]
        })
    }
}

/// `f(channel)` for every channel, on rayon's pool when the `threads` feature is on.
fn per_channel<T: Send>(channels: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    #[cfg(feature = "threads")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "threads"))]
    (0..channels).map(f).collect()
}

/// An output of `shape`, each run of `pixels` values written by `write(channel, run index,
/// out)`, which must write all of `out`.
fn per_run(
    shape: NormShape,
    write: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let pixels = shape.pixels.max(1);
    let run =
        |(index, out): (usize, &mut [MaybeUninit<f32>])| write(index % shape.channels, index, out);
    let write_runs = |uninit: &mut [MaybeUninit<f32>]| {
        #[cfg(feature = "threads")]
        {
            use rayon::prelude::*;
            uninit.par_chunks_mut(pixels).enumerate().for_each(run);
        }
        #[cfg(not(feature = "threads"))]
        uninit.chunks_mut(pixels).enumerate().for_each(run);
    };
    // SAFETY: each run's `write` writes all of its values (its callers below do).
    unsafe { crate::written_by(shape.len(), write_runs) }
}

/// Eight partial sums of `term(i)` over `0..len`, so that the loop vectorises (a single f32
/// accumulator is a chain the compiler may not reorder), added in f64.
fn lane_sum(len: usize, term: impl Fn(usize) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let whole = len / 8 * 8;
    for start in (0..whole).step_by(8) {
        for (lane, sum) in lanes.iter_mut().enumerate() {
            *sum += term(start + lane);
        }
    }
    let tail: f64 = (whole..len).map(|i| term(i) as f64).sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// Each channel's mean and biased variance (divided by the count, as the normalisation
/// uses it): per run in float32 lanes, across runs in f64, the variance around the mean
/// (two passes), so that 400,000 values whose mean is far from zero lose nothing.
pub fn statistics(input: &[f32], shape: NormShape) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(input.len(), shape.len(), "input does not match its shape");
    let count = shape.count() as f64;
    let moments = per_channel(shape.channels, |channel| {
        let sum: f64 = shape
            .runs(input, channel)
            .map(|run| lane_sum(run.len(), |i| run[i]))
            .sum();
        let mean = (sum / count) as f32;
        let squares: f64 = shape
            .runs(input, channel)
            .map(|run| lane_sum(run.len(), |i| (run[i] - mean) * (run[i] - mean)))
            .sum();
        (mean, (squares / count) as f32)
    });
    moments.into_iter().unzip()
}

/// Per channel, the `[scale, shift]` that `x * scale + shift` normalises with: scale =
/// gamma / sqrt(variance + epsilon), shift = beta - mean * scale.
pub fn affine(
    [mean, variance]: [&[f32]; 2],
    [gamma, beta]: [&[f32]; 2],
    epsilon: f64,
) -> [Vec<f32>; 2] {
    let scale: Vec<f32> = (0..mean.len())
        .map(|c| gamma[c] / (variance[c] + epsilon as f32).sqrt())
        .collect();
    let shift = (0..mean.len())
        .map(|c| beta[c] - mean[c] * scale[c])
        .collect();
    [scale, shift]
}

/// `x * scale + shift`, channel by channel (`affine`'s two rows).
pub fn normalize(input: &[f32], shape: NormShape, [scale, shift]: [&[f32]; 2]) -> Vec<f32> {
    assert_eq!(input.len(), shape.len(), "input does not match its shape");
    let pixels = shape.pixels;
    per_run(shape, |channel, index, out| {
        let (scale, shift) = (scale[channel], shift[channel]);
        let run = &input[index * pixels..(index + 1) * pixels];
        for (out, &x) in out.iter_mut().zip(run) {
            out.write(x * scale + shift);
        }
    })
}

/// Per channel, the sum of the output gradient (beta's gradient) and of the output gradient
/// times the normalised input (gamma's gradient).
pub fn grad_sums(
    input: &[f32],
    output_grad: &[f32],
    shape: NormShape,
    [mean, variance]: [&[f32]; 2],
    epsilon: f64,
) -> [Vec<f32>; 2] {
    assert_eq!(input.len(), shape.len(), "input does not match its shape");
    assert_eq!(
        output_grad.len(),
        shape.len(),
        "gradient does not match its shape"
    );
    let sums = per_channel(shape.channels, |channel| {
        let inv_std = 1.0 / (variance[channel] as f64 + epsilon).sqrt();
        let mean = mean[channel];
        let (mut dy_sum, mut dy_x_sum) = (0.0f64, 0.0f64);
        for (run, grad) in shape
            .runs(input, channel)
            .zip(shape.runs(output_grad, channel))
        {
            dy_sum += lane_sum(run.len(), |i| grad[i]);
            dy_x_sum += lane_sum(run.len(), |i| grad[i] * (run[i] - mean));
        }
        (dy_sum as f32, (dy_x_sum * inv_std) as f32)
    });
    let (dy_sum, dy_x_sum) = sums.into_iter().unzip();
    [dy_sum, dy_x_sum]
}

/// Per channel, the `[a, b, c]` of the input gradient dx = a dy + b x + c, the statistics'
/// own gradients included: dx = gamma / std (dy - mean(dy) - x_hat mean(dy x_hat)), from
/// `grad_sums`' two sums over `count` values.
pub fn grad_coefficients(
    [mean, variance]: [&[f32]; 2],
    gamma: &[f32],
    [dy_sum, dy_x_sum]: [&[f32]; 2],
    count: usize,
    epsilon: f64,
) -> [Vec<f32>; 3] {
    let count = count as f32;
    let mut coefficients = [vec![], vec![], vec![]];
    for c in 0..mean.len() {
        let inv_std = 1.0 / (variance[c] + epsilon as f32).sqrt();
        let a = gamma[c] * inv_std;
        let b = -a * inv_std * dy_x_sum[c] / count;
        coefficients[0].push(a);
        coefficients[1].push(b);
        coefficients[2].push(-a * dy_sum[c] / count - b * mean[c]);
    }
    coefficients
}

/// dx = a dy + b x + c, channel by channel (`grad_coefficients`' three rows).
pub fn input_grad(
    input: &[f32],
    output_grad: &[f32],
    shape: NormShape,
    [a, b, c]: [&[f32]; 3],
) -> Vec<f32> {
    assert_eq!(input.len(), shape.len(), "input does not match its shape");
    assert_eq!(
        output_grad.len(),
        shape.len(),
        "gradient does not match its shape"
    );
    let pixels = shape.pixels;
    per_run(shape, |channel, index, out| {
        let (a, b, c) = (a[channel], b[channel], c[channel]);
        let range = index * pixels..(index + 1) * pixels;
        for ((out, &x), &dy) in out
            .iter_mut()
            .zip(&input[range.clone()])
            .zip(&output_grad[range])
        {
            out.write(a * dy + b * x + c);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with a large mean and a small spread: a one-pass float32 sum of squares would
    /// lose the variance to rounding.
    fn values(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| 1000.0 + ((i * 7919) % 101) as f32 * 0.01)
            .collect()
    }

    #[test]
    fn statistics_match_a_float64_reference() {
        let shape = NormShape {
            batch: 3,
            channels: 2,
            pixels: 5,
        };
        let input = values(shape.len());
        let (mean, variance) = statistics(&input, shape);
        for channel in 0..2 {
            let all: Vec<f64> = shape
                .runs(&input, channel)
                .flatten()
                .map(|&v| v as f64)
                .collect();
            let m = all.iter().sum::<f64>() / all.len() as f64;
            let v = all.iter().map(|x| (x - m).powi(2)).sum::<f64>() / all.len() as f64;
            assert!((mean[channel] as f64 - m).abs() < 1e-4);
            assert!(
                (variance[channel] as f64 - v).abs() < 1e-6 * v.max(1.0),
                "{} {v}",
                variance[channel]
            );
        }
    }

    #[test]
    fn the_input_gradient_matches_finite_differences() {
        // loss = sum(w * bn(x)) with fixed weights w, so dy = w.
        let shape = NormShape {
            batch: 2,
            channels: 2,
            pixels: 3,
        };
        let input: Vec<f32> = (0..shape.len())
            .map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.0)
            .collect();
        let weights: Vec<f32> = (0..shape.len())
            .map(|i| ((i * 13) % 7) as f32 * 0.2 - 0.5)
            .collect();
        let (gamma, beta) = (vec![1.5, 0.7], vec![0.1, -0.2]);
        let epsilon = 1e-5;
        let loss = |x: &[f32]| -> f64 {
            let (m, v) = statistics(x, shape);
            let [scale, shift] = affine([&m, &v], [&gamma, &beta], epsilon);
            let y = normalize(x, shape, [&scale, &shift]);
            y.iter()
                .zip(&weights)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        };
        let (mean, variance) = statistics(&input, shape);
        let [dy_sum, dy_x_sum] = grad_sums(&input, &weights, shape, [&mean, &variance], epsilon);
        let [a, b, c] = grad_coefficients(
            [&mean, &variance],
            &gamma,
            [&dy_sum, &dy_x_sum],
            shape.count(),
            epsilon,
        );
        let grad = input_grad(&input, &weights, shape, [&a, &b, &c]);
        let h = 1e-2;
        for i in 0..shape.len() {
            let (mut up, mut down) = (input.clone(), input.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!(
                (grad[i] as f64 - numeric).abs() < 2e-3,
                "{i}: {} vs {numeric}",
                grad[i]
            );
        }
    }
}
