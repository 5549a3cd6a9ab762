//! The crate's one error type. Every message is one line and names the file, model or
//! input at fault; when the setup step would fix it, it says which command to run.

use std::fmt;
use std::path::{Path, PathBuf};

use super::cache::{CACHE_ENV, CACHE_SUBDIR, ORT_DYLIB_ENV, SETUP_HINT};

/// Errors of this crate. Every message is one line and names the file or input at fault;
/// when the setup step would fix it, the message says `run `bash scripts/setup.sh``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// No cache dir: `SPEECHMILL_CACHE` unset and no `.cache/speechmill` above the
    /// current dir or the executable.
    #[error(
        "speechmill cache dir not found (no {CACHE_SUBDIR} above {searched}, {CACHE_ENV} unset): {SETUP_HINT}"
    )]
    CacheNotFound { searched: String },
    /// `SPEECHMILL_CACHE` names something that is not a directory.
    #[error(
        "{CACHE_ENV}={path} is not a directory: run `{CACHE_ENV}={path} bash scripts/setup.sh`"
    )]
    CacheEnvInvalid { path: String },
    /// A model file (or the onnxruntime library) is missing.
    #[error("model file {} not found: {SETUP_HINT}", .path.display())]
    MissingFile { path: PathBuf },
    /// A converted model directory of one's own lacks a file (converted by an older
    /// converter, or partly copied): setup would not fix it, converting again does.
    #[error(
        "model file {} not found: convert the checkpoint into {} again with `python models/tools/whisper_to_onnx.py CT2_DIR {} --int8`",
        .path.display(), .dir.display(), .dir.display()
    )]
    MissingConvertedFile { path: PathBuf, dir: PathBuf },
    /// `model_path` got a name that is neither in the registry nor a file in the cache.
    #[error(
        "unknown model `{name}`: not in models/registry.toml (known: {known}) and no {} exists: {SETUP_HINT} or pass a path",
        .tried.display()
    )]
    UnknownModel {
        name: String,
        known: String,
        tried: PathBuf,
    },
    /// A model file here is not the one the plan was made with (its sha256 differs from
    /// the one the client fingerprinted the node with).
    #[error(
        "model {model}: {} has sha256 {here} here but {in_plan} in the plan: {SETUP_HINT} on this machine so that it has the model the plan was made with",
        .path.display()
    )]
    HashMismatch {
        model: String,
        path: PathBuf,
        here: String,
        in_plan: String,
    },
    /// `ORT_DYLIB_PATH` names a missing file.
    #[error("{ORT_DYLIB_ENV}={} does not exist: unset it to use the cache's onnxruntime, or {SETUP_HINT}", .path.display())]
    OrtDylibEnvMissing { path: PathBuf },
    /// The onnxruntime library exists but could not be loaded (wrong file, too old).
    #[error(
        "cannot load ONNX Runtime from {}: {message} ({SETUP_HINT}, or set {ORT_DYLIB_ENV} to libonnxruntime.so >= 1.31)",
        .path.display()
    )]
    RuntimeLoad { path: PathBuf, message: String },
    /// ONNX Runtime could not load a model file.
    #[error("cannot load model {}: {message}", .path.display())]
    ModelLoad { path: PathBuf, message: String },
    /// ONNX Runtime failed while running a model.
    #[error("ONNX Runtime error in {context}: {message}")]
    Ort { context: String, message: String },
    /// Reading a file failed.
    #[error("cannot read {}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    /// The caller passed something the model cannot take.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A bad configuration value (device name, thread count…).
    #[error("invalid config: {0}")]
    InvalidConfig(String),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Collapses whitespace runs (newlines included) so an error message stays on one line.
pub(crate) fn one_line(s: impl fmt::Display) -> String {
    s.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn ort_error(context: impl Into<String>) -> impl FnOnce(ort::Error<()>) -> ModelError {
    let context = context.into();
    move |e| ModelError::Ort {
        context,
        message: one_line(e),
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |e| ModelError::Io {
        path: path.to_path_buf(),
        message: one_line(e),
    }
}
