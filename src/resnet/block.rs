use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;

use super::config::{BlockKind, Shortcut};
use crate::ops::batch_norm_forward;
use crate::ops::{convolve, convolve_add_relu, convolve_relu};

/// One residual block. The enum variant is invisible in weight files (burn's stores skip
/// enum variants), so keys read `layer1.0.conv1.weight` as in torchvision.
// Blocks live in Vecs, one variant per network: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ResidualBlock {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

/// Two 3x3 convolutions; the stride sits on the first, as in torchvision.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    /// `None` once folded into `conv1` (`ResNet::fold_batch_norm`); likewise every norm.
    pub bn1: Option<BatchNorm>,
    pub conv2: Conv2d,
    pub bn2: Option<BatchNorm>,
    /// Option B shortcut where the shape changes; `[conv, bn]` so that keys read
    /// `downsample.0.weight` and `downsample.1.running_mean` like torchvision's `nn.Sequential`.
    pub downsample: Vec<DownsampleLayer>,
    /// Option A shortcut where the shape changes.
    pub pad_shortcut: Option<PadShortcut>,
    /// False in a plain twin: no shortcut, the block is relu(F(x)). Not saved in weight
    /// files (a constant); their metadata says it.
    pub residual: bool,
}

/// 1x1 reduce, 3x3 (strided), 1x1 expand by 4.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: Option<BatchNorm>,
    pub conv2: Conv2d,
    pub bn2: Option<BatchNorm>,
    pub conv3: Conv2d,
    pub bn3: Option<BatchNorm>,
    pub downsample: Vec<DownsampleLayer>,
    /// False in a plain twin (see `BasicBlock::residual`).
    pub residual: bool,
}

#[derive(Module, Debug)]
pub enum DownsampleLayer {
    Conv(Conv2d),
    Norm(BatchNorm),
}

/// Option A: keep every `stride`-th pixel and add zero channels on both sides.
#[derive(Module, Debug)]
pub struct PadShortcut {
    pub stride: usize,
    pub extra_channels: usize,
}

/// torchvision initialises convolutions with Kaiming normal, fan-out, ReLU gain.
pub(crate) fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    device: &Device,
) -> Conv2d {
    let padding = kernel / 2;
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

pub(crate) fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// `relu(norm(conv(input)))`: one kernel on a GPU where the norm is folded.
pub(crate) fn conv_norm_relu(
    conv: &Conv2d,
    norm: &Option<BatchNorm>,
    input: Tensor<4>,
) -> Tensor<4> {
    match norm {
        Some(norm) => relu(batch_norm_forward(norm, convolve(conv, input))),
        None => convolve_relu(conv, input),
    }
}

/// `relu(norm(conv(input)) + residual)`: one kernel on a GPU where the norm is folded.
fn conv_norm_add_relu(
    conv: &Conv2d,
    norm: &Option<BatchNorm>,
    input: Tensor<4>,
    residual: Tensor<4>,
) -> Tensor<4> {
    match norm {
        Some(norm) => relu(batch_norm_forward(norm, convolve(conv, input)) + residual),
        None => convolve_add_relu(conv, input, residual),
    }
}

fn projection(
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    device: &Device,
) -> Vec<DownsampleLayer> {
    vec![
        DownsampleLayer::Conv(conv(in_channels, out_channels, 1, stride, device)),
        DownsampleLayer::Norm(batch_norm(out_channels, device)),
    ]
}

impl ResidualBlock {
    /// A block taking `in_channels` to `width` (times 4 for a bottleneck) at `stride`.
    pub fn new(
        kind: BlockKind,
        in_channels: usize,
        width: usize,
        stride: usize,
        shortcut: Shortcut,
        device: &Device,
    ) -> Self {
        let out_channels = width * kind.expansion();
        let residual = shortcut != Shortcut::None;
        let reshapes = stride != 1 || in_channels != out_channels;
        let downsample = if reshapes && shortcut == Shortcut::Projection {
            projection(in_channels, out_channels, stride, device)
        } else {
            Vec::new()
        };
        match kind {
            BlockKind::Basic => ResidualBlock::Basic(BasicBlock {
                conv1: conv(in_channels, width, 3, stride, device),
                bn1: Some(batch_norm(width, device)),
                conv2: conv(width, width, 3, 1, device),
                bn2: Some(batch_norm(width, device)),
                downsample,
                pad_shortcut: (reshapes && shortcut == Shortcut::ZeroPad).then(|| PadShortcut {
                    stride,
                    extra_channels: out_channels - in_channels,
                }),
                residual,
            }),
            BlockKind::Bottleneck => ResidualBlock::Bottleneck(Bottleneck {
                conv1: conv(in_channels, width, 1, 1, device),
                bn1: Some(batch_norm(width, device)),
                conv2: conv(width, width, 3, stride, device),
                bn2: Some(batch_norm(width, device)),
                conv3: conv(width, out_channels, 1, 1, device),
                bn3: Some(batch_norm(out_channels, device)),
                downsample,
                residual,
            }),
        }
    }

    /// False for a plain twin's block, which has no shortcut.
    pub fn is_residual(&self) -> bool {
        match self {
            ResidualBlock::Basic(block) => block.residual,
            ResidualBlock::Bottleneck(block) => block.residual,
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        match self {
            ResidualBlock::Basic(block) => block.forward(input),
            ResidualBlock::Bottleneck(block) => block.forward(input),
        }
    }
}

fn apply_downsample(layers: &[DownsampleLayer], input: Tensor<4>) -> Tensor<4> {
    layers.iter().fold(input, |x, layer| match layer {
        DownsampleLayer::Conv(conv) => convolve(conv, x),
        DownsampleLayer::Norm(norm) => batch_norm_forward(norm, x),
    })
}

impl BasicBlock {
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = conv_norm_relu(&self.conv1, &self.bn1, input.clone());
        if !self.residual {
            return conv_norm_relu(&self.conv2, &self.bn2, x);
        }
        let identity = match &self.pad_shortcut {
            Some(pad) => pad.forward(input),
            None => apply_downsample(&self.downsample, input),
        };
        conv_norm_add_relu(&self.conv2, &self.bn2, x, identity)
    }
}

impl Bottleneck {
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = conv_norm_relu(&self.conv1, &self.bn1, input.clone());
        let x = conv_norm_relu(&self.conv2, &self.bn2, x);
        if !self.residual {
            return conv_norm_relu(&self.conv3, &self.bn3, x);
        }
        let identity = apply_downsample(&self.downsample, input);
        conv_norm_add_relu(&self.conv3, &self.bn3, x, identity)
    }
}

impl PadShortcut {
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        // A 1x1 average pool with stride s is exactly x[:, :, ::s, ::s].
        let x = avg_pool2d(
            input,
            AvgPoolOptions::new([1, 1]).with_stride([self.stride, self.stride]),
        );
        if self.extra_channels == 0 {
            return x;
        }
        let [batch, _, height, width] = x.dims();
        let before = self.extra_channels / 2;
        let after = self.extra_channels - before;
        let device = x.device();
        Tensor::cat(
            vec![
                Tensor::zeros([batch, before, height, width], &device),
                x,
                Tensor::zeros([batch, after, height, width], &device),
            ],
            1,
        )
    }
}
