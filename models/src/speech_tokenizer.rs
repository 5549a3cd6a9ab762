//! A user's ONNX speech tokenizer with the interface of CosyVoice's S3Tokenizer:
//! Whisper's 128-bin log-mel of 16 kHz audio in (`[1, 128, frames]`, 100 frames per
//! second, computed as faster-whisper's `FeatureExtractor(feature_size=128)` does),
//! integer tokens out (`[1, tokens]`, int32 or int64, 25 per second for
//! S3Tokenizer). A second input, when the graph has one, takes the number of mel
//! frames (`[1]`, int32 or int64), as S3Tokenizer's `feats_length`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::runtime::error::ort_error;
use crate::runtime::{ModelError, ModelRef, Result, SessionConfig, SessionPool, create_session};
use crate::whisper::MelExtractor;

/// Mel bins the interface takes.
pub const N_MELS: usize = 128;

/// The model at `location` (a `.onnx` file), hashed: what a plan carries.
pub fn model_ref(location: &str) -> Result<ModelRef> {
    let name = Path::new(location)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| location.to_string());
    ModelRef::hashed(format!("speech-tokenizer:{name}"), location, &[])
}

/// A loaded speech tokenizer.
pub struct OnnxSpeechTokenizer {
    session: Mutex<Session>,
    path: PathBuf,
    mel: MelExtractor,
    feats: String,
    /// The frames input and its element type, when the graph has one.
    lengths: Option<(String, TensorElementType)>,
    output: String,
}

impl std::fmt::Debug for OnnxSpeechTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxSpeechTokenizer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl OnnxSpeechTokenizer {
    /// The process's pool of sessions for `model` (verified once per process).
    pub fn pool(model: &ModelRef, config: &SessionConfig) -> Result<Arc<SessionPool<Self>>> {
        SessionPool::shared(model, config, Self::from_path)
    }

    /// Loads `path` and checks its interface.
    pub fn from_path(path: &Path, config: &SessionConfig) -> Result<Self> {
        let session = create_session(path, config)?;
        let bad = |message: String| ModelError::ModelLoad {
            path: path.to_path_buf(),
            message,
        };
        let element = |t: &ValueType| match t {
            ValueType::Tensor { ty, .. } => Some(*ty),
            _ => None,
        };
        let inputs: Vec<(String, Option<TensorElementType>)> = session
            .inputs()
            .iter()
            .map(|i| (i.name().to_string(), element(i.dtype())))
            .collect();
        let want = "want log-mel f32 [1, 128, frames] (and optionally its frame count, int [1]) -> int tokens [1, n]";
        let feats = match inputs.first() {
            Some((name, Some(TensorElementType::Float32))) => name.clone(),
            _ => {
                return Err(bad(format!(
                    "not a speech tokenizer (inputs {inputs:?}; {want})"
                )));
            }
        };
        let lengths = match inputs.get(1) {
            None => None,
            Some((name, Some(ty @ (TensorElementType::Int32 | TensorElementType::Int64)))) => {
                Some((name.clone(), *ty))
            }
            Some(other) => return Err(bad(format!("second input {other:?}: {want}"))),
        };
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| bad(format!("no outputs; {want}")))?;
        Ok(OnnxSpeechTokenizer {
            session: Mutex::new(session),
            path: path.to_path_buf(),
            mel: MelExtractor::new(N_MELS),
            feats,
            lengths,
            output,
        })
    }

    /// The tokens of 16 kHz mono audio.
    pub fn tokens(&self, samples: &[f32]) -> Result<Vec<u32>> {
        let ctx = || format!("speech tokenizer ({})", self.path.display());
        let mel = self.mel.compute(samples);
        let frames = mel.content_frames().max(1);
        let mut feats = Vec::with_capacity(N_MELS * frames);
        for row in mel.data.chunks(mel.frames) {
            let mut r = row[..frames.min(row.len())].to_vec();
            r.resize(frames, row.last().copied().unwrap_or(0.0));
            feats.extend(r);
        }
        let mut inputs: Vec<(&str, SessionInputValue<'_>)> = Vec::new();
        let feats =
            Tensor::from_array(([1usize, N_MELS, frames], feats)).map_err(ort_error(ctx()))?;
        inputs.push((&self.feats, feats.into()));
        if let Some((name, ty)) = &self.lengths {
            let value: SessionInputValue<'_> = if *ty == TensorElementType::Int32 {
                Tensor::from_array(([1usize], vec![frames as i32]))
                    .map_err(ort_error(ctx()))?
                    .into()
            } else {
                Tensor::from_array(([1usize], vec![frames as i64]))
                    .map_err(ort_error(ctx()))?
                    .into()
            };
            inputs.push((name, value));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(inputs).map_err(ort_error(ctx()))?;
        let value = &outputs[self.output.as_str()];
        let tokens: Vec<i64> = if let Ok((_, t)) = value.try_extract_tensor::<i64>() {
            t.to_vec()
        } else {
            let (_, t) = value
                .try_extract_tensor::<i32>()
                .map_err(ort_error(ctx()))?;
            t.iter().map(|&x| x as i64).collect()
        };
        tokens
            .into_iter()
            .map(|t| {
                u32::try_from(t).map_err(|_| ModelError::Ort {
                    context: ctx(),
                    message: format!("token {t} is negative or too large"),
                })
            })
            .collect()
    }
}
