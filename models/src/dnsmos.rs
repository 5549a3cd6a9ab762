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
//! The windows overlap nine-fold, and 96 % of the model's work is its first four
//! convolutions over the log-power spectrogram, which a window starting exactly 100
//! frames after the one before it shares with its neighbours everywhere but within 4
//! frames of its edges. So the model runs split in two (`models/tools/dnsmos_split.py`,
//! at setup): the front once over the clip's frames, and again over 8 frames at each
//! window's edges (where the window's own zero padding reaches in); the back per window,
//! on features assembled from both. The numbers are the per-window model's (the tests
//! hold them to `speechmos`'), at about `d / (9 (d - 8))` of its work for a clip of `d`
//! seconds.

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

/// The split graphs beside `sig_bak_ovr.onnx` (written by setup).
pub const FRONT_FILE: &str = "sig_bak_ovr_front.onnx";
pub const BACK_FILE: &str = "sig_bak_ovr_back.onnx";
/// The model's framing: 320-sample frames every 160 samples, 900 per window.
const FRAME: usize = 320;
const FRAME_HOP: usize = 160;
const WINDOW_FRAMES: usize = 900;
/// Front output: channels × frames × frequency bins.
const CHANNELS: usize = 32;
const BINS: usize = 161;
/// Frames each way that the front's four 3×3 convolutions reach.
const REACH: usize = 4;
/// Frames whose windows are scored together: their features are kept (20 KB per
/// frame); a 30 s clip's 22 windows span 3,000 frames, one group.
const GROUP_FRAMES: usize = 3_000;
/// Frames of front output per call, bounding its activations (~80 KB per frame in the
/// widest layer, which ONNX Runtime's arena keeps).
const FRONT_FRAMES_PER_RUN: usize = 600;
/// Windows per back call (18.5 MB of features each).
const WINDOWS_PER_BACK_RUN: usize = 4;

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

/// A loaded DNSMOS model: the front and back graphs (one lock: a clip's calls go
/// together).
pub struct Dnsmos {
    sessions: Mutex<(Session, Session)>,
    path: PathBuf,
}

impl std::fmt::Debug for Dnsmos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsmos")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The registry's DNSMOS model, hashed: what a plan carries. The split graphs are
/// derived from it at setup and compute the same numbers, so they are not hashed.
pub fn model_ref() -> Result<ModelRef> {
    ModelRef::hashed(MODEL_NAME, MODEL_NAME, &[])
}

/// The frames of `audio[..]` from frame `from` to `to` (exclusive), back to back.
fn frames(audio: &[f32], from: usize, to: usize, out: &mut Vec<f32>) {
    for r in from..to {
        out.extend_from_slice(&audio[r * FRAME_HOP..r * FRAME_HOP + FRAME]);
    }
}

/// Frames of `audio` (whole frames only).
fn frame_count(audio: &[f32]) -> usize {
    audio.len().saturating_sub(FRAME - FRAME_HOP) / FRAME_HOP
}

impl Dnsmos {
    /// The process's pool of DNSMOS sessions for `model` (verified once per process).
    pub fn pool(model: &ModelRef, config: &SessionConfig) -> Result<Arc<SessionPool<Self>>> {
        SessionPool::shared(model, config, Self::from_path)
    }

    /// Loads the split graphs beside `path` (`sig_bak_ovr.onnx`) and checks their ends.
    pub fn from_path(path: &Path, config: &SessionConfig) -> Result<Self> {
        let split = |file: &str, input: &str| -> Result<Session> {
            let p = path.with_file_name(file);
            if !p.is_file() {
                return Err(ModelError::ModelLoad {
                    path: p,
                    message: "missing: `bash scripts/setup.sh` splits sig_bak_ovr.onnx into it"
                        .into(),
                });
            }
            let session = create_session(&p, config)?;
            let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
            if inputs != [input] || session.outputs().len() != 1 {
                return Err(ModelError::ModelLoad {
                    path: p,
                    message: format!(
                        "not a DNSMOS split graph (inputs {inputs:?}; want [{input}]): rerun `bash scripts/setup.sh`"
                    ),
                });
            }
            Ok(session)
        };
        let front = split(FRONT_FILE, "frames")?;
        let back = split(BACK_FILE, "features")?;
        Ok(Dnsmos {
            sessions: Mutex::new((front, back)),
            path: path.to_path_buf(),
        })
    }

    /// Scores each clip (16 kHz, [-1, 1]); `None` for an empty clip. A clip's windows
    /// are computed apart from other clips', so its scores never depend on which clips
    /// share a call (and so on how a run was partitioned).
    pub fn score(&self, clips: &[&[f32]]) -> Result<Vec<Option<DnsmosScores>>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let (front, back) = &mut *sessions;
        clips
            .iter()
            .map(|clip| {
                let (audio, starts) = windows(clip);
                if starts.is_empty() {
                    return Ok(None);
                }
                let (mut sig, mut bak, mut ovrl) = (0.0, 0.0, 0.0);
                for raw in self.raw_scores(front, back, &audio, &starts)? {
                    let s = DnsmosScores::fitted(raw);
                    sig += s.sig;
                    bak += s.bak;
                    ovrl += s.ovrl;
                }
                let n = starts.len() as f64;
                Ok(Some(DnsmosScores {
                    sig: sig / n,
                    bak: bak / n,
                    ovrl: ovrl / n,
                }))
            })
            .collect()
    }

    /// Raw (SIG, BAK, OVRL) of the windows of `audio` starting at `starts` (samples,
    /// multiples of a second).
    fn raw_scores(
        &self,
        front: &mut Session,
        back: &mut Session,
        audio: &[f32],
        starts: &[usize],
    ) -> Result<Vec<[f32; 3]>> {
        let available = frame_count(audio);
        let plane = WINDOW_FRAMES * BINS;
        let mut raw = Vec::with_capacity(starts.len());
        let mut input = Vec::new();
        let mut group_start = 0;
        while group_start < starts.len() {
            // Windows whose frames fit one group.
            let first = starts[group_start] / FRAME_HOP;
            let mut group_end = group_start + 1;
            while group_end < starts.len()
                && starts[group_end] / FRAME_HOP + WINDOW_FRAMES - first <= GROUP_FRAMES
            {
                group_end += 1;
            }
            let group = &starts[group_start..group_end];
            group_start = group_end;
            // The group's features, a call per FRONT_FRAMES_PER_RUN frames, each with the
            // convolutions' reach beyond it: exact for every frame at least REACH frames
            // inside a window.
            let last = group[group.len() - 1] / FRAME_HOP + WINDOW_FRAMES;
            let rows = last - first;
            let mut shared = vec![0f32; CHANNELS * rows * BINS];
            for chunk in (first..last).step_by(FRONT_FRAMES_PER_RUN) {
                let end = (chunk + FRONT_FRAMES_PER_RUN).min(last);
                let (from, to) = (chunk.saturating_sub(REACH), (end + REACH).min(available));
                input.clear();
                frames(audio, from, to, &mut input);
                let out = self.front(front, &input, 1, to - from)?;
                for c in 0..CHANNELS {
                    let src =
                        &out[(c * (to - from) + chunk - from) * BINS..][..(end - chunk) * BINS];
                    shared[(c * rows + chunk - first) * BINS..][..src.len()].copy_from_slice(src);
                }
            }
            // Each window's first and last 2 × REACH frames on their own, with the
            // window's zero padding beyond them: exact for the REACH frames at its edges.
            let edge = 2 * REACH;
            input.clear();
            for &s in group {
                let r = s / FRAME_HOP;
                frames(audio, r, r + edge, &mut input);
                frames(
                    audio,
                    r + WINDOW_FRAMES - edge,
                    r + WINDOW_FRAMES,
                    &mut input,
                );
            }
            let edges = self.front(front, &input, 2 * group.len(), edge)?;
            for (k, chunk) in group.chunks(WINDOWS_PER_BACK_RUN).enumerate() {
                let mut features = Vec::with_capacity(chunk.len() * CHANNELS * plane);
                for (j, &s) in chunk.iter().enumerate() {
                    let w = k * WINDOWS_PER_BACK_RUN + j;
                    let offset = s / FRAME_HOP - first;
                    for c in 0..CHANNELS {
                        let head = &edges[((2 * w) * CHANNELS + c) * edge * BINS..][..edge * BINS];
                        let tail =
                            &edges[((2 * w + 1) * CHANNELS + c) * edge * BINS..][..edge * BINS];
                        let body = &shared[(c * rows + offset) * BINS..][..plane];
                        features.extend_from_slice(&head[..REACH * BINS]);
                        features
                            .extend_from_slice(&body[REACH * BINS..(WINDOW_FRAMES - REACH) * BINS]);
                        features.extend_from_slice(&tail[(edge - REACH) * BINS..]);
                    }
                }
                raw.extend(self.back(back, &features, chunk.len())?);
            }
        }
        Ok(raw)
    }

    /// The front over `n` runs of `rows` frames laid out back to back: features
    /// [n, CHANNELS, rows, BINS].
    fn front(
        &self,
        session: &mut Session,
        frames: &[f32],
        n: usize,
        rows: usize,
    ) -> Result<Vec<f32>> {
        let ctx = || format!("DNSMOS front ({})", self.path.display());
        let input =
            TensorRef::from_array_view(([n, rows, FRAME], frames)).map_err(ort_error(ctx()))?;
        let outputs = session
            .run(ort::inputs!["frames" => input])
            .map_err(ort_error(ctx()))?;
        let (_, features) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_error(ctx()))?;
        if features.len() != n * CHANNELS * rows * BINS {
            return Err(ModelError::Ort {
                context: ctx(),
                message: one_line(format!(
                    "{} features for {n} × {rows} frames, want {}",
                    features.len(),
                    n * CHANNELS * rows * BINS
                )),
            });
        }
        Ok(features.to_vec())
    }

    /// Raw (SIG, BAK, OVRL) of `n` windows' features laid out back to back.
    fn back(&self, session: &mut Session, features: &[f32], n: usize) -> Result<Vec<[f32; 3]>> {
        let ctx = || format!("DNSMOS back ({})", self.path.display());
        let input = TensorRef::from_array_view(([n, CHANNELS, WINDOW_FRAMES, BINS], features))
            .map_err(ort_error(ctx()))?;
        let outputs = session
            .run(ort::inputs!["features" => input])
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
