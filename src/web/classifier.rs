use std::rc::Rc;

use burn::tensor::activation::softmax;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Backend, BackendKind, js_error};
use crate::error::{Error, Result};
use crate::inference::{images_tensor, logits_async, read_floats_async};
use crate::preprocess::{self, Rgba};
use crate::resnet::{Arch, ResNet, ResNetConfig};
use crate::weights;

/// How canvas pixels become this model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// MNIST digits: 28x28 grayscale, centred by mass.
    Digit,
    /// Fashion-MNIST: 28x28 grayscale, object fitted to the field.
    Fashion,
    /// torchvision ImageNet models: 224x224 RGB, normalised.
    ImageNet,
}

impl InputKind {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "digit" => Ok(InputKind::Digit),
            "fashion" => Ok(InputKind::Fashion),
            "imagenet" => Ok(InputKind::ImageNet),
            other => Err(Error::InvalidInput(format!(
                "unknown input kind '{other}': use digit, fashion or imagenet"
            ))),
        }
    }

    /// The model input `[channels, height, width]` for an image, and its shape.
    pub fn prepare(self, image: &Rgba) -> (Vec<f32>, [usize; 4]) {
        match self {
            InputKind::Digit => (preprocess::digit(image), [1, 1, 28, 28]),
            InputKind::Fashion => (preprocess::fashion(image), [1, 1, 28, 28]),
            InputKind::ImageNet => (preprocess::imagenet(image), [1, 3, 224, 224]),
        }
    }

    fn channels(self) -> usize {
        match self {
            InputKind::Digit | InputKind::Fashion => 1,
            InputKind::ImageNet => 3,
        }
    }
}

/// A ResNet on one backend, callable from JavaScript.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Classifier {
    model: Rc<ResNet>,
    backend: Backend,
    input: Option<InputKind>,
    class_names: Vec<String>,
}

impl Classifier {
    /// A model with `weights` (safetensors or burnpack bytes), or freshly initialised
    /// without. Parameters are created directly on the backend's device.
    pub async fn new(
        config: &ResNetConfig,
        weights_file: Option<Vec<u8>>,
        backend: BackendKind,
    ) -> Result<Self> {
        let backend = Backend::init(backend).await?;
        let model = match weights_file {
            Some(bytes) => weights::load(bytes, config, &backend.device)?,
            None => ResNet::new(config, &backend.device)?,
        };
        Ok(Self {
            model: Rc::new(model),
            backend,
            input: None,
            class_names: (0..config.num_classes)
                .map(|i| format!("class {i}"))
                .collect(),
        })
    }

    /// A trained model from its weight file, with how it reads pixels and its class names.
    pub async fn for_images(
        weights_file: Vec<u8>,
        backend: BackendKind,
        input: InputKind,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let config = weights::inspect(weights_file.clone())?.config;
        if config.in_channels != input.channels() {
            return Err(Error::InvalidInput(format!(
                "the weights take {} input channel(s), but {input:?} images have {}",
                config.in_channels,
                input.channels()
            )));
        }
        if !class_names.is_empty() && class_names.len() != config.num_classes {
            return Err(Error::InvalidInput(format!(
                "{} class names for a model with {} classes",
                class_names.len(),
                config.num_classes
            )));
        }
        let mut classifier = Self::new(&config, Some(weights_file), backend).await?;
        classifier.input = Some(input);
        if !class_names.is_empty() {
            classifier.class_names = class_names;
        }
        Ok(classifier)
    }

    pub fn backend_info(&self) -> &Backend {
        &self.backend
    }

    /// Logits `[batch, classes]`, flat, for images `[batch, channels, height, width]`.
    pub async fn classify(&self, images: Vec<f32>, shape: [usize; 4]) -> Result<Vec<f32>> {
        let input = images_tensor(images, shape, &self.backend.device)?;
        logits_async(&self.model, input).await
    }

    fn input_kind(&self) -> Result<InputKind> {
        self.input.ok_or_else(|| {
            Error::InvalidInput(
                "this model was created without an input kind: use Classifier.forImages".into(),
            )
        })
    }

    /// Class probabilities for one RGBA image of any size.
    pub async fn classify_image(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Vec<f32>> {
        let (input, shape) = self.input_kind()?.prepare(&Rgba::new(rgba, width, height)?);
        let images = images_tensor(input, shape, &self.backend.device)?;
        read_floats_async(softmax(self.model.try_forward(images)?, 1)).await
    }
}

fn config(arch: &str, num_classes: usize, in_channels: usize) -> Result<ResNetConfig> {
    Ok(ResNetConfig::new(
        Arch::parse(arch)?,
        num_classes,
        in_channels,
    ))
}

#[wasm_bindgen]
impl Classifier {
    /// `Classifier.create(arch, numClasses, inChannels, backend, weights?)`: backend is
    /// "webgpu" or "cpu"; weights are the bytes of a .safetensors or burnpack file.
    pub fn create(
        arch: String,
        num_classes: usize,
        in_channels: usize,
        backend: String,
        weights_file: Option<Vec<u8>>,
    ) -> Promise {
        future_to_promise(async move {
            let kind = BackendKind::parse(&backend).map_err(js_error)?;
            let config = config(&arch, num_classes, in_channels).map_err(js_error)?;
            let classifier = Classifier::new(&config, weights_file, kind)
                .await
                .map_err(js_error)?;
            Ok(JsValue::from(classifier))
        })
    }

    /// `Classifier.forImages(weights, backend, input, classNames)`: a model that classifies
    /// canvas pixels. input: "digit", "fashion" or "imagenet"; classNames may be empty.
    #[wasm_bindgen(js_name = forImages)]
    pub fn for_images_js(
        weights_file: Vec<u8>,
        backend: String,
        input: String,
        class_names: Vec<String>,
    ) -> Promise {
        future_to_promise(async move {
            let kind = BackendKind::parse(&backend).map_err(js_error)?;
            let input = InputKind::parse(&input).map_err(js_error)?;
            let classifier = Classifier::for_images(weights_file, kind, input, class_names)
                .await
                .map_err(js_error)?;
            Ok(JsValue::from(classifier))
        })
    }

    /// Resolves to a Float32Array of logits `[batch, classes]`.
    pub fn logits(
        &self,
        images: Vec<f32>,
        batch: usize,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Promise {
        let classifier = self.clone();
        future_to_promise(async move {
            let values = classifier
                .classify(images, [batch, channels, height, width])
                .await
                .map_err(js_error)?;
            Ok(js_sys::Float32Array::from(values.as_slice()).into())
        })
    }

    /// Resolves to a Float32Array of class probabilities for RGBA pixels (ImageData.data).
    #[wasm_bindgen(js_name = classifyPixels)]
    pub fn classify_pixels(&self, rgba: Vec<u8>, width: usize, height: usize) -> Promise {
        let classifier = self.clone();
        future_to_promise(async move {
            let values = classifier
                .classify_image(&rgba, width, height)
                .await
                .map_err(js_error)?;
            Ok(js_sys::Float32Array::from(values.as_slice()).into())
        })
    }

    /// Exactly what the model receives for these pixels, `[channels, height, width]` in the
    /// model's own scale, for showing it.
    #[wasm_bindgen(js_name = modelInput)]
    pub fn model_input(
        &self,
        rgba: Vec<u8>,
        width: usize,
        height: usize,
    ) -> std::result::Result<js_sys::Float32Array, JsValue> {
        let image = Rgba::new(&rgba, width, height).map_err(js_error)?;
        let (input, _) = self.input_kind().map_err(js_error)?.prepare(&image);
        Ok(js_sys::Float32Array::from(input.as_slice()))
    }

    /// What runs the model, in words (the WebGPU adapter, or CPU).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.description.clone()
    }

    #[wasm_bindgen(getter, js_name = numClasses)]
    pub fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    #[wasm_bindgen(getter, js_name = classNames)]
    pub fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }
}
