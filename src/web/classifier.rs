use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{Backend, BackendKind, js_error, rgba_bytes};
use crate::error::{Error, Result};
use crate::inference::{check_images, images_tensor, logits_async, read_floats_async};
use crate::packed::{FeatureMap, PackedResNet};
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
    /// Models trained in the page on the user's own pictures: the whole picture squeezed to
    /// `size x size`, grayscale (1 channel) or RGB (3).
    Plain { channels: usize, size: usize },
}

impl InputKind {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "digit" => Ok(InputKind::Digit),
            "fashion" => Ok(InputKind::Fashion),
            "imagenet" => Ok(InputKind::ImageNet),
            other => {
                let plain = match other.split_once('-') {
                    Some(("gray", size)) => size.parse().ok().map(|size| (1, size)),
                    Some(("rgb", size)) => size.parse().ok().map(|size| (3, size)),
                    _ => None,
                };
                match plain {
                    Some((channels, size)) if (8..=64).contains(&size) => {
                        Ok(InputKind::Plain { channels, size })
                    }
                    _ => Err(Error::InvalidInput(format!(
                        "unknown input kind '{other}': use digit, fashion, imagenet, or \
                         gray-SIZE / rgb-SIZE with SIZE from 8 to 64"
                    ))),
                }
            }
        }
    }

    /// The input's name, as `parse` reads it.
    pub fn name(self) -> String {
        match self {
            InputKind::Digit => "digit".into(),
            InputKind::Fashion => "fashion".into(),
            InputKind::ImageNet => "imagenet".into(),
            InputKind::Plain { channels, size } => {
                format!("{}-{size}", if channels == 1 { "gray" } else { "rgb" })
            }
        }
    }

    /// The side of the square images the model receives.
    pub fn size(self) -> usize {
        match self {
            InputKind::Digit | InputKind::Fashion => 28,
            InputKind::ImageNet => 224,
            InputKind::Plain { size, .. } => size,
        }
    }

    /// The model input `[channels, height, width]` for an image, and its shape.
    pub fn prepare(self, image: &Rgba) -> (Vec<f32>, [usize; 4]) {
        match self {
            InputKind::Digit => (preprocess::digit(image), [1, 1, 28, 28]),
            InputKind::Fashion => (preprocess::fashion(image), [1, 1, 28, 28]),
            InputKind::ImageNet => (preprocess::imagenet(image), [1, 3, 224, 224]),
            InputKind::Plain { channels, size } => (
                preprocess::plain(image, channels, size),
                [1, channels, size, size],
            ),
        }
    }

    pub fn channels(self) -> usize {
        match self {
            InputKind::Digit | InputKind::Fashion => 1,
            InputKind::ImageNet => 3,
            InputKind::Plain { channels, .. } => channels,
        }
    }
}

/// A ResNet on one backend, callable from JavaScript.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Classifier {
    /// BatchNorm folded into the convolutions: inference only, one kernel fewer per layer.
    model: Rc<ResNet>,
    /// On the CPU backend, the same model laid out for the CPU (`src/packed.rs`), which runs
    /// the predictions; `model` stays for `on_backend`.
    packed: Option<Rc<PackedResNet>>,
    backend: Backend,
    input: Option<InputKind>,
    class_names: Vec<String>,
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
        // Built and folded on the CPU, then moved: folded on WebGPU, the folding's small
        // kernels are compiled while the first prediction waits (3.5 s instead of 0.9 s
        // from page load).
        let cpu = Device::flex();
        let model = match weights_file {
            Some(bytes) => weights::load(bytes, config, &cpu)?,
            None => ResNet::new(config, &cpu)?,
        };
        let model = model.fold_batch_norm().to_device(&backend.device);
        Self::on(model, backend, None, Vec::new()).await
    }

    /// A folded model already on `backend`'s device; class names default to "class N".
    async fn on(
        model: ResNet,
        backend: Backend,
        input: Option<InputKind>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let packed = match backend.kind {
            BackendKind::Cpu => Some(Rc::new(PackedResNet::new(&model).await?)),
            BackendKind::WebGpu => None,
        };
        let class_names = if class_names.is_empty() {
            (0..model.num_classes())
                .map(|i| format!("class {i}"))
                .collect()
        } else {
            class_names
        };
        Ok(Self {
            model: Rc::new(model),
            packed,
            backend,
            input,
            class_names,
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

    /// A model already on `backend`'s device (one just trained in the page).
    pub async fn from_model(
        model: ResNet,
        backend: Backend,
        input: InputKind,
        class_names: Vec<String>,
    ) -> Result<Self> {
        Self::on(model.fold_batch_norm(), backend, Some(input), class_names).await
    }

    /// The same folded model on another backend: the page answers a load on the CPU and
    /// moves to WebGPU later, without parsing and folding the weight file a second time.
    pub async fn on_backend(&self, kind: BackendKind) -> Result<Self> {
        let backend = Backend::init(kind).await?;
        let model = (*self.model).clone().to_device(&backend.device);
        Self::on(model, backend, self.input, self.class_names.clone()).await
    }

    /// The model as it runs: with its BatchNorm folded (`ResNet::fold_batch_norm`).
    pub fn model(&self) -> &ResNet {
        &self.model
    }

    pub fn backend_info(&self) -> &Backend {
        &self.backend
    }

    /// Logits `[batch, classes]`, flat, for images `[batch, channels, height, width]`.
    pub async fn classify(&self, images: Vec<f32>, shape: [usize; 4]) -> Result<Vec<f32>> {
        if let Some(packed) = &self.packed {
            check_images(&images, shape)?;
            return packed.forward(&FeatureMap::from_nchw(&images, shape));
        }
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
        if self.packed.is_some() {
            return Ok(probabilities(&self.classify(input, shape).await?));
        }
        let images = images_tensor(input, shape, &self.backend.device)?;
        read_floats_async(softmax(self.model.try_forward(images)?, 1)).await
    }

    /// Class probabilities, and the class activation map of the most likely class,
    /// `[h, w]` scaled to [0, 1] (what the model looked at).
    pub async fn classify_image_with_map(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Prediction> {
        let (input, shape) = self.input_kind()?.prepare(&Rgba::new(rgba, width, height)?);
        let top_class = |probabilities: &[f32]| {
            probabilities
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(index, _)| index)
        };
        let (probabilities, top, mut heat_map, map_width) = match &self.packed {
            Some(packed) => {
                check_images(&input, shape)?;
                let features = packed.features(&FeatureMap::from_nchw(&input, shape))?;
                let probabilities = probabilities(&packed.logits(&features));
                let top = top_class(&probabilities);
                let map = packed.class_map(&features, 0, top);
                (probabilities, top, map, features.width)
            }
            None => {
                let images = images_tensor(input, shape, &self.backend.device)?;
                self.model.check_input(&images)?;
                let (logits, maps) = self.model.forward_with_maps(images);
                let probabilities = read_floats_async(softmax(logits, 1)).await?;
                let top = top_class(&probabilities);
                let [_, _, map_height, map_width] = maps.dims();
                let map = maps.narrow(1, top, 1).reshape([map_height * map_width]);
                (probabilities, top, read_floats_async(map).await?, map_width)
            }
        };
        // Positive evidence only, relative to the strongest.
        let peak = heat_map.iter().copied().fold(0.0f32, f32::max);
        heat_map.iter_mut().for_each(|value| {
            *value = if peak > 0.0 {
                value.max(0.0) / peak
            } else {
                0.0
            }
        });
        Ok(Prediction {
            probabilities,
            heat_map,
            heat_map_size: map_width,
            top_class: top,
        })
    }
}

/// Softmax of one image's logits.
fn probabilities(logits: &[f32]) -> Vec<f32> {
    let peak = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|logit| (logit - peak).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|value| value / sum).collect()
}

/// Probabilities and where the model looked, for the page.
#[wasm_bindgen]
pub struct Prediction {
    probabilities: Vec<f32>,
    heat_map: Vec<f32>,
    heat_map_size: usize,
    top_class: usize,
}

#[wasm_bindgen]
impl Prediction {
    #[wasm_bindgen(getter)]
    pub fn probabilities(&self) -> js_sys::Float32Array {
        js_sys::Float32Array::from(self.probabilities.as_slice())
    }

    /// Row-major `[size, size]` in [0, 1], for the most likely class.
    #[wasm_bindgen(getter, js_name = heatMap)]
    pub fn heat_map(&self) -> js_sys::Float32Array {
        js_sys::Float32Array::from(self.heat_map.as_slice())
    }

    #[wasm_bindgen(getter, js_name = heatMapSize)]
    pub fn heat_map_size(&self) -> usize {
        self.heat_map_size
    }

    #[wasm_bindgen(getter, js_name = topClass)]
    pub fn top_class(&self) -> usize {
        self.top_class
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
                .classify_image_with_map(&rgba, width, height)
                .await
                .map_err(js_error)?;
            Ok(JsValue::from(prediction))
        })
    }

    /// How this model reads pixels ("digit", "fashion", "imagenet", "gray-28", ...).
    #[wasm_bindgen(getter)]
    pub fn input(&self) -> Option<String> {
        self.input.map(InputKind::name)
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

/// `describeWeights(bytes)`: {arch, numClasses, inChannels} of a weight file, from its tensor
/// names and shapes alone.
#[wasm_bindgen(js_name = describeWeights)]
pub fn describe_weights(bytes: Vec<u8>) -> std::result::Result<js_sys::Object, JsValue> {
    let config = weights::inspect(bytes).map_err(js_error)?.config;
    let object = js_sys::Object::new();
    for (name, value) in [
        ("arch", JsValue::from_str(config.arch.name())),
        ("numClasses", JsValue::from_f64(config.num_classes as f64)),
        ("inChannels", JsValue::from_f64(config.in_channels as f64)),
    ] {
        js_sys::Reflect::set(&object, &JsValue::from_str(name), &value)?;
    }
    Ok(object)
}
