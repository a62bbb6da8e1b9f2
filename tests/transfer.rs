//! Transfer learning on kept embeddings: a randomly initialised ResNet-18 (ImageNet stem,
//! 224 px) embeds three classes of pictures once each; a head trained on the embeddings
//! tells them apart; the whole ResNet with that head gives the head's predictions, with its
//! backbone untouched.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use resnet_web::data::preprocess::InputKind;
use resnet_web::data::rng::SplitMix;
use resnet_web::inference::classifier::{Classifier, Engine, probabilities};
use resnet_web::ops::readback::block_on;
use resnet_web::resnet::{Arch, ResNet, ResNetConfig};
use resnet_web::training::transfer::{HeadOptions, train_head, weights_with_head, with_head};
use resnet_web::weights;

use common::largest;

const SIDE: usize = 64;

/// Stripes across, stripes down, a blob: gray RGBA pictures with a random phase and noise.
fn picture(class: usize, rng: &mut SplitMix) -> Vec<u8> {
    let phase = rng.below(8);
    let mut rgba = Vec::with_capacity(SIDE * SIDE * 4);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let on = match class {
                0 => (y + phase) % 8 < 4,
                1 => (x + phase) % 8 < 4,
                _ => {
                    ((x as f32 - 28.0 - phase as f32).powi(2) + (y as f32 - 32.0).powi(2)).sqrt()
                        < 16.0
                }
            };
            let value = (if on { 200 } else { 30 } + rng.below(50)) as u8;
            rgba.extend([value, value, value, 255]);
        }
    }
    rgba
}

fn random_resnet18() -> (ResNet, Vec<u8>) {
    let config = ResNetConfig::new(Arch::ResNet18, 1000, 3);
    let model = ResNet::new(&config, &Device::flex()).unwrap();
    let file = weights::save_burnpack(&model, &config).unwrap();
    (model, file)
}

#[test]
fn a_head_on_kept_embeddings_separates_three_classes_and_becomes_the_models_classifier() {
    let (base, file) = random_resnet18();
    let classifier = |engine| {
        block_on(Classifier::for_images(
            file.clone(),
            &Device::flex(),
            engine,
            InputKind::ImageNet,
            Vec::new(),
        ))
        .unwrap()
    };
    let (packed, burn) = (classifier(Engine::Packed), classifier(Engine::Burn));
    let mut rng = SplitMix::new(7);
    let mut embeddings = Vec::new();
    let mut labels = Vec::new();
    let mut pictures = Vec::new();
    for class in 0..3 {
        for _ in 0..24 {
            let rgba = picture(class, &mut rng);
            let embedding = block_on(packed.embed_image(&rgba, SIDE, SIDE)).unwrap();
            assert_eq!(embedding.len(), 512);
            embeddings.extend(embedding);
            labels.push(class);
            pictures.push(rgba);
        }
    }
    // Both engines embed alike.
    let by_burn = block_on(burn.embed_image(&pictures[0], SIDE, SIDE)).unwrap();
    let gap = largest(
        by_burn
            .iter()
            .zip(&embeddings[..512])
            .map(|(a, b)| (a - b).abs()),
    );
    assert!(gap < 1e-4, "engines differ by {gap}");

    let report = train_head(&embeddings, &labels, 3, &HeadOptions::DEFAULT).unwrap();
    let validation = report.validation.as_ref().expect("a quarter held out");
    println!(
        "validation {:.3} on {} pictures, train {:.3}, loss {:.4} -> {:.4}",
        validation.accuracy(),
        validation.count(),
        report.train.accuracy(),
        report.losses[0],
        report.losses.last().unwrap()
    );
    assert_eq!(validation.count(), 18);
    assert!(
        validation.accuracy() >= 0.9,
        "validation {}",
        validation.accuracy()
    );
    assert!(report.losses.last().unwrap() < &report.losses[0]);

    // The whole ResNet with the head: the head's probabilities, and the old backbone.
    let model = with_head(base.clone(), &report.head).unwrap();
    assert_eq!(model.num_classes(), 3);
    let whole = block_on(Classifier::from_model(
        model.clone(),
        &Device::flex(),
        Engine::Packed,
        InputKind::ImageNet,
        vec!["across".into(), "down".into(), "blob".into()],
    ))
    .unwrap();
    for (index, rgba) in pictures.iter().enumerate().step_by(5) {
        let expected = probabilities(
            &report
                .head
                .logits(&embeddings[index * 512..(index + 1) * 512]),
        );
        let got = block_on(whole.classify_image(rgba, SIDE, SIDE)).unwrap();
        let gap = largest(got.iter().zip(&expected).map(|(a, b)| (a - b).abs()));
        assert!(gap < 1e-3, "picture {index}: {got:?} against {expected:?}");
    }
    let backbone = |model: &ResNet| {
        model
            .conv1
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(backbone(&model), backbone(&base));
    // As a weight file: the base file's backbone with the head, which loads as any model.
    let exported = weights_with_head(file.clone(), &report.head).unwrap();
    assert_eq!(
        weights::inspect(exported.clone())
            .unwrap()
            .config
            .num_classes,
        3
    );
    let reloaded = block_on(Classifier::for_images(
        exported,
        &Device::flex(),
        Engine::Packed,
        InputKind::ImageNet,
        Vec::new(),
    ))
    .unwrap();
    assert_eq!(
        block_on(reloaded.classify_image(&pictures[0], SIDE, SIDE)).unwrap(),
        block_on(whole.classify_image(&pictures[0], SIDE, SIDE)).unwrap()
    );
}

#[test]
fn bad_training_sets_for_a_head_are_refused_by_name() {
    let options = HeadOptions::DEFAULT;
    let one_class = train_head(&[1.0, 2.0, 3.0, 4.0], &[0, 0], 1, &options).unwrap_err();
    assert!(
        one_class.to_string().contains("at least two classes"),
        "{one_class}"
    );
    let empty = train_head(&[1.0, 2.0, 3.0, 4.0], &[0, 0], 2, &options).unwrap_err();
    assert!(
        empty.to_string().contains("class 2 has no pictures"),
        "{empty}"
    );
    let ragged = train_head(&[1.0, 2.0, 3.0], &[0, 1], 2, &options).unwrap_err();
    assert!(
        ragged
            .to_string()
            .contains("3 embedding values for 2 labels"),
        "{ragged}"
    );
    let not_finite = train_head(&[1.0, f32::NAN], &[0, 1], 2, &options).unwrap_err();
    assert_eq!(not_finite.code(), "bad-training");
    // A head for another backbone does not fit.
    let (base, _) = random_resnet18();
    let small = train_head(&[1.0, 0.0, 0.0, 1.0], &[0, 1], 2, &options).unwrap();
    assert!(
        with_head(base, &small.head)
            .unwrap_err()
            .to_string()
            .contains("gives 512")
    );
}
