//! `torch.save` files as PyTorch itself writes them (`scripts/make_pth_fixtures.py`): the zip
//! and the legacy format, a DataParallel `module.` prefix and a checkpoint dict all load and
//! give PyTorch's logits; a pickled whole model, other globals and damaged files are refused
//! with a message.
#![cfg(not(target_arch = "wasm32"))]

mod common;
mod hostile;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use burn::prelude::*;
use common::*;
use hostile::{Entry, TensorSpec, floats, hostile_files, state_dict_pickle, zip};
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

/// A zip-format file whose pickle is `pickle`, and no storages.
fn with_pickle(pickle: &[u8]) -> Vec<u8> {
    hostile::torch_zip(pickle.to_vec(), vec![])
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

// ---- Hostile files, and what reading them costs ----

/// Counts the bytes each thread has allocated, and its peak, so that a test measures its own
/// reads while others run beside it.
struct CountingAllocator;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn count(change: impl FnOnce(usize) -> usize) {
    let _ = ALLOCATED.try_with(|allocated| {
        let now = change(allocated.get());
        allocated.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(|now| now + layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        count(|now| now.saturating_sub(layout.size()));
        unsafe { System.dealloc(pointer, layout) }
    }
    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(|now| (now + new_size).saturating_sub(layout.size()));
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// What `work` returns, and the most memory it held at once beyond what was held before.
fn peak_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let result = work();
    (result, PEAK.with(Cell::get) - before)
}

const MIB: usize = 1 << 20;

#[test]
fn hostile_files_are_refused_by_name_within_64_mib_and_the_next_file_reads() {
    let files = hostile_files();
    assert!(files.len() >= 9);
    for file in files {
        let (outcome, peak) = peak_during(|| pth::read_state_dict(&file.bytes));
        let error = outcome.expect_err(file.name);
        assert_eq!(error.code(), "bad-weights", "{}: {error}", file.name);
        assert!(
            error.to_string().contains(file.refusal),
            "{}: {error}",
            file.name
        );
        println!("{}: {} KiB at most: {error}", file.name, peak / 1024);
        assert!(peak < 64 * MIB, "{}: {} MiB", file.name, peak / MIB);
        // What the page's "Load weights…" asks first: the same refusal.
        let error = weights::inspect(file.bytes.clone()).unwrap_err();
        assert_eq!(error.code(), "bad-weights", "{}: {error}", file.name);
        assert!(!pth::read_state_dict(ZIP).unwrap().is_empty());
    }
}

#[test]
fn a_storage_is_inflated_only_as_far_as_its_tensors_reach() {
    // A storage that inflates to 64 MiB, declared as 4 GiB, whose one tensor needs 16 KiB.
    let file = zip(&[
        Entry::stored(
            "archive/data.pkl",
            state_dict_pickle(&[TensorSpec {
                name: "fc.weight",
                storage: "0",
                storage_numel: 1 << 24,
                offset: 0,
                shape: &[64, 64],
            }]),
        ),
        Entry {
            name: "archive/data/0",
            data: floats(1 << 24, 0.5),
            deflated: true,
            declared_size: Some(u32::MAX),
            same_bytes_as: None,
        },
    ]);
    let (tensors, peak) = peak_during(|| pth::read_state_dict(&file).unwrap());
    let pth::TensorValues::F32(values) = &tensors["fc.weight"].values else {
        panic!("f32 values");
    };
    assert_eq!(values.len(), 64 * 64);
    assert!(values.iter().all(|&v| v == 0.5));
    assert!(peak < MIB, "{} KiB", peak / 1024);
}

#[test]
fn a_name_with_quotes_and_backslashes_stays_one_name() {
    // The fixture's float tensors written again, with one more whose name would close the
    // safetensors header's string and add entries to it, were it not quoted.
    let tensors = pth::read_state_dict(ZIP).unwrap();
    let mut specs = Vec::new();
    let mut data = Vec::new();
    let keys: Vec<String> = (0..=tensors.len()).map(|i| i.to_string()).collect();
    let shapes: Vec<Vec<u64>> = tensors
        .values()
        .map(|t| t.shape.iter().map(|&d| d as u64).collect())
        .collect();
    for (((name, tensor), key), shape) in tensors.iter().zip(&keys).zip(&shapes) {
        let pth::TensorValues::F32(values) = &tensor.values else {
            continue;
        };
        specs.push(TensorSpec {
            name,
            storage: key,
            storage_numel: values.len() as u64,
            offset: 0,
            shape,
        });
        data.push((
            key.as_str(),
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    let evil = r#"zz", "fc.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "\"#;
    specs.push(TensorSpec {
        name: evil,
        storage: &keys[tensors.len()],
        storage_numel: 1,
        offset: 0,
        shape: &[1],
    });
    data.push((keys[tensors.len()].as_str(), floats(1, 7.0)));
    let file = hostile::torch_zip(state_dict_pickle(&specs), data);
    assert!(pth::read_state_dict(&file).unwrap().contains_key(evil));
    // The loader sees one extra tensor under exactly that name, and refuses it by name.
    let info = weights::inspect(file.clone()).unwrap();
    assert_eq!(info.config.arch, Arch::ResNet8);
    let error = weights::load(file, &info.config, &Device::flex()).unwrap_err();
    assert!(
        matches!(&error, resnet_web::Error::UnexpectedKey { key, .. } if key == evil),
        "{error:?}"
    );
}

#[test]
fn the_hostile_files_are_the_fuzzers_committed_regressions() {
    let directory =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/pytorch");
    let write = std::env::var_os("WRITE_HOSTILE_FILES").is_some();
    for file in hostile_files() {
        let path = directory.join(file.name);
        if write {
            std::fs::create_dir_all(&directory).unwrap();
            std::fs::write(&path, &file.bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "{}: {error} (WRITE_HOSTILE_FILES=1 cargo test --release --test pth writes it)",
                path.display()
            )
        });
        assert!(
            committed == file.bytes,
            "{} differs from its generator",
            path.display()
        );
    }
}

#[test]
fn a_legacy_checkpoint_with_optimizer_state_reads_its_model() {
    // {'model': the fixture's float tensors, 'optimizer': {'momentum': a tensor}}, in the
    // legacy format: every storage is listed and stored, the optimizer's too.
    let tensors = pth::read_state_dict(LEGACY).unwrap();
    let floats_of = |tensor: &pth::TorchTensor| match &tensor.values {
        pth::TensorValues::F32(values) => Some(values.clone()),
        pth::TensorValues::I64(_) => None,
    };
    let model: Vec<(&String, Vec<f32>, Vec<u64>)> = tensors
        .iter()
        .filter_map(|(name, tensor)| {
            let shape = tensor.shape.iter().map(|&d| d as u64).collect();
            Some((name, floats_of(tensor)?, shape))
        })
        .collect();
    let keys: Vec<String> = (0..model.len()).map(|i| i.to_string()).collect();
    let specs: Vec<TensorSpec> = model
        .iter()
        .zip(&keys)
        .map(|((name, values, shape), key)| TensorSpec {
            name,
            storage: key,
            storage_numel: values.len() as u64,
            offset: 0,
            shape,
        })
        .collect();
    let optimizer = state_dict_pickle(&[TensorSpec {
        name: "momentum",
        storage: "optimizer",
        storage_numel: 4,
        offset: 0,
        shape: &[4],
    }]);
    let model_pickle = state_dict_pickle(&specs);
    // The two state_dicts' pickles without their PROTO and STOP, as values of one dict.
    let mut root = b"\x80\x02}(".to_vec();
    hostile::text(&mut root, "model");
    root.extend_from_slice(&model_pickle[2..model_pickle.len() - 1]);
    hostile::text(&mut root, "optimizer");
    root.extend_from_slice(&optimizer[2..optimizer.len() - 1]);
    root.extend_from_slice(b"u.");
    let mut listed = b"\x80\x02](".to_vec();
    for key in keys.iter().map(String::as_str).chain(["optimizer"]) {
        hostile::text(&mut listed, key);
    }
    listed.extend_from_slice(b"e.");
    let mut file = hostile::legacy(&root);
    file.extend_from_slice(&listed);
    for (_, values, _) in &model {
        file.extend_from_slice(&(values.len() as u64).to_le_bytes());
        file.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    file.extend_from_slice(&4u64.to_le_bytes());
    file.extend_from_slice(&floats(4, 0.5));
    let read = pth::read_state_dict(&file).unwrap();
    assert_eq!(read.len(), model.len());
    for (name, values, _) in &model {
        assert_eq!(floats_of(&read[*name]).as_ref(), Some(values), "{name}");
    }
}
