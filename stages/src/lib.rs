//! speechmill's stages, each a module that holds its whole contract: typed params,
//! version, output columns and the DataFusion plan (built from the UDFs it
//! registers). [`builtin_registry`] is the one list of them.
//!
//! ```
//! let registry = speechmill_stages::builtin_registry();
//! assert!(registry.get("ingest").is_some());
//! ```

pub mod align;
pub mod asr;
mod blob;
pub mod columns;
pub mod decode;
pub mod filter;
pub mod fit_units;
pub mod ingest;
pub mod interleave;
pub mod quality;
pub mod resegment;
pub mod segment;
pub mod shard;
pub mod text_functions;
pub mod textspan;
pub mod tokenize;
pub mod tts;
mod udf;
mod with_audio;
pub mod wordspan;

use std::sync::Arc;

/// The audio decoder (its own crate, `speechmill-audio`), as stages use it.
pub use speechmill_audio as audio;

use speechmill_pipeline::StageRegistry;

/// Every built-in stage, by name.
pub fn builtin_registry() -> StageRegistry {
    let mut registry = StageRegistry::new();
    registry.register(Arc::new(ingest::IngestStage));
    registry.register(Arc::new(decode::DecodeStage));
    registry.register(Arc::new(segment::SegmentStage));
    registry.register(Arc::new(asr::AsrStage));
    registry.register(Arc::new(align::AlignStage));
    registry.register(Arc::new(resegment::ResegmentStage));
    registry.register(Arc::new(wordspan::WordspanStage));
    registry.register(Arc::new(quality::QualityStage));
    registry.register(Arc::new(filter::FilterStage));
    registry.register(Arc::new(shard::ShardStage));
    registry.register(Arc::new(textspan::TextspanStage));
    registry.register(Arc::new(tts::TtsStage));
    registry.register(Arc::new(fit_units::FitUnitsStage));
    registry.register(Arc::new(tokenize::TokenizeStage));
    registry.register(Arc::new(interleave::InterleaveStage));
    registry.register(Arc::new(shard::tokens::TokenShardStage));
    for function in text_functions::udfs() {
        registry.register_function(function);
    }
    registry
}

#[cfg(test)]
mod tests {
    use speechmill_pipeline::fingerprint;

    use super::*;

    /// The fingerprint of a node of `stage` configured with `params`, inputs and
    /// models left out: what the params contribute.
    fn params_fingerprint(stage: &str, params: &str) -> String {
        let configured = builtin_registry()
            .get(stage)
            .unwrap()
            .configure(toml::from_str(params).unwrap())
            .unwrap();
        fingerprint::fingerprint(&fingerprint::material(
            stage,
            configured.version(),
            configured.params_json(),
            configured.speed_only_params(),
            serde_json::Value::Null,
            &[],
        ))
    }

    #[test]
    fn speed_only_params_change_no_fingerprint() {
        let cases = [
            (
                "ingest",
                "paths = \"a/*.wav\"",
                "paths = \"a/*.wav\"\nconcurrency = 32\ntimeout_s = 5.0\nretries = 9",
                "paths = \"a/*.wav\"\nmax_bytes = 10",
            ),
            ("segment", "", "batch_sources = 4", "threshold = 0.6"),
            (
                "asr",
                "",
                "device = \"cuda\"\nthreads = 3\nbatch_size = 8",
                "beam_size = 1",
            ),
            (
                "tts",
                "",
                "device = \"cuda\"\nthreads = 4",
                "noise_scale = 0.0",
            ),
            (
                "align",
                "",
                "threads = 2\nbatch_size = 8",
                "method = \"whisper\"",
            ),
            // quality has no params that change its output.
            ("quality", "", "device = \"cuda\"\nthreads = 2", ""),
        ];
        for (stage, base, speed, output) in cases {
            let fp = params_fingerprint(stage, base);
            assert_eq!(fp, params_fingerprint(stage, speed), "{stage}: {speed}");
            if !output.is_empty() {
                assert_ne!(fp, params_fingerprint(stage, output), "{stage}: {output}");
            }
        }
    }
}
