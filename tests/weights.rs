//! Weight files: every mistake names the key at fault; burnpack round trips.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use common::*;
use resnet_web::Error;
use resnet_web::inference::classifier::{images_tensor, logits};
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
        resnet_web::ops::readback::block_on(weights::torchvision_safetensors(&model)).unwrap();
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

#[test]
fn a_model_with_folded_batch_norm_is_not_exported() {
    let device = Device::flex();
    let config = ResNetConfig::new(Arch::ResNet20, 10, 3);
    let model = weights::load(RESNET20_SAFETENSORS.to_vec(), &config, &device).unwrap();
    assert!(!model.is_folded());
    let folded = model.fold_batch_norm();
    assert!(folded.is_folded());
    let safetensors =
        resnet_web::ops::readback::block_on(weights::torchvision_safetensors(&folded));
    let burnpack = weights::save_burnpack(&folded, &config);
    for result in [safetensors, burnpack] {
        let message = result.unwrap_err().to_string();
        assert!(message.contains("folded"), "{message}");
    }
}

/// Damaged weight files of every readable format are errors, never panics: every truncation
/// point of a sample, bytes flipped throughout, a header that claims gigabytes, a tensor
/// shape far larger than the file. (Each reader is also run on the cases for `inspect`.)
#[test]
fn damaged_files_are_errors_not_panics() {
    let config = ResNetConfig::new(Arch::ResNet20, 10, 3);
    let device = Device::flex();
    let model = weights::load(RESNET20_SAFETENSORS.to_vec(), &config, &device).unwrap();
    let burnpack = weights::save_burnpack(&model, &config).unwrap();
    let outcome = |bytes: Vec<u8>| {
        std::panic::catch_unwind(|| {
            let inspected = weights::inspect(bytes.clone()).is_ok();
            let loaded = weights::load(bytes, &config, &device).is_ok();
            (inspected, loaded)
        })
    };
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, file) in [
        ("safetensors", RESNET20_SAFETENSORS.to_vec()),
        ("burnpack", burnpack),
    ] {
        for cut in (0..file.len())
            .step_by(file.len() / 97)
            .chain([8, 9, 16, file.len() - 1])
        {
            cases.push((format!("{name} cut at {cut}"), file[..cut].to_vec()));
        }
        let mut rng = resnet_web::data::rng::SplitMix::new(3);
        for _ in 0..60 {
            let mut flipped = file.clone();
            // Mostly in the header, where a flip changes what is claimed.
            let position = if rng.below(2) == 0 {
                rng.below(file.len().min(4096))
            } else {
                rng.below(file.len())
            };
            flipped[position] ^= 1 << rng.below(8);
            cases.push((format!("{name} flipped at {position}"), flipped));
        }
    }
    let mut gigabytes = RESNET20_SAFETENSORS.to_vec();
    gigabytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    cases.push(("a header length of 1 TB".into(), gigabytes));
    let huge_shape = write_safetensors(&[(
        "conv1.weight".to_string(),
        "F32",
        vec![1 << 20, 1 << 20, 3, 3],
        vec![0; 64],
    )]);
    cases.push(("a 9-trillion-value tensor in 64 bytes".into(), huge_shape));
    for (case, bytes) in cases {
        match outcome(bytes) {
            Err(_) => panic!("{case}: a reader panicked"),
            Ok((_, true))
                if case.contains("cut") || case.contains("TB") || case.contains("trillion") =>
            {
                panic!("{case}: loaded")
            }
            Ok(_) => {}
        }
    }
}

/// Half-precision files (f16, bf16), as `model.half()` writes them, load as f32 values.
#[test]
fn half_precision_tensors_load_or_are_refused_clearly() {
    let config = ResNetConfig::new(Arch::ResNet20, 10, 3);
    let device = Device::flex();
    for dtype in ["F16", "BF16"] {
        let tensors: Vec<(String, &str, Vec<usize>, Vec<u8>)> =
            safetensors_entries(RESNET20_SAFETENSORS)
                .into_iter()
                .map(|(name, kind, shape)| {
                    let count: usize = shape.iter().product();
                    if kind == "I64" {
                        (name, "I64", shape, vec![0; 8 * count])
                    } else {
                        // 1.0 in either format.
                        let one: [u8; 2] = if dtype == "F16" {
                            [0x00, 0x3c]
                        } else {
                            [0x80, 0x3f]
                        };
                        (name, dtype, shape, one.repeat(count))
                    }
                })
                .collect();
        assert!(tensors.len() > 60, "{} tensors", tensors.len());
        match weights::load(write_safetensors(&tensors), &config, &device) {
            Ok(model) => {
                println!("{dtype}: loaded as f32");
                let first =
                    resnet_web::ops::readback::read_floats(model.conv1.weight.val()).unwrap();
                assert!(
                    first.iter().all(|&v| v == 1.0),
                    "{dtype}: {:?}",
                    &first[..4]
                );
            }
            Err(error) => assert!(
                error.to_string().contains("weight file"),
                "{dtype}: {error}"
            ),
        }
    }
}

/// (name, dtype, shape) of every tensor of a safetensors file, from its JSON header.
fn safetensors_entries(file: &[u8]) -> Vec<(String, String, Vec<usize>)> {
    let length = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&file[8..8 + length]).unwrap();
    header
        .split("},")
        .filter_map(|entry| {
            let (name, rest) = entry.trim_start_matches('{').split_once("\":{")?;
            let name = name.trim_start_matches('"').to_string();
            let dtype = rest
                .split("\"dtype\":\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_string();
            let shape = rest
                .split("\"shape\":[")
                .nth(1)?
                .split(']')
                .next()?
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.parse().unwrap())
                .collect();
            Some((name, dtype, shape))
        })
        .collect()
}

/// The fuzz targets' own code, so that a finding is replayed exactly as it was found.
#[path = "../fuzz/src/lib.rs"]
mod fuzz_harness;

/// What the fuzzers (`scripts/fuzz.sh`) ever found is kept in `fuzz/regressions/<reader>/`,
/// beside the hostile files made by `tests/hostile/mod.rs`: each such file must now be an
/// error or a model, never a panic.
#[test]
fn fuzzer_findings_stay_fixed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut checked = 0;
    for reader in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let format = match reader.file_name().to_str() {
            Some("safetensors") => WeightFormat::Safetensors,
            Some("burnpack") => WeightFormat::Burnpack,
            Some("pytorch") => WeightFormat::PyTorch,
            other => panic!("fuzz/regressions/{other:?}: not a reader's name"),
        };
        for file in std::fs::read_dir(reader.path()).unwrap().flatten() {
            let bytes = std::fs::read(file.path()).unwrap();
            let outcome =
                std::panic::catch_unwind(|| fuzz_harness::read_weight_file(&bytes, format));
            assert!(outcome.is_ok(), "{} panics again", file.path().display());
            checked += 1;
        }
    }
    println!("{checked} fuzzer findings replayed");
    // The hostile files of tests/hostile/mod.rs are committed there at least.
    assert!(checked >= 9, "only {checked} files in fuzz/regressions/");
}

/// `convert`, what the page's export and `resnet export` use: a torch.save file in, each
/// format out, and both give the original's logits; an unknown format is refused by name.
#[test]
fn convert_rewrites_any_weight_file_with_the_same_logits() {
    let device = Device::flex();
    let pth = include_bytes!("fixtures/resnet8-zip.pth").to_vec();
    let config = weights::inspect(pth.clone()).unwrap().config;
    let original = weights::load(pth.clone(), &config, &device).unwrap();
    let images = || images_tensor(synthetic_images(CIFAR_INPUT), CIFAR_INPUT, &device).unwrap();
    let expected = logits(&original, images()).unwrap();
    for (name, format) in [
        ("safetensors", WeightFormat::Safetensors),
        ("burnpack", WeightFormat::Burnpack),
    ] {
        let converted = resnet_web::ops::readback::block_on(weights::convert(
            pth.clone(),
            name.parse().unwrap(),
        ))
        .unwrap();
        assert_eq!(WeightFormat::detect(&converted).unwrap(), format, "{name}");
        let reloaded = weights::load(converted, &config, &device).unwrap();
        assert_eq!(logits(&reloaded, images()).unwrap(), expected, "{name}");
    }
    let error = "onnx".parse::<weights::ExportFormat>().unwrap_err();
    assert!(error.to_string().contains("'onnx'"), "{error}");
    assert_eq!(error.code(), "bad-options");
}

/// The codes JavaScript callers branch on (`error.code`): one per kind of failure, stable.
#[test]
fn error_codes_name_the_kind_of_failure() {
    let truncated = weights::inspect(b"RESNET".to_vec()).unwrap_err();
    assert_eq!(truncated.code(), "bad-weights", "{truncated}");
    let missing = Error::MissingKey {
        key: "fc.bias".into(),
        arch: "resnet8".into(),
    };
    assert_eq!(missing.code(), "bad-weights");
    assert_eq!(Error::InvalidInput("empty".into()).code(), "bad-input");
    assert_eq!(Error::Unsupported("WebGPU".into()).code(), "unsupported");
    assert_eq!(Error::Backend("lost".into()).code(), "backend-failed");
    assert_eq!(Error::Training("one class".into()).code(), "bad-training");
}
