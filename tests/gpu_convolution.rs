//! The tiled GPU convolution (`src/ops/gpu/tiled_convolution.rs`), which real GPUs run, on
//! the machine's adapter (lavapipe in CI, where the adapter rule would pick the direct kernel,
//! so this test picks the tiled one itself): the output and both gradients against burn's
//! convolution on the CPU, at shapes that take each of the tiles the rule picks (and with each
//! tile fixed, the one it does not pick too), partial tiles and partial stages, odd sizes and
//! batches, 1-, 3- and 64-channel inputs, and every distinct convolution of ResNet-18, -50 and
//! -20; then whole networks on it (ResNet-18, -20 and -50 logits against PyTorch's, folded
//! with the fused epilogues and not), and a training run against the CPU's. Its own test
//! binary, and one test, because the kernel choice is one switch for the process.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use common::*;
use resnet_web::ops::device::{self, DeviceChoice};
use resnet_web::ops::readback::{block_on, read_floats};
use resnet_web::ops::{
    ConvolveOps, GpuConvolutionKernel, GpuTile, fixed_gpu_tile, gpu_convolution_kernel,
    gpu_prefetch, use_gpu_convolution_kernel, use_gpu_prefetch, use_gpu_tile,
};
use resnet_web::resnet::{Arch, ResNetConfig};

struct Case {
    batch: usize,
    in_channels: usize,
    size: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
}

fn case(
    batch: usize,
    in_channels: usize,
    size: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
) -> Case {
    Case {
        batch,
        in_channels,
        size,
        out_channels,
        kernel,
        stride,
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{}x{} -> {} k{} s{}",
            self.batch,
            self.in_channels,
            self.size,
            self.size,
            self.out_channels,
            self.kernel,
            self.stride
        )
    }
}

fn values(name: &str, count: usize) -> Vec<f32> {
    uniform01(name, count)
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect()
}

fn tensor<const D: usize>(name: &str, shape: [usize; D], device: &Device) -> Tensor<D> {
    let data = values(name, shape.iter().product());
    Tensor::from_data(TensorData::new(data, shape), device)
}

fn convolve(input: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: usize) -> Tensor<4> {
    let padding = weight.dims()[2] / 2;
    Tensor::from_dispatch(<burn::backend::Dispatch as ConvolveOps>::convolve(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        [stride, stride],
        [padding, padding],
    ))
}

/// The output, and the input's and the weight's gradients of the output's sum weighted by a
/// fixed tensor, on `device`.
fn run(case: &Case, device: &Device) -> [Vec<f32>; 3] {
    let input_shape = [case.batch, case.in_channels, case.size, case.size];
    let weight_shape = [
        case.out_channels,
        case.in_channels,
        case.kernel,
        case.kernel,
    ];
    let autodiff = device.clone().autodiff();
    // Weights scaled as a network's are, so outputs stay near 1 whatever K is.
    let scale = 1.0 / ((case.in_channels * case.kernel * case.kernel) as f32).sqrt();
    let weight = (tensor("weight", weight_shape, &autodiff) * scale)
        .detach()
        .require_grad();
    let bias = tensor("bias", [case.out_channels], &autodiff);
    let input = tensor("input", input_shape, &autodiff).require_grad();
    let output = convolve(input.clone(), weight.clone(), bias, case.stride);
    let mix = tensor("mix", output.dims(), &autodiff);
    let grads = (output.clone() * mix).sum().backward();
    let floats = |tensor: Tensor<4>| read_floats(tensor.flatten::<1>(0, 3)).unwrap();
    [
        floats(output),
        floats(input.grad(&grads).expect("the input's gradient")),
        floats(weight.grad(&grads).expect("the weight's gradient")),
    ]
}

/// `relative_error` of the output and of both gradients.
fn relative_errors(ours: &[Vec<f32>; 3], reference: &[Vec<f32>; 3]) -> Vec<f32> {
    ours.iter()
        .zip(reference)
        .map(|(ours, reference)| relative_error(ours, reference))
        .collect()
}

/// The largest difference, relative to the reference's largest magnitude (at least 1).
fn relative_error(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    largest(ours.iter().zip(reference).map(|(a, b)| (a - b).abs())) / scale
}

#[test]
fn the_tiled_kernels_match_the_cpu_and_pytorch() {
    let gpu = device::open(DeviceChoice::Gpu)
        .expect("a GPU adapter (scripts/setup.sh installs Mesa's lavapipe)")
        .device;
    let cpu = device::open(DeviceChoice::Cpu).unwrap().device;
    convolutions_match_burns_on_the_cpu(&gpu, &cpu);
    every_tile_matches_the_cpu(&gpu, &cpu);
    use_gpu_convolution_kernel(GpuConvolutionKernel::Tiled);
    networks_match_pytorch(&gpu);
    training_follows_the_cpu(&gpu, &cpu);
    assert_eq!(gpu_convolution_kernel(), GpuConvolutionKernel::Tiled);
}

fn convolutions_match_burns_on_the_cpu(gpu: &Device, cpu: &Device) {
    use_gpu_convolution_kernel(GpuConvolutionKernel::Tiled);
    let cases = [
        // The stem on an RGB image (padded to 4 channels: one K vector per tap), odd size.
        case(2, 3, 33, 64, 7, 2),
        // K of 18 vectors (a partial stage), 3 output vectors (a partial tile).
        case(1, 8, 9, 12, 3, 1),
        // Stride 2 on an odd size, 1x1 layers, a bottleneck's expansion.
        case(2, 64, 15, 128, 3, 2),
        case(2, 256, 14, 64, 1, 1),
        case(2, 64, 15, 256, 1, 2),
        // Enough pixels for the 128-pixel tile with 64 channels, and for the 128 by 128 tile
        // (192 channels: one and a half tiles).
        case(2, 32, 128, 64, 3, 1),
        case(2, 64, 128, 192, 1, 1),
        case(2, 128, 127, 128, 3, 1),
        // Every distinct convolution of ResNet-18 and -50 (torchvision's, stride on the 3x3) on
        // 224 px, batch 1, and of ResNet-20 on 32 px RGB and 28 px grayscale, batch 3.
        case(1, 3, 224, 64, 7, 2),
        case(1, 64, 56, 64, 3, 1),
        case(1, 64, 56, 128, 3, 2),
        case(1, 64, 56, 128, 1, 2),
        case(1, 128, 28, 128, 3, 1),
        case(1, 128, 28, 256, 3, 2),
        case(1, 128, 28, 256, 1, 2),
        case(1, 256, 14, 256, 3, 1),
        case(1, 256, 14, 512, 3, 2),
        case(1, 256, 14, 512, 1, 2),
        case(1, 512, 7, 512, 3, 1),
        case(1, 64, 56, 64, 1, 1),
        case(1, 64, 56, 256, 1, 1),
        case(1, 256, 56, 64, 1, 1),
        case(1, 256, 56, 128, 1, 1),
        case(1, 128, 56, 128, 3, 2),
        case(1, 128, 28, 512, 1, 1),
        case(1, 256, 56, 512, 1, 2),
        case(1, 512, 28, 128, 1, 1),
        case(1, 512, 28, 256, 1, 1),
        case(1, 256, 28, 256, 3, 2),
        case(1, 256, 14, 1024, 1, 1),
        case(1, 512, 28, 1024, 1, 2),
        case(1, 1024, 14, 256, 1, 1),
        case(1, 1024, 14, 512, 1, 1),
        case(1, 512, 14, 512, 3, 2),
        case(1, 512, 7, 2048, 1, 1),
        case(1, 1024, 14, 2048, 1, 2),
        case(1, 2048, 7, 512, 1, 1),
        case(3, 3, 32, 16, 3, 1),
        case(3, 1, 28, 16, 3, 1),
        case(3, 16, 32, 16, 3, 1),
        case(3, 16, 32, 32, 3, 2),
        case(3, 32, 16, 32, 3, 1),
        case(3, 32, 16, 64, 3, 2),
        case(3, 64, 8, 64, 3, 1),
        // A 1x1 image at stride 2: the input gradient's other phases are empty.
        case(3, 64, 1, 64, 3, 2),
    ];
    // Cases where the direct kernel's (or burn's) output, input gradient and weight gradient
    // come out with other bits: the proof that the tiled kernel, which adds in another order,
    // is what ran.
    let mut other_bits = [0; 3];
    for case in &cases {
        let reference = run(case, cpu);
        use_gpu_convolution_kernel(GpuConvolutionKernel::Direct);
        let direct = run(case, gpu);
        use_gpu_convolution_kernel(GpuConvolutionKernel::Tiled);
        let ours = run(case, gpu);
        for (count, (direct, ours)) in other_bits.iter_mut().zip(direct.iter().zip(&ours)) {
            *count += usize::from(direct != ours);
        }
        let errors = relative_errors(&ours, &reference);
        println!(
            "{case}: output {:.1e}, input gradient {:.1e}, weight gradient {:.1e}",
            errors[0], errors[1], errors[2]
        );
        assert!(errors.iter().all(|&e| e < 1e-4), "off by {errors:?}");
    }
    println!(
        "other bits than the direct kernel's in {other_bits:?} of {} cases",
        cases.len()
    );
    assert!(
        other_bits.iter().all(|&count| count >= cases.len() / 2),
        "the tiled kernel gave the direct kernel's bits in {other_bits:?} of {} cases: did it run?",
        cases.len()
    );
}

/// Each tile fixed for every layer (as `resnet bench --only tiles` times them), with and
/// without the next stage's loads issued early, on shapes it covers in part: a padded RGB
/// stem, a partial stage and tile, stride 2 on an odd size (the input gradient's four phases),
/// 16 channels; the candidate the rule does not pick included.
fn every_tile_matches_the_cpu(gpu: &Device, cpu: &Device) {
    use_gpu_convolution_kernel(GpuConvolutionKernel::Tiled);
    let cases = [
        case(2, 3, 33, 64, 7, 2),
        case(1, 8, 9, 12, 3, 1),
        case(2, 64, 15, 192, 3, 2),
        case(3, 16, 32, 32, 3, 2),
    ];
    for case in &cases {
        let reference = run(case, cpu);
        for tile in GpuTile::ALL {
            for prefetch in [false, true] {
                use_gpu_tile(Some(tile));
                use_gpu_prefetch(prefetch);
                assert_eq!((fixed_gpu_tile(), gpu_prefetch()), (Some(tile), prefetch));
                let errors = relative_errors(&run(case, gpu), &reference);
                assert!(
                    errors.iter().all(|&e| e < 1e-4),
                    "the {tile:?} tile (prefetch: {prefetch}) on {case} is off by {errors:?}"
                );
            }
        }
    }
    use_gpu_tile(None);
    use_gpu_prefetch(false);
    assert_eq!(fixed_gpu_tile(), None);
    println!(
        "each of the {} tiles fixed for every layer, with and without prefetch: {} shapes \
         within 1e-4 of the CPU",
        GpuTile::ALL.len(),
        cases.len()
    );
}

/// Folded, each block's last convolution adds the residual and applies the ReLU as it stores.
fn networks_match_pytorch(gpu: &Device) {
    let cases = [
        (
            "resnet18",
            synthetic_safetensors(RESNET18_KEYS, &[], &[]),
            ResNetConfig::new(Arch::ResNet18, 1000, 3),
            IMAGENET_INPUT,
            RESNET18_LOGITS,
        ),
        (
            "resnet50",
            synthetic_safetensors(RESNET50_KEYS, &[], &[]),
            ResNetConfig::new(Arch::ResNet50, 1000, 3),
            IMAGENET_INPUT,
            RESNET50_LOGITS,
        ),
        (
            "resnet20",
            RESNET20_SAFETENSORS.to_vec(),
            ResNetConfig::new(Arch::ResNet20, 10, 3),
            CIFAR_INPUT,
            RESNET20_LOGITS,
        ),
    ];
    for (name, file, config, input, fixture) in cases {
        let pytorch = fixture_logits(fixture);
        for folded in [false, true] {
            let ours = model_logits(&file, &config, input, gpu, folded);
            let difference = max_abs_difference(&ours, &pytorch);
            println!(
                "{name} on the tiled kernels (folded: {folded}): max |ours - pytorch| {difference:e}"
            );
            assert!(
                difference < 1e-4,
                "{name} (folded: {folded}) off by {difference}"
            );
        }
    }
}

/// The reference ResNet-8 run (a 1-channel stem, 16 to 64 channels, stride-2 layers) with every
/// convolution's forward pass and both gradients on the tiled kernels.
fn training_follows_the_cpu(gpu: &Device, cpu: &Device) {
    let reference = block_on(reference_loss_curve(&cpu.clone().autodiff()));
    for prefetch in [false, true] {
        use_gpu_prefetch(prefetch);
        let ours = block_on(reference_loss_curve(&gpu.clone().autodiff()));
        let difference = max_relative_difference(&ours, &reference);
        println!(
            "training on the tiled kernels (prefetch: {prefetch}): max relative difference to \
             the CPU {difference:e}"
        );
        assert!(difference < 1e-3, "{difference}");
    }
    use_gpu_prefetch(false);
}
