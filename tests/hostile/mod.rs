//! Hostile `torch.save` files, made here byte by byte: each asks a reader for far more memory
//! or work than it holds, or is damaged in a way a careless reader trusts. `tests/pth.rs`
//! reads every one (an error that names the limit, little memory, and the next file reads);
//! the same bytes are committed in `fuzz/regressions/pytorch/`, the fuzzer's seeds and
//! regressions (`WRITE_HOSTILE_FILES=1 cargo test --release --test pth` writes them again),
//! and the page test loads one through "Load weights…".
#![allow(dead_code)]

use std::io::Write;

/// A hostile file: its name in `fuzz/regressions/pytorch/`, its bytes, and a part of the
/// message it must be refused with.
pub struct Hostile {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub refusal: &'static str,
}

/// One tensor of a state_dict: its name, storage key and element count, offset and shape.
pub struct TensorSpec<'a> {
    pub name: &'a str,
    pub storage: &'a str,
    pub storage_numel: u64,
    pub offset: u64,
    pub shape: &'a [u64],
}

pub fn text(pickle: &mut Vec<u8>, value: &str) {
    pickle.push(b'X');
    pickle.extend_from_slice(&(value.len() as u32).to_le_bytes());
    pickle.extend_from_slice(value.as_bytes());
}

/// A long as LONG1 of eight bytes: up to 2^63 (BININT would take only 31 bits).
fn long(pickle: &mut Vec<u8>, value: u64) {
    assert!(value < 1 << 63);
    pickle.extend_from_slice(&[0x8a, 8]);
    pickle.extend_from_slice(&value.to_le_bytes());
}

/// The pickle of a state_dict (an OrderedDict of float tensors), as torch.save writes it in
/// its zip format: each tensor `_rebuild_tensor_v2` of a persistent storage, contiguous.
pub fn state_dict_pickle(tensors: &[TensorSpec]) -> Vec<u8> {
    let mut pickle = b"\x80\x02ccollections\nOrderedDict\n)R(".to_vec();
    for tensor in tensors {
        text(&mut pickle, tensor.name);
        pickle.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        // The persistent id: ('storage', FloatStorage, key, 'cpu', numel).
        pickle.push(b'(');
        text(&mut pickle, "storage");
        pickle.extend_from_slice(b"ctorch\nFloatStorage\n");
        text(&mut pickle, tensor.storage);
        text(&mut pickle, "cpu");
        long(&mut pickle, tensor.storage_numel);
        pickle.extend_from_slice(b"tQ");
        long(&mut pickle, tensor.offset);
        pickle.push(b'(');
        for &dim in tensor.shape {
            long(&mut pickle, dim);
        }
        pickle.extend_from_slice(b"t(");
        let mut stride = 1;
        let mut strides = Vec::new();
        for &dim in tensor.shape.iter().rev() {
            strides.push(stride);
            stride *= dim.max(1);
        }
        for stride in strides.into_iter().rev() {
            long(&mut pickle, stride);
        }
        pickle.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtR");
    }
    pickle.extend_from_slice(b"u.");
    pickle
}

/// How a zip entry is written.
pub struct Entry<'a> {
    pub name: &'a str,
    pub data: Vec<u8>,
    pub deflated: bool,
    /// The inflated size the central directory declares (None: the real one).
    pub declared_size: Option<u32>,
    /// Point this entry's central record at an earlier entry's local header.
    pub same_bytes_as: Option<usize>,
}

impl<'a> Entry<'a> {
    pub fn stored(name: &'a str, data: Vec<u8>) -> Self {
        Self {
            name,
            data,
            deflated: false,
            declared_size: None,
            same_bytes_as: None,
        }
    }
}

/// A zip archive of `entries`, as torch.save lays them out (CRCs are not checked by readers
/// of torch files and are left 0).
pub fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut file = Vec::new();
    let mut records = Vec::new(); // (local header offset, method, compressed, size)
    for entry in entries {
        let (method, data) = if entry.deflated {
            let mut encoder =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(&entry.data).unwrap();
            (8u16, encoder.finish().unwrap())
        } else {
            (0u16, entry.data.clone())
        };
        let size = entry.declared_size.unwrap_or(entry.data.len() as u32);
        let record = match entry.same_bytes_as {
            Some(earlier) => records[earlier],
            None => {
                let at = file.len() as u32;
                file.extend_from_slice(b"PK\x03\x04");
                file.extend_from_slice(&[20, 0, 0, 0]);
                file.extend_from_slice(&method.to_le_bytes());
                file.extend_from_slice(&[0; 4]); // time, date
                file.extend_from_slice(&0u32.to_le_bytes()); // crc
                file.extend_from_slice(&(data.len() as u32).to_le_bytes());
                file.extend_from_slice(&size.to_le_bytes());
                file.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
                file.extend_from_slice(&0u16.to_le_bytes());
                file.extend_from_slice(entry.name.as_bytes());
                file.extend_from_slice(&data);
                (at, method, data.len() as u32, size)
            }
        };
        records.push(record);
    }
    let directory = file.len();
    for (entry, &(at, method, compressed, size)) in entries.iter().zip(&records) {
        file.extend_from_slice(b"PK\x01\x02");
        file.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        file.extend_from_slice(&method.to_le_bytes());
        file.extend_from_slice(&[0; 4]);
        file.extend_from_slice(&0u32.to_le_bytes());
        file.extend_from_slice(&compressed.to_le_bytes());
        file.extend_from_slice(&size.to_le_bytes());
        file.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        file.extend_from_slice(&[0; 12]);
        file.extend_from_slice(&at.to_le_bytes());
        file.extend_from_slice(entry.name.as_bytes());
    }
    let directory_len = file.len() - directory;
    file.extend_from_slice(b"PK\x05\x06");
    file.extend_from_slice(&[0, 0, 0, 0]);
    file.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    file.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    file.extend_from_slice(&(directory_len as u32).to_le_bytes());
    file.extend_from_slice(&(directory as u32).to_le_bytes());
    file.extend_from_slice(&[0, 0]);
    file
}

/// A torch.save zip of `pickle` and the storages `data` (key, little-endian bytes).
pub fn torch_zip(pickle: Vec<u8>, data: Vec<(&str, Vec<u8>)>) -> Vec<u8> {
    let names: Vec<String> = data
        .iter()
        .map(|(key, _)| format!("archive/data/{key}"))
        .collect();
    let mut entries = vec![Entry::stored("archive/data.pkl", pickle)];
    for ((_, bytes), name) in data.into_iter().zip(&names) {
        entries.push(Entry::stored(name, bytes));
    }
    zip(&entries)
}

/// `count` f32 values of `value`, as a storage's bytes.
pub fn floats(count: usize, value: f32) -> Vec<u8> {
    std::iter::repeat_n(value.to_le_bytes(), count)
        .flatten()
        .collect()
}

/// The legacy format's magic number, protocol version and system info pickles, then `root`.
pub fn legacy(root: &[u8]) -> Vec<u8> {
    // LONG1 of ten bytes: 0x1950a86a20f9469cfc6c, little-endian.
    let mut file = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    file.extend_from_slice(b"\x80\x02M\xe9\x03.");
    file.extend_from_slice(b"\x80\x02}.");
    file.extend_from_slice(root);
    file
}

/// A pickle that builds one list of `items` small ints, then memoizes it `times` times under
/// new indices (MEMOIZE): each is a copy of the whole list.
fn memo_bomb(items: usize, times: usize) -> Vec<u8> {
    let mut pickle = b"\x80\x02](".to_vec();
    for _ in 0..items {
        pickle.extend_from_slice(b"K\x01");
    }
    pickle.push(b'e');
    pickle.extend(std::iter::repeat_n(0x94, times));
    pickle.push(b'.');
    pickle
}

fn one_tensor(shape: &[u64], storage_numel: u64) -> Vec<u8> {
    state_dict_pickle(&[TensorSpec {
        name: "fc.weight",
        storage: "0",
        storage_numel,
        offset: 0,
        shape,
    }])
}

/// Every hostile file, with the refusal each must get.
pub fn hostile_files() -> Vec<Hostile> {
    // A storage of 64 MiB of zeros, deflated to about 64 KB, declared as 4 GiB.
    let zeros = vec![0u8; 64 << 20];
    let deflate_bomb = |claimed: u64| {
        zip(&[
            Entry::stored("archive/data.pkl", one_tensor(&[claimed], claimed)),
            Entry {
                name: "archive/data/0",
                data: zeros.clone(),
                deflated: true,
                declared_size: Some(u32::MAX),
                same_bytes_as: None,
            },
        ])
    };
    let pickle = one_tensor(&[16], 16);
    vec![
        Hostile {
            name: "memo-bomb-legacy.pth",
            // 50,000 ints memoized 2,000 times: 8 GB of copies from a 100 KB file.
            bytes: legacy(&memo_bomb(50_000, 2_000)),
            refusal: "its memo copies more than",
        },
        Hostile {
            name: "memo-bomb-zip.pth",
            bytes: torch_zip(memo_bomb(50_000, 2_000), vec![]),
            refusal: "its memo copies more than",
        },
        Hostile {
            name: "deflate-bomb.pth",
            // 256 MiB claimed of 64 KB of deflate.
            bytes: deflate_bomb(1 << 26),
            refusal: "cannot inflate to",
        },
        Hostile {
            name: "pickle-bomb.pth",
            // A data.pkl of 64 KB of deflate declared as 4 GiB.
            bytes: zip(&[Entry {
                name: "archive/data.pkl",
                data: zeros.clone(),
                deflated: true,
                declared_size: Some(u32::MAX),
                same_bytes_as: None,
            }]),
            refusal: "its data.pkl declares 4095 MiB",
        },
        Hostile {
            name: "huge-shape.pth",
            bytes: torch_zip(
                one_tensor(&[1 << 20, 1 << 20], 1 << 40),
                vec![("0", floats(16, 1.0))],
            ),
            refusal: "claim more than 1024 MiB",
        },
        Hostile {
            name: "duplicate-entries.pth",
            bytes: zip(&[
                Entry::stored("archive/data.pkl", pickle.clone()),
                Entry::stored("archive/data/0", floats(16, 1.0)),
                Entry::stored("archive/data/0", floats(16, 2.0)),
            ]),
            refusal: "names archive/data/0 twice",
        },
        Hostile {
            name: "overlapping-entries.pth",
            bytes: zip(&[
                Entry::stored("archive/data.pkl", pickle.clone()),
                Entry::stored("archive/data/0", floats(16, 1.0)),
                Entry {
                    same_bytes_as: Some(1),
                    ..Entry::stored("archive/data/1", vec![])
                },
            ]),
            refusal: "share their bytes",
        },
        Hostile {
            name: "shared-storage.pth",
            // 100 tensors, each a view of the whole of one storage.
            bytes: torch_zip(
                state_dict_pickle(
                    &(0..100)
                        .map(|_| TensorSpec {
                            name: "layer.weight",
                            storage: "0",
                            storage_numel: 1 << 16,
                            offset: 0,
                            shape: &[1 << 16],
                        })
                        .collect::<Vec<_>>(),
                ),
                vec![("0", floats(1 << 16, 1.0))],
            ),
            refusal: "hold more bytes than their storages",
        },
        Hostile {
            name: "truncated-pickle.pth",
            bytes: torch_zip(
                pickle[..pickle.len() / 2].to_vec(),
                vec![("0", floats(16, 1.0))],
            ),
            refusal: "truncated",
        },
        Hostile {
            name: "not-legacy.pth",
            // A memo bomb without the legacy magic number: refused before it runs.
            bytes: memo_bomb(50_000, 2_000),
            refusal: "not a torch.save file",
        },
    ]
}
