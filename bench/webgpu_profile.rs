//! Where a WebGPU training step's time goes: the benchmark's training figure (ResNet-20 on
//! 28x28x1 at batch 64) taken apart, and one layer of each stage alone. A profile, not a test:
//! `scripts/profile-webgpu.sh` runs it (wasm-pack test in headless Chromium) and prints one
//! `PROFILE` JSON line per figure, medians of a few runs after a warm-up.
#![cfg(target_arch = "wasm32")]

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use resnet_web::data::Augment;
use resnet_web::data::Dataset;
use resnet_web::ops::convolve;
use resnet_web::resnet::{Arch, ResNet, ResNetConfig};
use resnet_web::training::train::{OptimizerKind, Schedule, TrainConfig, TrainingRun};
use resnet_web::web::{Backend, BackendKind};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const BATCH: usize = 64;
const RUNS: usize = 3;

/// Runs `work` once to warm up (kernel compilation), then `RUNS` times, and prints the median
/// and range in milliseconds.
async fn profile(figure: &str, mut work: impl AsyncFnMut()) {
    work().await;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = js_sys::Date::now();
        work().await;
        times.push(js_sys::Date::now() - start);
    }
    report(figure, &mut times);
}

fn report(figure: &str, times: &mut [f64]) {
    times.sort_by(f64::total_cmp);
    let runs = times.len();
    console_log!(
        "PROFILE {{\"figure\":\"{figure}\",\"median_ms\":{},\"min_ms\":{},\"max_ms\":{}}}",
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
}

/// Waits for the queue: reading one value back waits for all the work before it.
async fn wait_for<const D: usize>(tensor: Tensor<D>) {
    tensor
        .flatten::<1>(0, D - 1)
        .slice([0..1])
        .into_data_async()
        .await
        .expect("a read back");
}

fn conv3x3(channels: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels, channels], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Batch statistics from chained reductions instead of burn's `batch_norm_train` (which
/// swaps the batch and channel axes and copies): the alternative tried for the BatchNorm.
fn batch_norm_from_reductions(input: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>) -> Tensor<4> {
    let channels = gamma.dims()[0];
    let mean = input.clone().mean_dim(0).mean_dim(2).mean_dim(3);
    let centred = input - mean;
    let variance = centred.clone().square().mean_dim(0).mean_dim(2).mean_dim(3);
    let scale = (variance + 1e-5).sqrt().recip() * gamma.reshape([1, channels, 1, 1]);
    centred * scale + beta.reshape([1, channels, 1, 1])
}

#[wasm_bindgen_test]
async fn webgpu_training_profile() {
    let backend = Backend::init(BackendKind::WebGpu).await.unwrap();
    console_log!("PROFILE adapter: {}", backend.description);
    let device = backend.device.clone();
    let training_device = device.clone().autodiff();

    // One 3x3 layer of each of ResNet-20's stages, as the training step runs it.
    for (channels, size) in [(16, 28), (32, 14), (64, 7)] {
        let layer = format!("{channels}x{size}x{size} 3x3 b{BATCH}");
        let shape = [BATCH, channels, size, size];
        let input = Tensor::<4>::random(shape, Distribution::Default, &device);
        let conv = conv3x3(channels, &device);
        profile(&format!("conv forward {layer}"), async || {
            wait_for(conv.forward(input.clone())).await
        })
        .await;

        profile(&format!("our conv forward {layer}"), async || {
            wait_for(convolve(&conv, input.clone())).await
        })
        .await;

        let tracked =
            Tensor::<4>::random(shape, Distribution::Default, &training_device).require_grad();
        let conv = conv3x3(channels, &training_device).train();
        profile(
            &format!("conv forward+backward (input and weight gradients) {layer}"),
            async || {
                let gradients = conv.forward(tracked.clone()).sum().backward();
                wait_for(tracked.grad(&gradients).unwrap()).await
            },
        )
        .await;

        profile(&format!("our conv forward+backward {layer}"), async || {
            let gradients = convolve(&conv, tracked.clone()).sum().backward();
            wait_for(tracked.grad(&gradients).unwrap()).await
        })
        .await;

        let batch_norm = BatchNormConfig::new(channels).init(&training_device);
        profile(
            &format!("batchnorm+relu forward+backward {layer}"),
            async || {
                let gradients = relu(batch_norm.forward(tracked.clone())).sum().backward();
                wait_for(tracked.grad(&gradients).unwrap()).await
            },
        )
        .await;
        let gamma = Tensor::<1>::ones([channels], &training_device).require_grad();
        let beta = Tensor::<1>::zeros([channels], &training_device).require_grad();
        profile(
            &format!("batchnorm from reductions+relu forward+backward {layer}"),
            async || {
                let output =
                    batch_norm_from_reductions(tracked.clone(), gamma.clone(), beta.clone());
                let gradients = relu(output).sum().backward();
                wait_for(tracked.grad(&gradients).unwrap()).await
            },
        )
        .await;

        // The same multiply-adds as one matrix product, as an im2col convolution would run
        // them (the im2col copy not counted).
        let columns = Tensor::<2>::random(
            [BATCH * size * size, 9 * channels],
            Distribution::Default,
            &device,
        );
        let weights = Tensor::<2>::random([9 * channels, channels], Distribution::Default, &device);
        profile(&format!("matmul of the im2col shape {layer}"), async || {
            wait_for(columns.clone().matmul(weights.clone())).await
        })
        .await;
    }

    // The whole step, as `scripts/bench.sh` times it, and its parts.
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet20, 10, 1), &training_device).unwrap();
    let images = Tensor::<4>::random([BATCH, 1, 28, 28], Distribution::Default, &training_device);
    profile("training-mode forward", async || {
        wait_for(model.forward(images.clone())).await
    })
    .await;
    profile("forward+backward", async || {
        let gradients = model.forward(images.clone()).sum().backward();
        wait_for(model.fc.weight.grad(&gradients).unwrap()).await
    })
    .await;
    // The optimiser's update alone, after a backward that has been waited for.
    let mut optimizer = AdamConfig::new()
        .with_weight_decay(Some(WeightDecayConfig::new(1e-4)))
        .init();
    let mut updated = model.clone();
    let mut update_times = Vec::with_capacity(RUNS + 1);
    for _ in 0..=RUNS {
        let gradients = updated.forward(images.clone()).sum().backward();
        wait_for(updated.fc.weight.grad(&gradients).unwrap()).await;
        let gradients = GradientsParams::from_grads(gradients, &updated);
        let start = js_sys::Date::now();
        updated = optimizer.step(1e-3, updated, gradients);
        wait_for(updated.fc.weight.val()).await;
        update_times.push(js_sys::Date::now() - start);
    }
    report(
        "Adam update (after a waited-for backward)",
        &mut update_times[1..],
    );
    let inference_model = model.valid();
    let inference_images = Tensor::<4>::random([BATCH, 1, 28, 28], Distribution::Default, &device);
    profile("inference forward (BatchNorm not folded)", async || {
        wait_for(inference_model.forward(inference_images.clone())).await
    })
    .await;

    let mut data = Dataset::empty(1, 28, (0..10).map(|class| class.to_string()).collect());
    for index in 0..2 * BATCH {
        let image: Vec<f32> = (0..28 * 28)
            .map(|pixel| ((index * 31 + pixel * 7) % 256) as f32 / 255.0)
            .collect();
        data.push(&image, index % 10).unwrap();
    }
    let config = TrainConfig {
        epochs: 50,
        batch_size: BATCH,
        learning_rate: 0.002,
        weight_decay: 1e-4,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::OneCycle,
        augment: Augment {
            crop_padding: 0,
            flip: false,
        },
        seed: 5,
    };
    let mut run = TrainingRun::new(model, data, config).unwrap();
    profile(
        "training step (forward, backward, Adam, read back)",
        async || {
            run.step(&training_device).await.unwrap();
        },
    )
    .await;
    profile("checkpoint (every weight read back)", async || {
        run.checkpoint().await.unwrap();
    })
    .await;
}
