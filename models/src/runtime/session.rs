//! ONNX Runtime sessions: the process-wide environment, where a session runs
//! ([`Device`]), with how many threads ([`SessionConfig`]), and building one.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::cache::ort_library_path;
use super::error::{ModelError, Result, one_line};
use super::shared_weights::SharedWeights;

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
    /// Whether the session keeps what it allocated for reuse: ONNX Runtime's CPU arena
    /// and its memory-pattern plan (default on). A model whose tensor shapes change on
    /// every call (Whisper's decoder: the beams and the key/value cache grow each step)
    /// gains no speed from either, and the arena then holds the largest shapes it ever
    /// saw; such a model turns this off.
    pub pooled_memory: bool,
}

impl Default for SessionConfig {
    /// One thread on the CPU: speechmill parallelises across partitions instead.
    fn default() -> Self {
        SessionConfig {
            intra_threads: 1,
            device: Device::Cpu,
            pooled_memory: true,
        }
    }
}

impl SessionConfig {
    /// `intra_threads` threads on the CPU.
    pub fn cpu(intra_threads: usize) -> Self {
        SessionConfig {
            intra_threads,
            device: Device::Cpu,
            pooled_memory: true,
        }
    }

    /// The config a stage's `device` and `threads` params ask for; `threads` 0 means
    /// every core this process may use.
    pub fn new(device: Device, threads: usize) -> Self {
        let intra_threads = if threads > 0 {
            threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        SessionConfig {
            intra_threads,
            device,
            pooled_memory: true,
        }
    }

    /// How many sessions of this config run at once without sharing a core: the
    /// cores this process may use over each session's threads (at least 1).
    pub fn sessions_per_cores(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.intra_threads.max(1)).max(1)
    }
}

/// Builds a session for the ONNX model at `path` (full graph optimisation, one inter-op
/// thread, pooled memory unless the config turns it off). A missing file gives
/// [`ModelError::MissingFile`] before ONNX Runtime is touched.
pub fn create_session(path: &Path, config: &SessionConfig) -> Result<Session> {
    create_session_sharing(path, config, None)
}

/// [`create_session`], and with `weights` (opened from the same `path`) a session that
/// shares that graph's external tensors with every other session built with them: the
/// caller keeps `weights` until the session is dropped.
pub fn create_session_sharing(
    path: &Path,
    config: &SessionConfig,
    weights: Option<&SharedWeights>,
) -> Result<Session> {
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
    if !config.pooled_memory {
        builder = builder
            .with_memory_pattern(false)
            .map_err(|e| load_err(e.to_string()))?;
        if config.device == Device::Cpu {
            builder = builder
                .with_execution_providers([ort::ep::CPU::default()
                    .with_arena_allocator(false)
                    .build()])
                .map_err(|e| load_err(e.to_string()))?;
        }
    }
    if let Device::Cuda { device_id } = config.device {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure()])
            .map_err(|e| load_err(e.to_string()))?;
    }
    if let Some(weights) = weights {
        builder = weights.apply(builder).map_err(load_err)?;
    }
    builder
        .commit_from_file(path)
        .map_err(|e| load_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn zero_threads_means_every_core() {
        assert_eq!(SessionConfig::new(Device::Cpu, 3).intra_threads, 3);
        assert!(SessionConfig::new(Device::Cpu, 0).intra_threads >= 1);
    }

    #[test]
    fn missing_model_file_fails_before_onnx_runtime() {
        let path = std::env::temp_dir().join("speechmill-no-such-cache/x.onnx");
        let e = create_session(&path, &SessionConfig::default()).unwrap_err();
        assert!(matches!(e, ModelError::MissingFile { .. }));
        assert!(e.to_string().contains("x.onnx") && e.to_string().contains("scripts/setup.sh"));
    }
}
