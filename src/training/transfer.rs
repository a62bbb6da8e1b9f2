//! Transfer learning, Teachable Machine's way: each picture's embedding (the frozen
//! backbone's pooled features, `Classifier::embed_image`) is computed once and kept; a new
//! classifier (softmax regression) trains on the kept embeddings in milliseconds, and goes
//! back into the whole ResNet as its `fc`.

use burn::module::Param;
use burn::nn::LinearConfig;
use burn::prelude::*;

use crate::data::rng::SplitMix;
use crate::error::{Error, Result};
use crate::resnet::{ResNet, ResNetConfig};
use crate::training::train::Evaluation;
use crate::weights;

/// How the head trains: full-batch Adam on standardised embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadOptions {
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// The share of each class's pictures held out for validation (none for a class of one).
    pub validation_fraction: f64,
    pub seed: u64,
}

impl HeadOptions {
    pub const DEFAULT: HeadOptions = HeadOptions {
        epochs: 200,
        learning_rate: 0.01,
        weight_decay: 1e-4,
        validation_fraction: 0.25,
        seed: 1,
    };
}

impl Default for HeadOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A linear classifier on embeddings: `logits = embedding · weight + bias`, `weight`
/// `[dim, classes]` row-major, as burn's `Linear` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub dim: usize,
    pub num_classes: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Head {
    pub fn logits(&self, embedding: &[f32]) -> Vec<f32> {
        let mut logits = self.bias.clone();
        for (value, row) in embedding
            .iter()
            .zip(self.weight.chunks_exact(self.num_classes))
        {
            logits
                .iter_mut()
                .zip(row)
                .for_each(|(logit, w)| *logit += value * w);
        }
        logits
    }
}

/// A trained head and how the training went.
#[derive(Debug, Clone)]
pub struct HeadReport {
    pub head: Head,
    /// Cross-entropy on the training embeddings after each epoch.
    pub losses: Vec<f32>,
    pub train: Evaluation,
    pub validation: Option<Evaluation>,
}

/// Trains a head for `num_classes` classes on `embeddings` (`labels.len()` vectors of the
/// same length, flat).
pub fn train_head(
    embeddings: &[f32],
    labels: &[usize],
    num_classes: usize,
    options: &HeadOptions,
) -> Result<HeadReport> {
    let count = labels.len();
    if count == 0 || !embeddings.len().is_multiple_of(count) {
        return Err(Error::Training(format!(
            "{} embedding values for {count} labels",
            embeddings.len()
        )));
    }
    let dim = embeddings.len() / count;
    if num_classes < 2 {
        return Err(Error::Training(
            "a classifier needs at least two classes".into(),
        ));
    }
    if let Some(&label) = labels.iter().find(|&&label| label >= num_classes) {
        return Err(Error::Training(format!(
            "label {label} for {num_classes} classes"
        )));
    }
    if let Some(empty) = (0..num_classes).find(|k| !labels.contains(k)) {
        return Err(Error::Training(format!(
            "class {} has no pictures: add some, or remove the class",
            empty + 1
        )));
    }
    if embeddings.iter().any(|v| !v.is_finite()) {
        return Err(Error::Training("an embedding is not finite".into()));
    }
    if !(0.0..1.0).contains(&options.validation_fraction) || options.learning_rate <= 0.0 {
        return Err(Error::InvalidConfig(format!(
            "validation fraction {} (0 to under 1) and learning rate {} (above 0)",
            options.validation_fraction, options.learning_rate
        )));
    }
    let (train, validation) = split(labels, num_classes, options);
    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];

    // Standardised inputs train well at one learning rate whatever the backbone's scale;
    // the standardisation is folded into the head at the end.
    let mut mean = vec![0.0f64; dim];
    for &i in &train {
        mean.iter_mut()
            .zip(row(i))
            .for_each(|(m, &v)| *m += f64::from(v));
    }
    mean.iter_mut().for_each(|m| *m /= train.len() as f64);
    let mut scale = vec![0.0f64; dim];
    for &i in &train {
        scale
            .iter_mut()
            .zip(row(i).iter().zip(&mean))
            .for_each(|(s, (&v, m))| *s += (f64::from(v) - m).powi(2));
    }
    scale
        .iter_mut()
        .for_each(|s| *s = (*s / train.len() as f64).sqrt().max(1e-6));
    let standard: Vec<f32> = (0..count)
        .flat_map(|i| {
            row(i)
                .iter()
                .zip(mean.iter().zip(&scale))
                .map(|(&v, (m, s))| ((f64::from(v) - m) / s) as f32)
                .collect::<Vec<_>>()
        })
        .collect();

    let k = num_classes;
    let mut head = Head {
        dim,
        num_classes: k,
        weight: vec![0.0; dim * k],
        bias: vec![0.0; k],
    };
    let mut adam = Adam::new(dim * k + k);
    let mut losses = Vec::with_capacity(options.epochs);
    for _ in 0..options.epochs {
        let mut gradient = vec![0.0f32; dim * k + k];
        let mut loss = 0.0f64;
        for &i in &train {
            let x = &standard[i * dim..(i + 1) * dim];
            let p = crate::inference::classifier::probabilities(&head.logits(x));
            loss -= f64::from(p[labels[i]].max(1e-12).ln());
            let error: Vec<f32> = (0..k)
                .map(|c| p[c] - if c == labels[i] { 1.0 } else { 0.0 })
                .collect();
            for (d, &value) in x.iter().enumerate() {
                gradient[d * k..(d + 1) * k]
                    .iter_mut()
                    .zip(&error)
                    .for_each(|(g, e)| *g += value * e);
            }
            gradient[dim * k..]
                .iter_mut()
                .zip(&error)
                .for_each(|(g, e)| *g += e);
        }
        let n = train.len() as f32;
        gradient.iter_mut().for_each(|g| *g /= n);
        // Weight decay on the weights, not the biases.
        gradient[..dim * k]
            .iter_mut()
            .zip(&head.weight)
            .for_each(|(g, w)| *g += options.weight_decay as f32 * w);
        let mut parameters: Vec<f32> = head.weight.iter().chain(&head.bias).copied().collect();
        adam.step(&mut parameters, &gradient, options.learning_rate as f32);
        head.weight.copy_from_slice(&parameters[..dim * k]);
        head.bias.copy_from_slice(&parameters[dim * k..]);
        losses.push((loss / train.len() as f64) as f32);
    }

    let evaluate = |indices: &[usize]| {
        let mut evaluation = Evaluation {
            num_classes: k,
            confusion: vec![0; k * k],
            loss: 0.0,
        };
        for &i in indices {
            let p = crate::inference::classifier::probabilities(
                &head.logits(&standard[i * dim..(i + 1) * dim]),
            );
            let predicted = (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
            evaluation.confusion[labels[i] * k + predicted] += 1;
            evaluation.loss -= f64::from(p[labels[i]].max(1e-12).ln());
        }
        evaluation.loss /= indices.len().max(1) as f64;
        evaluation
    };
    let train_evaluation = evaluate(&train);
    let validation_evaluation = (!validation.is_empty()).then(|| evaluate(&validation));

    // logits = ((x - mean) / scale) · W + b = x · (W / scale) + (b - Σ mean / scale · W)
    for d in 0..dim {
        for c in 0..k {
            let w = f64::from(head.weight[d * k + c]) / scale[d];
            head.bias[c] -= (mean[d] * w) as f32;
            head.weight[d * k + c] = w as f32;
        }
    }
    Ok(HeadReport {
        head,
        losses,
        train: train_evaluation,
        validation: validation_evaluation,
    })
}

/// A seeded per-class split: each class keeps at least one picture for training.
fn split(labels: &[usize], num_classes: usize, options: &HeadOptions) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SplitMix::new(options.seed);
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for class in 0..num_classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        let held = ((members.len() as f64 * options.validation_fraction).round() as usize)
            .min(members.len() - 1);
        validation.extend_from_slice(&members[..held]);
        train.extend_from_slice(&members[held..]);
    }
    (train, validation)
}

/// Adam (Kingma and Ba), on one flat parameter vector.
struct Adam {
    first: Vec<f32>,
    second: Vec<f32>,
    steps: i32,
}

impl Adam {
    fn new(len: usize) -> Self {
        Self {
            first: vec![0.0; len],
            second: vec![0.0; len],
            steps: 0,
        }
    }

    fn step(&mut self, parameters: &mut [f32], gradient: &[f32], learning_rate: f32) {
        const BETA1: f32 = 0.9;
        const BETA2: f32 = 0.999;
        self.steps += 1;
        let correction1 = 1.0 - BETA1.powi(self.steps);
        let correction2 = 1.0 - BETA2.powi(self.steps);
        for (((p, g), m), v) in parameters
            .iter_mut()
            .zip(gradient)
            .zip(&mut self.first)
            .zip(&mut self.second)
        {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= learning_rate * (*m / correction1) / ((*v / correction2).sqrt() + 1e-8);
        }
    }
}

/// `model` (its backbone unchanged) with `head` as its classifier.
pub fn with_head(mut model: ResNet, head: &Head) -> Result<ResNet> {
    let features = model.fc.weight.shape()[0];
    if features != head.dim {
        return Err(Error::Training(format!(
            "the head takes {}-value embeddings, but the model's backbone gives {features}",
            head.dim
        )));
    }
    let device = model.fc.weight.val().device();
    let mut fc = LinearConfig::new(head.dim, head.num_classes).init(&device);
    fc.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(head.weight.clone(), [head.dim, head.num_classes]),
        &device,
    ));
    fc.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(head.bias.clone(), [head.num_classes]),
        &device,
    )));
    model.fc = fc;
    Ok(model)
}

/// The burnpack file of the whole ResNet: `base_weights`' backbone (any weight file we read)
/// with `head` as its classifier.
pub fn weights_with_head(base_weights: Vec<u8>, head: &Head) -> Result<Vec<u8>> {
    let config = weights::inspect(base_weights.clone())?.config;
    let base = weights::load(base_weights, &config, &Device::flex())?;
    let model = with_head(base, head)?;
    weights::save_burnpack(
        &model,
        &ResNetConfig {
            num_classes: head.num_classes,
            ..config
        },
    )
}
