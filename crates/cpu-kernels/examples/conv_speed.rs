//! Times the direct convolution against Winograd F(2x2, 3x3) and F(4x4, 3x3) on every 3x3
//! stride-1 layer shape of ResNet-18 (224 px) and ResNet-20 (32 px), on one thread,
//! natively: a guide to which layers each pays on, before the browser's figures
//! (scripts/bench.sh).
//!   cargo run --release -p cpu-kernels --example conv_speed
use std::time::Instant;

use cpu_kernels::winograd::{self, Tile};
use cpu_kernels::{ConvShape, conv2d, pack_weights};

fn values(count: usize) -> Vec<f32> {
    (0..count)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Median milliseconds of `runs` calls, after one warm-up call.
fn time(runs: usize, mut call: impl FnMut() -> Vec<f32>) -> f64 {
    std::hint::black_box(call());
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(call());
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() {
    // (network, channels, side, batch)
    let layers = [
        ("resnet18", 64, 56, 1),
        ("resnet18", 128, 28, 1),
        ("resnet18", 256, 14, 1),
        ("resnet18", 512, 7, 1),
        ("resnet18", 64, 56, 8),
        ("resnet18", 512, 7, 8),
        ("resnet20", 16, 32, 64),
        ("resnet20", 32, 16, 64),
        ("resnet20", 64, 8, 64),
        ("resnet20", 16, 32, 1),
    ];
    println!(
        "network   channels  side  batch   direct ms  F(2x2) ms  F(4x4) ms  direct/F2  direct/F4"
    );
    for (network, channels, side, batch) in layers {
        let shape = ConvShape {
            in_channels: channels,
            out_channels: channels,
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let weights = values(channels * channels * 9);
        let bias = values(channels);
        let input = values(batch * side * side * channels);
        let residual = values(batch * side * side * channels);
        let size = [batch, side, side];
        let runs = 9;
        let direct_weights = pack_weights(&shape, &weights);
        let direct = time(runs, || {
            conv2d(
                &shape,
                &direct_weights,
                &bias,
                &input,
                size,
                Some(&residual),
                true,
            )
        });
        let winograd = |tile: Tile| {
            let packed = winograd::pack_weights(tile, &shape, &weights);
            time(runs, || {
                winograd::conv2d(
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
        let (f2, f4) = (winograd(Tile::F2), winograd(Tile::F4));
        println!(
            "{network:9} {channels:8} {side:5} {batch:6} {direct:11.3} {f2:10.3} {f4:10.3} {:10.2} {:10.2}",
            direct / f2,
            direct / f4
        );
    }
}
