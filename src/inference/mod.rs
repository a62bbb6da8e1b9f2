//! Inference: the classifier every target uses (a folded ResNet, how it reads pixels and its
//! class names), run by burn on any device or by our own CPU kernels on a model laid out
//! once for them (`packed`). Uses `resnet`, `ops`, `weights`, `data` and `error`.

pub mod classifier;
pub mod packed;
