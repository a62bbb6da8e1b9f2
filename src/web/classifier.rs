//! The classifier as JavaScript sees it: `crate::inference::classifier::Classifier` on a browser
//! backend, with promises for results and `Error`s for failures.

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::backend::{Backend, BackendKind};
use super::convert::{js_error, rgba_bytes};
use crate::data::preprocess::InputKind;
use crate::error::Result;
use crate::inference::classifier;
use crate::resnet::{Preset, ResNet, ResNetConfig};
use crate::weights;

/// A ResNet on one backend, callable from JavaScript.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Classifier {
    engine: classifier::Classifier,
    backend: Backend,
}

impl Classifier {
    /// A model with `weights` (safetensors or burnpack bytes), or freshly initialised
    /// without.
    pub async fn new(
        config: &ResNetConfig,
        weights_file: Option<Vec<u8>>,
        backend: BackendKind,
    ) -> Result<Self> {
        let backend = Backend::init(backend).await?;
        let engine =
            classifier::Classifier::new(config, weights_file, &backend.device, backend.engine())
                .await?;
        Ok(Self { engine, backend })
    }

    /// A trained model from its weight file, with how it reads pixels and its class names.
    pub async fn for_images(
        weights_file: Vec<u8>,
        backend: BackendKind,
        input: InputKind,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let backend = Backend::init(backend).await?;
        let engine = classifier::Classifier::for_images(
            weights_file,
            &backend.device,
            backend.engine(),
            input,
            class_names,
        )
        .await?;
        Ok(Self { engine, backend })
    }

    /// A model already on `backend`'s device (one just trained in the page).
    pub async fn from_model(
        model: ResNet,
        backend: Backend,
        input: InputKind,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let engine = classifier::Classifier::from_model(
            model,
            &backend.device,
            backend.engine(),
            input,
            class_names,
        )
        .await?;
        Ok(Self { engine, backend })
    }

    /// The same folded model on another backend: the page answers a load on the CPU and
    /// moves to WebGPU later, without parsing and folding the weight file a second time.
    pub async fn on_backend(&self, kind: BackendKind) -> Result<Self> {
        let backend = Backend::init(kind).await?;
        let engine = self
            .engine
            .on_device(&backend.device, backend.engine())
            .await?;
        Ok(Self { engine, backend })
    }

    /// The model as it runs: with its BatchNorm folded (`ResNet::fold_batch_norm`).
    pub fn model(&self) -> &ResNet {
        self.engine.model()
    }

    pub fn backend_info(&self) -> &Backend {
        &self.backend
    }

    /// Logits `[batch, classes]`, flat, for images `[batch, channels, height, width]`.
    pub async fn classify(&self, images: Vec<f32>, shape: [usize; 4]) -> Result<Vec<f32>> {
        self.engine.classify(images, shape).await
    }
}

/// Probabilities and where the model looked, for the page.
#[wasm_bindgen]
pub struct Prediction(classifier::Prediction);

#[wasm_bindgen]
impl Prediction {
    #[wasm_bindgen(getter)]
    pub fn probabilities(&self) -> js_sys::Float32Array {
        js_sys::Float32Array::from(self.0.probabilities.as_slice())
    }

    /// Row-major `[size, size]` in [0, 1], for the most likely class.
    #[wasm_bindgen(getter, js_name = heatMap)]
    pub fn heat_map(&self) -> js_sys::Float32Array {
        js_sys::Float32Array::from(self.0.heat_map.as_slice())
    }

    #[wasm_bindgen(getter, js_name = heatMapSize)]
    pub fn heat_map_size(&self) -> usize {
        self.0.heat_map_size
    }

    #[wasm_bindgen(getter, js_name = topClass)]
    pub fn top_class(&self) -> usize {
        self.0.top_class
    }
}

fn config(arch: &str, num_classes: usize, in_channels: usize) -> Result<ResNetConfig> {
    Ok(Preset::parse(arch)?.config(num_classes, in_channels))
}

#[wasm_bindgen]
impl Classifier {
    /// `Classifier.create(arch, numClasses, inChannels, backend, weights?, input?)`: backend
    /// is "webgpu" or "cpu"; weights are the bytes of any weight file we read (random ones
    /// without); input, how it reads pixels (for `classifyPixels` and `embedImage`).
    pub fn create(
        arch: String,
        num_classes: usize,
        in_channels: usize,
        backend: String,
        weights_file: Option<Vec<u8>>,
        input: Option<String>,
    ) -> Promise {
        future_to_promise(async move {
            let kind = BackendKind::parse(&backend).map_err(js_error)?;
            let config = config(&arch, num_classes, in_channels).map_err(js_error)?;
            let input = input
                .map(|name| InputKind::parse(&name))
                .transpose()
                .map_err(js_error)?;
            let mut classifier = Classifier::new(&config, weights_file, kind)
                .await
                .map_err(js_error)?;
            if let Some(input) = input {
                classifier.engine = classifier.engine.with_input(input);
            }
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

    /// `classifier.onBackend(backend)`: a new classifier with this model on "webgpu" or
    /// "cpu"; this one stays usable.
    #[wasm_bindgen(js_name = onBackend)]
    pub fn on_backend_js(&self, backend: String) -> Promise {
        let classifier = self.clone();
        future_to_promise(async move {
            let kind = BackendKind::parse(&backend).map_err(js_error)?;
            let moved = classifier.on_backend(kind).await.map_err(js_error)?;
            Ok(JsValue::from(moved))
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
    pub fn classify_pixels(
        &self,
        rgba: js_sys::Uint8Array,
        width: usize,
        height: usize,
    ) -> Promise {
        let classifier = self.clone();
        future_to_promise(async move {
            let rgba = rgba_bytes(&rgba, width, height)?;
            let values = classifier
                .engine
                .classify_image(&rgba, width, height)
                .await
                .map_err(js_error)?;
            Ok(js_sys::Float32Array::from(values.as_slice()).into())
        })
    }

    /// Resolves to a `Prediction`: probabilities and the heat map of the top class.
    #[wasm_bindgen(js_name = classifyWithHeatMap)]
    pub fn classify_with_heat_map(
        &self,
        rgba: js_sys::Uint8Array,
        width: usize,
        height: usize,
    ) -> Promise {
        let classifier = self.clone();
        future_to_promise(async move {
            let rgba = rgba_bytes(&rgba, width, height)?;
            let prediction = classifier
                .engine
                .classify_image_with_map(&rgba, width, height)
                .await
                .map_err(js_error)?;
            Ok(JsValue::from(Prediction(prediction)))
        })
    }

    /// Resolves to the picture's embedding (a Float32Array): the backbone's pooled
    /// features, which `trainHead` trains a new classifier on.
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(&self, rgba: js_sys::Uint8Array, width: usize, height: usize) -> Promise {
        let classifier = self.clone();
        future_to_promise(async move {
            let rgba = rgba_bytes(&rgba, width, height)?;
            let values = classifier
                .engine
                .embed_image(&rgba, width, height)
                .await
                .map_err(js_error)?;
            Ok(js_sys::Float32Array::from(values.as_slice()).into())
        })
    }

    /// How this model reads pixels ("digit", "fashion", "imagenet", "gray-28", ...).
    #[wasm_bindgen(getter)]
    pub fn input(&self) -> Option<String> {
        self.engine.input().map(InputKind::name)
    }

    /// Exactly what the model receives for these pixels, `[channels, height, width]` in the
    /// model's own scale, for showing it.
    #[wasm_bindgen(js_name = modelInput)]
    pub fn model_input(
        &self,
        rgba: js_sys::Uint8Array,
        width: usize,
        height: usize,
    ) -> std::result::Result<js_sys::Float32Array, JsValue> {
        let rgba = rgba_bytes(&rgba, width, height)?;
        let (input, _) = self
            .engine
            .model_input(&rgba, width, height)
            .map_err(js_error)?;
        Ok(js_sys::Float32Array::from(input.as_slice()))
    }

    /// What runs the model, in words (the WebGPU adapter, or CPU).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.describe()
    }

    #[wasm_bindgen(getter, js_name = numClasses)]
    pub fn num_classes(&self) -> usize {
        self.engine.num_classes()
    }

    #[wasm_bindgen(getter, js_name = classNames)]
    pub fn class_names(&self) -> Vec<String> {
        self.engine.class_names().to_vec()
    }
}

/// `describeWeights(bytes)`: {arch, numClasses, inChannels} of a weight file, from its tensor
/// names and shapes alone.
#[wasm_bindgen(js_name = describeWeights)]
pub fn describe_weights(bytes: Vec<u8>) -> std::result::Result<js_sys::Object, JsValue> {
    let config = weights::inspect(bytes).map_err(js_error)?.config;
    let object = js_sys::Object::new();
    for (name, value) in [
        ("arch", JsValue::from_str(&config.preset().to_string())),
        ("numClasses", JsValue::from_f64(config.num_classes as f64)),
        ("inChannels", JsValue::from_f64(config.in_channels as f64)),
    ] {
        js_sys::Reflect::set(&object, &JsValue::from_str(name), &value)?;
    }
    Ok(object)
}

/// `convertWeights(bytes, format)`: resolves to the bytes of any weight file we read,
/// rewritten as torchvision "safetensors" or "burnpack".
#[wasm_bindgen(js_name = convertWeights)]
pub fn convert_weights(bytes: Vec<u8>, format: String) -> Promise {
    future_to_promise(async move {
        let format = format.parse().map_err(js_error)?;
        let converted = weights::convert(bytes, format).await.map_err(js_error)?;
        Ok(js_sys::Uint8Array::from(converted.as_slice()).into())
    })
}
