//! A training session as the page and `resnet train` run it: the data split for validation,
//! the model (fresh, or fine-tuned from a weight file) and the run, stepped one batch at a
//! time so that a caller can report, pause and stop between batches.

use burn::prelude::*;

use crate::data::Dataset;
use crate::data::preprocess::InputKind;
use crate::error::{Error, Result};
use crate::resnet::{Arch, Preset, ResNet, ResNetConfig};
use crate::training::finetune::{self, FineTune};
use crate::training::train::{
    Checkpoint, Evaluation, StepReport, TrainOptions, TrainingRun, evaluate,
};
use crate::weights;

/// Everything a session is made from but the data; `DEFAULT` holds the defaults that the
/// CLI and the page both use.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// The network of a fresh model, a ResNet or its plain twin (a fine-tuned one keeps
    /// its own).
    pub arch: Preset,
    /// How the pictures were prepared (decides the augmentation).
    pub input: InputKind,
    pub train: TrainOptions,
    /// The share of every class held out for validation (0 for none).
    pub validation_fraction: f64,
    /// With base weights: which layers train.
    pub fine_tune: FineTune,
}

impl SessionOptions {
    pub const DEFAULT: SessionOptions = SessionOptions {
        arch: Preset {
            arch: Arch::ResNet8,
            plain: false,
        },
        input: InputKind::Plain {
            channels: 1,
            size: 28,
        },
        train: TrainOptions::DEFAULT,
        validation_fraction: 0.1,
        fine_tune: FineTune::All,
    };
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A training run with its validation split and the model's configuration.
pub struct Session {
    run: TrainingRun,
    validation: Dataset,
    config: ResNetConfig,
    input: InputKind,
    /// How a fine-tuned model was frozen; `None` for a fresh model.
    fine_tune: Option<FineTune>,
    /// The device the run evaluates on, and its autodiff twin, which it trains on.
    device: Device,
    training_device: Device,
}

impl Session {
    /// A session on `data`, training on `device` (not an autodiff device: the session makes
    /// its own). With `base_weights`, the model is fine-tuned from that file (a new
    /// classifier when the class count differs); without, it is a fresh `options.arch`.
    pub fn new(
        data: &Dataset,
        options: &SessionOptions,
        base_weights: Option<Vec<u8>>,
        device: &Device,
    ) -> Result<Self> {
        let train = options.train.config(options.input)?;
        data.check_trainable()?;
        let input = options.input;
        if data.channels != input.channels()
            || data.height != input.size()
            || data.width != input.size()
            || data.normalize != input.normalize()
        {
            return Err(Error::Training(format!(
                "the data's images are {}x{}x{} but input '{}' is {}x{}x{}",
                data.channels,
                data.height,
                data.width,
                input.name(),
                input.channels(),
                input.size(),
                input.size()
            )));
        }
        if !(0.0..1.0).contains(&options.validation_fraction) {
            return Err(Error::InvalidConfig(
                "the validation share must be at least 0 and below 1".into(),
            ));
        }
        let (train_set, validation) = if options.validation_fraction > 0.0 {
            data.split_validation(options.validation_fraction, train.seed)
        } else {
            (data.clone(), data.empty_like())
        };
        let training_device = device.clone().autodiff();
        // Seeded initialisation: the same seed gives the same run.
        training_device.seed(train.seed);
        let base_weights_given = base_weights.is_some();
        let (model, config) = match base_weights {
            None => {
                let config = options.arch.config(data.num_classes(), data.channels);
                config.check_input_side(data.height.min(data.width))?;
                (ResNet::new(&config, &training_device)?, config)
            }
            Some(bytes) => finetune::fine_tuning_model(
                bytes,
                data.num_classes(),
                data.channels,
                options.fine_tune,
                &training_device,
            )?,
        };
        Ok(Self {
            run: TrainingRun::new(model, train_set, train)?,
            validation,
            config,
            input,
            fine_tune: base_weights_given.then_some(options.fine_tune),
            device: device.clone(),
            training_device,
        })
    }

    /// Trains on the next batch (`TrainingRun::step`).
    pub async fn step(&mut self) -> Result<StepReport> {
        self.run.step(&self.training_device).await
    }

    pub fn is_finished(&self) -> bool {
        self.run.is_finished()
    }

    /// `TrainingRun::report_gradients_every`.
    pub fn report_gradients_every(&mut self, interval: usize) {
        self.run.report_gradients_every(interval);
    }

    /// The run as it stands, in host memory (`TrainingRun::checkpoint`).
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        self.run.checkpoint().await
    }

    /// Goes on from `checkpoint` on `device` (after the device it trained on was lost), the
    /// same layers frozen as before.
    pub fn resume_on(&mut self, checkpoint: &Checkpoint, device: &Device) -> Result<()> {
        let training_device = device.clone().autodiff();
        let model = weights::load(checkpoint.model.clone(), &self.config, &training_device)?;
        let model = match self.fine_tune {
            Some(mode) => finetune::apply(model, mode),
            None => model,
        };
        self.run.resume(checkpoint, model)?;
        self.device = device.clone();
        self.training_device = training_device;
        Ok(())
    }

    /// The model as trained so far, for inference (on the training device's backend).
    pub fn inference_model(&self) -> ResNet {
        self.run.inference_model()
    }

    /// The model's accuracy, loss and confusion on `dataset`, or on the validation split.
    pub async fn evaluate(&self, dataset: Option<&Dataset>) -> Result<Evaluation> {
        let dataset = dataset.unwrap_or(&self.validation);
        if dataset.is_empty() {
            return Err(Error::Training(
                "there are no validation images: set a validation share above 0".into(),
            ));
        }
        evaluate(&self.inference_model(), dataset, &self.device).await
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    pub fn input(&self) -> InputKind {
        self.input
    }

    pub fn class_names(&self) -> &[String] {
        &self.run.train_set().class_names
    }

    pub fn train_count(&self) -> usize {
        self.run.train_set().len()
    }

    pub fn validation_count(&self) -> usize {
        self.validation.len()
    }

    pub fn total_steps(&self) -> usize {
        self.run.total_steps()
    }

    pub fn steps_done(&self) -> usize {
        self.run.steps_done()
    }
}
