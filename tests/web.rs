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

/// The PyTorch-written CIFAR ResNet-20 fixture on `backend`.
async fn resnet20(backend: BackendKind) -> Classifier {
    classifier(Arch::ResNet20, 10, RESNET20_SAFETENSORS.to_vec(), backend).await
}

/// Native logits match PyTorch's within 1e-4, and so must the browser's CPU (the FMA module's
/// included) on torchvision's ImageNet ResNets.
const CPU_IMAGENET_TOLERANCE: f32 = 1e-4;

/// torchvision's `arch` with synthetic weights (its key list `keys`) on `backend`, against
/// PyTorch's `logits` for the same weights and input.
async fn check_imagenet(arch: Arch, keys: &str, logits: &[u8], backend: BackendKind) {
    let file = synthetic_safetensors(keys, &[], &[]);
    let model = classifier(arch, 1000, file, backend).await;
    let ours = model
        .classify(synthetic_images(IMAGENET_INPUT), IMAGENET_INPUT)
        .await
        .unwrap();
    let error = max_abs_difference(&ours, &fixture_logits(logits));
    console_log!(
        "{arch:?} on {}: max |browser - pytorch| = {error:e}",
        model.backend_info().description
    );
    let tolerance = match backend {
        BackendKind::Cpu => CPU_IMAGENET_TOLERANCE,
        _ => TOLERANCE,
    };
    assert!(
        error < tolerance,
        "{arch:?} on {backend:?} differs by {error}"
    );
}

async fn check_resnet18(backend: BackendKind) {
    check_imagenet(Arch::ResNet18, RESNET18_KEYS, RESNET18_LOGITS, backend).await;
}

async fn check_resnet20(backend: BackendKind) {
    let model = resnet20(backend).await;
    let logits = model
        .classify(synthetic_images(CIFAR_INPUT), CIFAR_INPUT)
        .await
        .unwrap();
    let error = max_abs_difference(&logits, &fixture_logits(RESNET20_LOGITS));
    assert!(error < TOLERANCE, "{backend:?} differs by {error}");
}

/// `torch.save` files (zip, legacy, `module.` prefix, checkpoint dict), read in the browser
/// by the same reader as natively, give PyTorch's logits on both backends.
#[wasm_bindgen_test]
async fn pth_files_load_in_the_browser_and_match_pytorch() {
    let logits = fixture_logits(include_bytes!("fixtures/resnet8.logits.npy"));
    let files: [(&str, &[u8]); 4] = [
        ("zip", include_bytes!("fixtures/resnet8-zip.pth")),
        ("legacy", include_bytes!("fixtures/resnet8-legacy.pth")),
        ("module", include_bytes!("fixtures/resnet8-module.pth")),
        (
            "checkpoint",
            include_bytes!("fixtures/resnet8-checkpoint.pth"),
        ),
    ];
    for backend in [BackendKind::Cpu, BackendKind::WebGpu] {
        for (name, file) in files {
            let config = resnet_web::weights::inspect(file.to_vec()).unwrap().config;
            assert_eq!(config.arch, Arch::ResNet8);
            let model = Classifier::new(&config, Some(file.to_vec()), backend)
                .await
                .unwrap_or_else(|e| panic!("{name} on {backend:?}: {e}"));
            let ours = model
                .classify(synthetic_images(CIFAR_INPUT), CIFAR_INPUT)
                .await
                .unwrap();
            let error = max_abs_difference(&ours, &logits);
            console_log!(
                "resnet8 .pth ({name}) on {backend:?}: max |browser - pytorch| = {error:e}"
            );
            assert!(
                error < TOLERANCE,
                "{name} on {backend:?} differs by {error}"
            );
        }
    }
}

#[wasm_bindgen_test]
async fn webgpu_uses_a_real_browser_adapter() {
    let model = resnet20(BackendKind::WebGpu).await;
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
async fn cpu_resnet50_matches_pytorch() {
    check_imagenet(
        Arch::ResNet50,
        RESNET50_KEYS,
        RESNET50_LOGITS,
        BackendKind::Cpu,
    )
    .await;
}

#[wasm_bindgen_test]
async fn webgpu_resnet20_matches_pytorch() {
    check_resnet20(BackendKind::WebGpu).await;
}

#[wasm_bindgen_test]
async fn cpu_resnet20_matches_pytorch() {
    check_resnet20(BackendKind::Cpu).await;
}

/// The page's move to WebGPU: a model loaded (and folded) on the CPU, then moved.
#[wasm_bindgen_test]
async fn a_cpu_model_moved_to_webgpu_matches_pytorch() {
    let on_cpu = resnet20(BackendKind::Cpu).await;
    let on_gpu = on_cpu.on_backend(BackendKind::WebGpu).await.unwrap();
    assert_eq!(on_gpu.backend_info().kind, BackendKind::WebGpu);
    let expected = fixture_logits(RESNET20_LOGITS);
    for model in [&on_gpu, &on_cpu] {
        let logits = model
            .classify(synthetic_images(CIFAR_INPUT), CIFAR_INPUT)
            .await
            .unwrap();
        let error = max_abs_difference(&logits, &expected);
        let backend = &model.backend_info().description;
        assert!(error < TOLERANCE, "{backend} differs by {error}");
    }
}

#[wasm_bindgen_test]
async fn bad_input_is_an_error_and_the_model_still_works() {
    let model = resnet20(BackendKind::Cpu).await;
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

/// A model on WebGPU is exported by async reads only (a sync read would panic) and the
/// torchvision safetensors it gives loads back to the same logits on the CPU. (A
/// classifier's model has its BatchNorm folded and is not exportable: the model is loaded
/// on the WebGPU device directly.)
#[wasm_bindgen_test]
async fn webgpu_model_exports_as_torchvision_safetensors() {
    let gpu = Backend::init(BackendKind::WebGpu).await.unwrap();
    let model = resnet_web::weights::load(
        RESNET20_SAFETENSORS.to_vec(),
        &ResNetConfig::new(Arch::ResNet20, 10, 3),
        &gpu.device,
    )
    .unwrap();
    let exported = resnet_web::weights::torchvision_safetensors(&model)
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

const MNIST_MODEL: &[u8] = include_bytes!("../models/mnist-resnet20.bpk");

/// A promise's outcome: the value, or the message of the Error it rejected with.
async fn settle(promise: js_sys::Promise) -> Result<wasm_bindgen::JsValue, String> {
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|error| {
            js_sys::Error::from(error)
                .message()
                .as_string()
                .unwrap_or_default()
        })
}

fn probabilities(value: wasm_bindgen::JsValue) -> Vec<f32> {
    js_sys::Float32Array::from(value).to_vec()
}

/// A digit-like stroke: a white page with a black bar.
fn stroke(width: usize, height: usize) -> js_sys::Uint8Array {
    let mut rgba = vec![255u8; width * height * 4];
    for y in height / 5..height * 4 / 5 {
        for x in width * 9 / 20..width * 11 / 20 {
            rgba[(y * width + x) * 4..][..3].fill(0);
        }
    }
    js_sys::Uint8Array::from(rgba.as_slice())
}

/// Every export, called as JavaScript calls it, refuses bad input with an Error, overlapping
/// calls work or are refused, and the same module instance then classifies as before.
#[wasm_bindgen_test]
async fn exports_refuse_bad_input_and_the_module_goes_on() {
    use resnet_web::web::{TrainingData, TrainingSession};
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let classifier = Classifier::for_images(
        MNIST_MODEL.to_vec(),
        BackendKind::Cpu,
        resnet_web::data::preprocess::InputKind::Digit,
        digits.clone(),
    )
    .await
    .unwrap();
    let before = probabilities(
        settle(classifier.classify_pixels(stroke(56, 56), 56, 56))
            .await
            .unwrap(),
    );
    let empty = js_sys::Uint8Array::new_with_length(0);
    for (rgba, width, height, expected) in [
        (empty.clone(), 0, 0, "empty"),
        (stroke(56, 56), 56, 55, "bytes"),
        // 8000x8000 is refused before 256 MB are copied into wasm memory.
        (
            js_sys::Uint8Array::new_with_length(4),
            8000,
            8000,
            "scale it down",
        ),
    ] {
        let error = settle(classifier.classify_pixels(rgba.clone(), width, height))
            .await
            .unwrap_err();
        assert!(error.contains(expected), "{error}");
        let error = settle(classifier.classify_with_heat_map(rgba, width, height))
            .await
            .unwrap_err();
        assert!(error.contains(expected), "{error}");
    }
    let nan = settle(classifier.logits(vec![f32::NAN; 784], 1, 1, 28, 28))
        .await
        .unwrap_err();
    assert!(nan.contains("finite"), "{nan}");
    let channels = settle(classifier.logits(vec![0.0; 3 * 784], 1, 3, 28, 28))
        .await
        .unwrap_err();
    assert!(channels.contains("input channel"), "{channels}");
    let unknown = settle(Classifier::for_images_js(
        MNIST_MODEL.to_vec(),
        "tpu".into(),
        "digit".into(),
        vec![],
    ))
    .await
    .unwrap_err();
    assert!(unknown.contains("unknown backend"), "{unknown}");
    let wrong_input = settle(Classifier::for_images_js(
        MNIST_MODEL.to_vec(),
        "cpu".into(),
        "imagenet".into(),
        vec![],
    ))
    .await
    .unwrap_err();
    assert!(wrong_input.contains("input channel"), "{wrong_input}");
    // Overlapping classifications all complete, with the same answer.
    let overlapping: Vec<_> = (0..4)
        .map(|_| classifier.classify_pixels(stroke(56, 56), 56, 56))
        .collect();
    for promise in overlapping {
        assert_eq!(probabilities(settle(promise).await.unwrap()), before);
    }
    // Training: bad options and data are errors; an overlapping step is refused, not a panic.
    let mut data = TrainingData::for_input("gray-28".into(), vec!["a".into(), "b".into()]).unwrap();
    let bad_label = data.add_pixels("gray-28".into(), stroke(28, 28), 28, 28, 5);
    assert!(bad_label.is_err());
    let bad_size = data.add_pixels("gray-28".into(), stroke(28, 28), 28, 27, 0);
    assert!(bad_size.is_err());
    for label in [0, 1, 0, 1] {
        data.add_pixels("gray-28".into(), stroke(28, 28), 28, 28, label)
            .unwrap();
    }
    let options = js_sys::Object::new();
    for (name, value) in [
        ("backend", wasm_bindgen::JsValue::from_str("cpu")),
        ("input", "gray-28".into()),
        ("batchSize", 2.into()),
        ("epochs", 3.into()),
        ("validationFraction", 0.into()),
        ("learningRate", (-1.0).into()),
    ] {
        js_sys::Reflect::set(&options, &name.into(), &value).unwrap();
    }
    let negative = settle(TrainingSession::create_js(
        options.clone().into(),
        &data,
        None,
    ))
    .await
    .unwrap_err();
    assert!(negative.contains("learning rate"), "{negative}");
    js_sys::Reflect::set(&options, &"learningRate".into(), &0.01.into()).unwrap();
    let session = <TrainingSession as wasm_bindgen::convert::TryFromJsValue>::try_from_js_value(
        settle(TrainingSession::create_js(options.into(), &data, None))
            .await
            .unwrap(),
    )
    .unwrap();
    // On the CPU a step finishes before the next call starts; on WebGPU the second finds the
    // first waiting for the GPU and is refused. Either way, no panic.
    let (first, second) = (session.step(), session.step());
    assert!(settle(first).await.is_ok());
    if let Err(busy) = settle(second).await {
        assert!(busy.contains("busy"), "{busy}");
    }
    assert!(settle(session.step()).await.is_ok(), "the session goes on");
    // The same module instance still classifies exactly as before.
    let after = probabilities(
        settle(classifier.classify_pixels(stroke(56, 56), 56, 56))
            .await
            .unwrap(),
    );
    assert_eq!(after, before);
}

/// Fine-tuning the shipped digit model on two new classes, classifier only: the backbone
/// stays exactly as shipped, BatchNorm statistics included (a classifier's convolutions carry
/// its folded BatchNorm, so a moved statistic changes them), and the classifier is a new
/// two-class one.
#[wasm_bindgen_test]
async fn head_only_fine_tuning_keeps_the_backbone() {
    use resnet_web::ops::readback::read_floats_async;
    use resnet_web::web::{TrainingData, TrainingSession};
    let mut data =
        TrainingData::for_input("digit".into(), vec!["bar".into(), "blank".into()]).unwrap();
    for _ in 0..4 {
        data.add_pixels("digit".into(), stroke(28, 28), 28, 28, 0)
            .unwrap();
        let blank = js_sys::Uint8Array::from(vec![255u8; 28 * 28 * 4].as_slice());
        data.add_pixels("digit".into(), blank, 28, 28, 1).unwrap();
    }
    let options = js_sys::Object::new();
    for (name, value) in [
        ("backend", wasm_bindgen::JsValue::from_str("cpu")),
        ("input", "digit".into()),
        ("batchSize", 4.into()),
        ("epochs", 2.into()),
        ("validationFraction", 0.into()),
        ("fineTune", "head".into()),
    ] {
        js_sys::Reflect::set(&options, &name.into(), &value).unwrap();
    }
    let session = <TrainingSession as wasm_bindgen::convert::TryFromJsValue>::try_from_js_value(
        settle(TrainingSession::create_js(
            options.into(),
            &data,
            Some(MNIST_MODEL.to_vec()),
        ))
        .await
        .unwrap(),
    )
    .unwrap();
    for _ in 0..4 {
        settle(session.step()).await.unwrap();
    }
    let shipped = Classifier::new(
        &ResNetConfig::new(Arch::ResNet20, 10, 1),
        Some(MNIST_MODEL.to_vec()),
        BackendKind::Cpu,
    )
    .await
    .unwrap();
    let tuned = session.trained_classifier().await.unwrap();
    assert_eq!(tuned.num_classes(), 2);
    let weights = |classifier: &Classifier| {
        let model = classifier.model();
        (model.conv1.weight.val(), model.fc.weight.val())
    };
    let (conv_before, _) = weights(&shipped);
    let (conv_after, fc_after) = weights(&tuned);
    assert_eq!(
        read_floats_async(conv_before).await.unwrap(),
        read_floats_async(conv_after).await.unwrap(),
        "the frozen backbone did not move"
    );
    assert_eq!(fc_after.dims(), [64, 2]);
}

/// Our WebGPU convolution kernels, the direct one (`src/ops/gpu/convolution.rs`, which
/// SwiftShader gets) and the tiled ones (`src/ops/gpu/tiled_convolution.rs`, which real
/// GPUs get; without and with the next stage's loads issued early), against burn's convolution on the CPU, same weights and input: the output, and
/// with autodiff the gradients of the input, weight and bias. Rows cut short by the 4-pixel
/// tiles, partial tiles and stages, stride 2 (the tiled input gradient's phases) on odd sizes
/// and batches, 1x1 and 7x7 kernels, with and without bias, images of 1 and 3 channels (padded
/// to 4), 64-channel inputs, and what falls back to burn's kernels (output channels not a
/// multiple of 4, the direct kernel's input gradients at stride 2).
#[wasm_bindgen_test]
async fn webgpu_convolution_kernels_match_the_cpu() {
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::*;
    use burn::tensor::{Distribution, TensorData};
    use resnet_web::ops::{
        GpuConvolutionKernel, convolve, gpu_convolution_kernel, use_gpu_convolution_kernel,
        use_gpu_prefetch,
    };

    async fn values<const D: usize>(tensor: Tensor<D>) -> TensorData {
        tensor.into_data_async().await.unwrap()
    }
    fn check(what: &str, got: TensorData, expected: TensorData) {
        assert_eq!(got.shape(), expected.shape(), "{what}");
        let error = max_abs_difference(
            &got.try_to_vec::<f32>().unwrap(),
            &expected.try_to_vec::<f32>().unwrap(),
        );
        assert!(error < 1e-4, "{what}: differs by {error}");
    }

    let gpu = Backend::init(BackendKind::WebGpu).await.unwrap().device;
    let cpu = Backend::init(BackendKind::Cpu).await.unwrap().device;
    // [in channels, out channels, kernel, stride, padding, height, width, batch, bias]
    let cases = [
        [8, 12, 3, 1, 1, 13, 11, 2, 1],
        [16, 8, 3, 2, 1, 9, 15, 1, 0],
        [4, 16, 1, 2, 0, 7, 7, 3, 0],
        [12, 4, 3, 1, 0, 6, 5, 1, 1],
        [3, 8, 7, 2, 3, 20, 17, 1, 0],
        [8, 6, 3, 1, 1, 5, 9, 2, 1],
        [16, 16, 3, 1, 1, 8, 8, 5, 0],
        [1, 16, 3, 1, 1, 12, 10, 4, 0],
        [64, 32, 3, 2, 1, 9, 11, 3, 1],
        [32, 64, 1, 2, 0, 9, 9, 1, 0],
    ];
    // The adapter's own choice, given back at the end.
    let adapters_kernel = gpu_convolution_kernel();
    // The direct kernel's outputs, and how many the tiled one gives with other bits (it adds
    // in another order), without and with prefetching the next stage: the proof that it ran.
    let mut direct_outputs = Vec::new();
    let mut other_bits = [0; 2];
    for (
        (kernel_kind, prefetch),
        index,
        [
            inputs,
            outputs,
            kernel,
            stride,
            padding,
            height,
            width,
            batch,
            bias,
        ],
    ) in [
        (GpuConvolutionKernel::Direct, false),
        (GpuConvolutionKernel::Tiled, false),
        (GpuConvolutionKernel::Tiled, true),
    ]
    .into_iter()
    .flat_map(|pass| (cases.into_iter().enumerate()).map(move |(index, case)| (pass, index, case)))
    {
        use_gpu_convolution_kernel(kernel_kind);
        use_gpu_prefetch(prefetch);
        let case = format!(
            "{kernel_kind:?} (prefetch: {prefetch}) {inputs}->{outputs} k{kernel}/{stride} \
             p{padding} {height}x{width}"
        );
        let config = Conv2dConfig::new([inputs, outputs], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(
                padding, padding, padding, padding,
            ))
            .with_bias(bias == 1);
        let conv = config.init(&cpu);
        let weight = values(conv.weight.val()).await;
        let bias = match &conv.bias {
            Some(bias) => Some(values(bias.val()).await),
            None => None,
        };
        // The same layer on `device`, its parameters leaves that track their gradients.
        let conv_on = |device: &Device| {
            let mut layer = config.init(device);
            layer.weight = Param::from_tensor(Tensor::from_data(weight.clone(), device));
            layer.bias = bias
                .clone()
                .map(|bias| Param::from_tensor(Tensor::from_data(bias, device)));
            layer
        };
        let shape = [batch, inputs, height, width];
        let input = values(Tensor::<4>::random(
            shape,
            Distribution::Uniform(-1.0, 1.0),
            &cpu,
        ))
        .await;

        // Inference.
        let expected = values(conv.forward(Tensor::from_data(input.clone(), &cpu))).await;
        let got = values(convolve(
            &conv_on(&gpu),
            Tensor::from_data(input.clone(), &gpu),
        ))
        .await;
        match kernel_kind {
            GpuConvolutionKernel::Direct => direct_outputs.push(got.clone()),
            GpuConvolutionKernel::Tiled => {
                other_bits[usize::from(prefetch)] += usize::from(got != direct_outputs[index]);
            }
        }
        check(&format!("{case}: output"), got, expected);

        // Training: the gradients of a weighted sum of the output.
        let weighting = conv
            .forward(Tensor::zeros(shape, &cpu))
            .random_like(Distribution::Uniform(-1.0, 1.0));
        let weighting = values(weighting).await;
        let mut gradients = Vec::new();
        // Expected: burn's own autodiff convolution on the CPU; got: ours on WebGPU.
        for (device, ours) in [
            (cpu.clone().autodiff(), false),
            (gpu.clone().autodiff(), true),
        ] {
            let conv = conv_on(&device);
            let tracked = Tensor::<4>::from_data(input.clone(), &device).require_grad();
            let output = if ours {
                convolve(&conv, tracked.clone())
            } else {
                conv.forward(tracked.clone())
            };
            let weighting = Tensor::<4>::from_data(weighting.clone(), &device);
            let grads = (output * weighting).sum().backward();
            let bias_grad = match &conv.bias {
                Some(bias) => Some(values(bias.grad(&grads).unwrap()).await),
                None => None,
            };
            gradients.push((
                values(tracked.grad(&grads).unwrap()).await,
                values(conv.weight.grad(&grads).unwrap()).await,
                bias_grad,
            ));
        }
        let [
            (input_expected, weight_expected, bias_expected),
            (input_got, weight_got, bias_got),
        ] = <[_; 2]>::try_from(gradients).unwrap();
        if let (Some(got), Some(expected)) = (bias_got, bias_expected) {
            check(&format!("{case}: bias gradient"), got, expected);
        }
        check(
            &format!("{case}: input gradient"),
            input_got,
            input_expected,
        );
        check(
            &format!("{case}: weight gradient"),
            weight_got,
            weight_expected,
        );
    }
    use_gpu_convolution_kernel(adapters_kernel);
    use_gpu_prefetch(false);
    console_log!(
        "the tiled kernels' outputs (without, with prefetch) have other bits than the direct \
         kernel's in {other_bits:?} of {} cases",
        cases.len()
    );
    assert!(
        other_bits.iter().all(|&count| count >= cases.len() / 2),
        "did the tiled kernels run?"
    );
}
