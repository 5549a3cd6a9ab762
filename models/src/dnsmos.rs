//! DNSMOS P.835 (Microsoft's non-intrusive speech quality model, the `speechmos`
//! wheel's `sig_bak_ovr.onnx`): scores a clip's signal (SIG), background (BAK) and
//! overall (OVRL) quality on a 1–5 MOS scale, computed exactly as `dnsmos_local.py`
//! and the `speechmos` package do:
//!
//! 1. a clip shorter than 9.01 s is appended to itself until it is long enough;
//! 2. windows of 9.01 s (144,160 samples) every 1 s, `floor(len / 16000 − 9.01) + 1`
//!    of them (in f64, as Python computes it);
//! 3. each window → raw (SIG, BAK, OVRL) → the non-personalised polynomial fit;
//! 4. the clip's score = the mean over windows.
//!
//! A clip's windows go to the model in one batch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::TensorRef;

use crate::runtime::error::{one_line, ort_error};
use crate::runtime::{ModelError, ModelRef, Result, SessionConfig, SessionPool, create_session};

/// The registry's DNSMOS artifact.
pub const MODEL_NAME: &str = "dnsmos";
/// 16 kHz input.
pub const SAMPLE_RATE: usize = 16_000;
/// The model's window, seconds.
const WINDOW_S: f64 = 9.01;

/// Windows per model call. The model's activations, not its input, set the memory:
/// ONNX Runtime's arena keeps the largest call's, and 32-window calls took the corpus
/// run past 6 GB; per-window time is within 6 % from 1 to 8 windows.
const WINDOWS_PER_RUN: usize = 4;

/// One clip's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DnsmosScores {
    pub sig: f64,
    pub bak: f64,
    pub ovrl: f64,
}

/// np.poly1d, highest degree first.
fn poly(c: [f64; 3], x: f64) -> f64 {
    (c[0] * x + c[1]) * x + c[2]
}

impl DnsmosScores {
    /// The polynomial fit of raw model outputs (non-personalised DNSMOS, as Emilia
    /// and `speechmos` use).
    fn fitted(raw: [f32; 3]) -> Self {
        let [sig, bak, ovrl] = raw.map(f64::from);
        DnsmosScores {
            sig: poly([-0.08397278, 1.22083953, 0.0052439], sig),
            bak: poly([-0.13166888, 1.60915514, -0.39604546], bak),
            ovrl: poly([-0.06766283, 1.11546468, 0.04602535], ovrl),
        }
    }
}

/// Samples per window (`int(9.01 * 16000)`).
fn window_len() -> usize {
    (WINDOW_S * SAMPLE_RATE as f64) as usize
}

/// The windows `dnsmos_local.py` scores for a clip: the clip as it extends it, and
/// each window's start. Empty for an empty clip.
pub fn windows(samples: &[f32]) -> (Vec<f32>, Vec<usize>) {
    if samples.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let len = window_len();
    let mut audio = samples.to_vec();
    while audio.len() < len {
        audio.extend_from_within(..);
    }
    let fs = SAMPLE_RATE as f64;
    let hops = ((audio.len() as f64 / fs).floor() - WINDOW_S) as i64 + 1;
    let starts = (0..hops.max(0))
        .filter_map(|idx| {
            let start = (idx as f64 * fs) as usize;
            let end = (((idx as f64) + WINDOW_S) * fs) as usize;
            // Python slices past the end short, and skips such windows.
            (end.min(audio.len()) - start >= len).then_some(start)
        })
        .collect();
    (audio, starts)
}

/// A loaded DNSMOS model.
pub struct Dnsmos {
    session: Mutex<Session>,
    path: PathBuf,
}

impl std::fmt::Debug for Dnsmos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsmos")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The registry's DNSMOS model, hashed: what a plan carries.
pub fn model_ref() -> Result<ModelRef> {
    ModelRef::hashed(MODEL_NAME, MODEL_NAME, &[])
}

impl Dnsmos {
    /// The process's pool of DNSMOS sessions for `model` (verified once per process).
    pub fn pool(model: &ModelRef, config: &SessionConfig) -> Result<Arc<SessionPool<Self>>> {
        SessionPool::shared(model, config, Self::from_path)
    }

    /// Loads the model at `path` and checks its input and output.
    pub fn from_path(path: &Path, config: &SessionConfig) -> Result<Self> {
        let session = create_session(path, config)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if inputs != ["input_1"] || session.outputs().len() != 1 {
            return Err(ModelError::ModelLoad {
                path: path.to_path_buf(),
                message: format!(
                    "not DNSMOS sig_bak_ovr.onnx (inputs {inputs:?}; want input_1 [N, 144160] -> [N, 3])"
                ),
            });
        }
        Ok(Dnsmos {
            session: Mutex::new(session),
            path: path.to_path_buf(),
        })
    }

    /// Scores each clip (16 kHz, [-1, 1]); `None` for an empty clip. A clip's windows
    /// go to the model together, apart from other clips', so its scores never depend
    /// on which clips share a call (and so on how a run was partitioned).
    pub fn score(&self, clips: &[&[f32]]) -> Result<Vec<Option<DnsmosScores>>> {
        let len = window_len();
        let mut out = Vec::with_capacity(clips.len());
        let mut batch = Vec::with_capacity(WINDOWS_PER_RUN * len);
        for clip in clips {
            let (audio, starts) = windows(clip);
            let (mut sig, mut bak, mut ovrl) = (0.0, 0.0, 0.0);
            for group in starts.chunks(WINDOWS_PER_RUN) {
                batch.clear();
                for &s in group {
                    batch.extend_from_slice(&audio[s..s + len]);
                }
                for raw in self.run(&batch, group.len())? {
                    let s = DnsmosScores::fitted(raw);
                    sig += s.sig;
                    bak += s.bak;
                    ovrl += s.ovrl;
                }
            }
            let n = starts.len() as f64;
            out.push((!starts.is_empty()).then(|| DnsmosScores {
                sig: sig / n,
                bak: bak / n,
                ovrl: ovrl / n,
            }));
        }
        Ok(out)
    }

    /// Raw (SIG, BAK, OVRL) of `n` windows laid out back to back.
    fn run(&self, windows: &[f32], n: usize) -> Result<Vec<[f32; 3]>> {
        let ctx = || format!("DNSMOS ({})", self.path.display());
        let input =
            TensorRef::from_array_view(([n, window_len()], windows)).map_err(ort_error(ctx()))?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["input_1" => input])
            .map_err(ort_error(ctx()))?;
        let (_, raw) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        if raw.len() != 3 * n {
            return Err(ModelError::Ort {
                context: ctx(),
                message: one_line(format!(
                    "{} outputs for {n} windows, want {}",
                    raw.len(),
                    3 * n
                )),
            });
        }
        Ok(raw.chunks_exact(3).map(|r| [r[0], r[1], r[2]]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_dnsmos_local() {
        // 3 s: doubled to 12 s, then floor(12 - 9.01) + 1 = 3 windows, a second apart.
        let (audio, starts) = windows(&vec![0.1; 48_000]);
        assert_eq!(audio.len(), 192_000);
        assert_eq!(starts, vec![0, 16_000, 32_000]);
        // 9.5 s: one window.
        assert_eq!(windows(&vec![0.1; 152_000]).1, vec![0]);
        // 20.3 s: floor(20.3 - 9.01) + 1 = 11 hops, but from the eighth on Python's
        // `int((idx + 9.01) * 16000)` ends one sample short and the window is
        // skipped: 7 windows, as speechmos scores (checked with numpy).
        assert_eq!(windows(&vec![0.1; 324_800]).1.len(), 7);
        assert!(windows(&[]).1.is_empty());
    }

    #[test]
    fn the_fit_is_dnsmos_local_s_polynomial() {
        let s = DnsmosScores::fitted([3.0, 4.0, 2.5]);
        assert!((s.sig - (-0.08397278 * 9.0 + 1.22083953 * 3.0 + 0.0052439)).abs() < 1e-6);
        assert!((s.ovrl - (-0.06766283 * 6.25 + 1.11546468 * 2.5 + 0.04602535)).abs() < 1e-6);
    }
}
