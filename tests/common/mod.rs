//! Shared by the native and the in-browser tests: the fixtures, and the synthetic torchvision
//! weights that scripts/make_fixtures.py makes with the same formula.
#![allow(dead_code)]

use resnet_web::weights::npy;

pub const RESNET18_KEYS: &str = include_str!("../fixtures/resnet18.keys");
pub const RESNET50_KEYS: &str = include_str!("../fixtures/resnet50.keys");
pub const RESNET18_LOGITS: &[u8] = include_bytes!("../fixtures/resnet18.logits.npy");
pub const RESNET50_LOGITS: &[u8] = include_bytes!("../fixtures/resnet50.logits.npy");
pub const RESNET20_SAFETENSORS: &[u8] = include_bytes!("../fixtures/resnet20.safetensors");
pub const RESNET20_LOGITS: &[u8] = include_bytes!("../fixtures/resnet20.logits.npy");

/// Input shapes the fixtures' logits were computed for.
pub const IMAGENET_INPUT: [usize; 4] = [2, 3, 64, 64];
pub const CIFAR_INPUT: [usize; 4] = [4, 3, 32, 32];

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64 of (fnv1a(name) + (i + 1) * golden), top 53 bits, in [0, 1).
pub fn uniform01(name: &str, count: usize) -> impl Iterator<Item = f64> {
    let seed = fnv1a(name);
    (0..count as u64).map(move |index| {
        let mut z = seed.wrapping_add((index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The value of every tensor of a torchvision state_dict (`synthetic` in make_fixtures.py).
pub fn synthetic(name: &str, shape: &[usize]) -> Vec<f32> {
    let count = shape.iter().product();
    let values = uniform01(name, count);
    let values: Vec<f64> = match shape.len() {
        4 => {
            let bound = (3.0 / (shape[1] * shape[2] * shape[3]) as f64).sqrt();
            values.map(|u| (2.0 * u - 1.0) * bound).collect()
        }
        2 => {
            let bound = 1.0 / (shape[1] as f64).sqrt();
            values.map(|u| (2.0 * u - 1.0) * bound).collect()
        }
        _ if name.ends_with("running_var") || name.ends_with("weight") => {
            values.map(|u| 0.5 + u).collect()
        }
        _ if name == "fc.bias" => values.map(|u| 0.1 * (2.0 * u - 1.0)).collect(),
        _ => values.map(|u| 0.2 * (2.0 * u - 1.0)).collect(),
    };
    values.into_iter().map(|value| value as f32).collect()
}

/// The images the fixtures' logits were computed for, in [-1, 1).
pub fn synthetic_images(shape: [usize; 4]) -> Vec<f32> {
    synthetic("input", &shape)
        .into_iter()
        .map(|value| value * 2.0 - 1.0)
        .collect()
}

/// A `.keys` manifest: (name, dtype, shape) of every tensor of torchvision's state_dict.
pub fn parse_keys(manifest: &str) -> Vec<(String, String, Vec<usize>)> {
    manifest
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next().expect("name").to_string();
            let dtype = parts.next().expect("dtype").to_string();
            let shape = parts
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|dim| !dim.is_empty())
                .map(|dim| dim.parse().expect("dimension"))
                .collect();
            (name, dtype, shape)
        })
        .collect()
}

/// A safetensors file as `safetensors.torch.save_file(model.state_dict())` writes it, with
/// the synthetic values; `extra` adds float tensors, `skip` leaves tensors out.
pub fn synthetic_safetensors(
    manifest: &str,
    extra: &[(&str, Vec<usize>)],
    skip: &[&str],
) -> Vec<u8> {
    let mut tensors: Vec<(String, &str, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, dtype, shape) in parse_keys(manifest) {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let bytes = match dtype.as_str() {
            "float32" => synthetic(&name, &shape)
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect(),
            "int64" => 0i64.to_le_bytes().repeat(shape.iter().product()),
            other => panic!("unexpected dtype {other} in the manifest"),
        };
        let dtype = if dtype == "int64" { "I64" } else { "F32" };
        tensors.push((name, dtype, shape, bytes));
    }
    for (name, shape) in extra {
        let bytes = synthetic(name, shape)
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        tensors.push((name.to_string(), "F32", shape.clone(), bytes));
    }
    write_safetensors(&tensors)
}

/// The safetensors layout: u64 header length, JSON header, then the data.
pub fn write_safetensors(tensors: &[(String, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut offset = 0;
    for (index, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        if index > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            dims.join(","),
            offset + bytes.len()
        ));
        offset += bytes.len();
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for (_, _, _, bytes) in tensors {
        file.extend_from_slice(bytes);
    }
    file
}

pub fn fixture_logits(bytes: &[u8]) -> Vec<f32> {
    npy::read_f32(bytes).expect("fixture logits").data
}

/// The largest of `differences`, NaN if any is NaN. `f32::max` drops a NaN, so a model
/// whose outputs were all NaN (or infinite: inf - inf is NaN) would differ by 0 from
/// anything; with this, every `error < tolerance` fails on it.
pub fn largest(differences: impl IntoIterator<Item = f32>) -> f32 {
    differences.into_iter().fold(0.0, |worst, difference| {
        if worst.is_nan() || difference.is_nan() {
            f32::NAN
        } else {
            worst.max(difference)
        }
    })
}

/// `largest` in f64.
pub fn largest_f64(differences: impl IntoIterator<Item = f64>) -> f64 {
    differences.into_iter().fold(0.0, |worst, difference| {
        if worst.is_nan() || difference.is_nan() {
            f64::NAN
        } else {
            worst.max(difference)
        }
    })
}

pub fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit counts differ");
    largest(a.iter().zip(b).map(|(x, y)| (x - y).abs()))
}

/// Replaces every float tensor of a model by `synthetic(torchvision name, shape)`: the same
/// starting weights on every backend and platform, without burn's random numbers.
#[derive(Default)]
pub struct SyntheticWeights {
    path: resnet_web::weights::ModulePath,
}

impl burn::module::ModuleMapper for SyntheticWeights {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::Tensor<D>>,
    ) -> burn::module::Param<burn::Tensor<D>> {
        let name = resnet_web::weights::torchvision_key(&self.path.current());
        param.map(|tensor| {
            let shape = tensor.dims();
            let values = synthetic(&name, &shape);
            burn::Tensor::from_data(
                burn::tensor::TensorData::new(values, shape),
                &tensor.device(),
            )
        })
    }
}

/// Three classes a ResNet must tell apart: horizontal bars, vertical bars, a centred blob;
/// 12x12, one channel.
pub fn three_pattern_dataset(count: usize, seed: u64) -> resnet_web::data::Dataset {
    let size = 12;
    let mut rng = resnet_web::data::rng::SplitMix::new(seed);
    let mut dataset = resnet_web::data::Dataset::for_input(
        resnet_web::data::preprocess::InputKind::Plain { channels: 1, size },
        ["horizontal", "vertical", "blob"]
            .map(String::from)
            .to_vec(),
    );
    for index in 0..count {
        let class = index % 3;
        let phase = rng.below(3);
        let mut image = Vec::with_capacity(size * size);
        for y in 0..size {
            for x in 0..size {
                let on = match class {
                    0 => (y + phase).is_multiple_of(3),
                    1 => (x + phase).is_multiple_of(3),
                    _ => (3..9).contains(&x) && (3..9).contains(&y),
                };
                let noise = rng.below(60) as f32 / 255.0;
                image.push(if on { 195.0 / 255.0 + noise } else { noise });
            }
        }
        dataset.push(&image, class).expect("a 12x12 image");
    }
    dataset
}

/// The loss curve that must come out the same natively, in the browser on the CPU and (more
/// loosely) on WebGPU: a ResNet-8 from synthetic weights, trained with Adam on the three
/// patterns, with augmentation, for `LOSS_CURVE_STEPS` steps.
pub const LOSS_CURVE_STEPS: usize = 12;
pub const LOSS_CURVE: &str = include_str!("../fixtures/loss-curve.txt");

pub async fn reference_loss_curve(training_device: &burn::prelude::Device) -> Vec<f32> {
    use burn::module::Module;
    use resnet_web::data::Augment;
    use resnet_web::resnet::{Arch, ResNet, ResNetConfig};
    use resnet_web::training::train::{OptimizerKind, Schedule, TrainConfig, TrainingRun};
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 3, 1), training_device)
        .expect("a ResNet-8")
        .map(&mut SyntheticWeights::default());
    let config = TrainConfig {
        epochs: 2,
        batch_size: 16,
        learning_rate: 0.002,
        weight_decay: 1e-4,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::OneCycle,
        augment: Augment {
            crop_padding: 1,
            flip: true,
        },
        seed: 5,
    };
    let mut run = TrainingRun::new(model, three_pattern_dataset(96, 1), config).expect("a run");
    let mut losses = Vec::new();
    for _ in 0..LOSS_CURVE_STEPS {
        losses.push(run.step(training_device).await.expect("a step").loss);
    }
    losses
}

pub fn parse_loss_curve(text: &str) -> Vec<f32> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.trim().parse().expect("a loss"))
        .collect()
}

/// The largest difference between two loss curves, relative to the reference's values.
pub fn max_relative_difference(curve: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(curve.len(), reference.len(), "curve lengths");
    largest(
        curve
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3)),
    )
}

/// Logits of the model from `file` (a weight file) on `device`, its BatchNorms folded or not.
#[cfg(not(target_arch = "wasm32"))]
pub fn model_logits(
    file: &[u8],
    config: &resnet_web::resnet::ResNetConfig,
    input: [usize; 4],
    device: &burn::prelude::Device,
    folded: bool,
) -> Vec<f32> {
    use resnet_web::inference::classifier::{images_tensor, logits};
    let model = resnet_web::weights::load(file.to_vec(), config, device).expect("weights load");
    let model = if folded {
        model.fold_batch_norm()
    } else {
        model
    };
    let images = images_tensor(synthetic_images(input), input, device).unwrap();
    logits(&model, images).unwrap()
}
