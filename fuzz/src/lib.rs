//! What every fuzz target does with its input: read it as a weight file the way the page and
//! the CLI do (`inspect`, then `load`). Any panic, or an allocation past libFuzzer's limit,
//! is a finding.

use burn::prelude::Device;
use resnet_web::resnet::{Arch, ResNetConfig};
use resnet_web::weights::{self, WeightFormat};

/// Inputs that `WeightFormat::detect` does not give to `reader` are skipped, so that each
/// target spends its time inside its own reader.
pub fn read_weight_file(data: &[u8], reader: WeightFormat) {
    if WeightFormat::detect(data).ok() != Some(reader) {
        return;
    }
    // Load into what the file claims to be while that is small (a claim of ResNet-152 would
    // make each run slow, not deeper), else into a ResNet-20: a wrong architecture is an
    // input too.
    let config = match weights::inspect(data.to_vec()) {
        Ok(info) if info.num_params <= 2_000_000 => info.config,
        _ => ResNetConfig::new(Arch::ResNet20, 10, 1),
    };
    let _ = weights::load(data.to_vec(), &config, &Device::flex());
}
