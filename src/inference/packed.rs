//! A folded ResNet laid out once for the CPU, for inference.
//!
//! For every convolution call, burn flex lays the weights out again for `gemm`, converts the
//! input from NCHW to NHWC and the output back, builds im2col tiles, and adds the bias, the
//! residual and the ReLU in passes of their own. Here activations stay NHWC from the first
//! layer to the last, the weights are packed once, and each convolution
//! (`cpu_kernels::conv2d`) reads its input in place and adds the bias and residual and
//! applies the ReLU as it stores its output. The logits are the folded `ResNet::forward`'s,
//! to float rounding (`tests/parity.rs`).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use cpu_kernels::ConvShape;
use cpu_kernels::winograd::Tile;

use crate::error::{Error, Result};
use crate::ops::readback::read_floats_async;
use crate::resnet::{DownsampleLayer, ResNet, ResidualBlock};

/// Images or feature maps `[batch, height, width, channels]`, channels innermost.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl FeatureMap {
    /// From `[batch, channels, height, width]` values (burn's and PyTorch's layout), which
    /// the caller has checked hold exactly that many.
    pub fn from_nchw(values: &[f32], shape: [usize; 4]) -> Self {
        let [batch, channels, height, width] = shape;
        Self {
            batch,
            height,
            width,
            channels,
            data: cpu_kernels::nchw_to_nhwc(values, shape),
        }
    }

    fn dims(&self) -> [usize; 4] {
        [self.batch, self.height, self.width, self.channels]
    }

    fn pixels(&self) -> usize {
        self.batch * self.height * self.width
    }
}

fn symmetric_padding(padding: &PaddingConfig2d) -> Option<usize> {
    match *padding {
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if [left, bottom, right] == [top; 3] =>
        {
            Some(top)
        }
        PaddingConfig2d::Valid => Some(0),
        _ => None,
    }
}

/// One convolution with its BatchNorm folded in.
#[derive(Debug, Clone)]
struct PackedConv {
    shape: ConvShape,
    kernel: ConvKernel,
    /// The kernel's layout: `cpu_kernels::pack_weights`' or `winograd::pack_weights`'.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Which CPU kernel computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvKernel {
    Direct,
    /// Winograd for 3x3 stride-1 layers, on the tile `winograd::tile_for` picks: F(4x4, 3x3)
    /// up to 128 input channels, F(2x2, 3x3) above, where F(4x4)'s error passes 1e-4.
    Winograd(Tile),
}

impl ConvKernel {
    fn for_shape(shape: &ConvShape) -> Self {
        cpu_kernels::winograd::tile_for(shape).map_or(ConvKernel::Direct, ConvKernel::Winograd)
    }
}

impl PackedConv {
    async fn new(conv: &Conv2d) -> Result<Self> {
        let [out_channels, in_channels, kernel, kernel_w] = conv.weight.dims();
        let padding = symmetric_padding(&conv.padding);
        let (Some(padding), true) = (
            padding,
            kernel == kernel_w
                && conv.stride[0] == conv.stride[1]
                && conv.dilation == [1, 1]
                && conv.groups == 1,
        ) else {
            return Err(Error::InvalidConfig(format!(
                "a {kernel}x{kernel_w} convolution with stride {:?}, padding {:?}, dilation \
                 {:?} and {} groups has no CPU layout: only square kernels, symmetric padding \
                 and one group, as in the ResNets",
                conv.stride, conv.padding, conv.dilation, conv.groups
            )));
        };
        let shape = ConvShape {
            in_channels,
            out_channels,
            kernel,
            stride: conv.stride[0],
            padding,
        };
        let weights = read_floats_async(conv.weight.val()).await?;
        let bias = match &conv.bias {
            Some(bias) => read_floats_async(bias.val()).await?,
            None => vec![0.0; out_channels],
        };
        let kernel = ConvKernel::for_shape(&shape);
        let weights = match kernel {
            ConvKernel::Direct => cpu_kernels::pack_weights(&shape, &weights),
            ConvKernel::Winograd(tile) => {
                cpu_kernels::winograd::pack_weights(tile, &shape, &weights)
            }
        };
        Ok(Self {
            shape,
            kernel,
            weights,
            bias,
        })
    }

    /// `relu(conv(input) + bias + residual)`, without the ReLU when `relu` is false.
    fn forward(&self, input: &FeatureMap, residual: Option<&FeatureMap>, relu: bool) -> FeatureMap {
        let size = [input.batch, input.height, input.width];
        let residual = residual.map(|residual| residual.data.as_slice());
        let (shape, weights, bias) = (&self.shape, &self.weights, &self.bias);
        let data = match self.kernel {
            ConvKernel::Direct => {
                cpu_kernels::conv2d(shape, weights, bias, &input.data, size, residual, relu)
            }
            ConvKernel::Winograd(tile) => cpu_kernels::winograd::conv2d(
                tile,
                shape,
                weights,
                bias,
                &input.data,
                size,
                residual,
                relu,
            ),
        };
        FeatureMap {
            batch: input.batch,
            height: self.shape.output_size(input.height),
            width: self.shape.output_size(input.width),
            channels: self.shape.out_channels,
            data,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct MaxPool {
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl MaxPool {
    fn new(pool: &MaxPool2d) -> Result<Self> {
        let [kernel, kernel_w] = pool.kernel_size;
        match symmetric_padding(&pool.padding) {
            Some(padding)
                if kernel == kernel_w
                    && pool.stride[0] == pool.stride[1]
                    && pool.dilation == [1, 1]
                    && !pool.ceil_mode =>
            {
                Ok(Self {
                    kernel,
                    stride: pool.stride[0],
                    padding,
                })
            }
            _ => Err(Error::InvalidConfig(format!(
                "a max pool of {:?} has no CPU layout: only square windows with symmetric padding",
                pool.kernel_size
            ))),
        }
    }

    fn forward(&self, input: &FeatureMap) -> FeatureMap {
        let (data, height, width) = cpu_kernels::max_pool(
            &input.data,
            input.dims(),
            self.kernel,
            self.stride,
            self.padding,
        );
        FeatureMap {
            batch: input.batch,
            height,
            width,
            channels: input.channels,
            data,
        }
    }
}

#[derive(Debug, Clone)]
enum PackedShortcut {
    Identity,
    /// A plain twin's block: nothing is added.
    None,
    Projection(PackedConv),
    /// Every `stride`-th pixel, with zero channels added on both sides (option A).
    ZeroPad {
        stride: usize,
        extra_channels: usize,
    },
}

impl PackedShortcut {
    fn zero_pad(input: &FeatureMap, stride: usize, extra_channels: usize) -> FeatureMap {
        let before = extra_channels / 2;
        let (data, height, width) = cpu_kernels::subsample_and_pad_channels(
            &input.data,
            input.dims(),
            stride,
            before,
            extra_channels - before,
        );
        FeatureMap {
            batch: input.batch,
            height,
            width,
            channels: input.channels + extra_channels,
            data,
        }
    }
}

/// A residual block: its convolutions in order, a ReLU after each; the shortcut joins
/// before the last ReLU.
#[derive(Debug, Clone)]
struct PackedBlock {
    convs: Vec<PackedConv>,
    shortcut: PackedShortcut,
}

impl PackedBlock {
    async fn new(block: &ResidualBlock) -> Result<Self> {
        let folded = match block {
            ResidualBlock::Basic(block) => block.bn1.is_none() && block.bn2.is_none(),
            ResidualBlock::Bottleneck(block) => {
                block.bn1.is_none() && block.bn2.is_none() && block.bn3.is_none()
            }
        };
        if !folded {
            return Err(not_folded());
        }
        let (convs, downsample, pad, residual) = match block {
            ResidualBlock::Basic(block) => (
                vec![&block.conv1, &block.conv2],
                &block.downsample,
                block.pad_shortcut.as_ref(),
                block.residual,
            ),
            ResidualBlock::Bottleneck(block) => (
                vec![&block.conv1, &block.conv2, &block.conv3],
                &block.downsample,
                None,
                block.residual,
            ),
        };
        let mut packed = Vec::with_capacity(convs.len());
        for conv in convs {
            packed.push(PackedConv::new(conv).await?);
        }
        let shortcut = match (downsample.as_slice(), pad) {
            _ if !residual => PackedShortcut::None,
            ([], None) => PackedShortcut::Identity,
            ([DownsampleLayer::Conv(conv)], None) => {
                PackedShortcut::Projection(PackedConv::new(conv).await?)
            }
            ([], Some(pad)) => PackedShortcut::ZeroPad {
                stride: pad.stride,
                extra_channels: pad.extra_channels,
            },
            _ => return Err(not_folded()),
        };
        Ok(Self {
            convs: packed,
            shortcut,
        })
    }

    fn forward(&self, input: &FeatureMap) -> FeatureMap {
        let shortcut = match &self.shortcut {
            PackedShortcut::Identity | PackedShortcut::None => None,
            PackedShortcut::Projection(conv) => Some(conv.forward(input, None, false)),
            PackedShortcut::ZeroPad {
                stride,
                extra_channels,
            } => Some(PackedShortcut::zero_pad(input, *stride, *extra_channels)),
        };
        let (last, inner) = self.convs.split_last().expect("a block has convolutions");
        let mut x = None;
        for conv in inner {
            x = Some(conv.forward(x.as_ref().unwrap_or(input), None, true));
        }
        let residual = match self.shortcut {
            PackedShortcut::None => None,
            _ => Some(shortcut.as_ref().unwrap_or(input)),
        };
        last.forward(x.as_ref().unwrap_or(input), residual, true)
    }
}

fn not_folded() -> Error {
    Error::InvalidConfig(
        "only a model with its BatchNorm folded (ResNet::fold_batch_norm) has a CPU layout".into(),
    )
}

/// A folded ResNet for CPU inference (module docs).
#[derive(Debug, Clone)]
pub struct PackedResNet {
    stem: PackedConv,
    max_pool: Option<MaxPool>,
    blocks: Vec<PackedBlock>,
    /// `[features, classes]`, as burn's `Linear` keeps it.
    fc_weight: Vec<f32>,
    fc_bias: Vec<f32>,
    num_classes: usize,
}

impl PackedResNet {
    /// The CPU layout of a folded model (`ResNet::fold_batch_norm`), read from any device.
    pub async fn new(model: &ResNet) -> Result<Self> {
        if !model.is_folded() {
            return Err(not_folded());
        }
        let mut blocks = Vec::new();
        for block in model.stages().into_iter().flatten() {
            blocks.push(PackedBlock::new(block).await?);
        }
        let num_classes = model.num_classes();
        let fc_bias = match &model.fc.bias {
            Some(bias) => read_floats_async(bias.val()).await?,
            None => vec![0.0; num_classes],
        };
        Ok(Self {
            stem: PackedConv::new(&model.conv1).await?,
            max_pool: model.maxpool.as_ref().map(MaxPool::new).transpose()?,
            blocks,
            fc_weight: read_floats_async(model.fc.weight.val()).await?,
            fc_bias,
            num_classes,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The last stage's feature map, before pooling.
    pub fn features(&self, images: &FeatureMap) -> Result<FeatureMap> {
        if images.pixels() == 0 {
            return Err(Error::InvalidInput(format!(
                "the input is empty ({} image(s) of {}x{})",
                images.batch, images.height, images.width
            )));
        }
        if images.channels != self.stem.shape.in_channels {
            return Err(Error::InvalidInput(format!(
                "the model takes {} input channel(s) but the input has {}",
                self.stem.shape.in_channels, images.channels
            )));
        }
        let x = self.stem.forward(images, None, true);
        let mut x = match &self.max_pool {
            Some(pool) => pool.forward(&x),
            None => x,
        };
        for block in &self.blocks {
            x = block.forward(&x);
        }
        Ok(x)
    }

    /// The average-pooled feature map `[batch, channels]`, flat: each picture's embedding.
    pub fn pooled(&self, features: &FeatureMap) -> Vec<f32> {
        let channels = features.channels;
        let pixels = features.height * features.width;
        let mut pooled = vec![0.0f32; features.batch * channels];
        for (image, sums) in features
            .data
            .chunks_exact(pixels * channels)
            .zip(pooled.chunks_exact_mut(channels))
        {
            for pixel in image.chunks_exact(channels) {
                sums.iter_mut()
                    .zip(pixel)
                    .for_each(|(sum, value)| *sum += value);
            }
            sums.iter_mut().for_each(|sum| *sum /= pixels as f32);
        }
        pooled
    }

    /// Logits `[batch, classes]`, flat, from a feature map: average pool, then the classifier.
    pub fn logits(&self, features: &FeatureMap) -> Vec<f32> {
        let pooled = self.pooled(features);
        let mut logits = Vec::with_capacity(features.batch * self.num_classes);
        for embedding in pooled.chunks_exact(features.channels) {
            let mut row = self.fc_bias.clone();
            for (mean, weights) in embedding
                .iter()
                .zip(self.fc_weight.chunks_exact(self.num_classes))
            {
                row.iter_mut()
                    .zip(weights)
                    .for_each(|(logit, weight)| *logit += mean * weight);
            }
            logits.extend(row);
        }
        logits
    }

    /// Logits `[batch, classes]` for images (`FeatureMap::from_nchw`).
    pub fn forward(&self, images: &FeatureMap) -> Result<Vec<f32>> {
        Ok(self.logits(&self.features(images)?))
    }

    /// The class activation map `[height, width]` of `class` for `image` of the batch: the
    /// classifier's weights at every position (`ResNet::forward_with_maps`).
    pub fn class_map(&self, features: &FeatureMap, image: usize, class: usize) -> Vec<f32> {
        let channels = features.channels;
        let image_len = features.height * features.width * channels;
        features.data[image * image_len..(image + 1) * image_len]
            .chunks_exact(channels)
            .map(|pixel| {
                pixel
                    .iter()
                    .zip(self.fc_weight.chunks_exact(self.num_classes))
                    .map(|(value, weights)| value * weights[class])
                    .sum()
            })
            .collect()
    }
}
