//! Weight files in and out: torchvision `state_dict`s (`.safetensors`, and `torch.save`
//! files read by `pth`, on every target) under torchvision's own key names, and the
//! project's own burnpack format; NumPy's `.npy` (`npy`) for fixtures and embeddings.
//! Uses `resnet` (the models they fill), `ops` (reading tensors back) and `error`.

pub mod npy;
pub mod pth;

use std::collections::BTreeMap;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::store::{
    ApplyError, ApplyResult, BurnpackStore, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    SafetensorsStore, burn_pack,
};
use burn::tensor::{Bytes, Transaction};

use crate::error::{Error, Result};
use crate::ops::readback::{floats, read_together};
use crate::resnet::{Arch, BlockKind, ResNet, ResNetConfig, Shortcut, Stem, is_running_statistic};
use pth::TensorValues;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// safetensors, as written by `safetensors.torch.save_file(model.state_dict(), ...)`.
    Safetensors,
    /// `torch.save(model.state_dict(), ...)`.
    PyTorch,
    /// burn's burnpack, the project's own format.
    Burnpack,
}

impl WeightFormat {
    /// Recognises a weight file by its first bytes, whatever its name.
    pub fn detect(bytes: &[u8]) -> Result<Self> {
        if bytes.starts_with(b"BURN") || bytes.starts_with(b"NRUB") {
            return Ok(WeightFormat::Burnpack);
        }
        // A zip archive (torch >= 1.6) or a legacy pickle stream.
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0x80, 0x02]) {
            return Ok(WeightFormat::PyTorch);
        }
        if bytes.len() >= 9 {
            let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            if bytes[8] == b'{' && header_len <= (bytes.len() - 8) as u64 {
                return Ok(WeightFormat::Safetensors);
            }
        }
        Err(Error::WeightFormat(
            "expected a .safetensors, .pth or .bpk (burnpack) file; the first bytes match none"
                .into(),
        ))
    }
}

/// What a weight file describes, read from its tensor names and shapes alone.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsInfo {
    pub format: WeightFormat,
    pub config: ResNetConfig,
    /// Trainable parameters (running statistics excluded), as torchvision counts them.
    pub num_params: usize,
    pub num_tensors: usize,
}

/// Torchvision's name for a tensor path of burn's: no enum variants, BatchNorm's
/// gamma/beta as weight/bias.
pub fn torchvision_key(burn_path: &str) -> String {
    let segments: Vec<&str> = burn_path
        .split('.')
        .filter(|segment| !segment.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    let mut key = segments.join(".");
    for (from, to) in [(".gamma", ".weight"), (".beta", ".bias")] {
        if let Some(stem) = key.strip_suffix(from) {
            key = format!("{stem}{to}");
        }
    }
    key
}

/// Loads any supported weight file into a new model of `config`.
pub fn load(bytes: Vec<u8>, config: &ResNetConfig, device: &Device) -> Result<ResNet> {
    let format = WeightFormat::detect(&bytes)?;
    // A plain twin has the keys of its ResNet (option A adds none): only the file's
    // metadata tells them apart, so check it before the keys.
    let file_plain = declared_shortcut(&bytes, format)? == Some(Shortcut::None);
    if file_plain != (config.shortcut == Shortcut::None) {
        return Err(Error::PlainMismatch {
            file_plain,
            model: config.preset().to_string(),
        });
    }
    let mut model = ResNet::new(config, device)?;
    let name = config.preset().to_string();
    let arch = name.as_str();
    let result = match format {
        WeightFormat::Safetensors => {
            let mut store = torchvision_safetensors_store(bytes);
            model.load_from(&mut store).map_err(|e| format_error(&e))?
        }
        WeightFormat::Burnpack => {
            let mut store = burnpack(bytes).allow_partial(true).validate(false);
            model.load_from(&mut store).map_err(|e| format_error(&e))?
        }
        WeightFormat::PyTorch => return load_pytorch_bytes(model, bytes, arch),
    };
    check_applied(&result, arch)?;
    Ok(model)
}

/// Serialises a model to burnpack bytes. Reads tensors synchronously: on wasm, read the
/// model's tensors back with the async API first.
pub fn save_burnpack(model: &ResNet, config: &ResNetConfig) -> Result<Vec<u8>> {
    refuse_folded(model)?;
    let mut store = BurnpackStore::from_bytes(None)
        .metadata("arch", config.preset().to_string())
        .metadata(SHORTCUT_METADATA, config.shortcut.name())
        .metadata("num_classes", config.num_classes.to_string())
        .metadata("in_channels", config.in_channels.to_string());
    model
        .save_into(&mut store)
        .map_err(|e| Error::Backend(format!("cannot serialise the model: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| Error::Backend(format!("cannot serialise the model: {e}")))?;
    Ok(bytes.to_vec())
}

/// A model with its BatchNorms folded away has no norms to write: its file would load into
/// nothing and train wrongly.
fn refuse_folded(model: &ResNet) -> Result<()> {
    if model.is_folded() {
        return Err(Error::InvalidInput(
            "this model has its BatchNorm folded into its convolutions, for inference only: \
             export the model it was folded from"
                .into(),
        ));
    }
    Ok(())
}

/// The burn path (`layer1.0.conv1.weight`) of what a `ModuleVisitor` or `ModuleMapper` is at:
/// fed from `enter_module` and `exit_module`. Enum variants are not part of a path.
#[derive(Debug, Default)]
pub struct ModulePath {
    segments: Vec<String>,
    // For each module entered, whether it pushed a segment.
    pushed: Vec<bool>,
}

impl ModulePath {
    pub fn enter(&mut self, name: &str, container_type: &str) {
        let push = !container_type.starts_with("Enum:");
        if push {
            self.segments.push(name.to_string());
        }
        self.pushed.push(push);
    }

    pub fn exit(&mut self) {
        if self.pushed.pop() == Some(true) {
            self.segments.pop();
        }
    }

    pub fn current(&self) -> String {
        self.segments.join(".")
    }
}

/// The metadata key that says which shortcut a model has (`Shortcut::name`). Burnpacks
/// always carry it; torchvision safetensors only for a plain twin (`none`), as PyTorch
/// files without it are ResNets.
const SHORTCUT_METADATA: &str = "shortcut";

/// The shortcut a weight file's metadata declares, if it declares one.
fn declared_shortcut(bytes: &[u8], format: WeightFormat) -> Result<Option<Shortcut>> {
    let value = match format {
        WeightFormat::PyTorch => None,
        WeightFormat::Burnpack => {
            let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
                .map_err(|e| format_error(&e))?;
            reader.metadata().get(SHORTCUT_METADATA).cloned()
        }
        WeightFormat::Safetensors => {
            let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            let header = bytes
                .get(8..8 + header_len as usize)
                .ok_or_else(|| Error::WeightFormat("the safetensors header is cut short".into()))?;
            let header: serde_json::Value = serde_json::from_slice(header).map_err(|e| {
                Error::WeightFormat(format!("the safetensors header is not JSON: {e}"))
            })?;
            header["__metadata__"][SHORTCUT_METADATA]
                .as_str()
                .map(str::to_string)
        }
    };
    match value {
        None => Ok(None),
        Some(name) => Shortcut::parse(&name).map(Some).ok_or_else(|| {
            Error::WeightFormat(format!(
                "its metadata names shortcut '{name}': expected zero-pad, projection or none"
            ))
        }),
    }
}

/// Every tensor of a model, unread and flattened, with its burn path and shape: parameters
/// and BatchNorm running statistics.
fn model_tensors(model: &ResNet) -> Vec<(String, Vec<usize>, Tensor<1>)> {
    #[derive(Default)]
    struct Collector {
        path: ModulePath,
        tensors: Vec<(String, Vec<usize>, Tensor<1>)>,
    }
    impl ModuleVisitor for Collector {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let tensor = param.val();
            let shape = tensor.dims().to_vec();
            let count: usize = shape.iter().product();
            self.tensors
                .push((self.path.current(), shape, tensor.reshape([count])));
        }
    }
    let mut collector = Collector::default();
    model.visit(&mut collector);
    collector.tensors
}

/// The model as a torchvision `state_dict` in safetensors: torchvision's key names, the
/// classifier weight as `[out, in]`, and each BatchNorm's `num_batches_tracked`, so that
/// PyTorch's strict `load_state_dict` accepts it. Reads tensors asynchronously (any backend).
pub async fn torchvision_safetensors(model: &ResNet) -> Result<Vec<u8>> {
    refuse_folded(model)?;
    let tensors = model_tensors(model);
    let transaction = tensors
        .iter()
        .fold(Transaction::default(), |transaction, (_, _, tensor)| {
            transaction.register(tensor.clone())
        });
    let values = read_together(transaction).await?;
    if values.len() != tensors.len() {
        return Err(Error::Backend(
            "a read back returned the wrong tensor count".into(),
        ));
    }
    let tensors = tensors
        .into_iter()
        .zip(values)
        .map(|((path, shape, _), data)| Ok((path, shape, floats(data)?)))
        .collect::<Result<Vec<_>>>()?;
    let metadata: &[(&str, &str)] = if model.is_plain() {
        &[(SHORTCUT_METADATA, "none")]
    } else {
        &[]
    };
    Ok(write_torchvision_safetensors(tensors, metadata))
}

/// burnpack bytes for a model on any backend: read asynchronously, then written from a
/// copy on the CPU.
pub async fn burnpack_async(model: &ResNet, config: &ResNetConfig) -> Result<Vec<u8>> {
    let safetensors = torchvision_safetensors(model).await?;
    save_burnpack(&load(safetensors, config, &Device::flex())?, config)
}

/// The formats a model is written in: torchvision's `state_dict` as safetensors (for
/// PyTorch) or burn's burnpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Safetensors,
    Burnpack,
}

impl std::str::FromStr for ExportFormat {
    type Err = Error;
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "safetensors" => Ok(Self::Safetensors),
            "burnpack" => Ok(Self::Burnpack),
            other => Err(Error::InvalidConfig(format!(
                "unknown export format '{other}': use safetensors or burnpack"
            ))),
        }
    }
}

/// Any weight file we read (safetensors, burnpack, torch.save), rewritten in `format`.
pub async fn convert(bytes: Vec<u8>, format: ExportFormat) -> Result<Vec<u8>> {
    let config = inspect(bytes.clone())?.config;
    let model = load(bytes, &config, &Device::flex())?;
    match format {
        ExportFormat::Safetensors => torchvision_safetensors(&model).await,
        ExportFormat::Burnpack => save_burnpack(&model, &config),
    }
}

fn write_torchvision_safetensors(
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    // (key, dtype, shape, little-endian bytes), sorted by key as safetensors writers do.
    let mut entries: BTreeMap<String, (&str, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (path, shape, values) in tensors {
        let key = torchvision_key(&path);
        let (shape, values) = if key == "fc.weight" {
            // burn's Linear weight is [in, out]; PyTorch's is [out, in].
            let [inputs, outputs] = [shape[0], shape[1]];
            let transposed = (0..outputs * inputs)
                .map(|i| values[(i % inputs) * outputs + i / inputs])
                .collect();
            (vec![outputs, inputs], transposed)
        } else {
            (shape, values)
        };
        if let Some(layer) = key.strip_suffix(".running_var") {
            let batches = 0i64.to_le_bytes().to_vec();
            entries.insert(
                format!("{layer}.num_batches_tracked"),
                ("I64", vec![], batches),
            );
        }
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        entries.insert(key, ("F32", shape, bytes));
    }
    safetensors_file(&entries, metadata)
}

/// A safetensors file of (key, dtype, shape, little-endian bytes), in key order, with
/// `metadata` beside torch's `format`.
fn safetensors_file(
    entries: &BTreeMap<String, (&str, Vec<usize>, Vec<u8>)>,
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    // Names come from the files users bring (a `.pth`'s keys): quoted as JSON strings, so a
    // `"` or `\` in one can neither break the header nor add entries to it.
    let quoted = |text: &str| serde_json::Value::String(text.to_string()).to_string();
    let mut header = String::from(r#"{"__metadata__":{"format":"pt""#);
    for (key, value) in metadata {
        header.push_str(&format!(",{}:{}", quoted(key), quoted(value)));
    }
    header.push('}');
    let mut offset = 0;
    for (key, (dtype, shape, bytes)) in entries {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        header.push_str(&format!(
            r#",{}:{{"dtype":"{dtype}","shape":[{}],"data_offsets":[{offset},{}]}}"#,
            quoted(key),
            dims.join(","),
            offset + bytes.len()
        ));
        offset += bytes.len();
    }
    header.push('}');
    // Pad so the data starts 8-byte aligned, as the safetensors reference writer does.
    while (header.len() + 8) % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for (_, _, bytes) in entries.values() {
        file.extend_from_slice(bytes);
    }
    file
}

/// Reads names and shapes only, and infers the architecture from them.
pub fn inspect(bytes: Vec<u8>) -> Result<WeightsInfo> {
    let format = WeightFormat::detect(&bytes)?;
    let declared = declared_shortcut(&bytes, format)?;
    let shapes = match format {
        WeightFormat::Safetensors => tensor_shapes(&mut torchvision_safetensors_store(bytes))?,
        WeightFormat::Burnpack => tensor_shapes(&mut burnpack(bytes))?,
        WeightFormat::PyTorch => pytorch_shapes(bytes)?,
    };
    let mut info = infer_layout(format, &shapes)?;
    if declared == Some(Shortcut::None) {
        info.config.shortcut = Shortcut::None;
    }
    Ok(info)
}

fn torchvision_safetensors_store(bytes: Vec<u8>) -> SafetensorsStore {
    SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true)
        .allow_partial(true)
        .validate(false)
}

fn burnpack(bytes: Vec<u8>) -> BurnpackStore {
    BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)))
}

fn format_error(error: &dyn std::fmt::Display) -> Error {
    Error::WeightFormat(error.to_string())
}

/// Tensor shapes under torchvision names.
fn tensor_shapes<S: ModuleStore>(store: &mut S) -> Result<BTreeMap<String, Vec<usize>>>
where
    S::Error: std::fmt::Display,
{
    let tensors = store.get_all_tensors().map_err(|e| format_error(&e))?;
    Ok(tensors
        .iter()
        .map(|(name, tensor)| (torchvision_key(name), tensor.shape.to_vec()))
        .collect())
}

/// Turns burn's loading report into the first problem, named by torchvision's key.
fn check_applied(result: &ApplyResult, arch: &str) -> Result<()> {
    if let Some(error) = result.errors.first() {
        return Err(match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => {
                let key = torchvision_key(path);
                let (mut expected, mut found) = (expected.to_vec(), found.to_vec());
                // burn stores Linear weights transposed; report torchvision's layout.
                if key.ends_with("fc.weight") {
                    expected.reverse();
                    found.reverse();
                }
                Error::ShapeMismatch {
                    key,
                    expected,
                    found,
                }
            }
            other => Error::WeightFormat(other.to_string()),
        });
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(Error::MissingKey {
            key: torchvision_key(path),
            arch: arch.to_string(),
        });
    }
    // torchvision saves a step counter with every BatchNorm; inference has no use for it.
    if let Some(path) = result
        .unused
        .iter()
        .find(|path| !path.ends_with("num_batches_tracked"))
    {
        return Err(Error::UnexpectedKey {
            key: torchvision_key(path),
            arch: arch.to_string(),
        });
    }
    Ok(())
}

fn infer_layout(
    format: WeightFormat,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Result<WeightsInfo> {
    let unrecognised = |what: &str| Error::WeightFormat(format!("not a ResNet state_dict: {what}"));
    let stem_weight = shapes
        .get("conv1.weight")
        .ok_or_else(|| unrecognised("no 'conv1.weight' tensor"))?;
    let [_, in_channels, kernel, _] = stem_weight[..] else {
        return Err(unrecognised(
            "'conv1.weight' is not a 4-d convolution weight",
        ));
    };
    let stem = match kernel {
        7 => Stem::ImageNet,
        3 => Stem::Cifar,
        _ => return Err(unrecognised("the first convolution is neither 7x7 nor 3x3")),
    };
    let num_classes = match shapes.get("fc.bias").map(Vec::as_slice) {
        Some(&[classes]) => classes,
        _ => return Err(unrecognised("no 1-d 'fc.bias' tensor")),
    };
    let mut depths = Vec::new();
    for stage in 1..=4 {
        let prefix = format!("layer{stage}.");
        let blocks = shapes
            .keys()
            .filter_map(|key| {
                key.strip_prefix(&prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max();
        match blocks {
            Some(last) => depths.push(last + 1),
            None => break,
        }
    }
    let block = if shapes.keys().any(|key| key.contains(".conv3.")) {
        BlockKind::Bottleneck
    } else {
        BlockKind::Basic
    };
    let arch = Arch::from_layout(stem, block, &depths).ok_or_else(|| {
        unrecognised(&format!(
            "no preset has a {stem:?} stem, {block:?} blocks and stage depths {depths:?}"
        ))
    })?;
    let shortcut = if shapes.keys().any(|key| key.contains(".downsample.")) {
        Shortcut::Projection
    } else {
        Shortcut::ZeroPad
    };
    let num_params = shapes
        .iter()
        .filter(|(key, _)| !is_running_statistic(key))
        .map(|(_, shape)| shape.iter().product::<usize>())
        .sum();
    Ok(WeightsInfo {
        format,
        config: ResNetConfig::new(arch, num_classes, in_channels).with_shortcut(shortcut),
        num_params,
        num_tensors: shapes.len(),
    })
}

/// A `torch.save` file as the safetensors file it holds the tensors of (`pth`).
fn pytorch_as_safetensors(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut entries: BTreeMap<String, (&str, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, tensor) in pth::read_state_dict(bytes)? {
        let (dtype, data) = match tensor.values {
            TensorValues::F32(values) => {
                ("F32", values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
            TensorValues::I64(values) => {
                ("I64", values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
        };
        entries.insert(name, (dtype, tensor.shape, data));
    }
    Ok(safetensors_file(&entries, &[]))
}

fn load_pytorch_bytes(mut model: ResNet, bytes: Vec<u8>, arch: &str) -> Result<ResNet> {
    let mut store = torchvision_safetensors_store(pytorch_as_safetensors(&bytes)?);
    let result = model.load_from(&mut store).map_err(|e| format_error(&e))?;
    check_applied(&result, arch)?;
    Ok(model)
}

fn pytorch_shapes(bytes: Vec<u8>) -> Result<BTreeMap<String, Vec<usize>>> {
    Ok(pth::read_state_dict(&bytes)?
        .into_iter()
        .map(|(name, tensor)| (name, tensor.shape))
        .collect())
}
