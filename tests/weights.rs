//! Weight files: every mistake names the key at fault; burnpack round trips.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use common::*;
use resnet_web::Error;
use resnet_web::inference::{images_tensor, logits};
use resnet_web::resnet::{Arch, ResNetConfig, Shortcut};
use resnet_web::weights::{self, WeightFormat};

fn load_error(file: Vec<u8>, config: ResNetConfig) -> Error {
    weights::load(file, &config, &Device::flex()).expect_err("loading must fail")
}

#[test]
fn wrong_architecture_names_the_missing_key() {
    let resnet18 = synthetic_safetensors(RESNET18_KEYS, &[], &[]);
    let error = load_error(resnet18, ResNetConfig::new(Arch::ResNet34, 1000, 3));
    assert!(
        matches!(&error, Error::MissingKey { key, arch } if key.starts_with("layer") && arch == "resnet34"),
        "{error}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let file = synthetic_safetensors(RESNET18_KEYS, &[], &["layer3.1.bn2.running_var"]);
    let error = load_error(file, ResNetConfig::new(Arch::ResNet18, 1000, 3));
    assert_eq!(
        error,
        Error::MissingKey {
            key: "layer3.1.bn2.running_var".into(),
            arch: "resnet18".into()
        }
    );
    assert!(error.to_string().contains("'layer3.1.bn2.running_var'"));
}

#[test]
fn extra_tensor_is_named() {
    let file = synthetic_safetensors(
        RESNET18_KEYS,
        &[("layer4.1.conv3.weight", vec![512, 512, 1, 1])],
        &[],
    );
    let error = load_error(file, ResNetConfig::new(Arch::ResNet18, 1000, 3));
    assert_eq!(
        error,
        Error::UnexpectedKey {
            key: "layer4.1.conv3.weight".into(),
            arch: "resnet18".into()
        }
    );
}

#[test]
fn wrong_shape_is_named_in_torchvision_layout() {
    let file = synthetic_safetensors(RESNET18_KEYS, &[], &[]);
    let error = load_error(file, ResNetConfig::new(Arch::ResNet18, 10, 3));
    let Error::ShapeMismatch {
        key,
        expected,
        found,
    } = &error
    else {
        panic!("expected a shape mismatch, got {error}");
    };
    assert!(key == "fc.weight" || key == "fc.bias", "{error}");
    if key == "fc.weight" {
        assert_eq!(
            (expected.as_slice(), found.as_slice()),
            (&[10, 512][..], &[1000, 512][..])
        );
    }
    let error = load_error(
        RESNET20_SAFETENSORS.to_vec(),
        ResNetConfig::new(Arch::ResNet20, 10, 1),
    );
    assert!(
        matches!(&error, Error::ShapeMismatch { key, .. } if key == "conv1.weight"),
        "{error}"
    );
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let config = ResNetConfig::new(Arch::ResNet20, 10, 3);
    let truncated = RESNET20_SAFETENSORS[..RESNET20_SAFETENSORS.len() / 2].to_vec();
    assert!(matches!(
        load_error(truncated, config.clone()),
        Error::WeightFormat(_)
    ));
    let error = load_error(b"GIF89a not weights".to_vec(), config);
    assert!(
        error.to_string().contains(".safetensors, .pth or .bpk"),
        "{error}"
    );
}

#[test]
fn burnpack_round_trip_keeps_logits_and_layout() {
    let device = Device::flex();
    let config = ResNetConfig::new(Arch::ResNet20, 10, 3);
    let model = weights::load(RESNET20_SAFETENSORS.to_vec(), &config, &device).unwrap();
    let packed = weights::save_burnpack(&model, &config).unwrap();
    assert_eq!(
        WeightFormat::detect(&packed).unwrap(),
        WeightFormat::Burnpack
    );

    let reloaded = weights::load(packed.clone(), &config, &device).unwrap();
    let images = || images_tensor(synthetic_images(CIFAR_INPUT), CIFAR_INPUT, &device).unwrap();
    assert_eq!(
        logits(&model, images()).unwrap(),
        logits(&reloaded, images()).unwrap()
    );

    let info = weights::inspect(packed).unwrap();
    assert_eq!(info.config, config);
    assert_eq!(info.num_params, 269_722);
}

#[test]
fn inspect_infers_every_torchvision_layout() {
    for (keys, arch, params) in [
        (RESNET18_KEYS, Arch::ResNet18, 11_689_512),
        (RESNET50_KEYS, Arch::ResNet50, 25_557_032),
    ] {
        let info = weights::inspect(synthetic_safetensors(keys, &[], &[])).unwrap();
        assert_eq!(info.format, WeightFormat::Safetensors);
        assert_eq!(info.config, ResNetConfig::new(arch, 1000, 3));
        assert_eq!(info.num_params, params);
    }
    let info = weights::inspect(RESNET20_SAFETENSORS.to_vec()).unwrap();
    assert_eq!(info.config.arch, Arch::ResNet20);
    assert_eq!(info.config.shortcut, Shortcut::ZeroPad);
}

/// Export as torchvision safetensors: torchvision's keys and layouts (fc.weight [out, in],
/// num_batches_tracked), and the file loads back to the same logits.
#[test]
fn export_as_torchvision_safetensors_round_trips() {
    let device = Device::flex();
    let config = ResNetConfig::new(Arch::ResNet20, 10, 3);
    let model = weights::load(RESNET20_SAFETENSORS.to_vec(), &config, &device).unwrap();
    let exported =
        resnet_web::inference::block_on(weights::torchvision_safetensors(&model)).unwrap();
    let header_len = u64::from_le_bytes(exported[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + header_len) % 8, 0, "data 8-byte aligned");
    let header = std::str::from_utf8(&exported[8..8 + header_len]).unwrap();
    for expected in [
        r#""fc.weight":{"dtype":"F32","shape":[10,64]"#,
        r#""bn1.num_batches_tracked":{"dtype":"I64","shape":[]"#,
        r#""layer3.2.bn2.running_var":{"dtype":"F32","shape":[64]"#,
    ] {
        assert!(header.contains(expected), "{expected} not in {header}");
    }
    // Every key of the PyTorch-written original, and no other.
    let keys = |h: &str| {
        let mut keys: Vec<String> = h
            .split("\"dtype\"")
            .filter_map(|part| part.rsplit("\":{").nth(1))
            .filter_map(|part| part.rsplit('"').next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    };
    let original_len = u64::from_le_bytes(RESNET20_SAFETENSORS[..8].try_into().unwrap()) as usize;
    let original = std::str::from_utf8(&RESNET20_SAFETENSORS[8..8 + original_len]).unwrap();
    assert_eq!(keys(header), keys(original));
    let again = weights::load(exported, &config, &device).unwrap();
    let input = || images_tensor(synthetic_images(CIFAR_INPUT), CIFAR_INPUT, &device).unwrap();
    let difference = max_abs_difference(
        &logits(&again, input()).unwrap(),
        &logits(&model, input()).unwrap(),
    );
    assert!(difference == 0.0, "{difference}");
}
