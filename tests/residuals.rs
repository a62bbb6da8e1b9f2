//! Plain twins and gradient flow: what the shortcut does, the names and weight files of the
//! plain networks, and the gradient norms a training run reports.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::TensorData;
use resnet_web::Error;
use resnet_web::data::Augment;
use resnet_web::inference::packed::{FeatureMap, PackedResNet};
use resnet_web::ops::readback::{block_on, floats};
use resnet_web::resnet::{
    Arch, BlockKind, DownsampleLayer, Preset, ResNet, ResidualBlock, Shortcut,
};
use resnet_web::training::gradient_flow::LayerGradient;
use resnet_web::training::train::{OptimizerKind, Schedule, TrainConfig, Trainer};
use resnet_web::weights;

fn random(shape: [usize; 4], seed: &str) -> Tensor<4> {
    let values = common::synthetic(seed, &shape);
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}

fn values(tensor: Tensor<4>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().unwrap()
}

/// With F's last BatchNorm scale (and shift) at zero, F(x) is zero: a residual block passes
/// relu(x) on, its plain twin nothing.
#[test]
fn with_f_silenced_a_residual_block_is_the_identity_and_a_plain_block_is_zero() {
    let device = Device::flex();
    for (kind, channels) in [(BlockKind::Basic, 16), (BlockKind::Bottleneck, 64)] {
        let width = channels / kind.expansion();
        let input = random([2, channels, 6, 6], "silenced block input");
        let relu_input: Vec<f32> = values(input.clone()).iter().map(|v| v.max(0.0)).collect();
        assert!(
            relu_input.iter().any(|v| *v > 0.0) && values(input.clone()).iter().any(|v| *v < 0.0)
        );
        for shortcut in [Shortcut::ZeroPad, Shortcut::None] {
            let mut block = ResidualBlock::new(kind, channels, width, 1, shortcut, &device);
            let last_norm = match &mut block {
                ResidualBlock::Basic(block) => block.bn2.as_mut(),
                ResidualBlock::Bottleneck(block) => block.bn3.as_mut(),
            }
            .unwrap();
            last_norm.gamma = Param::from_tensor(Tensor::zeros([channels], &device));
            let output = values(block.forward(input.clone()));
            match shortcut {
                Shortcut::None => assert!(
                    output.iter().all(|v| *v == 0.0),
                    "{kind:?}: a plain block with F silenced returns zeros"
                ),
                _ => assert_eq!(output, relu_input, "{kind:?}: the identity path"),
            }
        }
    }
}

#[test]
fn every_preset_has_a_plain_twin_by_name() {
    for (name, arch) in Arch::NAMES.iter().zip(Arch::ALL) {
        let plain_name = name.replace("resnet", "plain");
        let plain: Preset = plain_name.parse().unwrap();
        assert_eq!(plain, Preset { arch, plain: true });
        assert_eq!(plain.to_string(), plain_name);
        assert_eq!(Preset::parse(name).unwrap(), Preset::resnet(arch));
        assert_eq!(plain.config(10, 3).preset(), plain);
        assert_eq!(plain.config(10, 3).shortcut, Shortcut::None);
    }
    assert_eq!(Preset::parse("Plain-56").unwrap().depth(), 56);
    assert_eq!(Preset::parse("resnet50").unwrap().depth(), 50);
    assert_eq!(Preset::parse("plain18").unwrap().depth(), 18);
    let Err(Error::UnknownArch { known, .. }) = Preset::parse("plain19") else {
        panic!("plain19 is no preset");
    };
    assert!(known.contains(&"plain20") && known.contains(&"resnet20"));
}

/// A fresh network must leave its last stage at least 2x2 pixels of the pictures: ImageNet's
/// presets halve them five times, the CIFAR family twice.
#[test]
fn a_network_too_deep_for_its_pictures_is_refused_by_name() {
    for name in ["resnet18", "plain18", "resnet50"] {
        let config = Preset::parse(name).unwrap().config(10, 1);
        assert_eq!(config.halvings(), 5);
        let error = config.check_input_side(28).unwrap_err().to_string();
        assert!(
            error.contains(&format!("{name} is too deep for 28 px pictures"))
                && error.contains("larger than 32 px"),
            "{error}"
        );
        assert!(config.check_input_side(32).is_err());
        assert!(config.check_input_side(33).is_ok());
        assert!(config.check_input_side(224).is_ok());
    }
    let cifar = Preset::parse("plain56").unwrap().config(10, 1);
    assert_eq!(cifar.halvings(), 2);
    assert!(cifar.check_input_side(8).is_ok());
    assert!(cifar.check_input_side(4).is_err());
}

/// A plain twin has the same layers, less the projection shortcuts' (the ImageNet family's).
#[test]
fn plain_twins_have_their_resnets_layers_without_the_shortcut() {
    let device = Device::flex();
    let count = |name: &str| {
        ResNet::new(&Preset::parse(name).unwrap().config(10, 3), &device)
            .unwrap()
            .num_trainable_params()
    };
    assert_eq!(
        count("plain20"),
        count("resnet20"),
        "option A has no parameters"
    );
    // ResNet-18's three projections: 1x1 convolutions 64->128, 128->256, 256->512 and
    // their BatchNorms.
    let projections = 64 * 128 + 128 * 256 + 256 * 512 + 2 * (128 + 256 + 512);
    assert_eq!(count("resnet18") - count("plain18"), projections);
    let plain = ResNet::new(&Preset::parse("plain18").unwrap().config(10, 3), &device).unwrap();
    assert!(plain.is_plain());
    let logits = plain.forward(random([1, 3, 64, 64], "plain18 input"));
    assert_eq!(logits.dims(), [1, 10]);
}

/// The folded CPU layout (`packed`) of a plain twin computes what its model does.
#[test]
fn a_folded_plain_twin_matches_its_model() {
    let device = Device::flex();
    let config = Preset::parse("plain8").unwrap().config(10, 1);
    let model = ResNet::new(&config, &device)
        .unwrap()
        .map(&mut common::SyntheticWeights::default());
    let input = random([2, 1, 12, 12], "plain8 input");
    let expected = model
        .forward(input.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let packed = block_on(PackedResNet::new(&model.clone().fold_batch_norm())).unwrap();
    let got = packed
        .forward(&FeatureMap::from_nchw(
            &values(input.clone()),
            [2, 1, 12, 12],
        ))
        .unwrap();
    assert!(common::max_abs_difference(&expected, &got) < 1e-4);
    // Its ResNet, with the same weights, computes something else: the shortcut is gone.
    let resnet = ResNet::new(&Preset::parse("resnet8").unwrap().config(10, 1), &device)
        .unwrap()
        .map(&mut common::SyntheticWeights::default());
    let with_shortcut = resnet
        .forward(input)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(common::max_abs_difference(&expected, &with_shortcut) > 1e-2);
}

/// Weight files say which kind they hold; loading one as the other names the difference.
#[test]
fn weight_files_tell_plain_twins_from_resnets() {
    let device = Device::flex();
    let plain_config = Preset::parse("plain8").unwrap().config(3, 1);
    let resnet_config = Preset::parse("resnet8").unwrap().config(3, 1);
    let plain = ResNet::new(&plain_config, &device).unwrap();
    let resnet = ResNet::new(&resnet_config, &device).unwrap();
    let plain_files = [
        weights::save_burnpack(&plain, &plain_config).unwrap(),
        block_on(weights::torchvision_safetensors(&plain)).unwrap(),
    ];
    let resnet_files = [
        weights::save_burnpack(&resnet, &resnet_config).unwrap(),
        block_on(weights::torchvision_safetensors(&resnet)).unwrap(),
    ];
    for file in &plain_files {
        assert_eq!(weights::inspect(file.clone()).unwrap().config, plain_config);
        assert!(
            weights::load(file.clone(), &plain_config, &device)
                .unwrap()
                .is_plain()
        );
        let error = weights::load(file.clone(), &resnet_config, &device).unwrap_err();
        assert_eq!(error.code(), "bad-weights");
        assert_eq!(
            error.to_string(),
            "the weight file holds a plain network, without shortcuts, but resnet8 has them: \
             load it as plain8"
        );
    }
    for file in &resnet_files {
        assert_eq!(
            weights::inspect(file.clone()).unwrap().config,
            resnet_config
        );
        let error = weights::load(file.clone(), &plain_config, &device).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the weight file holds a ResNet, with shortcuts, but plain8 is its plain twin, \
             without them: load it as resnet8"
        );
    }
    // Converting keeps the kind.
    let converted = block_on(weights::convert(
        plain_files[1].clone(),
        weights::ExportFormat::Burnpack,
    ))
    .unwrap();
    assert_eq!(weights::inspect(converted).unwrap().config, plain_config);
}

fn train_config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 8,
        learning_rate: 0.01,
        weight_decay: 0.0,
        optimizer: OptimizerKind::Sgd { momentum: 0.9 },
        schedule: Schedule::Constant,
        augment: Augment::NONE,
        seed: 1,
    }
}

/// The norms a step reports are those of burn's own gradients of the same loss, layer by
/// layer in depth order.
#[test]
fn reported_gradient_norms_equal_burns_gradients() {
    let device = Device::flex().autodiff();
    for name in ["plain8", "resnet8", "plain18"] {
        let preset = Preset::parse(name).unwrap();
        let size = if preset.arch == Arch::ResNet18 {
            32
        } else {
            12
        };
        let model = ResNet::new(&preset.config(3, 1), &device)
            .unwrap()
            .map(&mut common::SyntheticWeights::default())
            .train();
        let images = random([4, 1, size, size], "gradient flow input").to_device(&device);
        let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 1], &device);
        // burn's gradients of the loss, by hand, from the same model.
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(model.forward(images.clone()), labels.clone());
        let gradients = loss.backward();
        let mut expected = vec![("conv1".to_string(), model.conv1.weight.clone())];
        for (stage, blocks) in model.stages().into_iter().enumerate() {
            for (index, block) in blocks.iter().enumerate() {
                let ResidualBlock::Basic(block) = block else {
                    unreachable!()
                };
                let prefix = format!("layer{}.{index}", stage + 1);
                expected.push((format!("{prefix}.conv1"), block.conv1.weight.clone()));
                expected.push((format!("{prefix}.conv2"), block.conv2.weight.clone()));
                if let Some(DownsampleLayer::Conv(conv)) = block.downsample.first() {
                    expected.push((format!("{prefix}.downsample.0"), conv.weight.clone()));
                }
            }
        }
        let norm = |values: Vec<f32>| {
            values
                .iter()
                .map(|v| f64::from(*v).powi(2))
                .sum::<f64>()
                .sqrt() as f32
        };
        let mut expected: Vec<(String, f32, f32)> = expected
            .into_iter()
            .map(|(name, weight)| {
                let gradient = weight.grad(&gradients).unwrap();
                (
                    name,
                    norm(gradient.into_data().try_to_vec::<f32>().unwrap()),
                    norm(weight.val().into_data().try_to_vec::<f32>().unwrap()),
                )
            })
            .collect();
        let fc_gradient = model.fc.weight.grad(&gradients).unwrap();
        expected.push((
            "fc".into(),
            norm(fc_gradient.into_data().try_to_vec::<f32>().unwrap()),
            norm(
                model
                    .fc
                    .weight
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
            ),
        ));

        let mut trainer = Trainer::new(model, train_config(), 1).unwrap();
        let output = trainer.step(images, labels, true).unwrap();
        let norms = output.gradients.expect("norms were asked for");
        let squared = floats(norms.squared.clone().into_data()).unwrap();
        let reported: Vec<LayerGradient> = norms.read(&squared).unwrap();
        assert_eq!(reported.len(), expected.len(), "{name}");
        let mut depth = 0;
        for (layer, (key, gradient, weight)) in reported.iter().zip(&expected) {
            assert_eq!(&layer.name, key, "{name}: depth order");
            let relative = |a: f32, b: f32| (a - b).abs() / b.abs().max(1e-12);
            assert!(
                relative(layer.grad_norm, *gradient) < 1e-4,
                "{name} {key}: {} reported, {gradient} from burn's gradient",
                layer.grad_norm
            );
            assert!(relative(layer.weight_norm, *weight) < 1e-5, "{name} {key}");
            if key.contains("downsample") {
                assert!(layer.depth <= depth, "a shortcut shares its block's depth");
            } else {
                assert_eq!(layer.depth, depth + 1, "{name} {key}");
                depth = layer.depth;
            }
        }
        assert_eq!(
            depth,
            preset.depth(),
            "{name}: the classifier is the last layer"
        );
    }
}

/// PyTorch's gradient norms for the same ResNet-8, its plain twin and one batch
/// (`scripts/make_gradient_fixtures.py`) are ours, layer by layer.
#[test]
fn gradient_norms_match_pytorch() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gradient-flow");
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/norms.json")).unwrap()).unwrap();
    let device = Device::flex().autodiff();
    let numbers = |value: &serde_json::Value| -> Vec<f64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let input: Vec<f32> = numbers(&fixture["input"])
        .iter()
        .map(|v| *v as f32)
        .collect();
    let labels: Vec<i64> = numbers(&fixture["labels"])
        .iter()
        .map(|v| *v as i64)
        .collect();
    for name in ["resnet8", "plain8"] {
        let bytes = std::fs::read(format!("{dir}/{name}.safetensors")).unwrap();
        let config = weights::inspect(bytes.clone()).unwrap().config;
        assert_eq!(config.preset().to_string(), name);
        let model = weights::load(bytes, &config, &device).unwrap();
        let images = Tensor::from_data(TensorData::new(input.clone(), [4, 1, 12, 12]), &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [4]), &device);
        let mut trainer = Trainer::new(model, train_config(), 1).unwrap();
        let output = trainer.step(images, labels, true).unwrap();
        let loss = floats(output.loss.into_data()).unwrap()[0];
        let expected_loss = fixture[name]["loss"].as_f64().unwrap() as f32;
        assert!(
            (loss - expected_loss).abs() < 1e-5,
            "{name}: loss {loss} vs {expected_loss}"
        );
        let norms = output.gradients.unwrap();
        let squared = floats(norms.squared.clone().into_data()).unwrap();
        let ours = norms.read(&squared).unwrap();
        let theirs = fixture[name]["layers"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (layer, reference) in ours.iter().zip(theirs) {
            assert_eq!(layer.name, reference["name"].as_str().unwrap());
            for (value, key) in [
                (layer.grad_norm, "grad_norm"),
                (layer.weight_norm, "weight_norm"),
            ] {
                let expected = reference[key].as_f64().unwrap();
                let relative = (f64::from(value) - expected).abs() / expected.abs();
                assert!(
                    relative < 1e-4,
                    "{name} {}: {key} {value} vs PyTorch's {expected}",
                    layer.name
                );
            }
        }
    }
}
