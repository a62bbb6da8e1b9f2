use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::store::ModuleSnapshot;

use super::block::{ResidualBlock, batch_norm, conv, conv_norm_relu};
use super::config::{ResNetConfig, Stem};
use crate::error::{Error, Result};

/// BatchNorm's running statistics and torchvision's batch counter: state saved with the
/// weights, not trainable parameters.
pub fn is_running_statistic(key: &str) -> bool {
    ["running_mean", "running_var", "num_batches_tracked"]
        .iter()
        .any(|suffix| key.ends_with(suffix))
}

/// A ResNet whose field names are torchvision's, so that weight files map one to one.
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    /// `None` once folded into `conv1` (`fold_batch_norm`).
    pub bn1: Option<BatchNorm>,
    pub maxpool: Option<MaxPool2d>,
    pub layer1: Vec<ResidualBlock>,
    pub layer2: Vec<ResidualBlock>,
    pub layer3: Vec<ResidualBlock>,
    /// Empty for the CIFAR family, which has three stages.
    pub layer4: Vec<ResidualBlock>,
    pub avgpool: AdaptiveAvgPool2d,
    pub fc: Linear,
}

impl ResNet {
    /// A freshly initialised network. Parameters are created on `device`.
    pub fn new(config: &ResNetConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let arch = config.arch;
        let widths = arch.stage_widths();
        let (conv1, maxpool) = match arch.stem() {
            Stem::ImageNet => (
                conv(config.in_channels, widths[0], 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
            Stem::Cifar => (conv(config.in_channels, widths[0], 3, 1, device), None),
        };
        let mut in_channels = widths[0];
        let mut stages = Vec::new();
        for (stage, (&depth, &width)) in arch.stage_depths().iter().zip(widths).enumerate() {
            let first_stride = if stage == 0 { 1 } else { 2 };
            let blocks = (0..depth)
                .map(|index| {
                    let stride = if index == 0 { first_stride } else { 1 };
                    let block = ResidualBlock::new(
                        arch.block_kind(),
                        in_channels,
                        width,
                        stride,
                        config.shortcut,
                        device,
                    );
                    in_channels = width * arch.block_kind().expansion();
                    block
                })
                .collect::<Vec<_>>();
            stages.push(blocks);
        }
        // The CIFAR family has three stages: its layer4 stays empty.
        let mut stages = stages.into_iter();
        Ok(Self {
            conv1,
            bn1: Some(batch_norm(widths[0], device)),
            maxpool,
            layer1: stages.next().unwrap_or_default(),
            layer2: stages.next().unwrap_or_default(),
            layer3: stages.next().unwrap_or_default(),
            layer4: stages.next().unwrap_or_default(),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(config.feature_channels(), config.num_classes).init(device),
        })
    }

    pub fn stages(&self) -> [&[ResidualBlock]; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// Trainable parameters, counted as torchvision counts them: BatchNorm running statistics
    /// are state, not parameters (burn's `num_params` includes them).
    pub fn num_trainable_params(&self) -> usize {
        self.collect(None, None, true)
            .iter()
            .filter(|tensor| !is_running_statistic(&tensor.name))
            .map(|tensor| tensor.shape.num_elements())
            .sum()
    }

    /// Whether this is a plain twin: blocks without shortcuts.
    pub fn is_plain(&self) -> bool {
        self.stages()
            .into_iter()
            .flatten()
            .any(|block| !block.is_residual())
    }

    /// Input channels the first convolution expects.
    pub fn in_channels(&self) -> usize {
        self.conv1.weight.shape()[1]
    }

    pub fn num_classes(&self) -> usize {
        self.fc.weight.shape()[1]
    }

    /// The last stage's feature map, before pooling: `[batch, channels, h, w]`.
    pub fn features(&self, input: Tensor<4>) -> Tensor<4> {
        let x = conv_norm_relu(&self.conv1, &self.bn1, input);
        let x = match &self.maxpool {
            Some(pool) => pool.forward(x),
            None => x,
        };
        self.stages()
            .into_iter()
            .flatten()
            .fold(x, |x, block| block.forward(x))
    }

    /// The pooled features `[batch, channels]` the classifier reads: a picture's embedding.
    pub fn embeddings(&self, input: Tensor<4>) -> Tensor<2> {
        self.avgpool.forward(self.features(input)).flatten(1, 3)
    }

    /// Class logits `[batch, classes]` for images `[batch, channels, height, width]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.embeddings(input))
    }

    /// Logits `[batch, classes]` and class activation maps `[batch, classes, h, w]` (Zhou et
    /// al., 2016): the classifier's weights applied at every position of the last stage, so
    /// that the spatial mean of a class's map plus its bias is exactly that class's logit.
    pub fn forward_with_maps(&self, input: Tensor<4>) -> (Tensor<2>, Tensor<4>) {
        let features = self.features(input);
        let [batch, channels, height, width] = features.dims();
        let logits = self
            .fc
            .forward(self.avgpool.forward(features.clone()).flatten(1, 3));
        // burn's Linear weight is [in, out]: positions [batch, h*w, C] x [C, classes].
        let classes = self.num_classes();
        let weight = self
            .fc
            .weight
            .val()
            .unsqueeze::<3>()
            .expand([batch, channels, classes]);
        let maps = features
            .reshape([batch, channels, height * width])
            .swap_dims(1, 2)
            .matmul(weight)
            .swap_dims(1, 2)
            .reshape([batch, classes, height, width]);
        (logits, maps)
    }

    /// `forward` for input of any origin: checks the shape first, so a bad input is an error
    /// instead of a panic deep inside a convolution.
    pub fn try_forward(&self, input: Tensor<4>) -> Result<Tensor<2>> {
        self.check_input(&input)?;
        Ok(self.forward(input))
    }

    /// Whether `input` fits this model: a clear error instead of a panic in a kernel.
    pub fn check_input(&self, input: &Tensor<4>) -> Result<()> {
        let [batch, channels, height, width] = input.dims();
        if batch == 0 || height == 0 || width == 0 {
            return Err(Error::InvalidInput(format!(
                "the input is empty (shape [{batch}, {channels}, {height}, {width}])"
            )));
        }
        if channels != self.in_channels() {
            return Err(Error::InvalidInput(format!(
                "the model takes {} input channel(s) but the input has {channels}",
                self.in_channels()
            )));
        }
        Ok(())
    }
}
