//! The converted Whisper graphs (`encoder.onnx`, `decoder.onnx` / `decoder_int8.onnx`)
//! as ONNX Runtime sessions, and the tensors that flow between them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};

use super::config::WhisperConfig;
use crate::runtime::{ModelError, Result, SessionConfig, create_session, ort_error};

/// Encoder output for a batch of windows: `cross_k` `[L, B, H, dh, S]` and
/// `cross_v` `[L, B, H, S, dh]`.
#[derive(Debug, Clone)]
pub struct CrossKv {
    pub batch: usize,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// The decoder's self-attention cache, `[L, B, H, P, dh]` for keys and values.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub batch: usize,
    pub past: usize,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// One decoder call's results.
pub struct DecoderOutput {
    /// `[B, T, V]`
    pub logits: Vec<f32>,
    pub cache: KvCache,
    /// `[B, alignment heads, T, S]`
    pub alignment: Vec<f32>,
}

pub struct WhisperSessions {
    pub config: WhisperConfig,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    encoder_path: PathBuf,
    decoder_path: PathBuf,
}

impl std::fmt::Debug for WhisperSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperSessions")
            .field("encoder", &self.encoder_path)
            .field("decoder", &self.decoder_path)
            .finish_non_exhaustive()
    }
}

impl WhisperSessions {
    pub fn load(
        config: WhisperConfig,
        encoder_path: &Path,
        decoder_path: &Path,
        session: &SessionConfig,
    ) -> Result<Self> {
        let encoder = create_session(encoder_path, session)?;
        let decoder = create_session(decoder_path, session)?;
        check_io(&encoder, encoder_path, &["mel"], &["cross_k", "cross_v"])?;
        let mut decoder_inputs: Vec<String> = ["tokens", "past_self_k", "past_self_v"]
            .map(String::from)
            .to_vec();
        for l in 0..config.n_dec_layers {
            decoder_inputs.extend(cross_input_names(l));
        }
        let decoder_inputs: Vec<&str> = decoder_inputs.iter().map(String::as_str).collect();
        check_io(
            &decoder,
            decoder_path,
            &decoder_inputs,
            &[
                "logits",
                "present_self_k",
                "present_self_v",
                "alignment_attn",
            ],
        )?;
        Ok(WhisperSessions {
            config,
            encoder: Mutex::new(encoder),
            decoder: Mutex::new(decoder),
            encoder_path: encoder_path.to_path_buf(),
            decoder_path: decoder_path.to_path_buf(),
        })
    }

    fn cross_row(&self) -> usize {
        let c = &self.config;
        c.n_heads * c.head_dim() * c.n_audio_ctx
    }

    /// Runs the encoder on `batch` windows of mel features (`[B, n_mels, 3000]`).
    pub fn encode(&self, mel: &[f32], batch: usize) -> Result<CrossKv> {
        let c = &self.config;
        let frames = mel.len() / (batch * c.n_mels).max(1);
        let ctx = || format!("Whisper encoder ({})", self.encoder_path.display());
        let input = TensorRef::from_array_view(([batch, c.n_mels, frames], mel))
            .map_err(ort_error(ctx()))?;
        let mut session = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        let out = session
            .run(ort::inputs!["mel" => input])
            .map_err(ort_error(ctx()))?;
        let k = out["cross_k"]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?
            .1
            .to_vec();
        let v = out["cross_v"]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?
            .1
            .to_vec();
        let want = c.n_dec_layers * batch * self.cross_row();
        if k.len() != want || v.len() != want {
            return Err(ModelError::Ort {
                context: ctx(),
                message: format!(
                    "cross_k has {} values, expected {want} (is whisper.json from this model?)",
                    k.len()
                ),
            });
        }
        Ok(CrossKv { batch, k, v })
    }

    /// The rows `rows` of `cross` (a row may repeat), e.g. each window repeated once
    /// per beam.
    pub fn select_cross(&self, cross: &CrossKv, rows: &[usize]) -> CrossKv {
        let row = self.cross_row();
        CrossKv {
            batch: rows.len(),
            k: gather_rows(&cross.k, self.config.n_dec_layers, cross.batch, row, rows),
            v: gather_rows(&cross.v, self.config.n_dec_layers, cross.batch, row, rows),
        }
    }

    /// The rows `rows` of a cache (beam reordering).
    pub fn select_cache(&self, cache: &KvCache, rows: &[usize]) -> KvCache {
        if cache.past == 0 {
            return KvCache {
                batch: rows.len(),
                ..KvCache::default()
            };
        }
        let row = self.config.n_heads * cache.past * self.config.head_dim();
        KvCache {
            batch: rows.len(),
            past: cache.past,
            k: gather_rows(&cache.k, self.config.n_dec_layers, cache.batch, row, rows),
            v: gather_rows(&cache.v, self.config.n_dec_layers, cache.batch, row, rows),
        }
    }

    /// One decoder call: `tokens` is `[B, T]` (row-major) after `cache.past` tokens.
    pub fn decode(
        &self,
        tokens: &[i64],
        cache: &KvCache,
        cross: &CrossKv,
        want_alignment: bool,
    ) -> Result<DecoderOutput> {
        let c = &self.config;
        let batch = cross.batch;
        let t = tokens.len() / batch.max(1);
        let (l, h, dh, s) = (c.n_dec_layers, c.n_heads, c.head_dim(), c.n_audio_ctx);
        let ctx = || format!("Whisper decoder ({})", self.decoder_path.display());
        let tokens = TensorRef::from_array_view(([batch, t], tokens)).map_err(ort_error(ctx()))?;
        let past_shape = [l, batch, h, cache.past, dh];
        let (past_k, past_v) = (
            past_input(past_shape, &cache.k).map_err(ort_error(ctx()))?,
            past_input(past_shape, &cache.v).map_err(ort_error(ctx()))?,
        );
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            ("tokens".into(), tokens.into()),
            ("past_self_k".into(), past_k),
            ("past_self_v".into(), past_v),
        ];
        // One view per layer into the stacked encoder output: no copies.
        let layer = batch * self.cross_row();
        for (i, (k, v)) in cross
            .k
            .chunks_exact(layer)
            .zip(cross.v.chunks_exact(layer))
            .enumerate()
            .take(l)
        {
            let k = TensorRef::from_array_view(([batch, h, dh, s], k)).map_err(ort_error(ctx()))?;
            let v = TensorRef::from_array_view(([batch, h, s, dh], v)).map_err(ort_error(ctx()))?;
            let [k_name, v_name] = cross_input_names(i);
            inputs.push((k_name, k.into()));
            inputs.push((v_name, v.into()));
        }
        let mut session = self.decoder.lock().unwrap_or_else(|p| p.into_inner());
        let out = session.run(inputs).map_err(ort_error(ctx()))?;
        let extract = |name: &str| -> Result<Vec<f32>> {
            Ok(out[name]
                .try_extract_tensor::<f32>()
                .map_err(ort_error(ctx()))?
                .1
                .to_vec())
        };
        let logits = extract("logits")?;
        let k = extract("present_self_k")?;
        let v = extract("present_self_v")?;
        let alignment = if want_alignment {
            extract("alignment_attn")?
        } else {
            Vec::new()
        };
        Ok(DecoderOutput {
            logits,
            cache: KvCache {
                batch,
                past: cache.past + t,
                k,
                v,
            },
            alignment,
        })
    }
}

/// The decoder's cross-attention key and value inputs of layer `l`.
fn cross_input_names(l: usize) -> [String; 2] {
    [format!("cross_k_{l}"), format!("cross_v_{l}")]
}

/// A past-cache input; a zero-length past cannot be a borrowed view (no data), so
/// it is owned.
fn past_input(shape: [usize; 5], data: &[f32]) -> ort::Result<SessionInputValue<'_>> {
    Ok(if shape[3] == 0 {
        Tensor::<f32>::from_array((shape, Vec::new()))?.into()
    } else {
        TensorRef::from_array_view((shape, data))?.into()
    })
}

/// Gathers rows of the batch axis of a `[L, B, row]` tensor.
fn gather_rows(data: &[f32], layers: usize, batch: usize, row: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(layers * rows.len() * row);
    for l in 0..layers {
        for &r in rows {
            let at = (l * batch + r) * row;
            out.extend_from_slice(&data[at..at + row]);
        }
    }
    out
}

fn check_io(session: &Session, path: &Path, inputs: &[&str], outputs: &[&str]) -> Result<()> {
    let have_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let have_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if inputs.iter().all(|i| have_in.contains(i)) && outputs.iter().all(|o| have_out.contains(o)) {
        Ok(())
    } else {
        Err(ModelError::ModelLoad {
            path: path.to_path_buf(),
            message: format!(
                "not a speechmill Whisper graph (inputs {have_in:?}, outputs {have_out:?}; want {inputs:?} -> {outputs:?}); convert the checkpoint with models/tools/whisper_to_onnx.py"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_rows_repeats_and_reorders_the_batch_axis() {
        // L=2, B=2, row=2
        let data = vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
        let out = gather_rows(&data, 2, 2, 2, &[1, 1, 0]);
        assert_eq!(
            out,
            vec![2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0]
        );
    }
}
