//! `torch.save` files read from bytes, on every target (the CLI, the page, the worker): the
//! zip format of PyTorch 1.6 and later and the legacy format before it. The pickle inside is
//! run by a small machine that knows only what a `state_dict` is made of (dicts, lists,
//! tuples, numbers, strings, and tensors over storages); any other global, a pickled
//! `nn.Module` among them, is refused by name, so a file can never run code.
//!
//! The `state_dict` is found at the top level, or under `state_dict`, `model` or
//! `model_state_dict` of a checkpoint dict, and a `module.` prefix (DataParallel's) is
//! stripped. Tensors come out contiguous, little-endian, as f32 (any float type) or i64.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use crate::error::{Error, Result};

/// A tensor of the file, contiguous: f32 for every floating type, i64 for integers.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    pub shape: Vec<usize>,
    pub values: TensorValues,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorValues {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

fn bad(message: impl Into<String>) -> Error {
    Error::WeightFormat(format!("PyTorch file: {}", message.into()))
}

/// The tensors of a file may hold at most this much: four times a ResNet-152 in f32. A
/// larger claim is refused before anything is read or inflated for it.
pub const MAX_TENSOR_BYTES: usize = 1 << 30;

/// The most a zip's `data.pkl` may inflate to. It holds names, shapes and storage keys, never
/// tensor data: well under a MiB for the largest torchvision model with its optimizer state.
pub const MAX_PICKLE_BYTES: usize = 16 << 20;

/// The `state_dict` of a `torch.save` file: tensor names (torchvision's) to tensors.
///
/// What it costs is bounded by what the tensors hold: the pickle by `MAX_PICKLE_BYTES` and
/// its memo by `MAX_MEMO_BYTES`, each storage read once and only as far as its tensors
/// reach, and the tensors together no larger than the storages they were read from (views
/// of one storage are not each a copy of it) or `MAX_TENSOR_BYTES`.
pub fn read_state_dict(bytes: &[u8]) -> Result<BTreeMap<String, TorchTensor>> {
    let (dict, storages) = if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)?
    } else {
        read_legacy(bytes)?
    };
    let stored: usize = storages.values().map(Vec::len).sum();
    let mut held = 0usize;
    for (_, tensor) in &dict {
        held = held.saturating_add(tensor.byte_len()?);
        if held > stored {
            return Err(bad(
                "its tensors hold more bytes than their storages: several tensors view one storage, which a state_dict does not",
            ));
        }
    }
    let prefixed = !dict.is_empty() && dict.iter().all(|(name, _)| name.starts_with("module."));
    let mut tensors = BTreeMap::new();
    for (name, tensor) in dict {
        let name = if prefixed {
            name["module.".len()..].to_string()
        } else {
            name
        };
        let tensor = materialise(&tensor, &storages)?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

// ---- The two containers ----

/// Storage key to its raw bytes, as far as its tensors reach.
type Storages = HashMap<String, Vec<u8>>;

/// Storage key to the bytes its tensors reach into it, at most `MAX_TENSOR_BYTES` in all.
fn bytes_needed(dict: &[(String, TensorRef)]) -> Result<HashMap<String, usize>> {
    let mut needed = HashMap::new();
    for (_, tensor) in dict {
        let reach = tensor.reach()?;
        let entry = needed.entry(tensor.storage.clone()).or_insert(0);
        *entry = reach.max(*entry);
    }
    if needed.values().sum::<usize>() > MAX_TENSOR_BYTES {
        return Err(bad(format!(
            "its tensors claim more than {} MiB: not a ResNet's state_dict, or a damaged file",
            MAX_TENSOR_BYTES >> 20
        )));
    }
    Ok(needed)
}

fn read_zip(bytes: &[u8]) -> Result<(Vec<(String, TensorRef)>, Storages)> {
    let entries = zip_entries(bytes)?;
    let pickle_name = entries
        .keys()
        .find(|name| name.ends_with("/data.pkl") || *name == "data.pkl")
        .cloned()
        .ok_or_else(|| bad("a zip archive without data.pkl: not a torch.save file"))?;
    let prefix = &pickle_name[..pickle_name.len() - "data.pkl".len()];
    if let Some(order) = entries.get(&format!("{prefix}byteorder"))
        && zip_data(bytes, order, 16)? != b"little"
    {
        return Err(bad(
            "the tensors are big-endian; save the file on a little-endian machine",
        ));
    }
    let pickle = &entries[&pickle_name];
    if pickle.size > MAX_PICKLE_BYTES {
        return Err(bad(format!(
            "its data.pkl declares {} MiB, more than the {} MiB the pickle of any state dict takes: the file is damaged",
            pickle.size >> 20,
            MAX_PICKLE_BYTES >> 20
        )));
    }
    let root = Unpickler::new(&zip_data(bytes, pickle, pickle.size)?).run()?;
    let dict = find_state_dict(root)?;
    // Only the storages the tensors use, each once, inflated only as far as they reach.
    let mut storages = Storages::new();
    for (key, needed) in bytes_needed(&dict)? {
        let entry = entries
            .get(&format!("{prefix}data/{key}"))
            .ok_or_else(|| bad(format!("the file is truncated: storage {key} is missing")))?;
        // Deflate gives at most 1,032 bytes per compressed byte: a claim beyond that is
        // refused before anything is inflated for it.
        if entry.method == 8 && needed > entry.compressed.saturating_mul(1032).saturating_add(64) {
            return Err(bad(format!(
                "storage {key} is {} compressed bytes, which cannot inflate to the {needed} its tensors claim: the file is damaged",
                entry.compressed
            )));
        }
        let data = zip_data(bytes, entry, needed)?;
        if data.len() < needed {
            return Err(bad(format!(
                "storage {key} holds {} bytes, less than its tensors need ({needed}): the file is truncated or damaged",
                data.len()
            )));
        }
        storages.insert(key, data);
    }
    Ok((dict, storages))
}

#[derive(Debug, Clone)]
struct ZipEntry {
    method: u16,
    compressed: usize,
    size: usize,
    local_header: usize,
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| bad("the zip archive is truncated"))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad("the zip archive is truncated"))
}

/// The archive's entries, from its central directory.
fn zip_entries(bytes: &[u8]) -> Result<BTreeMap<String, ZipEntry>> {
    // The end-of-central-directory record: 22 bytes and a comment of at most 64 KiB.
    let earliest = bytes.len().saturating_sub(22 + 65_535);
    let end = (earliest..bytes.len().saturating_sub(21))
        .rev()
        .find(|&at| bytes[at..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| bad("the zip archive is truncated (no central directory)"))?;
    let count = usize::from(u16_at(bytes, end + 10)?);
    let mut at = u32_at(bytes, end + 16)? as usize;
    if count == 0xffff || at == 0xffff_ffff_usize {
        return Err(bad("a zip64 archive: files over 4 GB are not supported"));
    }
    let mut entries = BTreeMap::new();
    // Where each entry's local header and data lie: no two may overlap (a hostile archive
    // can point many names at one deflate stream).
    let mut spans = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(bytes, at)? != 0x0201_4b50 {
            return Err(bad("the zip central directory is damaged"));
        }
        let name_len = usize::from(u16_at(bytes, at + 28)?);
        let extra_len = usize::from(u16_at(bytes, at + 30)?);
        let comment_len = usize::from(u16_at(bytes, at + 32)?);
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| bad("the zip archive is truncated"))?;
        let entry = ZipEntry {
            method: u16_at(bytes, at + 10)?,
            compressed: u32_at(bytes, at + 20)? as usize,
            size: u32_at(bytes, at + 24)? as usize,
            local_header: u32_at(bytes, at + 42)? as usize,
        };
        spans.push((
            entry.local_header,
            entry.local_header + 30 + entry.compressed,
        ));
        let name = String::from_utf8_lossy(name).into_owned();
        if entries.insert(name.clone(), entry).is_some() {
            return Err(bad(format!(
                "the zip archive names {name} twice: the file is damaged"
            )));
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    spans.sort_unstable();
    if spans.windows(2).any(|pair| pair[1].0 < pair[0].1) {
        return Err(bad(
            "two zip entries share their bytes: the file is damaged",
        ));
    }
    Ok(entries)
}

/// At most `limit` bytes of an entry's data.
fn zip_data(bytes: &[u8], entry: &ZipEntry, limit: usize) -> Result<Vec<u8>> {
    let at = entry.local_header;
    if u32_at(bytes, at)? != 0x0403_4b50 {
        return Err(bad("a zip entry is damaged"));
    }
    let start =
        at + 30 + usize::from(u16_at(bytes, at + 26)?) + usize::from(u16_at(bytes, at + 28)?);
    let data = start
        .checked_add(entry.compressed)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| bad("the file is truncated: a tensor's data is missing"))?;
    let limit = limit.min(entry.size);
    match entry.method {
        0 => Ok(data[..limit.min(data.len())].to_vec()),
        8 => {
            let mut out = Vec::with_capacity(limit.min(bytes.len().saturating_mul(4)));
            flate2::read::DeflateDecoder::new(data)
                .take(limit as u64)
                .read_to_end(&mut out)
                .map_err(|e| bad(format!("a compressed entry does not inflate: {e}")))?;
            Ok(out)
        }
        other => Err(bad(format!(
            "zip compression method {other} is not supported"
        ))),
    }
}

/// The legacy format: pickles of the magic number, the protocol version and the system's
/// sizes, then the object, then the list of storage keys, then each storage as its element
/// count (u64) and its bytes.
fn read_legacy(bytes: &[u8]) -> Result<(Vec<(String, TensorRef)>, Storages)> {
    const MAGIC: i128 = 0x1950_a86a_20f9_469c_fc6c;
    // The magic number is a long beyond i64, pickled first: its bytes are checked before
    // any pickle of an unknown file runs.
    if !starts_with_magic(bytes, MAGIC) {
        return Err(bad(
            "not a torch.save file: neither a zip archive nor the legacy format",
        ));
    }
    let mut at = 0;
    match unpickle_at(bytes, &mut at) {
        Ok(Value::BigInt(bytes_le)) if big_int_equals(&bytes_le, MAGIC) => {}
        _ => return Err(bad("the legacy format's magic number is damaged")),
    }
    let _protocol_version = unpickle_at(bytes, &mut at)?;
    let _system_info = unpickle_at(bytes, &mut at)?;
    let root = unpickle_at(bytes, &mut at)?;
    let keys = unpickle_at(bytes, &mut at)?;
    let Value::List(keys) = keys else {
        return Err(bad("the list of storages is missing"));
    };
    // Every storage is listed, a checkpoint's optimizer state's too: each one's element size
    // says how far to skip past it, though only the state_dict's are read.
    let element_sizes = storage_element_sizes(&root);
    let dict = find_state_dict(root)?;
    let needed = bytes_needed(&dict)?;
    let mut storages = Storages::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(bad("a storage key is not a string"));
        };
        let count = bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| bad("the file is truncated: a tensor's data is missing"))?;
        let size = *element_sizes
            .get(&key)
            .ok_or_else(|| bad(format!("storage {key} is used by no tensor")))?;
        let len = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(size))
            .ok_or_else(|| bad("a storage is too large"))?;
        let data = (at + 8)
            .checked_add(len)
            .and_then(|end| bytes.get(at + 8..end))
            .ok_or_else(|| bad("the file is truncated: a tensor's data is missing"))?;
        // As far as its tensors reach, and once: a key listed twice is a damaged file.
        let reach = needed.get(&key).copied().unwrap_or(0).min(len);
        if storages
            .insert(key.clone(), data[..reach].to_vec())
            .is_some()
        {
            return Err(bad(format!(
                "storage {key} is listed twice: the file is damaged"
            )));
        }
        at += 8 + len;
    }
    Ok((dict, storages))
}

/// Whether `bytes` start with a pickle of `magic`: PROTO, at protocol 4 and later a FRAME,
/// then LONG1 of ten bytes.
fn starts_with_magic(bytes: &[u8], magic: i128) -> bool {
    let mut at = 0;
    if bytes.first() == Some(&0x80) {
        at = 2;
        if bytes.get(at) == Some(&0x95) {
            at += 9;
        }
    }
    bytes.get(at..at + 2) == Some(&[0x8a, 10])
        && bytes
            .get(at + 2..at + 12)
            .is_some_and(|long| big_int_equals(long, magic))
}

/// The pickle that starts at `at`, and `at` moved past it.
fn unpickle_at(bytes: &[u8], at: &mut usize) -> Result<Value> {
    let mut unpickler = Unpickler::new(bytes.get(*at..).unwrap_or_default());
    let value = unpickler.run()?;
    *at += unpickler.position;
    Ok(value)
}

/// Whether little-endian two's-complement bytes are `value` (the legacy magic number needs
/// 80 bits).
fn big_int_equals(bytes_le: &[u8], value: i128) -> bool {
    let mut padded = [0u8; 16];
    if bytes_le.len() > 16 {
        return false;
    }
    padded[..bytes_le.len()].copy_from_slice(bytes_le);
    i128::from_le_bytes(padded) == value
}

/// Element size of each storage that a tensor of `value` uses.
fn storage_element_sizes(value: &Value) -> HashMap<String, usize> {
    let mut sizes = HashMap::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Tensor(tensor) => {
                sizes.insert(tensor.storage.clone(), tensor.dtype.size());
            }
            Value::List(items) | Value::Tuple(items) => stack.extend(items),
            Value::Dict(pairs) => stack.extend(pairs.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    sizes
}

// ---- Finding the state_dict ----

fn find_state_dict(root: Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(pairs) = root else {
        return Err(bad(format!(
            "the file holds {}, not a state_dict: save model.state_dict()",
            root.kind()
        )));
    };
    if let Some(tensors) = tensor_dict(&pairs) {
        return Ok(tensors);
    }
    for wanted in ["state_dict", "model", "model_state_dict"] {
        let found = pairs
            .iter()
            .find(|(key, _)| matches!(key, Value::Str(name) if name == wanted));
        if let Some((_, Value::Dict(inner))) = found
            && let Some(tensors) = tensor_dict(inner)
        {
            return Ok(tensors);
        }
    }
    let keys: Vec<String> = pairs
        .iter()
        .take(8)
        .map(|(key, _)| match key {
            Value::Str(name) => format!("'{name}'"),
            other => other.kind().to_string(),
        })
        .collect();
    Err(bad(format!(
        "a dict with keys {} but no state_dict (under 'state_dict', 'model' or \
         'model_state_dict'): save model.state_dict()",
        keys.join(", ")
    )))
}

/// The pairs as (name, tensor) when every key is a string and every value a tensor.
fn tensor_dict(pairs: &[(Value, Value)]) -> Option<Vec<(String, TensorRef)>> {
    if pairs.is_empty() {
        return None;
    }
    pairs
        .iter()
        .map(|(key, value)| match (key, value) {
            (Value::Str(name), Value::Tensor(tensor)) => Some((name.clone(), tensor.clone())),
            _ => None,
        })
        .collect()
}

fn materialise(tensor: &TensorRef, storages: &Storages) -> Result<TorchTensor> {
    let storage = storages.get(&tensor.storage).ok_or_else(|| {
        bad(format!(
            "the file is truncated: storage {} is missing",
            tensor.storage
        ))
    })?;
    let size = tensor.dtype.size();
    let count = tensor.count()?;
    // A state_dict's tensor never holds more elements than its storage (a hostile shape
    // with zero strides could otherwise ask for any amount of memory), and its last element
    // lies inside it.
    let fits = tensor.reach()? <= storage.len() && tensor.byte_len()? <= storage.len();
    if count > 0 && !fits {
        return Err(bad(format!(
            "a tensor of shape {:?} does not fit its storage: the file is truncated or damaged",
            tensor.shape
        )));
    }
    // Element indices of the storage in row-major order of the tensor, made as they are
    // read (a list of them would take twice the tensor's own bytes).
    let mut position = vec![0usize; tensor.shape.len()];
    let indices = (0..count).map(move |_| {
        let index = tensor.offset
            + position
                .iter()
                .zip(&tensor.stride)
                .map(|(p, s)| p * s)
                .sum::<usize>();
        for axis in (0..position.len()).rev() {
            position[axis] += 1;
            if position[axis] < tensor.shape[axis] {
                break;
            }
            position[axis] = 0;
        }
        index
    });
    let element = |index: usize| &storage[index * size..(index + 1) * size];
    let values = match tensor.dtype {
        Dtype::F32 => TensorValues::F32(
            indices
                .map(|i| f32::from_le_bytes(element(i).try_into().expect("4 bytes")))
                .collect(),
        ),
        Dtype::F64 => TensorValues::F32(
            indices
                .map(|i| f64::from_le_bytes(element(i).try_into().expect("8 bytes")) as f32)
                .collect(),
        ),
        Dtype::F16 => TensorValues::F32(
            indices
                .map(|i| f16_to_f32(u16::from_le_bytes(element(i).try_into().expect("2 bytes"))))
                .collect(),
        ),
        Dtype::BF16 => TensorValues::F32(
            indices
                .map(|i| {
                    let bits = u16::from_le_bytes(element(i).try_into().expect("2 bytes"));
                    f32::from_bits(u32::from(bits) << 16)
                })
                .collect(),
        ),
        Dtype::I64 => TensorValues::I64(
            indices
                .map(|i| i64::from_le_bytes(element(i).try_into().expect("8 bytes")))
                .collect(),
        ),
        Dtype::I32 => TensorValues::I64(
            indices
                .map(|i| i64::from(i32::from_le_bytes(element(i).try_into().expect("4 bytes"))))
                .collect(),
        ),
        Dtype::U8 => TensorValues::I64(indices.map(|i| i64::from(element(i)[0])).collect()),
        Dtype::Bool => TensorValues::I64(indices.map(|i| i64::from(element(i)[0] != 0)).collect()),
    };
    Ok(TorchTensor {
        shape: tensor.shape.clone(),
        values,
    })
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => (mantissa as f32) * 2f32.powi(-24),
        0x1f if mantissa == 0 => f32::INFINITY,
        0x1f => f32::NAN,
        _ => f32::from_bits(((exponent + 112) << 23) | (mantissa << 13)),
    };
    f32::from_bits(magnitude.to_bits() | sign)
}

// ---- The pickle machine ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    U8,
    Bool,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::U8 | Dtype::Bool => 1,
        }
    }

    fn of_storage(name: &str) -> Option<Self> {
        Some(match name {
            "torch.FloatStorage" => Dtype::F32,
            "torch.DoubleStorage" => Dtype::F64,
            "torch.HalfStorage" => Dtype::F16,
            "torch.BFloat16Storage" => Dtype::BF16,
            "torch.LongStorage" => Dtype::I64,
            "torch.IntStorage" => Dtype::I32,
            "torch.ByteStorage" => Dtype::U8,
            "torch.BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    storage: String,
    dtype: Dtype,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    fn count(&self) -> Result<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad("a tensor is too large"))
    }

    /// The bytes the tensor's values take.
    fn byte_len(&self) -> Result<usize> {
        self.count()?
            .checked_mul(self.dtype.size())
            .ok_or_else(|| bad("a tensor is too large"))
    }

    /// The bytes of its storage it reaches into: up to its last element's end.
    fn reach(&self) -> Result<usize> {
        if self.count()? == 0 {
            return Ok(0);
        }
        self.shape
            .iter()
            .zip(&self.stride)
            .try_fold(self.offset, |acc, (&dim, &stride)| {
                acc.checked_add(dim.saturating_sub(1).checked_mul(stride)?)
            })
            .and_then(|last| last.checked_add(1)?.checked_mul(self.dtype.size()))
            .ok_or_else(|| bad("a tensor's strides overflow"))
    }
}

/// The globals a state_dict's pickle names; any other is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
}

impl Global {
    fn find(module: &str, name: &str) -> Result<Self> {
        let full = format!("{module}.{name}");
        Ok(match full.as_str() {
            "collections.OrderedDict" => Global::OrderedDict,
            "torch._utils._rebuild_tensor_v2" => Global::RebuildTensor,
            "torch._utils._rebuild_parameter" => Global::RebuildParameter,
            other => match Dtype::of_storage(other) {
                Some(dtype) => Global::Storage(dtype),
                None => {
                    let hint = if name.chars().next().is_some_and(char::is_uppercase)
                        && !module.starts_with("torch")
                    {
                        ": it looks like a whole pickled model; save model.state_dict() \
                         instead (torch.save(model.state_dict(), path))"
                    } else {
                        ": only a state_dict's tensors, numbers and strings are read"
                    };
                    return Err(bad(format!("the pickle names the global '{full}'{hint}")));
                }
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A long too big for i64, little-endian two's complement.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage {
        key: String,
        dtype: Dtype,
    },
    Tensor(TensorRef),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) | Value::BigInt(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class",
            Value::Storage { .. } => "a storage",
            Value::Tensor(_) => "a single tensor",
        }
    }

    fn index(&self) -> Result<usize> {
        match self {
            Value::Int(v) => usize::try_from(*v).map_err(|_| bad("a negative size or stride")),
            other => Err(bad(format!("expected a number, found {}", other.kind()))),
        }
    }

    fn indices(&self) -> Result<Vec<usize>> {
        match self {
            Value::Tuple(items) | Value::List(items) => items.iter().map(Value::index).collect(),
            other => Err(bad(format!("expected a shape, found {}", other.kind()))),
        }
    }
}

/// A stack item: a value, or the mark that `(` pushes.
enum Item {
    Value(Value),
    Mark,
}

struct Unpickler<'a> {
    bytes: &'a [u8],
    position: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, Value>,
    /// Bytes copied into and out of the memo so far: MEMOIZE stores a copy of the top of the
    /// stack under a new index each time, and a recall copies it out again, so a small
    /// pickle can ask for one big value many times.
    copied: usize,
}

/// More than a state_dict of any ResNet holds: bounds on the work a hostile file can ask.
const MAX_ITEMS: usize = 1 << 24;
/// Bytes a pickle may copy into and out of its memo: a state_dict memoizes and recalls small
/// values (names, storage types, shapes), under a megabyte for any ResNet.
pub const MAX_MEMO_BYTES: usize = 16 << 20;
/// Containers nested deeper than this are refused (a checkpoint nests a few levels), so
/// that no value is too deep to drop.
const MAX_DEPTH: usize = 64;

/// How deep `value` nests, without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            Value::Tuple(items) | Value::List(items) => {
                stack.extend(items.iter().map(|item| (item, depth + 1)));
            }
            Value::Dict(pairs) => {
                for (key, item) in pairs {
                    stack.push((key, depth + 1));
                    stack.push((item, depth + 1));
                }
            }
            _ => {}
        }
    }
    deepest
}

/// About the bytes a copy of `value` takes: its nodes and the text and bytes they hold.
fn footprint(value: &Value) -> usize {
    let mut bytes = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        bytes = bytes.saturating_add(std::mem::size_of::<Value>());
        match value {
            Value::Str(text) => bytes = bytes.saturating_add(text.len()),
            Value::Bytes(data) | Value::BigInt(data) => bytes = bytes.saturating_add(data.len()),
            Value::Tuple(items) | Value::List(items) => stack.extend(items),
            Value::Dict(pairs) => {
                for (key, item) in pairs {
                    stack.push(key);
                    stack.push(item);
                }
            }
            _ => {}
        }
    }
    bytes
}

/// `values` may go into a container: refused when they would nest it too deep.
fn check_depth<'v>(values: impl IntoIterator<Item = &'v Value>) -> Result<()> {
    if values.into_iter().any(|value| depth(value) >= MAX_DEPTH) {
        return Err(bad("the pickle nests containers too deeply"));
    }
    Ok(())
}

impl<'a> Unpickler<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            position: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            copied: 0,
        }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8]> {
        let end = self
            .position
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| bad("the pickle is truncated"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.position..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("the pickle is truncated"))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.position += end + 1;
        Ok(text)
    }

    fn text(&mut self, len: usize) -> Result<Value> {
        let bytes = self.take(len)?;
        Ok(Value::Str(
            std::str::from_utf8(bytes)
                .map_err(|_| bad("a string that is not UTF-8"))?
                .to_string(),
        ))
    }

    fn push(&mut self, value: Value) -> Result<()> {
        if self.stack.len() >= MAX_ITEMS {
            return Err(bad("the pickle is too large"));
        }
        self.stack.push(Item::Value(value));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Item::Value(value)) => Ok(value),
            _ => Err(bad("the pickle is malformed (stack underflow)")),
        }
    }

    fn top(&mut self) -> Result<&mut Value> {
        match self.stack.last_mut() {
            Some(Item::Value(value)) => Ok(value),
            _ => Err(bad("the pickle is malformed (stack underflow)")),
        }
    }

    /// The values above the topmost mark, and the mark removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .stack
            .iter()
            .rposition(|item| matches!(item, Item::Mark))
            .ok_or_else(|| bad("the pickle is malformed (no mark)"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|item| match item {
                Item::Value(value) => value,
                Item::Mark => Value::None,
            })
            .collect())
    }

    /// Counts a copy of `bytes` into the memo or out of it, before it is made: refused past
    /// `MAX_MEMO_BYTES`.
    fn count_copy(&mut self, bytes: usize) -> Result<()> {
        self.copied = self.copied.saturating_add(bytes);
        if self.copied > MAX_MEMO_BYTES {
            return Err(bad(format!(
                "the pickle is too large: its memo copies more than {} MiB",
                MAX_MEMO_BYTES >> 20
            )));
        }
        Ok(())
    }

    fn memoize(&mut self, index: u32) -> Result<()> {
        let bytes = match self.stack.last() {
            Some(Item::Value(value)) => footprint(value),
            _ => return Err(bad("the pickle is malformed (nothing to memoize)")),
        };
        self.count_copy(bytes)?;
        if let Some(Item::Value(value)) = self.stack.last() {
            self.memo.insert(index, value.clone());
        }
        Ok(())
    }

    fn recall(&mut self, index: u32) -> Result<()> {
        let value = self
            .memo
            .get(&index)
            .ok_or_else(|| bad("the pickle is malformed (unknown memo entry)"))?;
        self.count_copy(footprint(value))?;
        let value = self.memo[&index].clone();
        self.push(value)
    }

    fn set_items(dict: &mut Value, items: Vec<Value>) -> Result<()> {
        let Value::Dict(pairs) = dict else {
            return Err(bad(format!("items set on {}, not a dict", dict.kind())));
        };
        if !items.len().is_multiple_of(2) {
            return Err(bad("the pickle is malformed (a key without a value)"));
        }
        check_depth(&items)?;
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            pairs.push((key, value));
        }
        Ok(())
    }

    /// Runs the pickle to its STOP and returns its object.
    fn run(&mut self) -> Result<Value> {
        loop {
            let opcode = self.byte()?;
            match opcode {
                0x80 => {
                    self.byte()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Item::Mark),
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let value = self.byte()?;
                    self.push(Value::Int(i64::from(value)))?
                }
                b'M' => {
                    let value = self.u16()?;
                    self.push(Value::Int(i64::from(value)))?
                }
                b'J' => {
                    let value = self.u32()? as i32;
                    self.push(Value::Int(i64::from(value)))?
                }
                0x8a => {
                    let len = usize::from(self.byte()?);
                    let bytes = self.take(len)?.to_vec();
                    let value = if bytes.len() <= 8 {
                        let mut padded = [if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        }; 8];
                        padded[..bytes.len()].copy_from_slice(&bytes);
                        Value::Int(i64::from_le_bytes(padded))
                    } else {
                        Value::BigInt(bytes)
                    };
                    self.push(value)?
                }
                b'G' => {
                    let value = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Value::Float(value))?
                }
                b'X' => {
                    let len = self.u32()? as usize;
                    let value = self.text(len)?;
                    self.push(value)?
                }
                0x8c => {
                    let len = usize::from(self.byte()?);
                    let value = self.text(len)?;
                    self.push(value)?
                }
                b'U' => {
                    let len = usize::from(self.byte()?);
                    let value = self.text(len)?;
                    self.push(value)?
                }
                b'T' => {
                    let len = self.u32()? as usize;
                    let value = self.text(len)?;
                    self.push(value)?
                }
                b'C' => {
                    let len = usize::from(self.byte()?);
                    let bytes = self.take(len)?.to_vec();
                    self.push(Value::Bytes(bytes))?
                }
                b'B' => {
                    let len = self.u32()? as usize;
                    let bytes = self.take(len)?.to_vec();
                    self.push(Value::Bytes(bytes))?
                }
                b'q' => {
                    let index = u32::from(self.byte()?);
                    self.memoize(index)?
                }
                b'r' => {
                    let index = self.u32()?;
                    self.memoize(index)?
                }
                0x94 => {
                    let index = self.memo.len() as u32;
                    self.memoize(index)?
                }
                b'h' => {
                    let index = u32::from(self.byte()?);
                    self.recall(index)?
                }
                b'j' => {
                    let index = self.u32()?;
                    self.recall(index)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(Global::find(&module, &name)?))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(bad("the pickle is malformed (a global without a name)"));
                    };
                    self.push(Value::Global(Global::find(&module, &name)?))?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    check_depth(&items)?;
                    self.push(Value::Tuple(items))?
                }
                0x85 => {
                    let a = self.pop()?;
                    check_depth([&a])?;
                    self.push(Value::Tuple(vec![a]))?
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    check_depth([&a, &b])?;
                    self.push(Value::Tuple(vec![a, b]))?
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    check_depth([&a, &b, &c])?;
                    self.push(Value::Tuple(vec![a, b, c]))?
                }
                b'a' => {
                    let value = self.pop()?;
                    check_depth([&value])?;
                    match self.top()? {
                        Value::List(items) => items.push(value),
                        other => return Err(bad(format!("append to {}", other.kind()))),
                    }
                }
                b'e' => {
                    let values = self.pop_mark()?;
                    check_depth(&values)?;
                    match self.top()? {
                        Value::List(items) => items.extend(values),
                        other => return Err(bad(format!("append to {}", other.kind()))),
                    }
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    Self::set_items(self.top()?, vec![key, value])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    Self::set_items(self.top()?, items)?
                }
                b'Q' => {
                    let id = self.pop()?;
                    let storage = persistent_storage(id)?;
                    self.push(storage)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = call(callable, args)?;
                    self.push(value)?
                }
                b'b' => {
                    // BUILD: the state of an OrderedDict (its `_metadata`) or of a
                    // parameter; nothing a state_dict's tensors need.
                    self.pop()?;
                    self.top()?;
                }
                other => {
                    return Err(bad(format!(
                        "pickle opcode 0x{other:02x} at byte {} is not one a state_dict uses",
                        self.position - 1
                    )));
                }
            }
        }
    }
}

/// `persistent_load`: ('storage', storage type, key, location, size[, view]).
fn persistent_storage(id: Value) -> Result<Value> {
    let Value::Tuple(parts) = id else {
        return Err(bad("a persistent id that is not a tuple"));
    };
    match parts.as_slice() {
        [
            Value::Str(kind),
            Value::Global(Global::Storage(dtype)),
            key,
            ..,
        ] if kind == "storage" => {
            let key = match key {
                Value::Str(key) => key.clone(),
                Value::Int(key) => key.to_string(),
                other => return Err(bad(format!("a storage key that is {}", other.kind()))),
            };
            Ok(Value::Storage { key, dtype: *dtype })
        }
        _ => Err(bad("a persistent id that is not a storage")),
    }
}

/// REDUCE with one of the allowed globals.
fn call(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(global) = callable else {
        return Err(bad(format!("a call of {}", callable.kind())));
    };
    let Value::Tuple(args) = args else {
        return Err(bad("call arguments that are not a tuple"));
    };
    match global {
        Global::OrderedDict => Ok(Value::Dict(Vec::new())),
        Global::RebuildTensor => match args.as_slice() {
            [Value::Storage { key, dtype }, offset, shape, stride, ..] => {
                let (shape, stride) = (shape.indices()?, stride.indices()?);
                if shape.len() != stride.len() {
                    return Err(bad("a tensor's shape and strides differ in length"));
                }
                Ok(Value::Tensor(TensorRef {
                    storage: key.clone(),
                    dtype: *dtype,
                    offset: offset.index()?,
                    shape,
                    stride,
                }))
            }
            _ => Err(bad("a tensor without its storage")),
        },
        Global::RebuildParameter => match args.into_iter().next() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor),
            _ => Err(bad("a parameter without its tensor")),
        },
        Global::Storage(_) => Err(bad("a storage type called as a function")),
    }
}
