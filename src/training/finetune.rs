//! Fine-tuning a trained model on new data: a new classifier when the class count differs,
//! and either every layer training or only the classifier, the backbone frozen.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::prelude::*;

use crate::error::{Error, Result};
use crate::resnet::{ResNet, ResNetConfig};
use crate::weights;

/// Which layers a fine-tuning run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FineTune {
    /// Every layer.
    All,
    /// The classifier alone: the backbone, BatchNorm running statistics included, stays as
    /// it is.
    Head,
}

impl FromStr for FineTune {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "all" => Ok(FineTune::All),
            "head" => Ok(FineTune::Head),
            other => Err(Error::InvalidConfig(format!(
                "fine-tune '{other}': use all or head"
            ))),
        }
    }
}

impl fmt::Display for FineTune {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FineTune::All => "all",
            FineTune::Head => "head",
        })
    }
}

/// The model in `weights_file`, ready to train on `device` (an autodiff device) for
/// `num_classes` classes of `in_channels`-channel images: with a new, freshly initialised
/// classifier when its class count differs, and frozen but for it with `FineTune::Head`.
/// Also returns the model's configuration (the architecture comes from the file).
pub fn fine_tuning_model(
    weights_file: Vec<u8>,
    num_classes: usize,
    in_channels: usize,
    mode: FineTune,
    device: &Device,
) -> Result<(ResNet, ResNetConfig)> {
    let base = weights::inspect(weights_file.clone())?.config;
    if base.in_channels != in_channels {
        return Err(Error::Training(format!(
            "the model to fine-tune takes {} channel(s) but the data has {in_channels}",
            base.in_channels
        )));
    }
    let mut model = weights::load(weights_file, &base, device)?;
    if base.num_classes != num_classes {
        model.fc = LinearConfig::new(base.feature_channels(), num_classes).init(device);
    }
    Ok((
        apply(model, mode),
        ResNetConfig {
            num_classes,
            ..base
        },
    ))
}

/// `model` with its parameters frozen as `mode` says (again, after a resume reloads it).
pub fn apply(model: ResNet, mode: FineTune) -> ResNet {
    match mode {
        FineTune::All => model,
        FineTune::Head => freeze_backbone(model),
    }
}

/// Only the classifier trains. `freeze`, not `no_grad`: a frozen BatchNorm normalises with
/// its running statistics and leaves them as they are, so the backbone does not move at all.
pub fn freeze_backbone(mut model: ResNet) -> ResNet {
    let head = model.fc.clone();
    model = model.freeze();
    model.fc = head.set_require_grad(true);
    model
}
