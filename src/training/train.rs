//! The training loop, backend-generic: the same code trains natively (the CLI) and in the
//! browser's worker. It never reads a tensor back; callers read losses and predictions with
//! the sync API natively and the async API on WebGPU.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use burn::tensor::Transaction;

use crate::data::preprocess::InputKind;
use crate::data::rng::SplitMix;
use crate::data::{Augment, Dataset, batch_tensors};
use crate::error::{Error, Result};
use crate::ops::readback::{floats, read_floats_async, read_ints_async, read_together};
use crate::resnet::ResNet;
use crate::training::gradient_flow::{LayerGradient, PendingNorms, gradient_norms};
use crate::weights;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    Adam,
    /// SGD with (PyTorch-style, undampened) momentum.
    Sgd {
        momentum: f64,
    },
}

impl FromStr for OptimizerKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "adam" => Ok(OptimizerKind::Adam),
            "sgd" => Ok(OptimizerKind::Sgd { momentum: 0.9 }),
            other => Err(Error::InvalidConfig(format!(
                "optimizer '{other}': use adam or sgd"
            ))),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd { .. } => "sgd",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Constant,
    /// Cosine decay from the base rate to zero.
    Cosine,
    /// Linear warm-up over the first 30% to the base rate, then cosine decay to zero.
    OneCycle,
}

impl FromStr for Schedule {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "one-cycle" => Ok(Schedule::OneCycle),
            "cosine" => Ok(Schedule::Cosine),
            "constant" => Ok(Schedule::Constant),
            other => Err(Error::InvalidConfig(format!(
                "schedule '{other}': use one-cycle, cosine or constant"
            ))),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Schedule::OneCycle => "one-cycle",
            Schedule::Cosine => "cosine",
            Schedule::Constant => "constant",
        })
    }
}

/// Whether training augments its images (`yes` or `no`; the page sends a boolean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Augmentation {
    On,
    Off,
}

impl FromStr for Augmentation {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "yes" | "true" | "on" => Ok(Augmentation::On),
            "no" | "false" | "off" => Ok(Augmentation::Off),
            other => Err(Error::InvalidConfig(format!(
                "augment '{other}': use yes or no"
            ))),
        }
    }
}

impl From<bool> for Augmentation {
    fn from(on: bool) -> Self {
        if on {
            Augmentation::On
        } else {
            Augmentation::Off
        }
    }
}

impl fmt::Display for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Augmentation::On => "yes",
            Augmentation::Off => "no",
        })
    }
}

/// Training options as a user gives them (flags of `resnet train`, the page's options
/// object), with the defaults both use.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    pub schedule: Schedule,
    pub augment: Augmentation,
    pub seed: u64,
}

impl TrainOptions {
    pub const DEFAULT: TrainOptions = TrainOptions {
        epochs: 4,
        batch_size: 64,
        learning_rate: 0.003,
        weight_decay: 5e-4,
        optimizer: OptimizerKind::Adam,
        schedule: Schedule::OneCycle,
        augment: Augmentation::On,
        seed: 1,
    };

    /// The loop's settings for images of `input`, checked.
    pub fn config(&self, input: InputKind) -> Result<TrainConfig> {
        let config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            schedule: self.schedule,
            augment: match self.augment {
                Augmentation::On => Augment::for_input(input),
                Augmentation::Off => Augment::NONE,
            },
            seed: self.seed,
        };
        config.validate()?;
        Ok(config)
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
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

/// A model, its optimiser and the schedule: one `step` per batch.
pub struct Trainer {
    model: ResNet,
    /// The models that entered the last two steps, oldest first. When a step's loss is not
    /// finite, the model that entered it is already broken; the one before it is not.
    recent: VecDeque<Snapshot>,
    optimizer: ModuleOptimizer,
    config: TrainConfig,
    step: usize,
    total_steps: usize,
}

/// A model as it was. A clone would share BatchNorm's running statistics, which later
/// forward passes overwrite; the inference copy (`valid`) holds its own.
struct Snapshot(ResNet);

impl Snapshot {
    fn of(model: &ResNet) -> Self {
        Self(model.valid())
    }

    /// The model again, ready to train (same parameter ids, so the optimiser knows them).
    fn restore(self) -> ResNet {
        self.0.train()
    }
}

/// What one optimisation step computed, unread: the batch's mean loss and how many of its
/// images the model (before the update) classified correctly.
pub struct StepOutput {
    pub loss: Tensor<1>,
    pub correct: Tensor<1, Int>,
    /// The step's gradient norms per layer, when asked for.
    pub gradients: Option<PendingNorms>,
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
            recent: VecDeque::new(),
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

    /// One optimisation step on a batch; with `gradient_norms`, it also measures each
    /// layer's gradient (`gradient_flow`). A batch that does not fit the model (its channels,
    /// or a label count other than its image count) is an error before anything runs.
    pub fn step(
        &mut self,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        with_gradient_norms: bool,
    ) -> Result<StepOutput> {
        self.model.check_input(&images)?;
        let [batch, ..] = images.dims();
        let [label_count] = labels.dims();
        if label_count != batch {
            return Err(Error::InvalidInput(format!(
                "the batch has {batch} images but {label_count} labels"
            )));
        }
        let logits = self.model.forward(images);
        let correct = logits
            .clone()
            .argmax(1)
            .flatten::<1>(0, 1)
            .equal(labels.clone())
            .int()
            .sum();
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, labels);
        let gradients = GradientsParams::from_grads(loss.backward(), &self.model);
        let norms = with_gradient_norms.then(|| gradient_norms(&self.model, &gradients));
        let rate = self.learning_rate();
        // Cloning a module clones tensor handles, not data; tensors are immutable, so the
        // previous model stays intact.
        self.recent.push_back(Snapshot::of(&self.model));
        if self.recent.len() > 2 {
            self.recent.pop_front();
        }
        self.model = self.optimizer.step(rate, self.model.clone(), gradients);
        self.step += 1;
        Ok(StepOutput {
            loss: loss.detach(),
            correct,
            gradients: norms,
        })
    }

    /// After a step whose loss was not finite: goes back to the last model whose loss was
    /// (the one before the model that entered that step). The optimiser's state has seen the
    /// bad steps, so training should not go on after this.
    pub fn rewind_to_finite_loss(&mut self) {
        let rewound = self.recent.len();
        if let Some(snapshot) = self.recent.pop_front() {
            self.model = snapshot.restore();
            self.step -= rewound;
            self.recent.clear();
        }
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }

    pub fn total_steps(&self) -> usize {
        self.total_steps
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

/// A whole training run: the data, its shuffles and augmentation, epoch after epoch. The CLI
/// and the browser both drive training through this, one `step` at a time.
pub struct TrainingRun {
    trainer: Trainer,
    train_set: Dataset,
    augment: Augment,
    batch_size: usize,
    epochs: usize,
    rng: SplitMix,
    order: Vec<usize>,
    position: usize,
    epochs_done: usize,
    /// Set when a step failed for good (a loss that is not finite).
    failure: Option<String>,
    /// Every how many steps a step reports its gradient norms (0: never).
    gradient_interval: usize,
}

/// A run as it stood after a completed step, in host memory: what survives the loss of the
/// device it trained on. It holds the model (parameters and running statistics), the step
/// count, and where the run is in its shuffled data and random augmentations. The
/// optimiser's moments are not in it: burn reads them back only synchronously, which WebGPU
/// in a browser cannot do. A resumed run starts them afresh (plain SGD resumes exactly).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model as a torchvision `.safetensors` file: `weights::load` reads it.
    pub model: Vec<u8>,
    steps_done: usize,
    position: usize,
    epochs_done: usize,
    rng: SplitMix,
    order: Vec<usize>,
}

impl Checkpoint {
    /// Steps done when it was taken.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }
}

/// One step's figures, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub loss: f32,
    pub correct: usize,
    pub batch_size: usize,
    /// Steps done, of `total_steps`.
    pub step: usize,
    pub total_steps: usize,
    /// The epoch this step belonged to, from 1.
    pub epoch: usize,
    /// Whether this step completed its epoch.
    pub epoch_finished: bool,
    /// Each weight layer's gradient and weight norms, in depth order, on the steps
    /// `report_gradients_every` asks for.
    pub gradients: Option<Vec<LayerGradient>>,
}

impl TrainingRun {
    /// A run of `config` on `train_set` for `model`, which lives on an autodiff device.
    pub fn new(model: ResNet, train_set: Dataset, config: TrainConfig) -> Result<Self> {
        train_set.check_trainable()?;
        if train_set.num_classes() != model.num_classes() {
            return Err(Error::InvalidInput(format!(
                "the data has {} classes but the model has {}",
                train_set.num_classes(),
                model.num_classes()
            )));
        }
        let batches_per_epoch = train_set.len().div_ceil(config.batch_size.max(1));
        let total_steps = batches_per_epoch * config.epochs;
        let mut rng = SplitMix::new(config.seed);
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        Ok(Self {
            augment: config.augment,
            batch_size: config.batch_size,
            epochs: config.epochs,
            trainer: Trainer::new(model, config, total_steps)?,
            train_set,
            rng,
            order,
            position: 0,
            epochs_done: 0,
            failure: None,
            gradient_interval: 0,
        })
    }

    /// Makes every `interval`-th step, the first included, report its gradient norms
    /// (`StepReport::gradients`); 0 stops it. They ride on the step's one read back.
    pub fn report_gradients_every(&mut self, interval: usize) {
        self.gradient_interval = interval;
    }

    pub fn is_finished(&self) -> bool {
        self.epochs_done >= self.epochs
    }

    pub fn steps_done(&self) -> usize {
        self.trainer.steps_done()
    }

    pub fn total_steps(&self) -> usize {
        self.trainer.total_steps()
    }

    pub fn train_set(&self) -> &Dataset {
        &self.train_set
    }

    /// The model as trained so far, for inference.
    pub fn inference_model(&self) -> ResNet {
        self.trainer.inference_model()
    }

    /// The run as it stands, the model read back asynchronously (any backend).
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            model: weights::torchvision_safetensors(&self.trainer.model).await?,
            steps_done: self.trainer.steps_done(),
            position: self.position,
            epochs_done: self.epochs_done,
            rng: self.rng.clone(),
            order: self.order.clone(),
        })
    }

    /// Puts this run back where `checkpoint` had it, training `model`: the checkpoint's model
    /// loaded (`weights::load`) on the autodiff device to go on with, with any parameters
    /// frozen as they were.
    pub fn resume(&mut self, checkpoint: &Checkpoint, model: ResNet) -> Result<()> {
        let mut trainer = Trainer::new(model, self.trainer.config.clone(), self.total_steps())?;
        trainer.step = checkpoint.steps_done;
        self.trainer = trainer;
        self.rng = checkpoint.rng.clone();
        self.order = checkpoint.order.clone();
        self.position = checkpoint.position;
        self.epochs_done = checkpoint.epochs_done;
        self.failure = None;
        Ok(())
    }

    /// Trains on the next batch and reads its figures back (asynchronously: any backend).
    /// A loss that is not finite undoes the step and ends the run with an error; the model
    /// from the step before is kept.
    pub async fn step(&mut self, device: &Device) -> Result<StepReport> {
        if let Some(failure) = &self.failure {
            return Err(Error::Training(failure.clone()));
        }
        if self.is_finished() {
            return Err(Error::Training(
                "this run has finished: start a new one to train further".into(),
            ));
        }
        let end = (self.position + self.batch_size).min(self.order.len());
        let batch = &self.order[self.position..end];
        let (images, labels) =
            batch_tensors(&self.train_set, batch, self.augment, &mut self.rng, device);
        let batch_size = batch.len();
        let with_norms = self.gradient_interval > 0
            && self
                .trainer
                .steps_done()
                .is_multiple_of(self.gradient_interval);
        let output = self.trainer.step(images, labels, with_norms)?;
        // One read back for all: on WebGPU every read waits for the queue.
        let mut transaction = Transaction::default()
            .register(output.loss)
            .register(output.correct);
        if let Some(norms) = &output.gradients {
            // A transaction takes tensors of one kind: the loss is autodiff-wrapped.
            transaction = transaction.register(norms.squared.clone().autodiff());
        }
        let mut read = read_together(transaction).await?.into_iter();
        let (Some(loss), Some(correct)) = (read.next(), read.next()) else {
            return Err(Error::Backend(
                "a read back returned the wrong tensor count".into(),
            ));
        };
        let gradients = match (output.gradients, read.next()) {
            (Some(norms), Some(squared)) => Some(norms.read(&floats(squared)?)?),
            (None, _) => None,
            (Some(_), None) => {
                return Err(Error::Backend(
                    "a read back returned the wrong tensor count".into(),
                ));
            }
        };
        let loss = first_float(loss)?;
        let correct = first_float(correct)? as i64;
        if !loss.is_finite() {
            let failed_step = self.trainer.steps_done();
            self.trainer.rewind_to_finite_loss();
            let message = format!(
                "the loss became {loss} at step {failed_step}: training stopped, keeping the \
                 model of step {}; start again with a lower learning rate",
                self.trainer.steps_done()
            );
            self.failure = Some(message.clone());
            return Err(Error::Training(message));
        }
        let epoch = self.epochs_done + 1;
        self.position = end;
        let epoch_finished = self.position >= self.order.len();
        if epoch_finished {
            self.epochs_done += 1;
            self.position = 0;
            self.rng.shuffle(&mut self.order);
        }
        Ok(StepReport {
            loss,
            correct: correct.max(0) as usize,
            batch_size,
            step: self.trainer.steps_done(),
            total_steps: self.trainer.total_steps(),
            epoch,
            epoch_finished,
            gradients,
        })
    }
}

fn first_float(data: TensorData) -> Result<f32> {
    floats(data)?
        .first()
        .copied()
        .ok_or_else(|| Error::Backend("an empty tensor was read back".into()))
}

/// A model's results on a labelled set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub num_classes: usize,
    /// `confusion[truth * num_classes + predicted]`: image counts.
    pub confusion: Vec<usize>,
    /// Mean cross-entropy.
    pub loss: f64,
}

impl Evaluation {
    pub fn count(&self) -> usize {
        self.confusion.iter().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..self.num_classes)
            .map(|k| self.confusion[k * self.num_classes + k])
            .sum();
        correct as f64 / self.count().max(1) as f64
    }

    /// Accuracy on the images of each class (NaN for a class with none).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        let k = self.num_classes;
        (0..k)
            .map(|truth| {
                let row = &self.confusion[truth * k..(truth + 1) * k];
                row[truth] as f64 / row.iter().sum::<usize>() as f64
            })
            .collect()
    }
}

/// Evaluates `model` (no autodiff) on every image of `dataset`, reading back asynchronously.
pub async fn evaluate(model: &ResNet, dataset: &Dataset, device: &Device) -> Result<Evaluation> {
    const BATCH: usize = 250;
    let k = model.num_classes();
    if dataset.num_classes() != k {
        return Err(Error::InvalidInput(format!(
            "the data has {} classes but the model has {k}",
            dataset.num_classes()
        )));
    }
    let mut confusion = vec![0; k * k];
    let mut loss_sum = 0.0;
    let indices: Vec<usize> = (0..dataset.len()).collect();
    for chunk in indices.chunks(BATCH) {
        let (images, labels) =
            batch_tensors(dataset, chunk, Augment::NONE, &mut SplitMix::new(0), device);
        model.check_input(&images)?;
        let logits = model.forward(images);
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits.clone(), labels);
        loss_sum += f64::from(read_floats_async(loss).await?[0]) * chunk.len() as f64;
        let predicted = read_ints_async(logits.argmax(1).flatten::<1>(0, 1)).await?;
        for (&index, &class) in chunk.iter().zip(&predicted) {
            let truth = usize::from(dataset.labels[index]);
            confusion[truth * k + (class.max(0) as usize).min(k - 1)] += 1;
        }
    }
    Ok(Evaluation {
        num_classes: k,
        confusion,
        loss: loss_sum / dataset.len().max(1) as f64,
    })
}
