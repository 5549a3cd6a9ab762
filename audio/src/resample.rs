//! Streaming mono resampling to 16 kHz.
//!
//! Rates with a small rational ratio to 16 kHz (8, 11.025, 22.05, 24, 32, 44.1, 48,
//! 96 kHz, ...) use rubato's FFT resampler (overlap-add with a long windowed-sinc
//! filter: sharp anti-aliasing at a fraction of a polyphase sinc's cost); odd rates
//! whose FFT would be huge (above 48 kHz and coprime-ish with 16 kHz, e.g. 96001 Hz)
//! use rubato's sinc resampler. 16 kHz passes through.
//!
//! The resampler's delay is dropped from the start and flushed out at the end, so
//! `n` input frames give exactly `round(n * 16000 / rate)` output frames, aligned
//! with the input.

use rubato::{
    FftFixedInOut, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction, calculate_cutoff,
};

use super::error::DecodeError;

/// The output rate of the whole module.
pub const TARGET_RATE: u32 = 16_000;

/// Input frames per FFT chunk we aim for (rounded up to the ratio's period).
const FFT_CHUNK_TARGET: usize = 2048;

/// Above this period (input rate / gcd with 16 kHz) the FFT would be too long: use sinc.
/// At the limit (e.g. 44101 Hz) the FFTs have ~100k and ~200k points: a few MB.
const FFT_MAX_PERIOD: usize = 48_000;

/// Input frames per chunk of the sinc resampler.
const SINC_CHUNK: usize = 2048;

/// Sample rates we accept at all (outside, the resampler's buffers become absurd).
pub(crate) const MIN_RATE: u32 = 1_000;
pub(crate) const MAX_RATE: u32 = 768_000;

/// A sink of 16 kHz samples; an error stops decoding.
pub(crate) type Sink16k<'a> = dyn FnMut(&[f32]) -> Result<(), DecodeError> + 'a;

/// How many 16 kHz frames `frames` input frames at `rate` correspond to.
pub(crate) fn frames_at_16k(frames: u64, rate: u32) -> u64 {
    if rate == 0 {
        return 0;
    }
    let rate = u128::from(rate);
    ((u128::from(frames) * u128::from(TARGET_RATE) + rate / 2) / rate) as u64
}

enum Engine {
    PassThrough,
    Fft(Box<FftFixedInOut<f32>>),
    Sinc(Box<SincFixedIn<f32>>),
}

impl Engine {
    fn input_frames_next(&self) -> usize {
        match self {
            Engine::PassThrough => 1,
            Engine::Fft(r) => r.input_frames_next(),
            Engine::Sinc(r) => r.input_frames_next(),
        }
    }

    fn output_frames_max(&self) -> usize {
        match self {
            Engine::PassThrough => 1,
            Engine::Fft(r) => r.output_frames_max(),
            Engine::Sinc(r) => r.output_frames_max(),
        }
    }

    /// Leading output frames that precede the input's first frame.
    fn output_delay(&self) -> usize {
        match self {
            Engine::PassThrough => 0,
            Engine::Fft(r) => r.output_delay(),
            // rubato 0.16's SincFixedIn reports half its filter here, but it starts
            // its read position half a filter back: its output is already aligned
            // (to within one output frame, measured with an impulse).
            Engine::Sinc(_) => 0,
        }
    }

    /// Resamples exactly `input_frames_next()` frames into `out`; returns the frames written.
    fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<usize, DecodeError> {
        let result = match self {
            Engine::PassThrough => {
                out[..input.len()].copy_from_slice(input);
                return Ok(input.len());
            }
            Engine::Fft(r) => r.process_into_buffer(&[input], &mut [out], None),
            Engine::Sinc(r) => r.process_into_buffer(&[input], &mut [out], None),
        };
        result
            .map(|(_, written)| written)
            .map_err(|e| DecodeError::corrupt(format!("resampler failed: {e}")))
    }
}

/// Turns mono samples at one input rate into 16 kHz mono chunks.
pub(crate) struct To16k {
    rate_in: u32,
    engine: Engine,
    /// Input not yet processed (less than one chunk after each `push`).
    pending: Vec<f32>,
    out: Vec<f32>,
    /// Leading output frames still to drop (the resampler's delay).
    delay_left: usize,
    frames_in: u64,
    frames_out: u64,
}

impl To16k {
    pub(crate) fn new(rate_in: u32) -> Result<Self, DecodeError> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate_in) {
            return Err(DecodeError::UnsupportedFormat(format!(
                "sample rate {rate_in} Hz outside the supported {MIN_RATE}..={MAX_RATE} Hz"
            )));
        }
        let construction = |e: rubato::ResamplerConstructionError| {
            DecodeError::UnsupportedFormat(format!("cannot resample from {rate_in} Hz: {e}"))
        };
        let rate = rate_in as usize;
        let target = TARGET_RATE as usize;
        let period = rate / gcd(rate, target);
        let engine = if rate_in == TARGET_RATE {
            Engine::PassThrough
        } else if period <= FFT_MAX_PERIOD {
            // An even number of periods makes the filter length even, so its delay is a
            // whole number of input *and* output frames and the compensation is exact.
            let periods = FFT_CHUNK_TARGET.div_ceil(period).next_multiple_of(2);
            let chunk = periods * period;
            Engine::Fft(Box::new(
                FftFixedInOut::new(rate, target, chunk, 1).map_err(construction)?,
            ))
        } else {
            let sinc_len = 128;
            let window = WindowFunction::BlackmanHarris2;
            let params = SincInterpolationParameters {
                sinc_len,
                f_cutoff: calculate_cutoff(sinc_len, window),
                interpolation: SincInterpolationType::Linear,
                oversampling_factor: 256,
                window,
            };
            let ratio = target as f64 / rate as f64;
            Engine::Sinc(Box::new(
                SincFixedIn::new(ratio, 1.0, params, SINC_CHUNK, 1).map_err(construction)?,
            ))
        };
        let out = vec![0.0; engine.output_frames_max()];
        Ok(To16k {
            rate_in,
            delay_left: engine.output_delay(),
            pending: Vec::with_capacity(engine.input_frames_next() * 2),
            out,
            engine,
            frames_in: 0,
            frames_out: 0,
        })
    }

    pub(crate) fn rate_in(&self) -> u32 {
        self.rate_in
    }

    /// Feeds input; complete chunks are resampled and handed to `sink`.
    pub(crate) fn push(
        &mut self,
        input: &[f32],
        sink: &mut Sink16k<'_>,
    ) -> Result<(), DecodeError> {
        self.frames_in += input.len() as u64;
        if let Engine::PassThrough = self.engine {
            self.frames_out += input.len() as u64;
            return if input.is_empty() {
                Ok(())
            } else {
                sink(input)
            };
        }
        let mut input = input;
        // Whole chunks straight from the input when nothing is pending: no copy.
        let need = self.engine.input_frames_next();
        if self.pending.is_empty() {
            while input.len() >= need {
                let (chunk, rest) = input.split_at(need);
                self.process_chunk(chunk, sink, u64::MAX)?;
                input = rest;
            }
        }
        self.pending.extend_from_slice(input);
        let mut consumed = 0;
        while self.pending.len() - consumed >= need {
            let chunk = std::mem::take(&mut self.pending);
            let result = self.process_chunk(&chunk[consumed..consumed + need], sink, u64::MAX);
            self.pending = chunk;
            result?;
            consumed += need;
        }
        self.pending.drain(..consumed);
        Ok(())
    }

    /// Flushes the resampler's tail; returns the number of 16 kHz frames produced in all.
    pub(crate) fn finish(&mut self, sink: &mut Sink16k<'_>) -> Result<u64, DecodeError> {
        let expected = frames_at_16k(self.frames_in, self.rate_in);
        if let Engine::PassThrough = self.engine {
            return Ok(self.frames_out);
        }
        let need = self.engine.input_frames_next();
        let mut chunk = std::mem::take(&mut self.pending);
        // Zero-padded chunks push the delayed tail out; each yields at least one frame,
        // and the delay is a bounded number of chunks.
        let max_rounds = 4 + self.engine.output_delay() / self.out.len().max(1) * 2;
        for _ in 0..max_rounds {
            if self.frames_out >= expected {
                break;
            }
            chunk.resize(need, 0.0);
            self.process_chunk(&chunk, sink, expected)?;
            chunk.clear();
        }
        Ok(self.frames_out)
    }

    /// Resamples one chunk and emits what follows the delay, up to `limit` frames in all.
    fn process_chunk(
        &mut self,
        chunk: &[f32],
        sink: &mut Sink16k<'_>,
        limit: u64,
    ) -> Result<(), DecodeError> {
        let written = self.engine.process(chunk, &mut self.out)?;
        let skip = self.delay_left.min(written);
        self.delay_left -= skip;
        let room = usize::try_from(limit.saturating_sub(self.frames_out)).unwrap_or(usize::MAX);
        let end = written.min(skip.saturating_add(room));
        if end > skip {
            self.frames_out += (end - skip) as u64;
            sink(&self.out[skip..end])?;
        }
        Ok(())
    }
}

/// Resamples a whole mono buffer at `rate` to 16 kHz: `round(n * 16000 / rate)` samples,
/// aligned with the input (the streaming resampler of the decoder, fed at once and
/// flushed). A rate outside 1 kHz..=768 kHz is an `unsupported_format` error.
pub fn resample_to_16k(samples: &[f32], rate: u32) -> Result<Vec<f32>, DecodeError> {
    let mut resampler = To16k::new(rate)?;
    let mut out = Vec::with_capacity(frames_at_16k(samples.len() as u64, rate) as usize);
    let mut sink = |chunk: &[f32]| {
        out.extend_from_slice(chunk);
        Ok(())
    };
    resampler.push(samples, &mut sink)?;
    resampler.finish(&mut sink)?;
    Ok(out)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resample_all(rate: u32, input: &[f32], piece: usize) -> Vec<f32> {
        let mut r = To16k::new(rate).expect("supported rate");
        let mut out = Vec::new();
        let mut sink = |s: &[f32]| {
            out.extend_from_slice(s);
            Ok(())
        };
        for p in input.chunks(piece) {
            r.push(p, &mut sink).expect("push");
        }
        let n = r.finish(&mut sink).expect("finish");
        assert_eq!(n as usize, out.len());
        out
    }

    fn sine(rate: u32, hz: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn output_length_matches_duration_for_common_and_odd_rates() {
        for &rate in &[
            8000, 11025, 16000, 22050, 44100, 48000, 96000, 44101, 12345, 96001,
        ] {
            for &frames in &[0usize, 1, 100, 4410, 44100 + 17] {
                let out = resample_all(rate, &vec![0.1; frames], 1000);
                assert_eq!(
                    out.len() as u64,
                    frames_at_16k(frames as u64, rate),
                    "rate {rate}, {frames} frames"
                );
            }
        }
    }

    #[test]
    fn sine_survives_resampling_in_phase() {
        for &rate in &[44100, 48000, 8000, 11025, 44101] {
            let input = sine(rate, 440.0, rate as usize);
            let out = resample_all(rate, &input, 777);
            let expected = sine(TARGET_RATE, 440.0, out.len());
            // Skip the edges, where the filter sees the silence around the signal.
            let mid = &out[800..out.len() - 800];
            let exp = &expected[800..expected.len() - 800];
            let err = mid
                .iter()
                .zip(exp)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.01, "rate {rate}: max error {err}");
        }
    }

    #[test]
    fn odd_high_rates_use_the_sinc_resampler_aligned_within_a_frame() {
        let rate = 96_001;
        assert!(matches!(
            To16k::new(rate).map(|r| r.engine),
            Ok(Engine::Sinc(_))
        ));
        let mut input = vec![0.0f32; rate as usize];
        input[48_000] = 1.0;
        let out = resample_all(rate, &input, 5000);
        let peak = out
            .iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > out[best] { i } else { best });
        let expected = 48_000.0 * 16_000.0 / f64::from(rate);
        assert!(
            (peak as f64 - expected).abs() <= 1.0,
            "impulse at {peak}, expected {expected}"
        );
    }

    #[test]
    fn content_above_8khz_is_filtered_out() {
        let input = sine(48_000, 12_000.0, 48_000);
        let out = resample_all(48_000, &input, 4096);
        let rms = (out[800..15_200].iter().map(|x| x * x).sum::<f32>() / 14_400.0).sqrt();
        assert!(rms < 1e-3, "aliased energy {rms}");
    }

    #[test]
    fn a_whole_buffer_resamples_to_the_same_tone() {
        let input = sine(22_050, 440.0, 22_050 + 1234);
        let out = resample_to_16k(&input, 22_050).unwrap();
        assert_eq!(
            out.len(),
            ((22_050 + 1234) as f64 * 16_000.0 / 22_050.0).round() as usize
        );
        let expected = sine(TARGET_RATE, 440.0, out.len());
        let err = out[800..out.len() - 800]
            .iter()
            .zip(&expected[800..expected.len() - 800])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.01, "max error {err}");
        assert_eq!(
            resample_to_16k(&input[..100], 16_000).unwrap(),
            &input[..100]
        );
        assert!(resample_to_16k(&[], 22_050).unwrap().is_empty());
        assert!(resample_to_16k(&input, 10).is_err());
    }

    #[test]
    fn absurd_rates_are_refused() {
        assert!(To16k::new(0).is_err());
        assert!(To16k::new(4_000_000).is_err());
    }
}
