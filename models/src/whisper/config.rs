//! `whisper.json`: what the converter (`models/tools/whisper_to_onnx.py`) records
//! about a checkpoint, so the runtime never reads the original checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::runtime::{ModelError, Result};

/// Special token ids of a Whisper vocabulary (they differ between English-only and
/// multilingual models, so they are read, never hard-coded).
#[derive(Debug, Clone, Deserialize)]
pub struct SpecialTokens {
    pub sot: u32,
    pub eot: u32,
    pub transcribe: u32,
    pub translate: u32,
    pub no_timestamps: u32,
    pub no_speech: u32,
    pub timestamp_begin: u32,
    pub sot_prev: u32,
    pub sot_lm: u32,
}

/// The facts about one converted checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct WhisperConfig {
    pub n_mels: usize,
    pub n_audio_ctx: usize,
    pub n_text_ctx: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_dec_layers: usize,
    pub n_vocab: usize,
    pub multilingual: bool,
    /// `(layer, head)` pairs whose cross-attention the decoder exports for DTW.
    pub alignment_heads: Vec<(usize, usize)>,
    /// Tokens never generated (non-speech symbols).
    pub suppress_ids: Vec<u32>,
    /// Tokens not generated as the first token (space, end of text).
    pub suppress_ids_begin: Vec<u32>,
    pub tokens: SpecialTokens,
    /// Language code → language token id (multilingual models only).
    #[serde(default)]
    pub languages: BTreeMap<String, u32>,
}

impl WhisperConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::MissingFile {
                path: path.to_path_buf(),
            },
            _ => ModelError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            },
        })?;
        let config: WhisperConfig =
            serde_json::from_str(&text).map_err(|e| ModelError::ModelLoad {
                path: path.to_path_buf(),
                message: format!("not a speechmill whisper.json: {e}"),
            })?;
        if config.n_heads == 0 || !config.d_model.is_multiple_of(config.n_heads) {
            return Err(ModelError::ModelLoad {
                path: path.to_path_buf(),
                message: format!(
                    "d_model {} is not a multiple of n_heads {}",
                    config.d_model, config.n_heads
                ),
            });
        }
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// The language token of `code` (`"en"`, `"de"`…), if the model knows it.
    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.languages.get(code).copied()
    }

    /// The language code of a language token.
    pub fn language_code(&self, token: u32) -> Option<&str> {
        self.languages
            .iter()
            .find(|(_, t)| **t == token)
            .map(|(c, _)| c.as_str())
    }

    /// Every token at or above `<|endoftext|>` is special (task, language, timestamps).
    pub fn is_special(&self, token: u32) -> bool {
        token >= self.tokens.eot
    }
}
