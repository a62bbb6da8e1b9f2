//! The ResNet family itself: sizes, shapes, BatchNorm modes.
#![cfg(not(target_arch = "wasm32"))]

use burn::module::Module;
use burn::prelude::*;
use resnet_web::Error;
use resnet_web::resnet::{Arch, ResNet, ResNetConfig, Shortcut};

fn params(arch: Arch, classes: usize, channels: usize) -> usize {
    ResNet::new(&ResNetConfig::new(arch, classes, channels), &Device::flex())
        .unwrap()
        .num_trainable_params()
}

#[test]
fn parameter_counts_equal_torchvision_and_he_et_al() {
    // torchvision.models.resnetXX(weights=None), sum(p.numel() for p in model.parameters())
    assert_eq!(params(Arch::ResNet18, 1000, 3), 11_689_512);
    assert_eq!(params(Arch::ResNet34, 1000, 3), 21_797_672);
    assert_eq!(params(Arch::ResNet50, 1000, 3), 25_557_032);
    assert_eq!(params(Arch::ResNet101, 1000, 3), 44_549_160);
    assert_eq!(params(Arch::ResNet152, 1000, 3), 60_192_808);
    // He et al., table 6, to the digits the paper gives (option A shortcuts).
    for (arch, millions, last_digit) in [
        (Arch::ResNet20, 0.27, 0.01),
        (Arch::ResNet32, 0.46, 0.01),
        (Arch::ResNet44, 0.66, 0.01),
        (Arch::ResNet56, 0.85, 0.01),
        (Arch::ResNet110, 1.7, 0.1),
    ] {
        let count = params(arch, 10, 3) as f64 / 1e6;
        assert!(
            (count - millions).abs() <= last_digit / 2.0,
            "{arch}: {count}M"
        );
    }
    assert_eq!(params(Arch::ResNet20, 10, 3), 269_722);
}

#[test]
fn any_channel_and_class_count() {
    let device = Device::flex();
    for (arch, channels, classes, size) in [
        (Arch::ResNet20, 1, 10, 28),
        (Arch::ResNet18, 1, 7, 40),
        (Arch::ResNet50, 4, 3, 32),
    ] {
        let model = ResNet::new(&ResNetConfig::new(arch, classes, channels), &device).unwrap();
        let logits = model.forward(Tensor::ones([2, channels, size, size], &device));
        assert_eq!(logits.dims(), [2, classes], "{arch}");
        assert_eq!(model.in_channels(), channels);
        assert_eq!(model.num_classes(), classes);
    }
}

#[test]
fn option_b_shortcuts_for_cifar_add_projections() {
    let a = params(Arch::ResNet20, 10, 3);
    let b = ResNet::new(
        &ResNetConfig::new(Arch::ResNet20, 10, 3).with_shortcut(Shortcut::Projection),
        &Device::flex(),
    )
    .unwrap()
    .num_trainable_params();
    // Two 1x1 projections with BatchNorm: 16->32 and 32->64.
    assert_eq!(b - a, 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64);
}

#[test]
fn invalid_configs_and_inputs_are_errors() {
    let device = Device::flex();
    assert!(matches!(
        ResNet::new(&ResNetConfig::new(Arch::ResNet18, 0, 3), &device),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(Arch::parse("resnet-18"), Ok(Arch::ResNet18)));
    assert!(
        Arch::parse("vgg16")
            .unwrap_err()
            .to_string()
            .contains("resnet18")
    );
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet20, 10, 3), &device).unwrap();
    let error = model
        .try_forward(Tensor::ones([1, 1, 32, 32], &device))
        .unwrap_err();
    assert!(error.to_string().contains("3 input channel(s)"), "{error}");
}

#[test]
fn batch_norm_uses_batch_statistics_in_train_mode_and_running_ones_in_eval() {
    let device = Device::flex().autodiff();
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet20, 10, 3), &device)
        .unwrap()
        .train();
    // Inputs far from the initial running statistics (mean 0, variance 1).
    let images = Tensor::<4>::ones([4, 3, 8, 8], &device).mul_scalar(5.0)
        + Tensor::random([4, 3, 8, 8], burn::tensor::Distribution::Default, &device);

    let before = model
        .bn1
        .as_ref()
        .unwrap()
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let train_logits = model.forward(images.clone());
    let after = model
        .bn1
        .as_ref()
        .unwrap()
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(before.iter().all(|&mean| mean == 0.0));
    assert!(
        after.iter().any(|&mean| mean.abs() > 1e-3),
        "train mode updates running means"
    );

    // In train mode bn1's output has zero mean per channel over the batch.
    let stem = model
        .bn1
        .as_ref()
        .unwrap()
        .forward(model.conv1.forward(images.clone()));
    let channel_means = stem
        .mean_dim(0)
        .mean_dim(2)
        .mean_dim(3)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(
        channel_means.iter().all(|mean| mean.abs() < 1e-3),
        "{channel_means:?}"
    );

    // Eval mode uses the running statistics: different output, and no update.
    let eval = model.valid();
    let eval_logits = eval.forward(images.clone());
    let unchanged = eval
        .bn1
        .as_ref()
        .unwrap()
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let train_values = train_logits.into_data().try_to_vec::<f32>().unwrap();
    let eval_values = eval_logits.into_data().try_to_vec::<f32>().unwrap();
    assert_ne!(train_values, eval_values);
    assert_eq!(unchanged.len(), 16);
    let again = eval
        .forward(images)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(
        eval_values, again,
        "eval mode is deterministic and stateless"
    );
}

/// The heat map's maps are the classifier applied at every position: their spatial mean plus
/// the class bias is exactly the logit (Zhou et al.'s identity for global average pooling).
#[test]
fn class_activation_maps_average_to_the_logits() {
    let device = Device::flex();
    let model = ResNet::new(&ResNetConfig::new(Arch::ResNet8, 5, 1), &device).unwrap();
    let input = Tensor::<4>::random([2, 1, 28, 28], burn::tensor::Distribution::Default, &device);
    let (logits, maps) = model.forward_with_maps(input.clone());
    assert_eq!(maps.dims(), [2, 5, 7, 7]);
    let bias = model.fc.bias.as_ref().unwrap().val().unsqueeze::<2>();
    let from_maps = maps.mean_dim(3).mean_dim(2).reshape([2, 5]) + bias;
    let difference: f32 = (from_maps - logits.clone()).abs().max().into_scalar();
    assert!(difference < 1e-4, "{difference}");
    let plain: f32 = (model.forward(input) - logits).abs().max().into_scalar();
    assert!(plain < 1e-6, "{plain}");
}
