//! The pytorch reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnet_web::weights::WeightFormat;

fuzz_target!(|data: &[u8]| resnet_web_fuzz::read_weight_file(data, WeightFormat::PyTorch));
