//! In-browser tests (`wasm-pack test --headless --chrome`): the same weights and input as the
//! native parity tests, on WebGPU and on the CPU backend.
#![cfg(target_arch = "wasm32")]

mod common;

use common::*;
use resnet_web::resnet::{Arch, ResNetConfig};
use resnet_web::web::{Backend, BackendKind, Classifier};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Native logits match PyTorch's within 1e-4; the browser must match within 1e-3.
const TOLERANCE: f32 = 1e-3;

async fn classifier(arch: Arch, classes: usize, file: Vec<u8>, backend: BackendKind) -> Classifier {
    Classifier::new(&ResNetConfig::new(arch, classes, 3), Some(file), backend)
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: {e}"))
}

async fn check_resnet18(backend: BackendKind) {
    let file = synthetic_safetensors(RESNET18_KEYS, &[], &[]);
    let model = classifier(Arch::ResNet18, 1000, file, backend).await;
    let logits = model
        .classify(synthetic_images(IMAGENET_INPUT), IMAGENET_INPUT)
        .await
        .unwrap();
    let error = max_abs_difference(&logits, &fixture_logits(RESNET18_LOGITS));
    console_log!(
        "resnet18 on {}: max |browser - pytorch| = {error:e}",
        model.backend_info().description
    );
    assert!(error < TOLERANCE, "{backend:?} differs by {error}");
}

async fn check_resnet20(backend: BackendKind) {
    let model = classifier(Arch::ResNet20, 10, RESNET20_SAFETENSORS.to_vec(), backend).await;
    let logits = model
        .classify(synthetic_images(CIFAR_INPUT), CIFAR_INPUT)
        .await
        .unwrap();
    let error = max_abs_difference(&logits, &fixture_logits(RESNET20_LOGITS));
    assert!(error < TOLERANCE, "{backend:?} differs by {error}");
}

#[wasm_bindgen_test]
async fn webgpu_uses_a_real_browser_adapter() {
    let model = classifier(
        Arch::ResNet20,
        10,
        RESNET20_SAFETENSORS.to_vec(),
        BackendKind::WebGpu,
    )
    .await;
    let adapter = model
        .backend_info()
        .adapter
        .clone()
        .expect("WebGPU reports its adapter");
    console_log!("WebGPU adapter: {adapter:?}");
    // BrowserWebGpu is navigator.gpu; burn has no silent CPU fallback behind this device.
    assert_eq!(
        adapter.backend,
        burn::tensor::wgpu::wgpu::Backend::BrowserWebGpu
    );
}

#[wasm_bindgen_test]
async fn webgpu_resnet18_matches_pytorch() {
    check_resnet18(BackendKind::WebGpu).await;
}

#[wasm_bindgen_test]
async fn cpu_resnet18_matches_pytorch() {
    check_resnet18(BackendKind::Cpu).await;
}

#[wasm_bindgen_test]
async fn webgpu_resnet20_matches_pytorch() {
    check_resnet20(BackendKind::WebGpu).await;
}

#[wasm_bindgen_test]
async fn cpu_resnet20_matches_pytorch() {
    check_resnet20(BackendKind::Cpu).await;
}

#[wasm_bindgen_test]
async fn bad_input_is_an_error_and_the_model_still_works() {
    let model = classifier(
        Arch::ResNet20,
        10,
        RESNET20_SAFETENSORS.to_vec(),
        BackendKind::Cpu,
    )
    .await;
    let too_short = model
        .classify(vec![0.0; 10], [1, 3, 32, 32])
        .await
        .unwrap_err();
    assert!(
        too_short.to_string().contains("needs 3072 values"),
        "{too_short}"
    );
    let nan = model
        .classify(vec![f32::NAN; 3072], [1, 3, 32, 32])
        .await
        .unwrap_err();
    assert!(nan.to_string().contains("finite"), "{nan}");
    let gray = model
        .classify(vec![0.0; 1024], [1, 1, 32, 32])
        .await
        .unwrap_err();
    assert!(gray.to_string().contains("input channel"), "{gray}");
    check_resnet20(BackendKind::Cpu).await;
}

/// flex against ndarray on wasm32, to choose the CPU backend (printed, not asserted).
#[wasm_bindgen_test]
async fn cpu_backends_agree_and_report_their_speed() {
    let performance = web_sys::window()
        .and_then(|w| w.performance())
        .expect("performance");
    let mut results = Vec::new();
    for backend in [BackendKind::Cpu, BackendKind::CpuNdarray] {
        let model = classifier(Arch::ResNet20, 10, RESNET20_SAFETENSORS.to_vec(), backend).await;
        let images = synthetic_images(CIFAR_INPUT);
        model.classify(images.clone(), CIFAR_INPUT).await.unwrap();
        let start = performance.now();
        let runs = 3;
        let mut logits = Vec::new();
        for _ in 0..runs {
            logits = model.classify(images.clone(), CIFAR_INPUT).await.unwrap();
        }
        let ms = (performance.now() - start) / runs as f64;
        console_log!("BENCH resnet20 batch 4 32x32 on {backend:?}: {ms:.1} ms");
        results.push(logits);
    }
    assert!(max_abs_difference(&results[0], &results[1]) < TOLERANCE);
}

/// The same seed, data and settings give the loss curve of the native run (the committed
/// fixture, which `tests/train.rs` checks natively): closely on the CPU, more loosely on
/// WebGPU, whose kernels sum in another order.
const LOSS_CURVE_CPU_TOLERANCE: f32 = 1e-5;
const LOSS_CURVE_WEBGPU_TOLERANCE: f32 = 1e-4;

async fn check_loss_curve(backend: BackendKind, tolerance: f32) {
    let backend = Backend::init(backend).await.unwrap();
    let curve = reference_loss_curve(&backend.device.clone().autodiff()).await;
    let difference = max_relative_difference(&curve, &parse_loss_curve(LOSS_CURVE));
    console_log!(
        "loss curve on {}: max relative difference from native {difference:e} ({curve:?})",
        backend.description
    );
    assert!(difference < tolerance, "{difference}");
}

#[wasm_bindgen_test]
async fn cpu_training_gives_the_native_loss_curve() {
    check_loss_curve(BackendKind::Cpu, LOSS_CURVE_CPU_TOLERANCE).await;
}

#[wasm_bindgen_test]
async fn webgpu_training_gives_the_native_loss_curve() {
    check_loss_curve(BackendKind::WebGpu, LOSS_CURVE_WEBGPU_TOLERANCE).await;
}

/// A model trained on WebGPU is exported by async reads only (a sync read would panic) and
/// the torchvision safetensors it gives loads back to the same logits on the CPU.
#[wasm_bindgen_test]
async fn webgpu_model_exports_as_torchvision_safetensors() {
    let gpu = classifier(
        Arch::ResNet20,
        10,
        RESNET20_SAFETENSORS.to_vec(),
        BackendKind::WebGpu,
    )
    .await;
    let exported = resnet_web::weights::torchvision_safetensors(gpu.model())
        .await
        .unwrap();
    let cpu = classifier(Arch::ResNet20, 10, exported, BackendKind::Cpu).await;
    let images = synthetic_images(CIFAR_INPUT);
    let error = max_abs_difference(
        &cpu.classify(images.clone(), CIFAR_INPUT).await.unwrap(),
        &fixture_logits(RESNET20_LOGITS),
    );
    assert!(error < TOLERANCE, "{error}");
}
