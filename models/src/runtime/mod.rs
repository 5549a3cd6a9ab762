//! The model layer every model front end and model stage builds on, one module per
//! idea:
//!
//! * [`cache`]: where things are (the cache dir, the onnxruntime library);
//! * [`registry`]: the pinned model sources (`models/registry.toml`) and name → path;
//! * [`hash`]: the sha256 of model files, once per file version per process;
//! * [`model_ref`]: [`ModelRef`], a model as a plan names it (name, location, files with
//!   their sha256), and [`ModelRef::verify`], the check that a process loads exactly
//!   those files (once per process);
//! * [`session`]: the ONNX Runtime environment, [`Device`], [`SessionConfig`] (device and
//!   threads), [`create_session`];
//! * [`pool`]: a verified model loaded once per process and config, shared
//!   ([`shared_model`]) or one instance per concurrent caller ([`SessionPool`]);
//! * [`shared`](mod@shared): process-wide instances by key;
//! * [`shared_weights`]: [`SharedWeights`], a graph's external tensors mapped once and
//!   shared by every session of it ([`create_session_sharing`]);
//! * [`error`]: [`ModelError`], one line per error, naming the setup command when setup
//!   fixes it.
//!
//! A model stage is a few lines over it. On the client (fingerprint and plan):
//!
//! ```no_run
//! # fn main() -> speechmill_models::Result<()> {
//! use speechmill_models::ModelRef;
//! // A registry artifact, one file: hashed here, fingerprinted, carried in the plan.
//! let dnsmos = ModelRef::hashed("dnsmos", "dnsmos", &[])?;
//! let fingerprint = serde_json::json!({ "dnsmos_sha256": dnsmos.sha256() });
//! let udf_config = serde_json::json!({ "model": dnsmos });
//! # let _ = (fingerprint, udf_config); Ok(()) }
//! ```
//!
//! In the UDF, in whichever process runs it:
//!
//! ```no_run
//! # fn main() -> speechmill_models::Result<()> {
//! use speechmill_models::{Device, ModelRef, SessionConfig, SessionPool, create_session};
//! # let model: ModelRef = todo!();
//! // Verified once per process, one session per concurrent caller, per device/threads.
//! let pool = SessionPool::shared(&model, &SessionConfig::new(Device::Cpu, 1), create_session)?;
//! let inputs = pool.with(|session| session.inputs().len())?;
//! # let _ = inputs; Ok(()) }
//! ```

pub mod cache;
pub mod error;
pub mod hash;
pub mod model_ref;
pub mod pool;
pub mod registry;
pub mod session;
pub mod shared;
pub mod shared_weights;

pub use cache::{
    CACHE_ENV, CACHE_SUBDIR, ORT_DYLIB_ENV, ORT_LIBRARY, SETUP_COMMAND, SETUP_HINT, cache_dir,
    ort_library_path, setup_command,
};
pub use error::{ModelError, Result};
pub(crate) use error::{one_line, ort_error};
pub use hash::model_sha256;
pub use model_ref::{ModelFile, ModelRef, Verifier};
pub use pool::{Loader, SessionPool, shared_model};
pub use registry::{
    Artifact, ArtifactFile, REGISTRY_TOML, Registry, Wheel, model_path, model_path_in, registry,
    resolve_model,
};
pub use session::{Device, SessionConfig, create_session, create_session_sharing, environment};
pub use shared::shared;
pub use shared_weights::SharedWeights;
