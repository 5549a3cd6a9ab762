//! Signal measures of a decoded clip, no model needed: integrated loudness (EBU R128,
//! the `ebur128` crate), the share of clipped samples, and an SNR estimate without a
//! clean reference.

/// Samples at or above this magnitude (full scale = 1) count as clipped: PCM16's two
/// top codes on either side and anything a decoder clamped to full scale.
pub const CLIP_LEVEL: f32 = 0.999;

/// Frames of the SNR estimate: 20 ms at 16 kHz.
const SNR_FRAME: usize = 320;
/// The quietest share of frames taken as the noise floor.
const NOISE_SHARE: f64 = 0.1;
/// SNR estimates are clamped to this range (dB).
const SNR_RANGE: (f64, f64) = (-20.0, 100.0);

/// Integrated loudness (EBU R128 / ITU-R BS.1770, LUFS) of mono samples; `None` when
/// the clip is too short (under one 400 ms gating block) or silent.
pub fn loudness_lufs(samples: &[f32], sample_rate: u32) -> Option<f64> {
    let mut meter = ebur128::EbuR128::new(1, sample_rate, ebur128::Mode::I).ok()?;
    meter.add_frames_f32(samples).ok()?;
    meter.loudness_global().ok().filter(|l| l.is_finite())
}

/// The share of samples whose magnitude reaches [`CLIP_LEVEL`]; 0 for an empty clip.
pub fn clipping_ratio(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let clipped = samples.iter().filter(|s| s.abs() >= CLIP_LEVEL).count();
    clipped as f64 / samples.len() as f64
}

/// Signal-to-noise ratio (dB) estimated from the clip alone: the mean power of its
/// quietest 10 % of 20 ms frames is the noise floor (speech has pauses between words
/// and phrases, where only the noise remains), the mean power of all frames less that
/// floor is the speech. Clamped to [-20, 100] dB; `None` under 10 frames (200 ms at
/// 16 kHz). Stationary noise is measured within about 1 dB; noise that stops in the
/// pauses reads as cleaner than it is.
pub fn snr_db(samples: &[f32]) -> Option<f64> {
    let frames = samples.len() / SNR_FRAME;
    if frames < 10 {
        return None;
    }
    let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64;
    let mut powers: Vec<f64> = samples
        .chunks_exact(SNR_FRAME)
        .map(|f| f.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / SNR_FRAME as f64)
        .collect();
    powers.sort_by(f64::total_cmp);
    let quiet = ((frames as f64 * NOISE_SHARE).ceil() as usize).max(1);
    let noise = powers[..quiet].iter().sum::<f64>() / quiet as f64;
    let total = powers.iter().sum::<f64>() / frames as f64;
    let speech = total - noise;
    let snr = 10.0 * (speech.max(1e-20) / noise.max(1e-20)).log10();
    Some(snr.clamp(SNR_RANGE.0, SNR_RANGE.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded noise source (xorshift), Gaussian by the sum of 12 uniforms.
    fn noise(n: usize, rms: f64, seed: u64) -> Vec<f32> {
        let mut x = seed.max(1);
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| ((0..12).map(|_| uniform()).sum::<f64>() - 6.0) * rms)
            .map(|v| v as f32)
            .collect()
    }

    /// Bursts of a tone (speech-like: on 300 ms, off 100 ms) with unit-power bursts.
    fn bursts(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let on = (i % 6400) < 4800;
                if on {
                    (2f64.sqrt() * (2.0 * std::f64::consts::PI * 220.0 * i as f64 / 16_000.0).sin())
                        as f32
                        * 0.3
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn snr_of_bursts_in_white_noise_is_within_two_db() {
        let signal = bursts(16_000 * 8);
        let power = signal.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / signal.len() as f64;
        for target in [0.0, 5.0, 10.0, 20.0] {
            let rms = (power / 10f64.powf(target / 10.0)).sqrt();
            let n = noise(signal.len(), rms, 7);
            let mix: Vec<f32> = signal.iter().zip(&n).map(|(s, n)| s + n).collect();
            let snr = snr_db(&mix).unwrap();
            assert!(
                (snr - target).abs() < 2.0,
                "target {target} dB, estimated {snr:.2} dB"
            );
        }
        assert!(snr_db(&[0.1; 100]).is_none());
    }

    #[test]
    fn noise_alone_has_a_low_snr_and_silence_around_a_tone_a_high_one() {
        let n = noise(16_000 * 4, 0.1, 3);
        assert!(snr_db(&n).unwrap() < 0.0);
        let mut quiet = vec![0.0f32; 16_000];
        for (i, s) in quiet[8000..12000].iter_mut().enumerate() {
            *s = (i as f32 * 0.1).sin() * 0.5;
        }
        // Digital silence around a tone: very clean (the floor is only the DC offset
        // the mean removal leaves).
        assert!(snr_db(&quiet).unwrap() > 40.0);
    }

    #[test]
    fn clipping_counts_full_scale_samples() {
        let mut s = vec![0.5f32; 1000];
        s[..10].iter_mut().for_each(|v| *v = 1.0);
        s[10] = -1.0;
        assert!((clipping_ratio(&s) - 0.011).abs() < 1e-12);
        assert_eq!(clipping_ratio(&[]), 0.0);
    }

    #[test]
    fn a_full_scale_sine_is_about_minus_three_lufs() {
        // BS.1770: a 997 Hz sine at 0 dBFS peak reads -3.01 LUFS (mono).
        let s: Vec<f32> = (0..48_000)
            .map(|i| (2.0 * std::f64::consts::PI * 997.0 * i as f64 / 16_000.0).sin() as f32)
            .collect();
        let l = loudness_lufs(&s, 16_000).unwrap();
        assert!((l + 3.01).abs() < 0.2, "{l}");
        assert!(loudness_lufs(&[0.0; 16_000], 16_000).is_none());
        assert!(loudness_lufs(&[0.5; 1000], 16_000).is_none());
    }
}
