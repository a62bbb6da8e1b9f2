//! The training loop: gradients against finite differences, schedules, augmentation, data
//! readers, and a run that learns.
#![cfg(not(target_arch = "wasm32"))]

use std::io::Write;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use resnet_web::data::preprocess::{InputKind, Normalize, Rgba};
use resnet_web::data::rng::SplitMix;
use resnet_web::data::shipped::digit_classes;
use resnet_web::data::{Augment, Dataset, batch_tensors};
use resnet_web::ops::readback::{block_on, read_floats};
use resnet_web::resnet::{Arch, BlockKind, ResNet, ResNetConfig, ResidualBlock, Shortcut};
use resnet_web::training::session::{Session, SessionOptions};
use resnet_web::training::train::{
    OptimizerKind, Schedule, TrainConfig, Trainer, TrainingRun, evaluate,
};

mod common;
use common::*;

/// burn's random numbers come from one generator per device, shared by the tests that run in
/// parallel: a test that seeds it holds this lock until its random draws are done.
static RANDOM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded(device: &Device, seed: u64) -> std::sync::MutexGuard<'static, ()> {
    let guard = RANDOM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    guard
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    read_floats(tensor).unwrap()
}

fn random_input(shape: [usize; 4], seed: u64) -> Vec<f32> {
    let mut rng = SplitMix::new(seed);
    (0..shape.iter().product())
        .map(|_| (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0)
        .collect()
}

/// Central differences of `loss(x)` along random directions v, against autodiff's
/// directional derivative <grad, v>; returns the error relative to the derivatives' size.
/// Directions (not single coordinates) keep the change of the loss far above f32 rounding.
fn gradient_error(
    loss: impl Fn(Tensor<4>) -> Tensor<1>,
    shape: [usize; 4],
    device: &Device,
) -> f64 {
    let x = random_input(shape, 7);
    let input = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), device).require_grad();
    let gradients = loss(input.clone()).backward();
    let gradient = values(input.grad(&gradients).expect("the input has a gradient"));
    let epsilon = 3e-4;
    let mut rng = SplitMix::new(3);
    let (mut error, mut size) = (0.0f64, 0.0f64);
    for _ in 0..6 {
        let direction: Vec<f32> = (0..x.len())
            .map(|_| if rng.below(2) == 0 { -1.0 } else { 1.0 })
            .collect();
        let analytic: f32 = gradient.iter().zip(&direction).map(|(g, d)| g * d).sum();
        let at = |step: f32| {
            let moved: Vec<f32> = x
                .iter()
                .zip(&direction)
                .map(|(x, d)| x + step * d)
                .collect();
            values(loss(Tensor::from_data(
                TensorData::new(moved, shape),
                device,
            )))[0]
        };
        let numeric = (at(epsilon) - at(-epsilon)) / (2.0 * epsilon);
        error += f64::from(numeric - analytic).powi(2);
        size += f64::from(analytic).powi(2);
    }
    (error / size).sqrt()
}

/// ReLU kinks crossed by the finite step add noise of a few percent (measured: 1.5% to 3.3%
/// for these seeds); a wrong backward pass is off by the derivatives' own size.
const WITH_RELU: f64 = 0.1;
/// Without kinks only f32 rounding remains (measured: 0.5% at this step).
const SMOOTH: f64 = 0.01;

#[test]
fn convolution_and_train_mode_batch_norm_gradients_match_finite_differences() {
    let device = Device::flex().autodiff();
    let _random = seeded(&device, 4);
    let shape = [8, 4, 6, 6];
    let conv = burn::nn::conv::Conv2dConfig::new([4, 4], [3, 3])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let norm = burn::nn::BatchNormConfig::new(4).init(&device).train();
    let weights = Tensor::<4>::random(shape, burn::tensor::Distribution::Default, &device).detach();
    let error = gradient_error(
        |x| {
            (norm.forward(conv.forward(x)) * weights.clone())
                .sum()
                .reshape([1])
        },
        shape,
        &device,
    );
    assert!(
        error < SMOOTH,
        "conv + batch norm: relative error {error:.4}"
    );
}

#[test]
fn residual_block_gradient_matches_finite_differences_in_train_mode() {
    let device = Device::flex().autodiff();
    let _random = seeded(&device, 1);
    for (kind, shortcut) in [
        (BlockKind::Basic, Shortcut::Projection),
        (BlockKind::Basic, Shortcut::ZeroPad),
        (BlockKind::Bottleneck, Shortcut::Projection),
    ] {
        let block = ResidualBlock::new(kind, 4, 4, 2, shortcut, &device).train();
        // A fixed random projection of the output makes a scalar loss.
        let weights =
            Tensor::<4>::random([8, 16, 6, 6], burn::tensor::Distribution::Default, &device);
        let weights = if kind == BlockKind::Basic {
            weights.narrow(1, 0, 4)
        } else {
            weights
        };
        let error = gradient_error(
            |x| {
                (block.forward(x) * weights.clone().detach())
                    .sum()
                    .reshape([1])
            },
            [8, 4, 12, 12],
            &device,
        );
        assert!(
            error < WITH_RELU,
            "{kind:?} {shortcut:?}: relative error {error:.4}"
        );
    }
}

#[test]
fn network_and_cross_entropy_gradient_matches_finite_differences() {
    let device = Device::flex().autodiff();
    let _random = seeded(&device, 2);
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 5, 2), &device)
        .unwrap()
        .train();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3, 4], [3]), &device);
    let loss = CrossEntropyLossConfig::new().init(&device);
    let error = gradient_error(
        |x| loss.forward(model.forward(x), labels.clone()),
        [3, 2, 8, 8],
        &device,
    );
    assert!(
        error < WITH_RELU,
        "ResNet-8 + cross-entropy: relative error {error:.4}"
    );
}

#[test]
fn schedules_warm_up_and_decay() {
    let (base, total) = (0.01, 100);
    assert_eq!(Schedule::Constant.rate(base, 50, total), base);
    assert!((Schedule::Cosine.rate(base, 0, total) - base).abs() < 1e-12);
    assert!((Schedule::Cosine.rate(base, 50, total) - base / 2.0).abs() < 1e-12);
    assert!(Schedule::Cosine.rate(base, total, total).abs() < 1e-12);
    let one_cycle: Vec<f64> = (0..=total)
        .map(|s| Schedule::OneCycle.rate(base, s, total))
        .collect();
    assert!(one_cycle[0] < base / 10.0);
    let peak = one_cycle.iter().cloned().fold(0.0, f64::max);
    assert!((peak - base).abs() < 1e-12 && (one_cycle[30] - base).abs() < 1e-12);
    assert!(one_cycle[..=30].windows(2).all(|w| w[0] <= w[1]));
    assert!(one_cycle[30..].windows(2).all(|w| w[0] >= w[1]));
    assert!(one_cycle[total] < 1e-12);
}

/// One epoch of Adam at a constant rate in batches of `batch_size`, nothing augmented: the
/// settings of the tests that check what a run accepts.
fn one_epoch_of_adam(batch_size: usize) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size,
        learning_rate: 0.01,
        weight_decay: 0.0,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::Constant,
        augment: Augment::NONE,
        seed: 0,
    }
}

fn tiny_dataset(images: Vec<u8>, labels: Vec<u8>, size: usize) -> Dataset {
    Dataset {
        images,
        labels,
        channels: 1,
        height: size,
        width: size,
        class_names: digit_classes().to_vec(),
        normalize: Normalize::NONE,
    }
}

#[test]
fn augmentation_crops_with_zero_padding_and_flips() {
    let device = Device::flex();
    // One 4x4 image with values 1..=16.
    let dataset = tiny_dataset((1..=16).collect(), vec![3], 4);
    let plain = values(
        batch_tensors(
            &dataset,
            &[0],
            Augment::NONE,
            &mut SplitMix::new(0),
            &device,
        )
        .0,
    );
    assert_eq!(
        plain,
        (1..=16).map(|v| v as f32 / 255.0).collect::<Vec<_>>()
    );
    let mut rng = SplitMix::new(5);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let augment = Augment {
            crop_padding: 1,
            flip: true,
        };
        let (images, labels) = batch_tensors(&dataset, &[0], augment, &mut rng, &device);
        assert_eq!(values(labels.float()), vec![3.0]);
        let pixels: Vec<u8> = values(images)
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        // Every crop keeps a 3x3 block of the original (possibly mirrored), the rest is zero.
        assert!(pixels.iter().filter(|&&p| p == 0).count() <= 7);
        seen.insert(pixels);
    }
    // 9 offsets x 2 mirrorings.
    assert_eq!(seen.len(), 18);
}

/// A 224 px set keeps pixels as bytes and normalises each batch: its batch is the model
/// input `InputKind::ImageNet.prepare` gives the page, up to the bytes' rounding.
#[test]
fn imagenet_batches_are_normalised_as_the_page_prepares_pictures() {
    let device = Device::flex();
    let (width, height) = (300, 260);
    let rgba: Vec<u8> = (0..width * height)
        .flat_map(|i| {
            let (x, y) = (i % width, i / width);
            [(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8, 255]
        })
        .collect();
    let picture = Rgba::new(&rgba, width, height).unwrap();
    let mut dataset = Dataset::for_input(InputKind::ImageNet, vec!["a".into(), "b".into()]);
    assert_eq!(dataset.normalize, Normalize::IMAGENET);
    dataset
        .push(&InputKind::ImageNet.pixels(&picture), 1)
        .unwrap();
    let (images, _) = batch_tensors(
        &dataset,
        &[0],
        Augment::NONE,
        &mut SplitMix::new(1),
        &device,
    );
    assert_eq!(images.dims(), [1, 3, 224, 224]);
    let (expected, _) = InputKind::ImageNet.prepare(&picture);
    let batch = values(images);
    // Half a byte step over the smallest std.
    let tolerance = 0.5 / 255.0 / 0.224 + 1e-5;
    let worst = largest(batch.iter().zip(&expected).map(|(a, b)| (a - b).abs()));
    assert!(
        worst <= tolerance,
        "batch differs from the prepared input by {worst}"
    );
    // Normalised, not [0, 1]: ImageNet's mean is taken off.
    assert!(batch.iter().any(|&v| v < -0.5));
}

#[test]
fn readers_parse_idx_and_mnist_json_and_hold_out_per_class() {
    let gzip = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
    images.extend(0..12u8);
    let labels = [0, 0, 8, 1, 0, 0, 0, 2, 7, 1];
    let dataset = Dataset::from_idx(&gzip(&images), &labels, digit_classes()).unwrap();
    assert_eq!((dataset.len(), dataset.height, dataset.width), (2, 2, 3));
    assert_eq!(dataset.image(1), &[6, 7, 8, 9, 10, 11]);
    assert_eq!(dataset.labels, vec![7, 1]);
    let error = Dataset::from_idx(&images[..20], &labels, digit_classes()).unwrap_err();
    assert!(
        error.to_string().contains("do not match the file size"),
        "{error}"
    );
    // Gzipped, a file is inflated no further than its header says: two images and then
    // 64 MiB more, or a header that claims 4 GiB.
    let mut padded = images.clone();
    padded.resize(images.len() + (64 << 20), 0);
    let error = Dataset::from_idx(&gzip(&padded), &labels, digit_classes()).unwrap_err();
    assert!(
        error.to_string().contains("do not match the file size"),
        "{error}"
    );
    let mut claims = images.clone();
    claims[4..8].copy_from_slice(&(1u32 << 30).to_be_bytes());
    let error = Dataset::from_idx(&gzip(&claims), &labels, digit_classes()).unwrap_err();
    assert!(
        error.to_string().contains("claims more than 256 MiB"),
        "{error}"
    );

    let digit = |value: &str, count: usize| {
        let values = vec![value; 784 * count].join(",");
        format!("{{ \"data\": [{values}] }}").into_bytes()
    };
    let files: Vec<Vec<u8>> = (0..10)
        .map(|d| digit(if d == 3 { "0.5" } else { "1" }, 3))
        .collect();
    let digits = Dataset::from_mnist_json(&files).unwrap();
    assert_eq!(digits.len(), 30);
    assert_eq!(digits.image(9)[0], 128, "round(0.5 * 255)");
    let (train, held_out) = digits.split_last_per_class(1);
    assert_eq!((train.len(), held_out.len()), (20, 10));
    assert_eq!(held_out.class_counts(), vec![1; 10]);
}

#[test]
fn training_learns_three_patterns_with_adam_and_sgd() {
    let device = Device::flex();
    let train_set = three_pattern_dataset(96, 1);
    let test_set = three_pattern_dataset(60, 2);
    for optimizer in [OptimizerKind::Adam, OptimizerKind::Sgd { momentum: 0.9 }] {
        let config = TrainConfig {
            epochs: 8,
            batch_size: 16,
            learning_rate: if optimizer == OptimizerKind::Adam {
                0.01
            } else {
                0.05
            },
            weight_decay: 1e-4,
            optimizer,
            schedule: Schedule::OneCycle,
            augment: Augment::NONE,
            seed: 1,
        };
        let training_device = device.clone().autodiff();
        let random = seeded(&training_device, config.seed);
        let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 1), &training_device).unwrap();
        drop(random); // training draws from SplitMix, not from burn
        let steps = config.epochs * train_set.len().div_ceil(config.batch_size);
        let mut run = TrainingRun::new(model, train_set.clone(), config).unwrap();
        let mut losses = Vec::new();
        let mut epochs_finished = 0;
        while !run.is_finished() {
            let report = block_on(run.step(&training_device)).unwrap();
            assert!(report.correct <= report.batch_size);
            epochs_finished += usize::from(report.epoch_finished);
            losses.push(report.loss);
        }
        assert_eq!(
            (run.steps_done(), losses.len(), epochs_finished),
            (steps, steps, 8)
        );
        let model = run.inference_model().to_device(&device);
        let evaluation = block_on(evaluate(&model, &test_set, &device)).unwrap();
        assert_eq!(evaluation.count(), 60);
        let first: f32 = losses[..3].iter().sum::<f32>() / 3.0;
        let last: f32 = losses[losses.len() - 3..].iter().sum::<f32>() / 3.0;
        assert!(last < first / 2.0, "{optimizer:?}: loss {first} -> {last}");
        assert!(
            evaluation.accuracy() >= 0.9,
            "{optimizer:?}: {:?}",
            evaluation.confusion
        );
        assert!(evaluation.per_class_accuracy().iter().all(|&a| a >= 0.7));
        let error = block_on(run.step(&training_device)).unwrap_err();
        assert!(error.to_string().contains("finished"), "{error}");
    }
}

/// The reference curve the browser tests compare with: natively on the CPU, it must be what
/// the committed fixture says (`RESNET_WEB_WRITE_FIXTURES=1` rewrites the fixture).
#[test]
fn loss_curve_matches_the_committed_reference() {
    let device = Device::flex().autodiff();
    let curve = block_on(reference_loss_curve(&device));
    println!("loss curve: {curve:?}");
    if std::env::var_os("RESNET_WEB_WRITE_FIXTURES").is_some() {
        let mut text = String::from(
            "# written by RESNET_WEB_WRITE_FIXTURES=1 cargo test --release --test train loss_curve\n",
        );
        curve
            .iter()
            .for_each(|loss| text.push_str(&format!("{loss:e}\n")));
        std::fs::write("tests/fixtures/loss-curve.txt", text).unwrap();
    }
    let reference = parse_loss_curve(LOSS_CURVE);
    assert_eq!(reference.len(), LOSS_CURVE_STEPS);
    let difference = max_relative_difference(&curve, &reference);
    println!("native CPU vs reference: max relative difference {difference:e}");
    assert!(difference < 1e-5, "{difference}");
    assert!(curve[LOSS_CURVE_STEPS - 1] < curve[0], "the loss goes down");
}

#[test]
fn a_loss_that_is_not_finite_stops_the_run_and_keeps_the_model() {
    let device = Device::flex().autodiff();
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 1), &device)
        .unwrap()
        .map(&mut SyntheticWeights::default());
    let config = TrainConfig {
        epochs: 3,
        batch_size: 16,
        learning_rate: 1e30,
        weight_decay: 0.0,
        optimizer: OptimizerKind::Sgd { momentum: 0.0 },
        schedule: Schedule::Constant,
        augment: Augment::NONE,
        seed: 1,
    };
    let mut run = TrainingRun::new(model, three_pattern_dataset(48, 1), config).unwrap();
    let mut failure = None;
    for _ in 0..9 {
        match block_on(run.step(&device)) {
            Ok(report) => assert!(report.loss.is_finite()),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("a learning rate of 1e30 makes the loss blow up");
    assert!(
        failure.to_string().contains("lower learning rate"),
        "{failure}"
    );
    // The kept model is the last one with a finite loss, and it still classifies.
    let steps = run.steps_done();
    let model = run.inference_model().to_device(&Device::flex());
    let logits = values(
        model.forward(
            batch_tensors(
                run.train_set(),
                &[0, 1, 2],
                Augment::NONE,
                &mut SplitMix::new(0),
                &Device::flex(),
            )
            .0,
        ),
    );
    assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
    let again = block_on(run.step(&device)).unwrap_err();
    assert_eq!(again, failure, "the run stays stopped");
    assert_eq!(run.steps_done(), steps);
}

#[test]
fn untrainable_data_is_an_error_that_names_the_problem() {
    let device = Device::flex().autodiff();
    let model =
        |classes| ResNet::new(&ResNetConfig::new(Arch::ResNet8, classes, 1), &device).unwrap();
    let config = one_epoch_of_adam(4);
    let three = three_pattern_dataset(9, 1);
    // A class without examples.
    let mut empty_class = three.select(&[0, 1, 3, 4]);
    empty_class.class_names = three.class_names.clone();
    let error = TrainingRun::new(model(3), empty_class, config.clone())
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("'blob' has no examples"),
        "{error}"
    );
    // A single class.
    let mut single = three.select(&[0, 3]);
    single.class_names.truncate(1);
    let error = TrainingRun::new(model(1), single, config.clone())
        .err()
        .unwrap();
    assert!(error.to_string().contains("at least two"), "{error}");
    // Data and model disagree.
    let error = TrainingRun::new(model(4), three, config).err().unwrap();
    assert!(
        error.to_string().contains("3 classes but the model has 4"),
        "{error}"
    );
}

/// Data the model cannot take is an error that says so, from every way into training: a
/// session whose pictures are narrower than its input, a run whose images have more channels
/// than the model (before, the convolution panicked), and a batch with fewer labels than
/// images.
#[test]
fn data_that_does_not_fit_the_model_is_an_error_not_a_panic() {
    let three = three_pattern_dataset(9, 1);
    let mut narrow = three.clone();
    narrow.width = 8;
    narrow.images = narrow
        .images
        .chunks(12)
        .flat_map(|row| &row[..8])
        .copied()
        .collect();
    let options = SessionOptions {
        input: InputKind::Plain {
            channels: 1,
            size: 12,
        },
        ..SessionOptions::DEFAULT
    };
    let error = Session::new(&narrow, &options, None, &Device::flex())
        .err()
        .expect("12x8 pictures for a 12x12 input are refused");
    assert!(
        error.to_string().contains("are 1x12x8 but input"),
        "{error}"
    );
    assert!(Session::new(&three, &options, None, &Device::flex()).is_ok());

    let device = Device::flex().autodiff();
    let config = one_epoch_of_adam(4);
    let mut colour = three.clone();
    colour.channels = 3;
    colour.images = three.images.iter().flat_map(|&value| [value; 3]).collect();
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 1), &device).unwrap();
    let mut run = TrainingRun::new(model, colour, config.clone()).unwrap();
    let error = block_on(run.step(&device)).unwrap_err();
    assert_eq!(error.code(), "bad-input", "{error}");
    assert!(
        error
            .to_string()
            .contains("1 input channel(s) but the input has 3"),
        "{error}"
    );
    assert_eq!(run.steps_done(), 0);

    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 1), &device).unwrap();
    let mut trainer = Trainer::new(model, config, 1).unwrap();
    let (images, labels) = batch_tensors(
        &three,
        &[0, 1, 2, 3],
        Augment::NONE,
        &mut SplitMix::new(0),
        &device,
    );
    let error = trainer
        .step(images.clone(), labels.clone().slice(0..3), false)
        .err()
        .expect("four images with three labels are refused");
    assert!(
        error.to_string().contains("4 images but 3 labels"),
        "{error}"
    );
    assert!(trainer.step(images, labels, false).is_ok());
}

#[test]
fn validation_split_takes_a_share_of_every_class() {
    let data = three_pattern_dataset(30, 1);
    let (train, validation) = data.split_validation(0.2, 9);
    assert_eq!(train.class_counts(), vec![8, 8, 8]);
    assert_eq!(validation.class_counts(), vec![2, 2, 2]);
    assert_eq!(data.split_validation(0.2, 9), (train, validation), "seeded");
    // Two images of a class: one each way, whatever the fraction.
    let (train, validation) = data.select(&[0, 1, 2, 3, 4, 5]).split_validation(0.01, 1);
    assert_eq!(
        (train.class_counts(), validation.class_counts()),
        (vec![1; 3], vec![1; 3])
    );
}

#[test]
fn bad_training_settings_are_errors() {
    let device = Device::flex().autodiff();
    let _random = RANDOM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 1), &device).unwrap();
    let config = one_epoch_of_adam(0);
    let error = Trainer::new(model, config, 1)
        .err()
        .expect("batch size 0 is refused");
    assert!(error.to_string().contains("batch size"), "{error}");
}

/// A run put back at a checkpoint goes on exactly as if nothing had happened: same model,
/// step count, schedule, data order and augmentations. (Plain SGD, whose state is only the
/// model; a checkpoint does not hold Adam's moments.) This is what lets the page move a run
/// from a lost WebGPU device to the CPU.
#[test]
fn a_run_resumed_from_a_checkpoint_goes_on_as_before() {
    let device = Device::flex().autodiff();
    let model_config = ResNetConfig::new(Arch::ResNet8, 3, 1);
    let new_run = || {
        let model = ResNet::new(&model_config, &device)
            .unwrap()
            .map(&mut SyntheticWeights::default());
        let config = TrainConfig {
            epochs: 2,
            batch_size: 16,
            learning_rate: 0.02,
            weight_decay: 1e-4,
            optimizer: OptimizerKind::Sgd { momentum: 0.0 },
            schedule: Schedule::OneCycle,
            augment: Augment {
                crop_padding: 1,
                flip: true,
            },
            seed: 3,
        };
        TrainingRun::new(model, three_pattern_dataset(96, 1), config).unwrap()
    };
    let mut uninterrupted = new_run();
    let reference: Vec<_> = (0..12)
        .map(|_| block_on(uninterrupted.step(&device)).unwrap())
        .collect();
    assert!(uninterrupted.is_finished());

    let mut run = new_run();
    for _ in 0..4 {
        block_on(run.step(&device)).unwrap();
    }
    let checkpoint = block_on(run.checkpoint()).unwrap();
    assert_eq!(checkpoint.steps_done(), 4);
    // Three steps the device "loses": the run must forget them.
    for _ in 0..3 {
        block_on(run.step(&device)).unwrap();
    }
    let model = resnet_web::weights::load(checkpoint.model.clone(), &model_config, &device)
        .expect("a checkpoint's model loads");
    run.resume(&checkpoint, model).unwrap();
    assert_eq!(run.steps_done(), 4);
    let resumed: Vec<_> = (0..8)
        .map(|_| block_on(run.step(&device)).unwrap())
        .collect();
    assert!(run.is_finished());
    for (after, before) in resumed.iter().zip(&reference[4..]) {
        assert_eq!(
            (after.step, after.epoch, after.epoch_finished, after.correct),
            (
                before.step,
                before.epoch,
                before.epoch_finished,
                before.correct
            )
        );
        let difference = (after.loss - before.loss).abs() / before.loss.abs();
        assert!(
            difference < 1e-5,
            "step {}: {} vs {}",
            after.step,
            after.loss,
            before.loss
        );
    }
}
