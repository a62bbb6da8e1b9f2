//! Logits of the library and of the `resnet` tool against PyTorch's, on the same weights.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use common::*;
use resnet_web::inference::classifier::{images_tensor, logits};
use resnet_web::inference::packed::{FeatureMap, PackedResNet};
use resnet_web::ops::readback::{block_on, read_floats};
use resnet_web::resnet::{Arch, ResNetConfig};
use resnet_web::weights::{self, npy};

const TOLERANCE: f32 = 1e-4;

fn library_logits(weights_file: Vec<u8>, arch: Arch, input: [usize; 4]) -> Vec<f32> {
    model_logits(weights_file, arch, input, false)
}

/// Logits of the model from `weights_file`, with its BatchNorms folded if `folded`.
fn model_logits(weights_file: Vec<u8>, arch: Arch, input: [usize; 4], folded: bool) -> Vec<f32> {
    let device = Device::flex();
    let config = ResNetConfig::new(arch, 1000, 3);
    let config = if arch == Arch::ResNet20 {
        ResNetConfig::new(arch, 10, 3)
    } else {
        config
    };
    let model = weights::load(weights_file, &config, &device).expect("weights load");
    let model = if folded {
        model.fold_batch_norm()
    } else {
        model
    };
    let images = images_tensor(synthetic_images(input), input, &device).unwrap();
    logits(&model, images).unwrap()
}

#[test]
fn resnet18_matches_pytorch() {
    let file = synthetic_safetensors(RESNET18_KEYS, &[], &[]);
    let ours = library_logits(file, Arch::ResNet18, IMAGENET_INPUT);
    let error = max_abs_difference(&ours, &fixture_logits(RESNET18_LOGITS));
    println!("resnet18 max |ours - pytorch| = {error:e}");
    assert!(
        error < TOLERANCE,
        "resnet18 differs from PyTorch by {error}"
    );
}

#[test]
fn resnet50_matches_pytorch() {
    let file = synthetic_safetensors(RESNET50_KEYS, &[], &[]);
    let ours = library_logits(file, Arch::ResNet50, IMAGENET_INPUT);
    let error = max_abs_difference(&ours, &fixture_logits(RESNET50_LOGITS));
    println!("resnet50 max |ours - pytorch| = {error:e}");
    assert!(
        error < TOLERANCE,
        "resnet50 differs from PyTorch by {error}"
    );
}

#[test]
fn resnet20_from_pytorch_written_safetensors_and_pth_matches_pytorch() {
    let expected = fixture_logits(RESNET20_LOGITS);
    let pth = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/resnet20.pth"
    ))
    .unwrap();
    for file in [RESNET20_SAFETENSORS.to_vec(), pth] {
        let ours = library_logits(file, Arch::ResNet20, CIFAR_INPUT);
        let error = max_abs_difference(&ours, &expected);
        assert!(
            error < TOLERANCE,
            "resnet20 differs from PyTorch by {error}"
        );
    }
}

/// A weight file, its architecture, the input shape and PyTorch's logits (`.npy`).
type BlockShapeCase = (Vec<u8>, Arch, [usize; 4], &'static [u8]);

/// The three block shapes, each with its weight file, input and PyTorch's logits: basic
/// with projection shortcuts (ResNet-18), bottleneck (ResNet-50) and basic with zero-pad
/// shortcuts (ResNet-20).
fn block_shape_cases() -> [BlockShapeCase; 3] {
    [
        (
            synthetic_safetensors(RESNET18_KEYS, &[], &[]),
            Arch::ResNet18,
            IMAGENET_INPUT,
            RESNET18_LOGITS,
        ),
        (
            synthetic_safetensors(RESNET50_KEYS, &[], &[]),
            Arch::ResNet50,
            IMAGENET_INPUT,
            RESNET50_LOGITS,
        ),
        (
            RESNET20_SAFETENSORS.to_vec(),
            Arch::ResNet20,
            CIFAR_INPUT,
            RESNET20_LOGITS,
        ),
    ]
}

#[test]
fn batch_norm_folded_into_convolutions_still_matches_pytorch() {
    for (file, arch, input, expected) in block_shape_cases() {
        let folded = model_logits(file, arch, input, true);
        let error = max_abs_difference(&folded, &fixture_logits(expected));
        println!("{arch:?} folded: max |ours - pytorch| = {error:e}");
        assert!(error < TOLERANCE, "{arch:?} folded differs by {error}");
    }
}

/// A model from `weights_file`, folded, on the CPU.
fn folded_model(weights_file: Vec<u8>, arch: Arch) -> resnet_web::resnet::ResNet {
    let classes = if arch == Arch::ResNet20 { 10 } else { 1000 };
    let config = ResNetConfig::new(arch, classes, 3);
    weights::load(weights_file, &config, &Device::flex())
        .expect("weights load")
        .fold_batch_norm()
}

/// The CPU layout (`src/inference/packed.rs`, what the page runs on the CPU) against PyTorch.
#[test]
fn cpu_layout_matches_pytorch() {
    for (file, arch, input, expected) in block_shape_cases() {
        let packed = block_on(PackedResNet::new(&folded_model(file, arch))).unwrap();
        let images = FeatureMap::from_nchw(&synthetic_images(input), input);
        let ours = packed.forward(&images).unwrap();
        let error = max_abs_difference(&ours, &fixture_logits(expected));
        println!("{arch:?} CPU layout: max |ours - pytorch| = {error:e}");
        assert!(error < TOLERANCE, "{arch:?} CPU layout differs by {error}");
    }
}

/// Odd, non-square input (borders, strides and the max pool's edges) and the heat map,
/// against burn's own forward on the same folded model.
#[test]
fn cpu_layout_matches_burn_on_odd_shapes_and_class_maps() {
    let model = folded_model(
        synthetic_safetensors(RESNET18_KEYS, &[], &[]),
        Arch::ResNet18,
    );
    let packed = block_on(PackedResNet::new(&model)).unwrap();
    let shape = [2, 3, 37, 29];
    let values = synthetic_images(shape);
    let images = images_tensor(values.clone(), shape, &Device::flex()).unwrap();
    let (burn_logits, burn_maps) = model.forward_with_maps(images);
    let features = packed
        .features(&FeatureMap::from_nchw(&values, shape))
        .unwrap();
    let logits = packed.logits(&features);
    let error = max_abs_difference(&logits, &read_floats(burn_logits).unwrap());
    assert!(error < TOLERANCE, "logits differ from burn's by {error}");
    let [_, classes, height, width] = burn_maps.dims();
    assert_eq!([features.height, features.width], [height, width]);
    let burn_maps = read_floats(burn_maps).unwrap();
    for (image, class) in [(0, 0), (1, 417), (1, classes - 1)] {
        let start = (image * classes + class) * height * width;
        let expected = &burn_maps[start..start + height * width];
        let error = max_abs_difference(&packed.class_map(&features, image, class), expected);
        assert!(error < TOLERANCE, "map of class {class} differs by {error}");
    }
}

#[test]
fn cpu_layout_refuses_an_unfolded_model_and_bad_input() {
    let file = RESNET20_SAFETENSORS.to_vec();
    let config = ResNetConfig::new(Arch::ResNet20, 10, 3);
    let model = weights::load(file, &config, &Device::flex()).unwrap();
    let error = block_on(PackedResNet::new(&model)).unwrap_err();
    assert!(error.to_string().contains("fold_batch_norm"), "{error}");
    let packed = block_on(PackedResNet::new(&model.fold_batch_norm())).unwrap();
    let gray = FeatureMap::from_nchw(&[0.5; 1024], [1, 1, 32, 32]);
    let error = packed.forward(&gray).unwrap_err();
    assert!(error.to_string().contains("3 input channel(s)"), "{error}");
    let empty = FeatureMap::from_nchw(&[], [0, 3, 32, 32]);
    assert!(packed.forward(&empty).is_err());
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("resnet-web-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn resnet_tool(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_resnet"))
        .args(args)
        .output()
        .expect("the resnet binary runs")
}

#[test]
fn cli_logits_match_pytorch_for_resnet18_and_resnet50() {
    let dir = TempDir::new("cli-logits");
    let input = dir.file("input.npy");
    std::fs::write(
        &input,
        npy::write_f32(&IMAGENET_INPUT, &synthetic_images(IMAGENET_INPUT)),
    )
    .unwrap();
    for (arch, keys, expected) in [
        ("resnet18", RESNET18_KEYS, RESNET18_LOGITS),
        ("resnet50", RESNET50_KEYS, RESNET50_LOGITS),
    ] {
        let weights_path = dir.file(&format!("{arch}.safetensors"));
        std::fs::write(&weights_path, synthetic_safetensors(keys, &[], &[])).unwrap();
        let output = dir.file(&format!("{arch}.logits.npy"));
        let run = resnet_tool(&[
            "logits",
            "--arch",
            arch,
            "--weights",
            &weights_path,
            "--input",
            &input,
            "--output",
            &output,
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let ours = npy::read_f32(&std::fs::read(&output).unwrap()).unwrap();
        assert_eq!(ours.shape, vec![2, 1000]);
        let error = max_abs_difference(&ours.data, &fixture_logits(expected));
        assert!(
            error < TOLERANCE,
            "{arch} via the CLI differs from PyTorch by {error}"
        );
    }
}

#[test]
fn cli_reports_bad_input_without_panicking() {
    let dir = TempDir::new("cli-errors");
    let weights_path = dir.file("resnet20.safetensors");
    std::fs::write(&weights_path, RESNET20_SAFETENSORS).unwrap();
    let input = dir.file("gray.npy");
    std::fs::write(&input, npy::write_f32(&[1, 1, 32, 32], &[0.5; 1024])).unwrap();
    let output = dir.file("out.npy");
    let run = resnet_tool(&[
        "logits",
        "--arch",
        "resnet20",
        "--weights",
        &weights_path,
        "--input",
        &input,
        "--output",
        &output,
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("3 input channel(s) but the input has 1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let run = resnet_tool(&["logits", "--arch", "resnet99", "--weights", &weights_path]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown architecture 'resnet99'"));
}

#[test]
fn cli_info_describes_weight_files() {
    let dir = TempDir::new("cli-info");
    let path = dir.file("resnet50.safetensors");
    std::fs::write(&path, synthetic_safetensors(RESNET50_KEYS, &[], &[])).unwrap();
    let run = resnet_tool(&["info", &path]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("architecture:   resnet50"), "{stdout}");
    assert!(stdout.contains("parameters:     25557032"), "{stdout}");
    assert!(stdout.contains("classes:        1000"), "{stdout}");

    let pth = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resnet20.pth");
    let stdout = String::from_utf8(resnet_tool(&["info", pth]).stdout).unwrap();
    assert!(stdout.contains("architecture:   resnet20"), "{stdout}");
    assert!(stdout.contains("format:         PyTorch"), "{stdout}");
    assert!(stdout.contains("parameters:     269722"), "{stdout}");
}

#[test]
fn the_comparisons_see_nan_and_infinity() {
    // A broken model's outputs: NaN anywhere, or infinity on both sides, is never "close".
    // What every parity test asserts of its error.
    let passes = |error: f32| error < 1e-3;
    let fine = [0.5, -1.0, 2.0];
    assert!(passes(max_abs_difference(&fine, &fine)));
    for broken in [
        [f32::NAN, -1.0, 2.0],
        [0.5, f32::NAN, f32::NAN],
        [0.5, -1.0, f32::INFINITY],
    ] {
        assert!(!passes(max_abs_difference(&broken, &fine)), "{broken:?}");
        assert!(!passes(max_abs_difference(&fine, &broken)), "{broken:?}");
        assert!(
            !passes(max_relative_difference(&broken, &fine)),
            "{broken:?}"
        );
    }
    let infinite = [f32::INFINITY; 3];
    assert!(max_abs_difference(&infinite, &infinite).is_nan());
    assert!(largest_f64([0.0, f64::NAN, 1.0]).is_nan());
    assert_eq!(largest([0.25, 3.0, 1.0]), 3.0);
}
