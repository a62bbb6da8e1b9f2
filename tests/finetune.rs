//! Fine-tuning through the library's session, as `resnet train --init` and the page run it:
//! head-only leaves the backbone bit-identical, all layers move it, and a new class count
//! gets a new classifier.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::prelude::*;
use common::*;
use resnet_web::data::preprocess::InputKind;
use resnet_web::ops::readback::block_on;
use resnet_web::resnet::{Arch, ResNet, ResNetConfig};
use resnet_web::training::finetune::FineTune;
use resnet_web::training::session::{Session, SessionOptions};
use resnet_web::training::train::{Augmentation, TrainOptions};
use resnet_web::weights;

/// A ResNet-8 for `classes` classes of 1-channel images, with synthetic weights and running
/// statistics (none of them burn's defaults), as a torchvision safetensors file.
fn base_weights(classes: usize) -> Vec<u8> {
    let model = ResNet::new(
        &ResNetConfig::new(Arch::ResNet8, classes, 1),
        &Device::flex(),
    )
    .unwrap()
    .map(&mut SyntheticWeights::default());
    block_on(weights::torchvision_safetensors(&model)).unwrap()
}

/// Every tensor of a safetensors file: name to (shape, raw bytes).
fn tensors(file: &[u8]) -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let header_len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + header_len]).unwrap();
    let data = &file[8 + header_len..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, entry)| {
            let shape = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let offsets = entry["data_offsets"].as_array().unwrap();
            let (start, end) = (
                offsets[0].as_u64().unwrap() as usize,
                offsets[1].as_u64().unwrap() as usize,
            );
            (name.clone(), (shape, data[start..end].to_vec()))
        })
        .collect()
}

fn options(fine_tune: FineTune) -> SessionOptions {
    SessionOptions {
        input: InputKind::Plain {
            channels: 1,
            size: 12,
        },
        train: TrainOptions {
            epochs: 1,
            batch_size: 16,
            learning_rate: 0.01,
            augment: Augmentation::On,
            ..TrainOptions::DEFAULT
        },
        validation_fraction: 0.0,
        fine_tune,
        ..SessionOptions::DEFAULT
    }
}

/// The model's tensors after training one epoch on the three patterns from `base`.
fn fine_tuned(base: &[u8], fine_tune: FineTune) -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let data = three_pattern_dataset(48, 4);
    let mut session = Session::new(
        &data,
        &options(fine_tune),
        Some(base.to_vec()),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(
        session.config().arch,
        Arch::ResNet8,
        "the file's architecture"
    );
    let mut steps = 0;
    while !session.is_finished() {
        block_on(session.step()).unwrap();
        steps += 1;
    }
    assert_eq!(steps, 3);
    tensors(&block_on(weights::torchvision_safetensors(&session.inference_model())).unwrap())
}

fn is_head(name: &str) -> bool {
    name.starts_with("fc.")
}

#[test]
fn head_only_fine_tuning_leaves_every_backbone_tensor_bit_identical() {
    let base_file = base_weights(3);
    let base = tensors(&base_file);
    let tuned = fine_tuned(&base_file, FineTune::Head);
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        tuned.keys().collect::<Vec<_>>()
    );
    let statistics = base.keys().filter(|k| k.contains("running_")).count();
    assert!(statistics >= 2 * 7, "BatchNorm statistics are compared too");
    for (name, tensor) in &base {
        if is_head(name) {
            assert_ne!(tensor, &tuned[name], "{name}: the head trains");
        } else {
            assert_eq!(
                tensor, &tuned[name],
                "{name} moved under head-only fine-tuning"
            );
        }
    }
}

#[test]
fn all_layers_fine_tuning_moves_the_backbone() {
    let base_file = base_weights(3);
    let base = tensors(&base_file);
    let tuned = fine_tuned(&base_file, FineTune::All);
    let moved: Vec<&String> = base
        .keys()
        .filter(|name| !is_head(name) && base[*name] != tuned[*name])
        .collect();
    assert!(
        moved.iter().any(|name| name.ends_with("conv1.weight")),
        "convolutions train: {moved:?}"
    );
    assert!(
        moved.iter().any(|name| name.contains("running_mean")),
        "running statistics follow the data: {moved:?}"
    );
}

#[test]
fn a_new_class_count_gets_a_new_head_on_the_same_backbone() {
    let base_file = base_weights(10);
    let base = tensors(&base_file);
    assert_eq!(base["fc.weight"].0, vec![10, 64]);
    let tuned = fine_tuned(&base_file, FineTune::Head);
    assert_eq!(tuned["fc.weight"].0, vec![3, 64]);
    assert_eq!(tuned["fc.bias"].0, vec![3]);
    for (name, tensor) in base.iter().filter(|(name, _)| !is_head(name)) {
        assert_eq!(tensor, &tuned[name], "{name} moved");
    }
}

#[test]
fn fine_tuning_refuses_a_model_for_other_channels() {
    let data = three_pattern_dataset(12, 1);
    let rgb = block_on(weights::torchvision_safetensors(
        &ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 3), &Device::flex()).unwrap(),
    ))
    .unwrap();
    let error = Session::new(&data, &options(FineTune::Head), Some(rgb), &Device::flex())
        .err()
        .expect("3-channel weights for 1-channel data")
        .to_string();
    assert!(error.contains("3 channel(s) but the data has 1"), "{error}");
}

#[test]
fn training_options_parse_as_the_cli_and_the_page_write_them() {
    use resnet_web::training::train::{OptimizerKind, Schedule};
    assert_eq!(
        "sgd".parse::<OptimizerKind>().unwrap(),
        OptimizerKind::Sgd { momentum: 0.9 }
    );
    assert_eq!("cosine".parse::<Schedule>().unwrap(), Schedule::Cosine);
    assert_eq!("no".parse::<Augmentation>().unwrap(), Augmentation::Off);
    assert_eq!("head".parse::<FineTune>().unwrap(), FineTune::Head);
    for text in [
        OptimizerKind::Adam.to_string(),
        Schedule::OneCycle.to_string(),
    ] {
        assert!(["adam", "one-cycle"].contains(&text.as_str()), "{text}");
    }
    let error = "rmsprop".parse::<OptimizerKind>().unwrap_err().to_string();
    assert!(error.contains("use adam or sgd"), "{error}");
    let bad = TrainOptions {
        epochs: 0,
        ..TrainOptions::DEFAULT
    };
    assert!(bad.config(InputKind::Digit).is_err());
    // Digits are never mirrored; clothes are.
    let digit = TrainOptions::DEFAULT.config(InputKind::Digit).unwrap();
    let fashion = TrainOptions::DEFAULT.config(InputKind::Fashion).unwrap();
    assert!(!digit.augment.flip && fashion.augment.flip);
}
