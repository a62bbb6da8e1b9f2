//! Canvas pixels to model input. RGBA bytes of any size in (what `ImageData` holds),
//! `[channels, height, width]` floats out, prepared the way each model family was trained.

use std::ops::Range;

use crate::error::{Error, Result};

/// torchvision's ImageNet normalisation.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// torchvision's evaluation transform: Resize(256), CenterCrop(224).
pub const IMAGENET_RESIZE: usize = 256;
pub const IMAGENET_CROP: usize = 224;
/// MNIST: the digit's box is scaled into 20x20 and centred by mass in 28x28.
pub const DIGIT_SIZE: usize = 28;
const DIGIT_BOX: usize = 20;
/// Images with a longer side are refused rather than risk the tab's memory: a plane of
/// 4096x4096 f32 values is 64 MB, and every buffer here is sized by the sides. (The page
/// scales images down to 1024 pixels before sending them.)
pub const MAX_SIDE: usize = 4096;

/// A PNG or JPEG file's pixels as RGBA bytes, with its width and height: what a runtime
/// without a canvas (Deno, Node.js) classifies, and what native image folders read. Its
/// header's size is checked before anything is decoded, so a file that claims a huge image
/// costs nothing.
pub fn decode_image(bytes: &[u8]) -> Result<(Vec<u8>, usize, usize)> {
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .expect("reading from memory cannot fail")
    };
    let not_an_image = || Error::InvalidInput("not a PNG or JPEG image".into());
    let (width, height) = reader().into_dimensions().map_err(|_| not_an_image())?;
    let (width, height) = (width as usize, height as usize);
    // Saturating: a header may claim sides whose product overflows wasm32's usize.
    Rgba::check(
        width.saturating_mul(height).saturating_mul(4),
        width,
        height,
    )?;
    let rgba = reader()
        .decode()
        .map_err(|e| Error::InvalidInput(format!("the image does not decode ({e})")))?
        .into_rgba8();
    Ok((rgba.into_raw(), width, height))
}

/// A borrowed RGBA image, checked on construction.
#[derive(Debug, Clone, Copy)]
pub struct Rgba<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
}

impl<'a> Rgba<'a> {
    pub fn new(pixels: &'a [u8], width: usize, height: usize) -> Result<Self> {
        Self::check(pixels.len(), width, height)?;
        Ok(Self {
            pixels,
            width,
            height,
        })
    }

    /// Whether `len` bytes can be a `width x height` RGBA image this crate takes: callers
    /// holding the bytes outside wasm memory check before copying them in.
    pub fn check(len: usize, width: usize, height: usize) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidInput(format!(
                "the image is empty ({width}x{height} pixels)"
            )));
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(Error::InvalidInput(format!(
                "the image is {width}x{height} pixels, more than {MAX_SIDE} on a side: scale it down first"
            )));
        }
        if len != width * height * 4 {
            return Err(Error::InvalidInput(format!(
                "a {width}x{height} RGBA image has {} bytes, not {len}",
                width * height * 4,
            )));
        }
        Ok(())
    }

    /// Channel `c` (0 red, 1 green, 2 blue) of pixel (x, y), in [0, 1]. Alpha is ignored,
    /// as PIL's `convert("RGB")` ignores it.
    fn channel(&self, x: usize, y: usize, c: usize) -> f32 {
        f32::from(self.pixels[(y * self.width + x) * 4 + c]) / 255.0
    }

    /// PIL's luma ("L" mode), composited over white so that a transparent canvas is paper.
    fn luma_over_white(&self, x: usize, y: usize) -> f32 {
        let offset = (y * self.width + x) * 4;
        let [r, g, b, alpha] = [0, 1, 2, 3].map(|i| f32::from(self.pixels[offset + i]) / 255.0);
        let luma = r * 0.299 + g * 0.587 + b * 0.114;
        luma * alpha + (1.0 - alpha)
    }
}

/// One output sample of a separable resampling: the first input index and the weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// PIL's antialiased bilinear resampling (also torchvision's `antialias=True`): a triangle
/// filter widened by the downscaling factor, so shrinking averages instead of aliasing.
/// The taps of the output indices `wanted` only: a crop needs no taps outside it.
fn resample_taps(input: usize, output: usize, wanted: Range<usize>) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let stretch = scale.max(1.0);
    let support = stretch; // the triangle's support is 1, widened when shrinking
    wanted
        .map(|index| {
            let center = (index as f64 + 0.5) * scale;
            let first = (center - support + 0.5).floor().max(0.0) as usize;
            let last = ((center + support + 0.5).floor() as usize).min(input);
            let raw: Vec<f64> = (first..last)
                .map(|j| {
                    let distance = (j as f64 - center + 0.5) / stretch;
                    (1.0 - distance.abs()).max(0.0)
                })
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|w| if total > 0.0 { (w / total) as f32 } else { 0.0 })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// Resamples a planar single-channel image `[height][width]` to `[rows.len()][cols.len()]`.
fn resample_plane(plane: &[f32], width: usize, columns: &[Taps], rows: &[Taps]) -> Vec<f32> {
    let height = plane.len() / width;
    // Horizontal pass over every input row, then vertical over the wanted rows only.
    let mut horizontal = vec![0.0f32; height * columns.len()];
    for y in 0..height {
        let row = &plane[y * width..(y + 1) * width];
        for (x, taps) in columns.iter().enumerate() {
            horizontal[y * columns.len() + x] = taps
                .weights
                .iter()
                .zip(&row[taps.first..])
                .map(|(w, v)| w * v)
                .sum();
        }
    }
    let mut output = Vec::with_capacity(rows.len() * columns.len());
    for taps in rows {
        for x in 0..columns.len() {
            output.push(
                taps.weights
                    .iter()
                    .enumerate()
                    .map(|(k, w)| w * horizontal[(taps.first + k) * columns.len() + x])
                    .sum(),
            );
        }
    }
    output
}

/// torchvision's ImageNet evaluation transform: Resize(256) with antialiased bilinear
/// resampling, CenterCrop(224), ToTensor, Normalize. Returns `[3, 224, 224]`.
pub fn imagenet(image: &Rgba) -> Vec<f32> {
    let mut output = imagenet_pixels(image);
    Normalize::IMAGENET.apply(&mut output, IMAGENET_CROP * IMAGENET_CROP);
    output
}

/// The ImageNet transform before its Normalize: `[3, 224, 224]` in [0, 1].
pub fn imagenet_pixels(image: &Rgba) -> Vec<f32> {
    let (width, height) = (image.width, image.height);
    // The shorter side becomes 256; the longer one is truncated as torchvision does.
    let (resized_width, resized_height) = if width <= height {
        (IMAGENET_RESIZE, IMAGENET_RESIZE * height / width)
    } else {
        (IMAGENET_RESIZE * width / height, IMAGENET_RESIZE)
    };
    let crop_start =
        |size: usize| ((size as f64 - IMAGENET_CROP as f64) / 2.0).round_ties_even() as usize;
    // The crop's taps only: a long thin image resizes to a side of millions of pixels.
    // Smaller than 224 after resizing cannot happen: the shorter side is 256.
    let window = |input: usize, size: usize| {
        let start = crop_start(size);
        resample_taps(input, size, start..start + IMAGENET_CROP)
    };
    let columns = window(width, resized_width);
    let rows = window(height, resized_height);
    let mut output = Vec::with_capacity(3 * IMAGENET_CROP * IMAGENET_CROP);
    for channel in 0..3 {
        let plane: Vec<f32> = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| image.channel(x, y, channel))
            .collect();
        output.extend(resample_plane(&plane, width, &columns, &rows));
    }
    output
}

/// Per-channel normalisation, `(value - mean) / std`, the last step of a model's input
/// preparation. Training sets keep pixels in [0, 1] (as bytes) and apply it per batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    /// Values as they are.
    pub const NONE: Normalize = Normalize {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    pub const IMAGENET: Normalize = Normalize {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };

    /// Normalises `[channels, plane]` values in place, channel by channel.
    pub fn apply(&self, values: &mut [f32], plane: usize) {
        if *self == Self::NONE {
            return;
        }
        for (channel, chunk) in values.chunks_mut(plane).enumerate() {
            let (mean, std) = (self.mean[channel % 3], self.std[channel % 3]);
            chunk
                .iter_mut()
                .for_each(|value| *value = (*value - mean) / std);
        }
    }
}

/// The whole image squeezed to `size x size` (antialiased bilinear), as `channels` = 1
/// (luma over white) or 3 (RGB) planes in [0, 1]: the input of models trained in the page
/// on the user's own pictures. Returns `[channels, size, size]`.
pub fn plain(image: &Rgba, channels: usize, size: usize) -> Vec<f32> {
    let (width, height) = (image.width, image.height);
    let columns = resample_taps(width, size, 0..size);
    let rows = resample_taps(height, size, 0..size);
    let plane = |value: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
        let source: Vec<f32> = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| value(x, y))
            .collect();
        resample_plane(&source, width, &columns, &rows)
            .into_iter()
            .map(|v| v.clamp(0.0, 1.0))
            .collect()
    };
    if channels == 1 {
        plane(&|x, y| image.luma_over_white(x, y))
    } else {
        (0..3)
            .flat_map(|c| plane(&|x, y| image.channel(x, y, c)))
            .collect()
    }
}

/// A handwritten digit prepared as MNIST's were: grayscale, light ink on a dark ground
/// (inverted when the image's border is light), cropped to the ink, scaled to fit 20x20
/// keeping its aspect, and placed in 28x28 with its centre of mass at the centre.
/// Returns `[1, 28, 28]` in [0, 1]; all zeros when there is no ink.
pub fn digit(image: &Rgba) -> Vec<f32> {
    already_prepared(image).unwrap_or_else(|| fit_to_field(image, DIGIT_BOX, Centre::Mass))
}

/// A garment prepared as Fashion-MNIST's were: grayscale, light on dark, cropped to the
/// object, its long side scaled to 28 and centred in 28x28. Returns `[1, 28, 28]`.
pub fn fashion(image: &Rgba) -> Vec<f32> {
    already_prepared(image).unwrap_or_else(|| fit_to_field(image, DIGIT_SIZE, Centre::Box))
}

/// A 28x28 image on a dark ground is taken as prepared the way the data set's own images
/// were (an MNIST or Fashion-MNIST image saved as a file), and left as it is: cropping it to
/// its object and fitting it again changes it into something the model never saw in
/// training (1 point of Fashion-MNIST test accuracy, `tests/fidelity.rs`).
fn already_prepared(image: &Rgba) -> Option<Vec<f32>> {
    if (image.width, image.height) != (DIGIT_SIZE, DIGIT_SIZE) {
        return None;
    }
    let gray: Vec<f32> = (0..DIGIT_SIZE)
        .flat_map(|y| (0..DIGIT_SIZE).map(move |x| (x, y)))
        .map(|(x, y)| image.luma_over_white(x, y).clamp(0.0, 1.0))
        .collect();
    (border_mean(&gray, DIGIT_SIZE, DIGIT_SIZE) <= 0.5).then_some(gray)
}

/// The mean of the outermost rows and columns of a `width x height` plane.
fn border_mean(plane: &[f32], width: usize, height: usize) -> f32 {
    let border: Vec<f32> = (0..width)
        .flat_map(|x| [plane[x], plane[(height - 1) * width + x]])
        .chain((0..height).flat_map(|y| [plane[y * width], plane[y * width + width - 1]]))
        .collect();
    border.iter().sum::<f32>() / border.len() as f32
}

#[derive(Clone, Copy)]
enum Centre {
    Mass,
    Box,
}

fn fit_to_field(image: &Rgba, box_size: usize, centre: Centre) -> Vec<f32> {
    let (width, height) = (image.width, image.height);
    let mut gray: Vec<f32> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .map(|(x, y)| image.luma_over_white(x, y))
        .collect();
    if border_mean(&gray, width, height) > 0.5 {
        gray.iter_mut().for_each(|value| *value = 1.0 - *value);
    }
    // The ink's bounding box: pixels clearly above the ground.
    const INK: f32 = 0.2;
    let inked = |x: usize, y: usize| gray[y * width + x] > INK;
    let columns: Vec<usize> = (0..width)
        .filter(|&x| (0..height).any(|y| inked(x, y)))
        .collect();
    let rows: Vec<usize> = (0..height)
        .filter(|&y| (0..width).any(|x| inked(x, y)))
        .collect();
    let mut output = vec![0.0f32; DIGIT_SIZE * DIGIT_SIZE];
    let (Some(&left), Some(&right), Some(&top), Some(&bottom)) =
        (columns.first(), columns.last(), rows.first(), rows.last())
    else {
        return output;
    };
    let (box_width, box_height) = (right - left + 1, bottom - top + 1);
    let cropped: Vec<f32> = (top..=bottom)
        .flat_map(|y| gray[y * width + left..=y * width + right].iter().copied())
        .collect();
    let longest = box_width.max(box_height) as f64;
    let fit = |size: usize| {
        ((size as f64 * box_size as f64 / longest).round() as usize).clamp(1, box_size)
    };
    let (scaled_width, scaled_height) = (fit(box_width), fit(box_height));
    let scaled = resample_plane(
        &cropped,
        box_width,
        &resample_taps(box_width, scaled_width, 0..scaled_width),
        &resample_taps(box_height, scaled_height, 0..scaled_height),
    );
    // The point to put at (14, 14): the centre of mass, or the middle of the box.
    let (centre_x, centre_y) = match centre {
        Centre::Box => (scaled_width as f32 / 2.0, scaled_height as f32 / 2.0),
        Centre::Mass => {
            let mass: f32 = scaled.iter().sum::<f32>().max(f32::MIN_POSITIVE);
            let (mut sum_x, mut sum_y) = (0.0f32, 0.0f32);
            for (index, value) in scaled.iter().enumerate() {
                sum_x += value * ((index % scaled_width) as f32 + 0.5);
                sum_y += value * ((index / scaled_width) as f32 + 0.5);
            }
            (sum_x / mass, sum_y / mass)
        }
    };
    let place = |center: f32, size: usize| -> usize {
        let start = (DIGIT_SIZE as f32 / 2.0 - center).round();
        start.clamp(0.0, (DIGIT_SIZE - size) as f32) as usize
    };
    let left = place(centre_x, scaled_width);
    let top = place(centre_y, scaled_height);
    for y in 0..scaled_height {
        for x in 0..scaled_width {
            output[(top + y) * DIGIT_SIZE + left + x] =
                scaled[y * scaled_width + x].clamp(0.0, 1.0);
        }
    }
    output
}

/// How canvas pixels become this model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// MNIST digits: 28x28 grayscale, centred by mass.
    Digit,
    /// Fashion-MNIST: 28x28 grayscale, object fitted to the field.
    Fashion,
    /// torchvision ImageNet models: 224x224 RGB, normalised.
    ImageNet,
    /// Models trained in the page on the user's own pictures: the whole picture squeezed to
    /// `size x size`, grayscale (1 channel) or RGB (3).
    Plain { channels: usize, size: usize },
}

impl InputKind {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "digit" => Ok(InputKind::Digit),
            "fashion" => Ok(InputKind::Fashion),
            "imagenet" => Ok(InputKind::ImageNet),
            other => {
                let plain = match other.split_once('-') {
                    Some(("gray", size)) => size.parse().ok().map(|size| (1, size)),
                    Some(("rgb", size)) => size.parse().ok().map(|size| (3, size)),
                    _ => None,
                };
                match plain {
                    Some((channels, size)) if (8..=64).contains(&size) => {
                        Ok(InputKind::Plain { channels, size })
                    }
                    _ => Err(Error::InvalidInput(format!(
                        "unknown input kind '{other}': use digit, fashion, imagenet, or \
                         gray-SIZE / rgb-SIZE with SIZE from 8 to 64"
                    ))),
                }
            }
        }
    }

    /// The input's name, as `parse` reads it.
    pub fn name(self) -> String {
        match self {
            InputKind::Digit => "digit".into(),
            InputKind::Fashion => "fashion".into(),
            InputKind::ImageNet => "imagenet".into(),
            InputKind::Plain { channels, size } => {
                format!("{}-{size}", if channels == 1 { "gray" } else { "rgb" })
            }
        }
    }

    /// The side of the square images the model receives.
    pub fn size(self) -> usize {
        match self {
            InputKind::Digit | InputKind::Fashion => 28,
            InputKind::ImageNet => 224,
            InputKind::Plain { size, .. } => size,
        }
    }

    /// The model input `[channels, height, width]` for an image, and its shape.
    pub fn prepare(self, image: &Rgba) -> (Vec<f32>, [usize; 4]) {
        let size = self.size();
        let mut values = self.pixels(image);
        self.normalize().apply(&mut values, size * size);
        (values, [1, self.channels(), size, size])
    }

    /// The input before its normalisation: `[channels, size, size]` in [0, 1], what a
    /// training set keeps.
    pub fn pixels(self, image: &Rgba) -> Vec<f32> {
        match self {
            InputKind::Digit => digit(image),
            InputKind::Fashion => fashion(image),
            InputKind::ImageNet => imagenet_pixels(image),
            InputKind::Plain { channels, size } => plain(image, channels, size),
        }
    }

    /// What `prepare` does after `pixels`.
    pub fn normalize(self) -> Normalize {
        match self {
            InputKind::ImageNet => Normalize::IMAGENET,
            _ => Normalize::NONE,
        }
    }

    pub fn channels(self) -> usize {
        match self {
            InputKind::Digit | InputKind::Fashion => 1,
            InputKind::ImageNet => 3,
            InputKind::Plain { channels, .. } => channels,
        }
    }
}

impl std::str::FromStr for InputKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}
