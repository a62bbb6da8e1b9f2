//! `torch.save` files as PyTorch itself writes them (`scripts/make_pth_fixtures.py`): the zip
//! and the legacy format, a DataParallel `module.` prefix and a checkpoint dict all load and
//! give PyTorch's logits; a pickled whole model, other globals and damaged files are refused
//! with a message.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use common::*;
use resnet_web::inference::classifier::{images_tensor, logits};
use resnet_web::resnet::Arch;
use resnet_web::weights::pth;
use resnet_web::weights::{self, WeightFormat};

const ZIP: &[u8] = include_bytes!("fixtures/resnet8-zip.pth");
const LEGACY: &[u8] = include_bytes!("fixtures/resnet8-legacy.pth");
const MODULE: &[u8] = include_bytes!("fixtures/resnet8-module.pth");
const CHECKPOINT: &[u8] = include_bytes!("fixtures/resnet8-checkpoint.pth");
const WHOLE_MODEL: &[u8] = include_bytes!("fixtures/resnet8-whole-model.pth");
const LOGITS: &[u8] = include_bytes!("fixtures/resnet8.logits.npy");

fn pytorch_logits_error(file: &[u8]) -> f32 {
    let info = weights::inspect(file.to_vec()).unwrap();
    assert_eq!(info.format, WeightFormat::PyTorch);
    assert_eq!(info.config.arch, Arch::ResNet8);
    assert_eq!((info.config.num_classes, info.config.in_channels), (10, 3));
    let device = Device::flex();
    let model = weights::load(file.to_vec(), &info.config, &device).unwrap();
    let images = images_tensor(synthetic_images(CIFAR_INPUT), CIFAR_INPUT, &device).unwrap();
    max_abs_difference(&logits(&model, images).unwrap(), &fixture_logits(LOGITS))
}

#[test]
fn every_way_pytorch_saves_a_state_dict_gives_pytorchs_logits() {
    for (name, file) in [
        ("zip", ZIP),
        ("legacy", LEGACY),
        ("module. prefix", MODULE),
        ("checkpoint dict", CHECKPOINT),
    ] {
        let error = pytorch_logits_error(file);
        println!("resnet8 .pth ({name}): max |ours - pytorch| = {error:e}");
        assert!(error < 1e-4, "{name}: {error}");
    }
}

#[test]
fn the_reader_gives_every_tensor_with_torchvision_names() {
    let zip = pth::read_state_dict(ZIP).unwrap();
    for file in [LEGACY, MODULE, CHECKPOINT] {
        assert_eq!(pth::read_state_dict(file).unwrap(), zip);
    }
    assert_eq!(zip["fc.weight"].shape, vec![10, 64]);
    assert_eq!(
        zip["bn1.num_batches_tracked"].values,
        pth::TensorValues::I64(vec![7])
    );
    assert!(zip.keys().all(|key| !key.starts_with("module.")));
}

#[test]
fn a_pickled_whole_model_is_refused_by_name() {
    let error = weights::inspect(WHOLE_MODEL.to_vec())
        .unwrap_err()
        .to_string();
    assert!(error.contains("__main__.CifarResNet"), "{error}");
    assert!(error.contains("model.state_dict()"), "{error}");
}

/// A zip-format file whose pickle is `replacement` instead.
fn with_pickle(pickle: &[u8]) -> Vec<u8> {
    // A stored (uncompressed) zip of one entry, as torch.save writes them.
    let name = b"archive/data.pkl";
    let mut file = Vec::new();
    let crc = 0u32; // not checked by readers of torch files
    file.extend_from_slice(b"PK\x03\x04");
    file.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
    file.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
    file.extend_from_slice(&(name.len() as u16).to_le_bytes());
    file.extend_from_slice(&0u16.to_le_bytes());
    file.extend_from_slice(name);
    file.extend_from_slice(pickle);
    let directory = file.len();
    file.extend_from_slice(b"PK\x01\x02");
    file.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
    file.extend_from_slice(&(pickle.len() as u32).to_le_bytes());
    file.extend_from_slice(&(name.len() as u16).to_le_bytes());
    file.extend_from_slice(&[0; 12]);
    file.extend_from_slice(&0u32.to_le_bytes());
    file.extend_from_slice(name);
    let directory_len = file.len() - directory;
    file.extend_from_slice(b"PK\x05\x06");
    file.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    file.extend_from_slice(&(directory_len as u32).to_le_bytes());
    file.extend_from_slice(&(directory as u32).to_le_bytes());
    file.extend_from_slice(&[0, 0]);
    file
}

#[test]
fn any_other_global_is_refused_and_names_it() {
    // pickle.dumps(os.system) at protocol 2: GLOBAL 'posix system', then STOP.
    let error = pth::read_state_dict(&with_pickle(b"\x80\x02cposix\nsystem\nq\x00.")).unwrap_err();
    assert!(error.to_string().contains("'posix.system'"), "{error}");
    // A dict of plain numbers holds no state_dict.
    let error = pth::read_state_dict(&with_pickle(
        b"\x80\x02}q\x00X\x05\x00\x00\x00epochq\x01K\x03s.",
    ))
    .unwrap_err();
    assert!(error.to_string().contains("no state_dict"), "{error}");
}

#[test]
fn hostile_pickles_are_refused_before_they_exhaust_memory() {
    // 200 nested lists.
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', 200));
    deep.extend(std::iter::repeat_n(b'a', 199));
    deep.push(b'.');
    let error = pth::read_state_dict(&with_pickle(&deep)).unwrap_err();
    assert!(error.to_string().contains("too deeply"), "{error}");
    // A tuple of the memo's value twice, memoized again: it doubles 60 times.
    let mut doubling = b"\x80\x02)q\x00".to_vec();
    for _ in 0..60 {
        doubling.extend_from_slice(b"h\x00h\x00\x86q\x00");
    }
    doubling.push(b'.');
    let error = pth::read_state_dict(&with_pickle(&doubling)).unwrap_err();
    assert!(error.to_string().contains("too"), "{error}");
}

#[test]
fn truncated_and_damaged_files_are_errors_not_panics() {
    for file in [ZIP, LEGACY] {
        for cut in [
            10,
            100,
            file.len() / 3,
            file.len() / 2,
            file.len() - 100,
            file.len() - 1,
        ] {
            let error = weights::inspect(file[..cut].to_vec());
            assert!(error.is_err(), "a file cut at {cut} of {} read", file.len());
        }
    }
    let mut flipped = LEGACY.to_vec();
    for at in (0..flipped.len()).step_by(997) {
        flipped[at] ^= 0x5a;
    }
    assert!(weights::inspect(flipped).is_err());
}
