//! The training loop, backend-generic: the same code trains natively (the CLI) and in the
//! browser's worker. It never reads a tensor back; callers read losses and predictions with
//! the sync API natively and the async API on WebGPU.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::resnet::ResNet;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    Adam,
    /// SGD with (PyTorch-style, undampened) momentum.
    Sgd {
        momentum: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Constant,
    /// Cosine decay from the base rate to zero.
    Cosine,
    /// Linear warm-up over the first 30% to the base rate, then cosine decay to zero.
    OneCycle,
}

impl Schedule {
    /// The learning rate at `step` of `total`.
    pub fn rate(self, base: f64, step: usize, total: usize) -> f64 {
        let progress = step as f64 / total.max(1) as f64;
        let cosine = |t: f64| 0.5 * base * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos());
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => cosine(progress),
            Schedule::OneCycle => {
                const WARM_UP: f64 = 0.3;
                if progress < WARM_UP {
                    base * (0.04 + 0.96 * progress / WARM_UP)
                } else {
                    cosine((progress - WARM_UP) / (1.0 - WARM_UP))
                }
            }
        }
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    pub schedule: Schedule,
    pub augment: Augment,
    pub seed: u64,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let problem = if self.epochs == 0 {
            "the epoch count must be at least 1"
        } else if self.batch_size == 0 {
            "the batch size must be at least 1"
        } else if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            "the learning rate must be a positive number"
        } else if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            "the weight decay must be zero or positive"
        } else {
            return Ok(());
        };
        Err(Error::InvalidConfig(problem.into()))
    }
}

/// splitmix64: small, seedable, identical on every platform, so a seed gives the same
/// shuffles and augmentations natively and in the browser.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A batch as tensors: images scaled to [0, 1] and, with `augment`, randomly cropped and
/// flipped (drawing from `rng`).
pub fn batch_tensors(
    dataset: &Dataset,
    indices: &[usize],
    augment: Augment,
    rng: &mut SplitMix,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let (channels, height, width) = (dataset.channels, dataset.height, dataset.width);
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

/// A model, its optimiser and the schedule: one `step` per batch.
pub struct Trainer {
    model: ResNet,
    optimizer: ModuleOptimizer,
    config: TrainConfig,
    step: usize,
    total_steps: usize,
}

impl Trainer {
    /// `model` must live on an autodiff device (`device.autodiff()`).
    pub fn new(model: ResNet, config: TrainConfig, total_steps: usize) -> Result<Self> {
        config.validate()?;
        let decay =
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
        let optimizer = match config.optimizer {
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            OptimizerKind::Sgd { momentum } => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0),
                ))
                .init(),
        };
        Ok(Self {
            model: model.train(),
            optimizer,
            config,
            step: 0,
            total_steps,
        })
    }

    pub fn learning_rate(&self) -> f64 {
        self.config
            .schedule
            .rate(self.config.learning_rate, self.step, self.total_steps)
    }

    /// One optimisation step on a batch; returns the batch's mean loss, unread.
    pub fn step(&mut self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
        let logits = self.model.forward(images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, labels);
        let gradients = GradientsParams::from_grads(loss.backward(), &self.model);
        let rate = self.learning_rate();
        // Cloning a module clones tensor handles, not data.
        self.model = self.optimizer.step(rate, self.model.clone(), gradients);
        self.step += 1;
        loss.detach()
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The model for inference: running statistics in use, no autodiff.
    pub fn inference_model(&self) -> ResNet {
        self.model.valid()
    }
}

/// Predicted classes `[batch]` for images, unread.
pub fn predictions(model: &ResNet, images: Tensor<4>) -> Tensor<1, Int> {
    model.forward(images).argmax(1).flatten(0, 1)
}
