//! What the setup step (`bash scripts/setup.sh`) puts into the cache dir that speechmill
//! loads: the list `speechmill doctor` checks. Built from the same names the loaders
//! use (the registry's artifacts, [`whisper::CONVERTED`](crate::whisper::CONVERTED) and
//! [`Precision::all_files`](crate::whisper::Precision::all_files), the VAD's sequence
//! graph), so a new model cannot be loaded without being checked.

use std::path::Path;

use crate::runtime::registry;
use crate::vad::SEQUENCE_MODEL;
use crate::whisper::{COMMON_FILES, CONVERTED, Precision};

/// Something in the cache that a stage, the setup step or the tests load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// What it is: `Whisper whisper-base (ONNX)`, `model silero-vad`.
    pub what: String,
    /// Who loads it: `asr`, `segment`, `setup`, …
    pub used_by: String,
    /// Its files, relative to the cache dir.
    pub files: Vec<String>,
}

impl Needed {
    /// The files missing under `cache`.
    pub fn missing_in(&self, cache: &Path) -> Vec<&str> {
        self.files
            .iter()
            .filter(|f| !cache.join(f).is_file())
            .map(String::as_str)
            .collect()
    }
}

/// Everything the setup step provides that speechmill loads, except the onnxruntime
/// library itself ([`ort_library_path`](crate::ort_library_path), which
/// `ORT_DYLIB_PATH` may put elsewhere).
pub fn needed() -> Vec<Needed> {
    let mut out = Vec::new();
    for name in CONVERTED {
        let mut files: Vec<String> = COMMON_FILES.iter().map(|f| f.to_string()).collect();
        for p in Precision::ALL {
            for f in p.files() {
                if !files.iter().any(|have| have == f) {
                    files.push(f.to_string());
                }
            }
        }
        out.push(Needed {
            what: format!("Whisper {name} (ONNX, fp32 + int8)"),
            used_by: "asr".into(),
            files: files
                .into_iter()
                .map(|f| format!("models/{name}/{f}"))
                .collect(),
        });
    }
    out.push(Needed {
        what: "Silero VAD sequence graph".into(),
        used_by: "segment".into(),
        files: vec![format!("models/{SEQUENCE_MODEL}")],
    });
    out.push(Needed {
        what: "DNSMOS split graphs".into(),
        used_by: "quality".into(),
        files: [crate::dnsmos::FRONT_FILE, crate::dnsmos::BACK_FILE]
            .iter()
            .map(|f| format!("models/{}/{f}", crate::dnsmos::MODEL_NAME))
            .collect(),
    });
    out.push(Needed {
        what: "Piper voice durations graph".into(),
        used_by: "tts (word times)".into(),
        files: vec!["models/piper/en_US-joe-medium.durations.onnx".into()],
    });
    for a in &registry().artifacts {
        if a.name == "onnxruntime" {
            continue;
        }
        out.push(Needed {
            what: format!("model {}", a.name),
            used_by: a.role.clone(),
            files: a.files.iter().map(|f| f.dest.clone()).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_converted_models_and_the_vad_graph_are_needed() {
        let all = needed();
        let files: Vec<&str> = all
            .iter()
            .flat_map(|n| n.files.iter().map(String::as_str))
            .collect();
        for f in [
            "models/whisper-base/encoder.onnx",
            "models/whisper-base/decoder_int8.onnx",
            "models/whisper-tiny.en/encoder_int8.onnx",
            "models/whisper-tiny.en/whisper.json",
            "models/whisper-tiny.en/tokenizer.json",
            "models/silero_vad_sequence.onnx",
            "models/dnsmos/sig_bak_ovr_front.onnx",
            "models/silero_vad.onnx",
            "models/whisper-base-ct2/model.bin",
        ] {
            assert!(files.contains(&f), "{f} not checked");
        }
        let empty = std::env::temp_dir().join("speechmill-inventory-empty");
        let whisper = &all[0];
        assert_eq!(whisper.missing_in(&empty).len(), whisper.files.len());
    }
}
