//! Whisper's log-mel front end, computed the way faster-whisper's `FeatureExtractor`
//! does (so the same weights see the same input): 16 kHz, 160 zero samples appended,
//! centred STFT (reflect padding) with a periodic Hann window of 400, hop 160, power
//! spectrum without the last frame, Slaney mel filters, log10, clamped to max − 8,
//! then (x + 4) / 4. Computed in f64 like numpy, stored as f32.

use std::sync::{Arc, OnceLock};

use realfft::{RealFftPlanner, RealToComplex};

use crate::features::{hann, slaney_mel_filters};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Frames in one 30 s window.
pub const WINDOW_FRAMES: usize = 3000;
/// Samples in one 30 s window.
pub const WINDOW_SAMPLES: usize = WINDOW_FRAMES * HOP;
const N_BINS: usize = N_FFT / 2 + 1;

/// Log-mel features, `n_mels` rows of `frames` values (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// Frames that hold audio (faster-whisper's `content_frames`: one fewer than
    /// computed, the last covers the appended padding).
    pub fn content_frames(&self) -> usize {
        self.frames.saturating_sub(1)
    }

    /// Frames `[start, start + WINDOW_FRAMES)` zero-padded (in the normalised domain,
    /// as faster-whisper's `pad_or_trim`) to one model window, `[n_mels, 3000]`,
    /// appended to `out`.
    pub fn window_into(&self, start: usize, len: usize, out: &mut Vec<f32>) {
        let len = len.min(WINDOW_FRAMES);
        for m in 0..self.n_mels {
            let row = &self.data[m * self.frames..(m + 1) * self.frames];
            let end = (start + len).min(self.frames);
            let take = end.saturating_sub(start);
            out.extend_from_slice(&row[start.min(self.frames)..end]);
            out.extend(std::iter::repeat_n(0.0, WINDOW_FRAMES - take));
        }
    }
}

/// A reusable log-mel extractor for `n_mels` bands (80 for Whisper ≤ v3, 128 for v3).
pub struct MelExtractor {
    n_mels: usize,
    filters: Vec<f64>,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for MelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelExtractor")
            .field("n_mels", &self.n_mels)
            .finish_non_exhaustive()
    }
}

impl MelExtractor {
    pub fn new(n_mels: usize) -> Self {
        static PLANNER: OnceLock<std::sync::Mutex<RealFftPlanner<f64>>> = OnceLock::new();
        let fft = PLANNER
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plan_fft_forward(N_FFT);
        MelExtractor {
            n_mels,
            filters: slaney_mel_filters(SAMPLE_RATE, N_FFT, n_mels),
            window: hann(N_FFT),
            fft,
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Features of 16 kHz mono samples.
    pub fn compute(&self, samples: &[f32]) -> LogMel {
        // faster-whisper appends 160 zeros, then the STFT pads 200 by reflection on each side.
        let mut padded: Vec<f64> = Vec::with_capacity(samples.len() + HOP + N_FFT);
        let signal: Vec<f64> = samples
            .iter()
            .map(|&s| s as f64)
            .chain(std::iter::repeat_n(0.0, HOP))
            .collect();
        let half = N_FFT / 2;
        let n = signal.len();
        padded.extend((1..=half).rev().map(|i| signal[reflect(i as isize, n)]));
        padded.extend_from_slice(&signal);
        padded.extend((1..=half).map(|i| signal[reflect(n as isize - 1 - i as isize, n)]));
        let total_frames = 1 + (padded.len() - N_FFT) / HOP;
        let frames = total_frames - 1; // the power spectrum drops the last frame
        let mut power = vec![0f64; N_BINS * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        for f in 0..frames {
            let at = f * HOP;
            for (k, v) in input.iter_mut().enumerate() {
                *v = padded[at + k] * self.window[k];
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("FFT buffers sized by the planner");
            for (b, c) in spectrum.iter().enumerate() {
                power[b * frames + f] = c.norm_sqr();
            }
        }
        let mut log = vec![0f64; self.n_mels * frames];
        let mut max = f64::NEG_INFINITY;
        for m in 0..self.n_mels {
            let filter = &self.filters[m * N_BINS..(m + 1) * N_BINS];
            let out = &mut log[m * frames..(m + 1) * frames];
            for (b, &w) in filter.iter().enumerate() {
                if w == 0.0 {
                    continue;
                }
                let row = &power[b * frames..(b + 1) * frames];
                for (o, p) in out.iter_mut().zip(row) {
                    *o += w * p;
                }
            }
            for o in out.iter_mut() {
                *o = o.max(1e-10).log10();
                max = max.max(*o);
            }
        }
        let data = log
            .into_iter()
            .map(|v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect();
        LogMel {
            n_mels: self.n_mels,
            frames,
            data,
        }
    }
}

/// numpy's "reflect" index (mirror without repeating the edge) for `i` in `(-n, 2n)`.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_matches_faster_whisper() {
        // N samples -> N/160 + 1 frames; content frames N/160.
        let mel = MelExtractor::new(80).compute(&vec![0.1; 16_000]);
        assert_eq!(mel.frames, 101);
        assert_eq!(mel.content_frames(), 100);
        assert_eq!(mel.data.len(), 80 * 101);
    }

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        assert_eq!(reflect(-1, 5), 1);
        assert_eq!(reflect(-2, 5), 2);
        assert_eq!(reflect(5, 5), 3);
        assert_eq!(reflect(6, 5), 2);
    }

    #[test]
    fn window_pads_with_zeros_to_3000_frames() {
        let mel = MelExtractor::new(80).compute(&vec![0.1; 1600]);
        let mut out = Vec::new();
        mel.window_into(0, mel.content_frames(), &mut out);
        assert_eq!(out.len(), 80 * WINDOW_FRAMES);
        assert_eq!(out[10], 0.0);
        assert_eq!(out[0], mel.data[0]);
    }
}
