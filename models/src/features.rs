//! Audio front-end pieces that several models share: librosa's Slaney mel filter bank
//! (`librosa.filters.mel(htk=False, norm="slaney")`, which Whisper, the speaker
//! embedder and DNSMOS's P.808 model were trained with) and periodic windows
//! (`scipy.signal.get_window(…, fftbins=True)`). Computed in f64.

/// Slaney mel scale: linear below 1 kHz, logarithmic above (librosa `hz_to_mel`).
fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let (min_log_hz, logstep) = (1000.0, 6.4f64.ln() / 27.0);
    let min_log_mel = min_log_hz / f_sp;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// The inverse of [`hz_to_mel`] (librosa `mel_to_hz`).
fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let (min_log_hz, logstep) = (1000.0, 6.4f64.ln() / 27.0);
    let min_log_mel = min_log_hz / f_sp;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// The filter bank `n_mels × (n_fft / 2 + 1)` (row-major) from 0 Hz to Nyquist, each
/// triangle normalised to unit area (Slaney), as `librosa.filters.mel(sr, n_fft,
/// n_mels)` builds it.
pub fn slaney_mel_filters(sample_rate: usize, n_fft: usize, n_mels: usize) -> Vec<f64> {
    let bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|i| i as f64 * sample_rate as f64 / n_fft as f64)
        .collect();
    let max_mel = hz_to_mel(sample_rate as f64 / 2.0);
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(max_mel * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0f64; n_mels * bins];
    for m in 0..n_mels {
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for (b, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
            let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
            weights[m * bins + b] = lower.min(upper).max(0.0) * enorm;
        }
    }
    weights
}

/// A periodic Hann window of `len` (`np.hanning(len + 1)[:-1]`).
pub fn hann(len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / len as f64).cos())
        .collect()
}

/// A periodic Hamming window of `len` (`scipy.signal.get_window("hamming", len)`).
pub fn hamming(len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| 0.54 - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / len as f64).cos())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_round_trips_and_tops_out_at_nyquist() {
        for hz in [0.0, 440.0, 1000.0, 3000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
        // librosa: hz_to_mel(8000) = 45.245640471924965
        assert!((hz_to_mel(8000.0) - 45.245640471924965).abs() < 1e-12);
    }

    #[test]
    fn filters_are_nonnegative_triangles_of_unit_area() {
        let (n_fft, n_mels) = (512, 40);
        let w = slaney_mel_filters(16_000, n_fft, n_mels);
        assert_eq!(w.len(), n_mels * (n_fft / 2 + 1));
        assert!(w.iter().all(|&v| v >= 0.0));
        for m in 0..n_mels {
            assert!(
                w[m * 257..(m + 1) * 257].iter().any(|&v| v > 0.0),
                "band {m}"
            );
        }
    }

    #[test]
    fn windows_are_periodic() {
        let h = hamming(400);
        assert!((h[0] - 0.08).abs() < 1e-12 && (h[200] - 1.0).abs() < 1e-12);
        let n = hann(400);
        assert!(n[0].abs() < 1e-12 && (n[200] - 1.0).abs() < 1e-12);
    }
}
