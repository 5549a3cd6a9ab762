//! Where things are: the cache dir the setup step fills and the onnxruntime library in it.

use std::path::{Path, PathBuf};

use super::error::{ModelError, Result};

/// Env var naming the cache dir (default: the first `.cache/speechmill` found walking up
/// from the current dir, then from the executable's dir).
pub const CACHE_ENV: &str = "SPEECHMILL_CACHE";
/// Env var naming the onnxruntime shared library; wins over the cache.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// The onnxruntime library `scripts/setup.sh` extracts, relative to the cache dir.
pub const ORT_LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.32.0";
/// The cache dir relative to the repository root.
pub const CACHE_SUBDIR: &str = ".cache/speechmill";
/// The command that installs everything the cache holds.
pub const SETUP_COMMAND: &str = "bash scripts/setup.sh";
/// What to run when something the setup step provides is missing.
pub const SETUP_HINT: &str = "run `bash scripts/setup.sh`";

/// The cache dir: `$SPEECHMILL_CACHE` if set, else the first `.cache/speechmill` found
/// walking up from the current dir, then from the executable's dir.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(v) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(&v);
        return if p.is_dir() {
            Ok(p)
        } else {
            Err(ModelError::CacheEnvInvalid {
                path: p.display().to_string(),
            })
        };
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    for start in &starts {
        for dir in start.ancestors() {
            let candidate = dir.join(CACHE_SUBDIR);
            if candidate.is_dir() {
                return Ok(candidate);
            }
        }
    }
    Err(ModelError::CacheNotFound {
        searched: starts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
    })
}

/// The setup command for this process's cache: `bash scripts/setup.sh`, prefixed with
/// `SPEECHMILL_CACHE=…` when that variable points somewhere.
pub fn setup_command() -> String {
    match std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => format!("{CACHE_ENV}={} {SETUP_COMMAND}", dir.to_string_lossy()),
        None => SETUP_COMMAND.to_string(),
    }
}

/// The onnxruntime shared library: `$ORT_DYLIB_PATH` if set, else
/// `<cache>/onnxruntime/libonnxruntime.so.1.32.0`. The file must exist.
pub fn ort_library_path() -> Result<PathBuf> {
    if let Some(v) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ModelError::OrtDylibEnvMissing { path: p })
        };
    }
    let p = cache_dir()?.join(ORT_LIBRARY);
    if p.is_file() {
        Ok(p)
    } else {
        Err(ModelError::MissingFile { path: p })
    }
}
