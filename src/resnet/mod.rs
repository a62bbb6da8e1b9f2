//! The ResNet family, backend-generic: its configurations (CIFAR and ImageNet stems, basic
//! and bottleneck blocks, the shortcut options), its blocks and model, and BatchNorm folded
//! into the convolutions for inference. Tensors carry their device, so nothing here knows
//! whether it runs on a GPU, on the CPU, or with autodiff. Uses `ops` (the convolution and
//! BatchNorm it calls) and `error`.

mod block;
mod config;
mod fold;
mod model;

pub use block::{BasicBlock, Bottleneck, DownsampleLayer, PadShortcut, ResidualBlock};
pub use config::{Arch, BlockKind, Preset, ResNetConfig, Shortcut, Stem};
pub use model::{ResNet, is_running_statistic};
