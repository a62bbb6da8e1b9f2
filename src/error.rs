//! The one error type of the crate: every message says what went wrong and what to do about it.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An architecture name that is not one of the presets (`known`).
    UnknownArch {
        name: String,
        known: &'static [&'static str],
    },
    /// A model configuration that cannot be built (zero classes, zero channels, ...).
    InvalidConfig(String),
    /// A file could not be read or written.
    Io { path: String, message: String },
    /// The bytes are not a weight file this crate can read.
    WeightFormat(String),
    /// The weight file lacks a tensor the model needs.
    MissingKey { key: String, arch: String },
    /// The weight file holds a tensor the model does not have.
    UnexpectedKey { key: String, arch: String },
    /// A plain twin's weight file loaded as a ResNet, or the reverse (`model` is the name of
    /// what it was loaded as).
    PlainMismatch { file_plain: bool, model: String },
    /// A tensor of the weight file has the wrong shape for this model.
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// An input (array, image, tensor) that the model cannot take.
    InvalidInput(String),
    /// The backend failed (device lost, read back failed).
    Backend(String),
    /// What was asked for is not offered here (WebGPU in a browser without it).
    Unsupported(String),
    /// Training data that cannot be trained on, or a run that cannot go on.
    Training(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownArch { name, known } => write!(
                f,
                "unknown architecture '{name}': use one of {}",
                known.join(", ")
            ),
            Error::InvalidConfig(message) => write!(f, "invalid model configuration: {message}"),
            Error::Io { path, message } => write!(f, "cannot access '{path}': {message}"),
            Error::WeightFormat(message) => write!(f, "not a readable weight file: {message}"),
            Error::MissingKey { key, arch } => write!(
                f,
                "the weight file has no tensor '{key}', which {arch} needs: \
                 is it a {arch} file, with the same class and input channel counts?"
            ),
            Error::UnexpectedKey { key, arch } => write!(
                f,
                "the weight file has a tensor '{key}' that {arch} does not have: \
                 the file is probably for another architecture"
            ),
            Error::PlainMismatch { file_plain, model } => {
                let twin = match model.strip_prefix("plain") {
                    Some(depth) => format!("resnet{depth}"),
                    None => model.replacen("resnet", "plain", 1),
                };
                if *file_plain {
                    write!(
                        f,
                        "the weight file holds a plain network, without shortcuts, but \
                         {model} has them: load it as {twin}"
                    )
                } else {
                    write!(
                        f,
                        "the weight file holds a ResNet, with shortcuts, but {model} is its \
                         plain twin, without them: load it as {twin}"
                    )
                }
            }
            Error::ShapeMismatch {
                key,
                expected,
                found,
            } => write!(
                f,
                "tensor '{key}' has shape {found:?} in the weight file but the model needs \
                 {expected:?}: check --num-classes, --in-channels and the architecture"
            ),
            Error::InvalidInput(message) => write!(f, "invalid input: {message}"),
            Error::Backend(message) => write!(f, "backend failure: {message}"),
            Error::Unsupported(message) => write!(f, "not supported here: {message}"),
            Error::Training(message) => write!(f, "training: {message}"),
        }
    }
}

impl Error {
    /// A stable name for the kind of failure, for callers that branch on it: JavaScript
    /// sees it as `error.code`, so that nobody matches message text.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownArch { .. } | Error::InvalidConfig(_) => "bad-options",
            Error::Io { .. } => "io",
            Error::WeightFormat(_)
            | Error::MissingKey { .. }
            | Error::UnexpectedKey { .. }
            | Error::PlainMismatch { .. }
            | Error::ShapeMismatch { .. } => "bad-weights",
            Error::InvalidInput(_) => "bad-input",
            Error::Backend(_) => "backend-failed",
            Error::Unsupported(_) => "unsupported",
            Error::Training(_) => "bad-training",
        }
    }
}

impl std::error::Error for Error {}
