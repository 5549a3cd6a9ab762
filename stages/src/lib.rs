//! speechmill's stages, each a module that holds its whole contract: typed params,
//! version, output columns and the DataFusion plan (built from the UDFs it
//! registers). [`builtin_registry`] is the one list of them.
//!
//! ```
//! let registry = speechmill_stages::builtin_registry();
//! assert!(registry.get("ingest").is_some());
//! ```

pub mod asr;
pub mod audio;
mod blob;
mod columns;
pub mod decode;
pub mod ingest;
pub mod segment;
mod udf;

use std::sync::Arc;

use speechmill_pipeline::StageRegistry;

/// Every built-in stage, by name.
pub fn builtin_registry() -> StageRegistry {
    let mut registry = StageRegistry::new();
    registry.register(Arc::new(ingest::IngestStage));
    registry.register(Arc::new(decode::DecodeStage));
    registry.register(Arc::new(segment::SegmentStage));
    registry.register(Arc::new(asr::AsrStage));
    registry
}
