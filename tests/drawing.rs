//! Digits as a mouse draws them on the page's canvas (280x280, white, an 18-pixel round
//! black pen), several strokes each (`tests/fixtures/drawn-digits.json`, which the page test
//! draws too), at two sizes and two places: the shipped digit model reads at least 9 of 10
//! in each case through the page's preparation.
#![cfg(not(target_arch = "wasm32"))]

use burn::prelude::*;
use resnet_web::data::preprocess::InputKind;
use resnet_web::data::shipped;
use resnet_web::inference::classifier::{Classifier, Engine};
use resnet_web::ops::readback::block_on;

const CANVAS: usize = 280;
const PEN: f32 = 18.0;
const DRAWN: &str = include_str!("fixtures/drawn-digits.json");

/// The page's canvas after `strokes` (unit-box points) drawn in a `size`-pixel box at
/// (`left`, `top`): RGBA, antialiased by each pixel's distance to the pen's path.
fn draw(strokes: &[Vec<[f32; 2]>], size: f32, left: f32, top: f32) -> Vec<u8> {
    let mut ink = vec![0.0f32; CANVAS * CANVAS];
    for stroke in strokes {
        let points: Vec<[f32; 2]> = stroke
            .iter()
            .map(|[x, y]| [left + x * size, top + y * size])
            .collect();
        for pair in points.windows(2) {
            let ([ax, ay], [bx, by]) = (pair[0], pair[1]);
            for (index, value) in ink.iter_mut().enumerate() {
                let (px, py) = ((index % CANVAS) as f32 + 0.5, (index / CANVAS) as f32 + 0.5);
                let (dx, dy) = (bx - ax, by - ay);
                let t = (((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy).max(1e-6))
                    .clamp(0.0, 1.0);
                let distance = (px - ax - t * dx).hypot(py - ay - t * dy);
                *value = value.max((PEN / 2.0 + 0.5 - distance).clamp(0.0, 1.0));
            }
        }
    }
    ink.iter()
        .flat_map(|&v| {
            let gray = (255.0 * (1.0 - v)).round() as u8;
            [gray, gray, gray, 255]
        })
        .collect()
}

fn drawn_digits() -> Vec<(String, Vec<Vec<[f32; 2]>>)> {
    let json: serde_json::Value = serde_json::from_str(DRAWN).unwrap();
    json["digits"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(label, strokes)| {
            let strokes = strokes
                .as_array()
                .unwrap()
                .iter()
                .map(|stroke| {
                    stroke
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
                        .collect()
                })
                .collect();
            (label.clone(), strokes)
        })
        .collect()
}

#[test]
fn mouse_drawn_digits_read_right_at_two_sizes_and_two_places() {
    let model = include_bytes!("../models/mnist-resnet20.bpk").to_vec();
    let classifier = block_on(Classifier::for_images(
        model,
        &Device::flex(),
        Engine::Packed,
        InputKind::Digit,
        shipped::digit_classes().to_vec(),
    ))
    .unwrap();
    let digits = drawn_digits();
    assert_eq!(digits.len(), 10);
    let mut failures = Vec::new();
    for (size, left, top) in [
        (200.0, 40.0, 40.0),
        (200.0, 10.0, 70.0),
        (110.0, 85.0, 85.0),
        (110.0, 150.0, 20.0),
    ] {
        let mut correct = 0;
        let mut read = Vec::new();
        for (label, strokes) in &digits {
            let rgba = draw(strokes, size, left, top);
            let probabilities = block_on(classifier.classify_image(&rgba, CANVAS, CANVAS)).unwrap();
            let top_class = (0..10)
                .max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]))
                .unwrap();
            read.push(format!("{label}->{top_class}"));
            correct += usize::from(top_class.to_string() == *label);
        }
        println!(
            "{size} px at ({left}, {top}): {correct}/10 ({})",
            read.join(" ")
        );
        if correct < 9 {
            failures.push(format!("{size} px at ({left}, {top}): {}", read.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
