//! Gradient flow: for every weight layer (each convolution and the classifier), in depth
//! order, the L2 norm of its weight gradient and of its weights. It shows what the shortcut
//! does: in a deep plain network the early layers' gradients shrink; in a ResNet they reach
//! them. Computed on the device and read back in one go with the step's loss.

use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use crate::error::{Error, Result};
use crate::resnet::ResNet;
use crate::weights::{ModulePath, torchvision_key};

/// One weight layer's figures at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerGradient {
    /// torchvision's name for the layer: `conv1`, `layer2.0.conv1`, `layer2.0.downsample.0`, `fc`.
    pub name: String,
    /// Its place on the main path from 1 (the stem) to the classifier; a projection shortcut
    /// shares its block's first convolution's.
    pub depth: usize,
    /// ‖∂loss/∂W‖₂ (0 for a frozen layer, which gets no gradient).
    pub grad_norm: f32,
    /// ‖W‖₂, before the step's update.
    pub weight_norm: f32,
}

impl LayerGradient {
    /// The size of an update relative to the weights, for a plain gradient step.
    pub fn ratio(&self) -> f32 {
        self.grad_norm / self.weight_norm.max(f32::MIN_POSITIVE)
    }
}

/// A step's gradient norms, unread: the layers' names and depths, and for each layer its
/// gradient's squared norm then its weights' (`[2 * layers]`), to read with the loss.
pub struct PendingNorms {
    layers: Vec<(String, usize)>,
    pub squared: Tensor<1>,
}

/// The norms of `gradients` (of `model`, as it entered the step) and of its weights, for
/// each weight layer in depth order (the order of its forward pass).
pub fn gradient_norms(model: &ResNet, gradients: &GradientsParams) -> PendingNorms {
    struct Collector<'a> {
        gradients: &'a GradientsParams,
        path: ModulePath,
        layers: Vec<(String, usize)>,
        squared: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Collector<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let key = torchvision_key(&self.path.current());
            // Convolution kernels are 4-d and the classifier's weight 2-d; BatchNorm's
            // scale and shift (1-d) are not layers of their own here.
            let Some(name) = key.strip_suffix(".weight") else {
                return;
            };
            if !(D == 4 || (D == 2 && name == "fc")) {
                return;
            }
            let depth = match name.split_once(".downsample") {
                Some((block, _)) => self
                    .layers
                    .iter()
                    .find(|(layer, _)| *layer == format!("{block}.conv1"))
                    .map_or(self.layers.len(), |(_, depth)| *depth),
                None => {
                    1 + self
                        .layers
                        .iter()
                        .map(|(_, depth)| *depth)
                        .max()
                        .unwrap_or(0)
                }
            };
            let weights = param.val().inner();
            let squared_sum = |tensor: Tensor<D>| (tensor.clone() * tensor).sum();
            let gradient = match self.gradients.get::<D>(param.id) {
                Some(gradient) => squared_sum(gradient),
                // A frozen layer gets no gradient.
                None => Tensor::zeros([1], &weights.device()),
            };
            self.squared.push(gradient);
            self.squared.push(squared_sum(weights));
            self.layers.push((name.to_string(), depth));
        }
    }
    let mut collector = Collector {
        gradients,
        path: ModulePath::default(),
        layers: Vec::new(),
        squared: Vec::new(),
    };
    model.visit(&mut collector);
    PendingNorms {
        layers: collector.layers,
        squared: Tensor::cat(collector.squared, 0),
    }
}

impl PendingNorms {
    /// The figures, from `squared`'s values read back.
    pub fn read(self, squared: &[f32]) -> Result<Vec<LayerGradient>> {
        if squared.len() != 2 * self.layers.len() {
            return Err(Error::Backend(
                "a read back of the gradient norms returned the wrong count".into(),
            ));
        }
        Ok(self
            .layers
            .into_iter()
            .zip(squared.chunks_exact(2))
            .map(|((name, depth), pair)| LayerGradient {
                name,
                depth,
                grad_norm: pair[0].max(0.0).sqrt(),
                weight_norm: pair[1].max(0.0).sqrt(),
            })
            .collect())
    }
}
