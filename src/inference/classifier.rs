//! The classifier every target uses: a folded ResNet, how it reads pixels and its class
//! names, run by burn on any device or by our own CPU kernels (`packed`). The CLI, the native
//! tests and the wasm layer all classify through this.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::data::preprocess::{InputKind, Rgba};
use crate::error::{Error, Result};
use crate::inference::packed::{FeatureMap, PackedResNet};
use crate::ops::readback::read_floats_async;
use crate::resnet::{ResNet, ResNetConfig};
use crate::weights;

/// A batch of images `[batch, channels, height, width]` from a flat C-ordered buffer.
pub fn images_tensor(data: Vec<f32>, shape: [usize; 4], device: &Device) -> Result<Tensor<4>> {
    check_images(&data, shape)?;
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}

/// Whether `data` holds exactly `shape`'s count of finite values.
pub fn check_images(data: &[f32], shape: [usize; 4]) -> Result<()> {
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
        .ok_or_else(|| Error::InvalidInput(format!("shape {shape:?} is too large")))?;
    if expected != data.len() {
        return Err(Error::InvalidInput(format!(
            "shape {shape:?} needs {expected} values but {} were given",
            data.len()
        )));
    }
    if let Some(index) = data.iter().position(|value| !value.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "value {index} is {}: inputs must be finite numbers",
            data[index]
        )));
    }
    Ok(())
}

/// Logits `[batch, classes]` as a flat vector, read back synchronously (native backends).
#[cfg(not(target_arch = "wasm32"))]
pub fn logits(model: &ResNet, images: Tensor<4>) -> Result<Vec<f32>> {
    crate::ops::readback::read_floats(model.try_forward(images)?)
}

/// Logits `[batch, classes]` as a flat vector, read back asynchronously (any backend,
/// required on WebGPU in the browser).
pub async fn logits_async(model: &ResNet, images: Tensor<4>) -> Result<Vec<f32>> {
    read_floats_async(model.try_forward(images)?).await
}

/// What runs a classifier's predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// burn's forward pass, on the classifier's device (any backend).
    Burn,
    /// Our own CPU kernels on the model laid out once (`packed`): faster on the CPU, where
    /// the device must be burn's CPU backend.
    Packed,
}

/// A ResNet with its BatchNorm folded (inference only: one kernel fewer per layer).
#[derive(Clone)]
pub struct Classifier {
    model: Arc<ResNet>,
    /// With `Engine::Packed`, the same model laid out for the CPU, which runs the
    /// predictions; `model` stays for `on_device`.
    packed: Option<Arc<PackedResNet>>,
    device: Device,
    input: Option<InputKind>,
    class_names: Vec<String>,
}

/// Probabilities and where the model looked.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub probabilities: Vec<f32>,
    /// Row-major `[heat_map_size, heat_map_size]` in [0, 1], for the most likely class.
    pub heat_map: Vec<f32>,
    pub heat_map_size: usize,
    pub top_class: usize,
}

impl Classifier {
    /// A model with `weights_file` (any format `weights` reads), or freshly initialised
    /// without, on `device`.
    pub async fn new(
        config: &ResNetConfig,
        weights_file: Option<Vec<u8>>,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        // Built and folded on the CPU, then moved: folded on WebGPU, the folding's small
        // kernels are compiled while the first prediction waits (3.5 s instead of 0.9 s
        // from page load).
        let cpu = Device::flex();
        let model = match weights_file {
            Some(bytes) => weights::load(bytes, config, &cpu)?,
            None => ResNet::new(config, &cpu)?,
        };
        let model = model.fold_batch_norm().to_device(device);
        Self::folded(model, device, engine, None, Vec::new()).await
    }

    /// A trained model from its weight file, with how it reads pixels and its class names
    /// (empty: "class N").
    pub async fn for_images(
        weights_file: Vec<u8>,
        device: &Device,
        engine: Engine,
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
        let mut classifier = Self::new(&config, Some(weights_file), device, engine).await?;
        classifier.input = Some(input);
        if !class_names.is_empty() {
            classifier.class_names = class_names;
        }
        Ok(classifier)
    }

    /// A model already on `device` (one just trained), folded here.
    pub async fn from_model(
        model: ResNet,
        device: &Device,
        engine: Engine,
        input: InputKind,
        class_names: Vec<String>,
    ) -> Result<Self> {
        Self::folded(
            model.fold_batch_norm(),
            device,
            engine,
            Some(input),
            class_names,
        )
        .await
    }

    /// The same folded model on another device: no weight file parsed or folded again.
    pub async fn on_device(&self, device: &Device, engine: Engine) -> Result<Self> {
        let model = (*self.model).clone().to_device(device);
        Self::folded(model, device, engine, self.input, self.class_names.clone()).await
    }

    async fn folded(
        model: ResNet,
        device: &Device,
        engine: Engine,
        input: Option<InputKind>,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let packed = match engine {
            Engine::Packed => Some(Arc::new(PackedResNet::new(&model).await?)),
            Engine::Burn => None,
        };
        let class_names = if class_names.is_empty() {
            (0..model.num_classes())
                .map(|i| format!("class {i}"))
                .collect()
        } else {
            class_names
        };
        Ok(Self {
            model: Arc::new(model),
            packed,
            device: device.clone(),
            input,
            class_names,
        })
    }

    /// This classifier reading pixels as `input` says (one made by `new` reads none).
    pub fn with_input(mut self, input: InputKind) -> Self {
        self.input = Some(input);
        self
    }

    /// The model as it runs: with its BatchNorm folded (`ResNet::fold_batch_norm`).
    pub fn model(&self) -> &ResNet {
        &self.model
    }

    pub fn engine(&self) -> Engine {
        if self.packed.is_some() {
            Engine::Packed
        } else {
            Engine::Burn
        }
    }

    pub fn input(&self) -> Option<InputKind> {
        self.input
    }

    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    pub fn num_classes(&self) -> usize {
        self.model.num_classes()
    }

    /// Logits `[batch, classes]`, flat, for images `[batch, channels, height, width]`.
    pub async fn classify(&self, images: Vec<f32>, shape: [usize; 4]) -> Result<Vec<f32>> {
        if let Some(packed) = &self.packed {
            check_images(&images, shape)?;
            return packed.forward(&FeatureMap::from_nchw(&images, shape));
        }
        let input = images_tensor(images, shape, &self.device)?;
        logits_async(&self.model, input).await
    }

    fn input_kind(&self) -> Result<InputKind> {
        self.input.ok_or_else(|| {
            Error::InvalidInput(
                "this model was created without an input kind: use Classifier.forImages".into(),
            )
        })
    }

    /// Exactly what the model receives for an RGBA image, `[channels, height, width]` in the
    /// model's own scale, and its batch shape.
    pub fn model_input(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<(Vec<f32>, [usize; 4])> {
        Ok(self.input_kind()?.prepare(&Rgba::new(rgba, width, height)?))
    }

    /// Class probabilities for one RGBA image of any size.
    pub async fn classify_image(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Vec<f32>> {
        let (input, shape) = self.model_input(rgba, width, height)?;
        if self.packed.is_some() {
            return Ok(probabilities(&self.classify(input, shape).await?));
        }
        let images = images_tensor(input, shape, &self.device)?;
        read_floats_async(softmax(self.model.try_forward(images)?, 1)).await
    }

    /// A picture's embedding: the backbone's pooled features, which the classifier reads
    /// (`transfer` trains a new classifier on them).
    pub async fn embed_image(&self, rgba: &[u8], width: usize, height: usize) -> Result<Vec<f32>> {
        let (input, shape) = self.model_input(rgba, width, height)?;
        if let Some(packed) = &self.packed {
            check_images(&input, shape)?;
            return Ok(packed.pooled(&packed.features(&FeatureMap::from_nchw(&input, shape))?));
        }
        let images = images_tensor(input, shape, &self.device)?;
        self.model.check_input(&images)?;
        read_floats_async(self.model.embeddings(images)).await
    }

    /// Class probabilities, and the class activation map of the most likely class,
    /// scaled to [0, 1] (what the model looked at).
    pub async fn classify_image_with_map(
        &self,
        rgba: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Prediction> {
        let (input, shape) = self.model_input(rgba, width, height)?;
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
                let images = images_tensor(input, shape, &self.device)?;
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

fn top_class(probabilities: &[f32]) -> usize {
    probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(index, _)| index)
}

/// Softmax of one image's logits.
pub fn probabilities(logits: &[f32]) -> Vec<f32> {
    let peak = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|logit| (logit - peak).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|value| value / sum).collect()
}
