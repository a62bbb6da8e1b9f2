//! BatchNorm folded into the convolution before it, for inference: at evaluation a
//! BatchNorm is a per-channel scale and shift, which the convolution's weights and a bias
//! can carry, so each layer is one convolution instead of a convolution and a normalisation
//! pass (one kernel fewer per layer on WebGPU).

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::block::{BasicBlock, Bottleneck, DownsampleLayer, ResidualBlock};
use super::model::ResNet;
use crate::ops::pack_weight;

/// `norm(conv(x))` with running statistics as one convolution: with
/// `s = gamma / sqrt(var + eps)`, the weights become `w * s` (per output channel) and the
/// bias `beta + (b - mean) * s`.
fn fold(mut conv: Conv2d, norm: Option<BatchNorm>) -> Conv2d {
    let Some(norm) = norm else {
        return conv;
    };
    let weight = conv.weight.val();
    let device = weight.device();
    let [channels, ..] = weight.dims();
    let scale = norm.gamma.val()
        / norm
            .running_var
            .value()
            .to_device(&device)
            .add_scalar(norm.epsilon)
            .sqrt();
    let bias = match conv.bias.take() {
        Some(bias) => bias.val(),
        None => Tensor::zeros([channels], &device),
    };
    let bias =
        norm.beta.val() + (bias - norm.running_mean.value().to_device(&device)) * scale.clone();
    conv.weight = Param::from_tensor(pack_weight(weight * scale.reshape([channels, 1, 1, 1])));
    conv.bias = Some(Param::from_tensor(bias));
    conv
}

/// `[conv, norm]` becomes `[conv]`.
fn fold_downsample(layers: Vec<DownsampleLayer>) -> Vec<DownsampleLayer> {
    let mut folded = Vec::with_capacity(layers.len());
    for layer in layers {
        match (folded.pop(), layer) {
            (Some(DownsampleLayer::Conv(conv)), DownsampleLayer::Norm(norm)) => {
                folded.push(DownsampleLayer::Conv(fold(conv, Some(norm))))
            }
            (previous, layer) => {
                folded.extend(previous);
                folded.push(layer);
            }
        }
    }
    folded
}

fn fold_block(block: ResidualBlock) -> ResidualBlock {
    match block {
        ResidualBlock::Basic(block) => ResidualBlock::Basic(BasicBlock {
            conv1: fold(block.conv1, block.bn1),
            bn1: None,
            conv2: fold(block.conv2, block.bn2),
            bn2: None,
            downsample: fold_downsample(block.downsample),
            pad_shortcut: block.pad_shortcut,
            residual: block.residual,
        }),
        ResidualBlock::Bottleneck(block) => ResidualBlock::Bottleneck(Bottleneck {
            conv1: fold(block.conv1, block.bn1),
            bn1: None,
            conv2: fold(block.conv2, block.bn2),
            bn2: None,
            conv3: fold(block.conv3, block.bn3),
            bn3: None,
            downsample: fold_downsample(block.downsample),
            residual: block.residual,
        }),
    }
}

impl ResNet {
    /// The same network for inference, with every BatchNorm folded into its convolution.
    /// Its logits equal the unfolded model's in evaluation (to float rounding). It cannot
    /// train (the batch statistics are gone) and has no torchvision keys for its norms, so
    /// exporters refuse it: export the model before folding.
    pub fn fold_batch_norm(self) -> Self {
        let fold_stage =
            |stage: Vec<ResidualBlock>| stage.into_iter().map(fold_block).collect::<Vec<_>>();
        Self {
            conv1: fold(self.conv1, self.bn1),
            bn1: None,
            maxpool: self.maxpool,
            layer1: fold_stage(self.layer1),
            layer2: fold_stage(self.layer2),
            layer3: fold_stage(self.layer3),
            layer4: fold_stage(self.layer4),
            avgpool: self.avgpool,
            fc: self.fc,
        }
    }

    /// Whether `fold_batch_norm` made this model (the stem's norm is the first folded).
    pub fn is_folded(&self) -> bool {
        self.bn1.is_none()
    }
}
