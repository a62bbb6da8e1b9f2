//! Pixels to model input: torchvision's ImageNet transform to the reference values, and
//! MNIST's digit preparation.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use resnet_web::data::preprocess::{self, DIGIT_SIZE, Rgba};

/// Noise with opaque alpha (`synthetic_rgba` in make_fixtures.py).
fn synthetic_rgba(width: usize, height: usize) -> Vec<u8> {
    uniform01(&format!("image-{width}x{height}"), width * height * 4)
        .enumerate()
        .map(|(index, u)| {
            if index % 4 == 3 {
                255
            } else {
                (u * 256.0).floor() as u8
            }
        })
        .collect()
}

#[test]
fn imagenet_transform_matches_torchvision() {
    for (width, height, fixture) in [
        (
            300,
            200,
            &include_bytes!("fixtures/imagenet-300x200.npy")[..],
        ),
        (
            200,
            300,
            &include_bytes!("fixtures/imagenet-200x300.npy")[..],
        ),
        (100, 80, &include_bytes!("fixtures/imagenet-100x80.npy")[..]),
    ] {
        let pixels = synthetic_rgba(width, height);
        let ours = preprocess::imagenet(&Rgba::new(&pixels, width, height).unwrap());
        assert_eq!(ours.len(), 3 * 224 * 224);
        // The fixture keeps every 7th row and column.
        let sampled: Vec<f32> = (0..3)
            .flat_map(|c| (0..224).step_by(7).map(move |y| (c, y)))
            .flat_map(|(c, y)| (0..224).step_by(7).map(move |x| (c, y, x)))
            .map(|(c, y, x)| ours[(c * 224 + y) * 224 + x])
            .collect();
        let error = max_abs_difference(&sampled, &fixture_logits(fixture));
        assert!(
            error < 1e-4,
            "{width}x{height}: differs from torchvision by {error}"
        );
    }
}

/// A white canvas with a black filled rectangle (a stand-in for a stroke).
fn drawing(width: usize, height: usize, ink: (usize, usize, usize, usize)) -> Vec<u8> {
    let (left, top, right, bottom) = ink;
    let mut pixels = vec![255u8; width * height * 4];
    for y in top..bottom {
        for x in left..right {
            let offset = (y * width + x) * 4;
            pixels[offset..offset + 3].fill(0);
        }
    }
    pixels
}

fn center_of_mass(image: &[f32]) -> (f32, f32) {
    let mass: f32 = image.iter().sum();
    let (mut x, mut y) = (0.0, 0.0);
    for (index, value) in image.iter().enumerate() {
        x += value * ((index % DIGIT_SIZE) as f32 + 0.5);
        y += value * ((index / DIGIT_SIZE) as f32 + 0.5);
    }
    (x / mass, y / mass)
}

fn ink_box(image: &[f32]) -> (usize, usize) {
    let inked: Vec<usize> = (0..image.len()).filter(|&i| image[i] > 0.5).collect();
    let xs = inked.iter().map(|i| i % DIGIT_SIZE);
    let ys = inked.iter().map(|i| i / DIGIT_SIZE);
    (
        xs.clone().max().unwrap() - xs.min().unwrap() + 1,
        ys.clone().max().unwrap() - ys.min().unwrap() + 1,
    )
}

#[test]
fn digit_is_inverted_scaled_to_20_and_centred_by_mass() {
    // Dark ink on white, tall and off-centre, in a large canvas.
    let pixels = drawing(200, 150, (20, 10, 60, 110));
    let digit = preprocess::digit(&Rgba::new(&pixels, 200, 150).unwrap());
    assert_eq!(digit.len(), DIGIT_SIZE * DIGIT_SIZE);
    assert_eq!(digit[0], 0.0, "the ground is dark, as in MNIST");
    let (x, y) = center_of_mass(&digit);
    assert!(
        (x - 14.0).abs() <= 0.5 && (y - 14.0).abs() <= 0.5,
        "centre of mass ({x}, {y})"
    );
    // 40x100 ink keeps its aspect: 20 tall, 8 wide.
    assert_eq!(ink_box(&digit), (8, 20));
}

#[test]
fn digit_on_a_transparent_canvas_is_ink_on_paper() {
    let mut pixels = vec![0u8; 64 * 64 * 4]; // transparent black: empty canvas
    for y in 20..40 {
        for x in 30..36 {
            pixels[(y * 64 + x) * 4 + 3] = 255; // opaque black stroke
        }
    }
    let transparent = preprocess::digit(&Rgba::new(&pixels, 64, 64).unwrap());
    let white = preprocess::digit(&Rgba::new(&drawing(64, 64, (30, 20, 36, 40)), 64, 64).unwrap());
    assert_eq!(transparent, white);
    assert!(transparent.iter().any(|&v| v > 0.9));
}

#[test]
fn light_ink_on_dark_ground_is_kept() {
    let mut pixels = drawing(50, 50, (10, 10, 40, 40));
    pixels
        .chunks_mut(4)
        .for_each(|p| p[..3].iter_mut().for_each(|v| *v = 255 - *v));
    let digit = preprocess::digit(&Rgba::new(&pixels, 50, 50).unwrap());
    assert_eq!(ink_box(&digit), (20, 20));
}

#[test]
fn a_28x28_image_on_a_dark_ground_is_taken_as_prepared() {
    // Light ink on black, off-centre and small: an MNIST-style file, not a drawing.
    let mut pixels = drawing(28, 28, (3, 4, 9, 12));
    pixels
        .chunks_mut(4)
        .for_each(|p| p[..3].iter_mut().for_each(|v| *v = 255 - *v));
    let image = Rgba::new(&pixels, 28, 28).unwrap();
    let expected: Vec<f32> = pixels.chunks(4).map(|p| f32::from(p[0]) / 255.0).collect();
    for prepared in [preprocess::digit(&image), preprocess::fashion(&image)] {
        assert!(
            max_abs_difference(&prepared, &expected) < 1e-6,
            "left as it is"
        );
    }
    // The same on white paper is a drawing: inverted, fitted and centred.
    let paper = drawing(28, 28, (3, 4, 9, 12));
    let digit = preprocess::digit(&Rgba::new(&paper, 28, 28).unwrap());
    assert_eq!(ink_box(&digit), (15, 20));
}

#[test]
fn blank_image_gives_an_empty_digit() {
    let digit = preprocess::digit(&Rgba::new(&[255; 16 * 16 * 4], 16, 16).unwrap());
    assert!(digit.iter().all(|&v| v == 0.0));
}

#[test]
fn bad_images_are_errors() {
    let error = Rgba::new(&[], 0, 10).unwrap_err().to_string();
    assert!(error.contains("empty"), "{error}");
    let error = Rgba::new(&[0; 12], 2, 2).unwrap_err().to_string();
    assert!(error.contains("has 16 bytes, not 12"), "{error}");
    // Refused by its dimensions, before anything is allocated.
    let error = Rgba::new(&[0; 4], 100_000, 100_000)
        .unwrap_err()
        .to_string();
    assert!(error.contains("scale it down"), "{error}");
    // A long thin image is bounded by its side, not its area (1x500,000 pixels is under
    // 4096x4096, and once asked the ImageNet path for 128M resampling taps).
    let long = vec![255u8; 4 * 500_000];
    let error = Rgba::new(&long, 1, 500_000).unwrap_err().to_string();
    assert!(error.contains("more than 4096 on a side"), "{error}");
    let error = Rgba::new(&long[..4 * 4097], 4097, 1)
        .unwrap_err()
        .to_string();
    assert!(error.contains("more than 4096 on a side"), "{error}");
}

#[test]
fn the_longest_thin_image_taken_prepares_within_its_crop() {
    // 1x4096: the shorter side resizes to 256, the longer to 1,048,576 rows, of which the
    // crop keeps 224; white in, white out.
    let pixels = vec![255u8; 4 * 4096];
    let image = Rgba::new(&pixels, 1, 4096).unwrap();
    let values = preprocess::imagenet_pixels(&image);
    assert_eq!(values.len(), 3 * 224 * 224);
    assert!(
        values.iter().all(|v| (v - 1.0).abs() < 1e-5),
        "{:?}",
        &values[..4]
    );
}

#[test]
fn garment_fills_the_field_and_is_centred_by_its_box() {
    // A wide dark object on a light ground, off-centre.
    let pixels = drawing(300, 200, (10, 120, 190, 180));
    let garment = preprocess::fashion(&Rgba::new(&pixels, 300, 200).unwrap());
    // 180x60 scales to 28x9, centred: columns 0..28, rows 10..19 (or 9..18).
    let (width, height) = ink_box(&garment);
    assert_eq!((width, height), (28, 9));
    let first_row = (0..garment.len()).find(|&i| garment[i] > 0.5).unwrap() / DIGIT_SIZE;
    assert!((9..=10).contains(&first_row), "first inked row {first_row}");
}

/// Pictures for models trained in the page: squeezed whole to the model's size, grayscale
/// over white or RGB, in [0, 1].
#[test]
fn plain_input_squeezes_the_whole_picture() {
    // 40x20: the left half black, the right half pure red.
    let (width, height) = (40, 20);
    let mut pixels = Vec::new();
    for _ in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(if x < 20 {
                &[0, 0, 0, 255]
            } else {
                &[255, 0, 0, 255]
            });
        }
    }
    let image = Rgba::new(&pixels, width, height).unwrap();
    let rgb = preprocess::plain(&image, 3, 8);
    assert_eq!(rgb.len(), 3 * 8 * 8);
    let at = |c: usize, x: usize, y: usize| rgb[(c * 8 + y) * 8 + x];
    assert_eq!((at(0, 0, 3), at(0, 7, 3)), (0.0, 1.0));
    assert!((at(1, 7, 3), at(2, 7, 3)) == (0.0, 0.0));
    let gray = preprocess::plain(&image, 1, 8);
    assert_eq!(gray.len(), 64);
    assert!(
        (gray[3 * 8 + 7] - 0.299).abs() < 1e-3,
        "red's luma: {}",
        gray[31]
    );
    assert_eq!(gray[3 * 8], 0.0);
}

/// `pixels` (RGBA, `width` x `height`) as a file of `format`, made by the `image` crate.
fn encoded(pixels: &[u8], width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let image = image::RgbaImage::from_raw(width, height, pixels.to_vec()).unwrap();
    let mut file = std::io::Cursor::new(Vec::new());
    match format {
        // JPEG has no alpha.
        image::ImageFormat::Jpeg => image::DynamicImage::ImageRgba8(image)
            .to_rgb8()
            .write_to(&mut file, format),
        _ => image.write_to(&mut file, format),
    }
    .unwrap();
    file.into_inner()
}

#[test]
fn png_and_jpeg_files_decode_to_their_pixels_and_others_are_refused_before_decoding() {
    let pixels = synthetic_rgba(37, 23);
    let png = encoded(&pixels, 37, 23, image::ImageFormat::Png);
    assert_eq!(
        preprocess::decode_image(&png).unwrap(),
        (pixels.clone(), 37, 23)
    );
    // JPEG is lossy: near, opaque, the same size.
    let smooth: Vec<u8> = (0..37 * 23 * 4)
        .map(|i| {
            if i % 4 == 3 {
                255
            } else {
                (i / 4 % 37 * 6) as u8
            }
        })
        .collect();
    let jpeg = encoded(&smooth, 37, 23, image::ImageFormat::Jpeg);
    let (decoded, width, height) = preprocess::decode_image(&jpeg).unwrap();
    assert_eq!((width, height), (37, 23));
    let worst = decoded
        .iter()
        .zip(&smooth)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 24, "JPEG off by {worst}");
    assert!(decoded.chunks(4).all(|pixel| pixel[3] == 255));
    // Too long a side, by its header: refused with the message of any other image.
    let long = encoded(&vec![255; 4097 * 4], 4097, 1, image::ImageFormat::Png);
    let error = preprocess::decode_image(&long).unwrap_err().to_string();
    assert!(
        error.contains("4097x1 pixels, more than 4096 on a side"),
        "{error}"
    );
    // Not an image, and an image cut short.
    let error = preprocess::decode_image(b"these bytes are text")
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a PNG or JPEG image"), "{error}");
    let error = preprocess::decode_image(&png[..png.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(error.contains("the image does not decode"), "{error}");
}
