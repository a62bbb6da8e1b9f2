//! The native GPU path (`--device gpu`: burn's wgpu runtime with the page's kernels) on the
//! machine's adapter: Mesa's lavapipe, a Vulkan driver on the CPU, in CI (scripts/setup.sh
//! installs it). Logits against the CPU and PyTorch, our BatchNorm against float64, a
//! training run against the CPU's, and the messages of a machine that cannot open a GPU.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::process::Command;

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use common::*;
use resnet_web::data::Augment;
use resnet_web::ops::batch_norm_forward;
use resnet_web::ops::device::{self, DeviceChoice};
use resnet_web::ops::readback::{block_on, read_floats};
use resnet_web::resnet::{Arch, ResNet, ResNetConfig};
use resnet_web::training::train::{OptimizerKind, Schedule, TrainConfig, TrainingRun};

fn gpu() -> Device {
    device::open(DeviceChoice::Gpu)
        .expect("a GPU adapter (scripts/setup.sh installs Mesa's lavapipe)")
        .device
}

#[test]
fn resnet18_and_resnet20_logits_on_the_gpu_match_the_cpu_and_pytorch() {
    let gpu = gpu();
    let cases = [
        (
            "resnet18",
            synthetic_safetensors(RESNET18_KEYS, &[], &[]),
            ResNetConfig::new(Arch::ResNet18, 1000, 3),
            IMAGENET_INPUT,
            RESNET18_LOGITS,
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
        let cpu = model_logits(&file, &config, input, &Device::flex(), false);
        let pytorch = fixture_logits(fixture);
        for folded in [false, true] {
            let ours = model_logits(&file, &config, input, &gpu, folded);
            let (to_cpu, to_pytorch) = (
                max_abs_difference(&ours, &cpu),
                max_abs_difference(&ours, &pytorch),
            );
            println!(
                "{name} on the GPU (folded: {folded}): max |gpu - cpu| {to_cpu:e}, |gpu - pytorch| {to_pytorch:e}"
            );
            assert!(
                to_cpu < 1e-4,
                "{name} (folded: {folded}) differs from the CPU by {to_cpu}"
            );
            assert!(
                to_pytorch < 1e-4,
                "{name} (folded: {folded}) differs from PyTorch by {to_pytorch}"
            );
        }
    }
}

/// A training-mode BatchNorm in float64: the output, the gradients of sum(w * output) with
/// respect to the input, gamma and beta, and the running statistics after the step
/// (PyTorch's rule: momentum 0.1, unbiased variance).
struct Reference {
    output: Vec<f64>,
    input_grad: Vec<f64>,
    gamma_grad: Vec<f64>,
    beta_grad: Vec<f64>,
    running_mean: Vec<f64>,
    running_var: Vec<f64>,
}

fn reference(
    x: &[f64],
    w: &[f64],
    [n, c, h, wd]: [usize; 4],
    gamma: &[f64],
    beta: &[f64],
    running: [&[f64]; 2],
) -> Reference {
    let pixels = h * wd;
    let count = (n * pixels) as f64;
    let index = |image: usize, channel: usize, pixel: usize| (image * c + channel) * pixels + pixel;
    let mut output = vec![0.0; x.len()];
    let mut input_grad = vec![0.0; x.len()];
    let (mut gamma_grad, mut beta_grad) = (vec![0.0; c], vec![0.0; c]);
    let (mut running_mean, mut running_var) = (vec![0.0; c], vec![0.0; c]);
    for channel in 0..c {
        let all = || (0..n).flat_map(move |i| (0..pixels).map(move |p| index(i, channel, p)));
        let mean = all().map(|i| x[i]).sum::<f64>() / count;
        let var = all().map(|i| (x[i] - mean).powi(2)).sum::<f64>() / count;
        let inv_std = 1.0 / (var + 1e-5).sqrt();
        let x_hat = |i: usize| (x[i] - mean) * inv_std;
        beta_grad[channel] = all().map(|i| w[i]).sum();
        gamma_grad[channel] = all().map(|i| w[i] * x_hat(i)).sum();
        for i in all() {
            output[i] = x_hat(i) * gamma[channel] + beta[channel];
            input_grad[i] = gamma[channel]
                * inv_std
                * (w[i] - beta_grad[channel] / count - x_hat(i) * gamma_grad[channel] / count);
        }
        running_mean[channel] = 0.9 * running[0][channel] + 0.1 * mean;
        running_var[channel] = 0.9 * running[1][channel] + 0.1 * var * count / (count - 1.0);
    }
    Reference {
        output,
        input_grad,
        gamma_grad,
        beta_grad,
        running_mean,
        running_var,
    }
}

/// The largest |ours - reference|, relative to the reference's largest magnitude (at least 1).
fn relative_error(ours: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    largest_f64(
        ours.iter()
            .zip(reference)
            .map(|(&a, &b)| (a as f64 - b).abs()),
    ) / scale
}

fn floats(tensor: Tensor<1>) -> Vec<f32> {
    read_floats(tensor).unwrap()
}

/// Our training-mode BatchNorm, as a block calls it, on `device` (an autodiff device).
fn run_batch_norm(
    device: &Device,
    x: &[f32],
    w: &[f32],
    shape: [usize; 4],
    channels_last: bool,
    params: [&[f32]; 4],
) -> [Vec<f32>; 6] {
    let c = shape[1];
    let mut norm: BatchNorm = BatchNormConfig::new(c).init(device);
    let vector =
        |values: &[f32]| Tensor::<1>::from_data(TensorData::new(values.to_vec(), [c]), device);
    norm.gamma = norm.gamma.map(|_| vector(params[0]).require_grad());
    norm.beta = norm.beta.map(|_| vector(params[1]).require_grad());
    norm.running_mean = burn::module::RunningState::new(vector(params[2]));
    norm.running_var = burn::module::RunningState::new(vector(params[3]));
    // The layout our convolutions leave: NHWC in memory, seen as NCHW.
    let input = if channels_last {
        let [n, c, h, w] = shape;
        let mut nhwc = vec![0.0; x.len()];
        for (i, &value) in x.iter().enumerate() {
            let (image, channel, pixel) = (i / (c * h * w), i / (h * w) % c, i % (h * w));
            nhwc[(image * h * w + pixel) * c + channel] = value;
        }
        Tensor::<4>::from_data(TensorData::new(nhwc, [n, h, w, c]), device).permute([0, 3, 1, 2])
    } else {
        Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape), device)
    }
    .require_grad();
    let weights = Tensor::<4>::from_data(TensorData::new(w.to_vec(), shape), device);
    let output = batch_norm_forward(&norm, input.clone());
    let grads = (output.clone() * weights).sum().backward();
    [
        floats(output.flatten(0, 3)),
        floats(input.grad(&grads).expect("an input gradient").flatten(0, 3)),
        floats(norm.gamma.val().grad(&grads).expect("a gamma gradient")),
        floats(norm.beta.val().grad(&grads).expect("a beta gradient")),
        floats(norm.running_mean.value_sync()),
        floats(norm.running_var.value_sync()),
    ]
}

#[test]
fn batch_norm_training_matches_float64_on_the_cpu_and_the_gpu() {
    // A shape whose reduction takes more than one combining pass, with a mean far from zero
    // (a one-pass float32 sum of squares would lose the variance); a small odd one; and 6
    // channels, which our GPU kernels leave to the composite operations.
    let cases: [([usize; 4], f32); 3] = [
        ([4, 16, 33, 33], 100.0),
        ([3, 8, 5, 7], 0.5),
        ([2, 6, 4, 4], -1.0),
    ];
    for device in [Device::flex(), gpu()] {
        let autodiff = device.clone().autodiff();
        for (shape, offset) in cases {
            let len: usize = shape.iter().product();
            let c = shape[1];
            let x: Vec<f32> = synthetic("batch-norm x", &[len])
                .iter()
                .map(|v| offset + 4.0 * v)
                .collect();
            let w = synthetic("batch-norm w", &[len]);
            let gamma: Vec<f32> = synthetic("gamma", &[c]).iter().map(|v| 1.0 + v).collect();
            let beta = synthetic("beta", &[c]);
            let running_mean = synthetic("running mean", &[c]);
            let running_var: Vec<f32> = synthetic("running var", &[c])
                .iter()
                .map(|v| 1.0 + v.abs())
                .collect();
            let wide = |values: &[f32]| values.iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let expected = reference(
                &wide(&x),
                &wide(&w),
                shape,
                &wide(&gamma),
                &wide(&beta),
                [&wide(&running_mean), &wide(&running_var)],
            );
            for channels_last in [false, true] {
                let ours = run_batch_norm(
                    &autodiff,
                    &x,
                    &w,
                    shape,
                    channels_last,
                    [&gamma, &beta, &running_mean, &running_var],
                );
                let references = [
                    &expected.output,
                    &expected.input_grad,
                    &expected.gamma_grad,
                    &expected.beta_grad,
                    &expected.running_mean,
                    &expected.running_var,
                ];
                let names = [
                    "output",
                    "input gradient",
                    "gamma gradient",
                    "beta gradient",
                    "running mean",
                    "running var",
                ];
                for ((ours, reference), name) in ours.iter().zip(references).zip(names) {
                    let error = relative_error(ours, reference);
                    println!(
                        "{device:?} {shape:?} channels last {channels_last}: {name} relative error {error:e}"
                    );
                    assert!(
                        error < 1e-4,
                        "{device:?} {shape:?}: the {name} is off by {error}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_float64_reference_gradient_matches_finite_differences() {
    // The reference above, checked itself: its input gradient against central differences
    // of its own output.
    let shape = [2, 3, 2, 3];
    let len: usize = shape.iter().product();
    let x: Vec<f64> = synthetic("fd x", &[len])
        .iter()
        .map(|&v| v as f64)
        .collect();
    let w: Vec<f64> = synthetic("fd w", &[len])
        .iter()
        .map(|&v| v as f64)
        .collect();
    let (gamma, beta) = (vec![1.2, 0.8, 1.5], vec![0.1, -0.3, 0.0]);
    let zeros = vec![0.0; 3];
    let loss = |x: &[f64]| -> f64 {
        let out = reference(x, &w, shape, &gamma, &beta, [&zeros, &zeros]).output;
        out.iter().zip(&w).map(|(a, b)| a * b).sum()
    };
    let analytic = reference(&x, &w, shape, &gamma, &beta, [&zeros, &zeros]).input_grad;
    for i in 0..len {
        let h = 1e-6;
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += h;
        down[i] -= h;
        let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
        assert!(
            (analytic[i] - numeric).abs() < 1e-6,
            "{i}: {} vs {numeric}",
            analytic[i]
        );
    }
}

/// The first `steps` losses of a ResNet-8 from synthetic weights trained with Adam on the
/// three patterns, on `device` (an autodiff device).
fn loss_curve(device: &Device, steps: usize) -> Vec<f32> {
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 1), device)
        .expect("a ResNet-8")
        .map(&mut SyntheticWeights::default());
    let config = TrainConfig {
        epochs: 4,
        batch_size: 16,
        learning_rate: 0.002,
        weight_decay: 1e-4,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::OneCycle,
        augment: Augment::NONE,
        seed: 5,
    };
    let mut run = TrainingRun::new(model, three_pattern_dataset(96, 1), config).expect("a run");
    (0..steps)
        .map(|_| block_on(run.step(device)).expect("a step").loss)
        .collect()
}

#[test]
fn twenty_training_steps_on_the_gpu_follow_the_cpus_loss_curve() {
    let cpu = loss_curve(&Device::flex().autodiff(), 20);
    let gpu = loss_curve(&gpu().autodiff(), 20);
    let difference = max_relative_difference(&gpu, &cpu);
    println!(
        "GPU vs CPU loss curve: max relative difference {difference:e}\n  cpu {cpu:?}\n  gpu {gpu:?}"
    );
    assert!(difference < 1e-3, "{difference}");
    assert!(cpu[19] < cpu[0], "the loss goes down");
}

fn resnet_gpu(environment: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(["bench", "--device", "gpu", "--only", "batch-norm"])
        .envs(environment.iter().copied())
        .output()
        .expect("the resnet binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_machine_without_the_vulkan_loader_is_told_to_install_it() {
    // A loader name that does not exist stands for a machine without libvulkan.
    let (success, text) = resnet_gpu(&[("RESNET_WEB_VULKAN_LOADER", "libvulkan-missing.so.1")]);
    assert!(!success, "{text}");
    assert!(
        text.contains("no Vulkan loader: libvulkan-missing.so.1 could not be loaded"),
        "{text}"
    );
    assert!(
        text.contains("apt-get install libvulkan1") && text.contains("--device cpu"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn a_machine_without_a_gpu_driver_is_told_what_to_install() {
    // The loader is there, but it is pointed at a driver that does not exist.
    let missing = "/nonexistent/icd.json";
    let (success, text) =
        resnet_gpu(&[("VK_DRIVER_FILES", missing), ("VK_ICD_FILENAMES", missing)]);
    assert!(!success, "{text}");
    assert!(
        text.contains("no GPU adapter: the graphics drivers offer no device"),
        "{text}"
    );
    assert!(
        text.contains("mesa-vulkan-drivers") && text.contains("--device cpu"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}
