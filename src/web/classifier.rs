use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Backend, BackendKind, js_error};
use crate::error::Result;
use crate::inference::{images_tensor, logits_async};
use crate::resnet::{Arch, ResNet, ResNetConfig};
use crate::weights;

/// A ResNet on one backend, callable from JavaScript.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Classifier {
    model: Rc<ResNet>,
    backend: Backend,
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
        })
    }

    pub fn backend_info(&self) -> &Backend {
        &self.backend
    }

    /// Logits `[batch, classes]`, flat, for images `[batch, channels, height, width]`.
    pub async fn classify(&self, images: Vec<f32>, shape: [usize; 4]) -> Result<Vec<f32>> {
        let input = images_tensor(images, shape, &self.backend.device)?;
        logits_async(&self.model, input).await
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

    /// What runs the model, in words (the WebGPU adapter, or CPU).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.description.clone()
    }

    #[wasm_bindgen(getter, js_name = numClasses)]
    pub fn num_classes(&self) -> usize {
        self.model.num_classes()
    }
}

/// What a weight file holds, read from its tensor names and shapes.
#[wasm_bindgen]
pub struct WeightsDescription {
    arch: String,
    num_classes: usize,
    in_channels: usize,
    num_params: usize,
}

#[wasm_bindgen]
impl WeightsDescription {
    /// `describeWeights(bytes)`: the architecture and sizes of a .safetensors or burnpack file.
    #[wasm_bindgen(js_name = describe)]
    pub fn describe(weights_file: Vec<u8>) -> std::result::Result<WeightsDescription, JsValue> {
        let info = weights::inspect(weights_file).map_err(js_error)?;
        Ok(Self {
            arch: info.config.arch.name().to_string(),
            num_classes: info.config.num_classes,
            in_channels: info.config.in_channels,
            num_params: info.num_params,
        })
    }

    #[wasm_bindgen(getter)]
    pub fn arch(&self) -> String {
        self.arch.clone()
    }

    #[wasm_bindgen(getter, js_name = numClasses)]
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    #[wasm_bindgen(getter, js_name = inChannels)]
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    #[wasm_bindgen(getter, js_name = numParams)]
    pub fn num_params(&self) -> usize {
        self.num_params
    }
}
