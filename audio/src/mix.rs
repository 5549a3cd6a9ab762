//! Downmix decoded audio to mono f32 (the average of the channels), straight from the
//! decoder's planar buffers into one reused vector: no interleaving copy, no allocation
//! once the vector has grown to a packet's size.

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::conv::IntoSample;
use symphonia::core::sample::Sample;

/// Replaces `out` with the mono mix of `buf`.
pub(crate) fn downmix(buf: &AudioBufferRef<'_>, out: &mut Vec<f32>) {
    match buf {
        AudioBufferRef::U8(b) => downmix_planar(b, out),
        AudioBufferRef::U16(b) => downmix_planar(b, out),
        AudioBufferRef::U24(b) => downmix_planar(b, out),
        AudioBufferRef::U32(b) => downmix_planar(b, out),
        AudioBufferRef::S8(b) => downmix_planar(b, out),
        AudioBufferRef::S16(b) => downmix_planar(b, out),
        AudioBufferRef::S24(b) => downmix_planar(b, out),
        AudioBufferRef::S32(b) => downmix_planar(b, out),
        AudioBufferRef::F32(b) => downmix_planar(b, out),
        AudioBufferRef::F64(b) => downmix_planar(b, out),
    }
}

fn downmix_planar<S: Sample + IntoSample<f32>>(buf: &AudioBuffer<S>, out: &mut Vec<f32>) {
    out.clear();
    let channels = buf.spec().channels.count();
    let frames = buf.frames();
    match channels {
        0 => {}
        1 => out.extend(buf.chan(0).iter().map(|&s| s.into_sample())),
        2 => out.extend(
            buf.chan(0)
                .iter()
                .zip(buf.chan(1))
                .map(|(&l, &r)| 0.5 * l.into_sample() + 0.5 * r.into_sample()),
        ),
        n => {
            // Scale each term rather than the sum so extreme float samples cannot overflow.
            let scale = 1.0 / n as f32;
            out.resize(frames, 0.0);
            for ch in 0..n {
                for (o, &s) in out.iter_mut().zip(buf.chan(ch)) {
                    let s: f32 = s.into_sample();
                    *o += s * scale;
                }
            }
        }
    }
}

/// Replaces `out` with the mono mix of interleaved samples.
pub(crate) fn downmix_interleaved(samples: &[f32], channels: usize, out: &mut Vec<f32>) {
    out.clear();
    match channels {
        0 => {}
        1 => out.extend_from_slice(samples),
        n => {
            let scale = 1.0 / n as f32;
            out.extend(
                samples
                    .chunks_exact(n)
                    .map(|frame| frame.iter().map(|&s| s * scale).sum::<f32>()),
            );
        }
    }
}

/// Index of the first non-finite sample, if any.
pub(crate) fn first_non_finite(samples: &[f32]) -> Option<usize> {
    // A cheap, vectorisable whole-buffer test first (`s * 0` is 0 for finite samples
    // and NaN otherwise); the position is only needed on failure.
    let mut acc = [0.0f32; 8];
    let chunks = samples.chunks_exact(8);
    let mut total: f32 = chunks.remainder().iter().map(|&s| s * 0.0).sum();
    for chunk in chunks {
        for (a, &s) in acc.iter_mut().zip(chunk) {
            *a += s * 0.0;
        }
    }
    total += acc.iter().sum::<f32>();
    if total == 0.0 {
        return None;
    }
    samples.iter().position(|s| !s.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphonia::core::audio::{Channels, SignalSpec};

    #[test]
    fn stereo_is_averaged_and_scaled_from_integers() {
        let spec = SignalSpec::new(8000, Channels::FRONT_LEFT | Channels::FRONT_RIGHT);
        let mut buf = AudioBuffer::<i16>::new(4, spec);
        buf.render_reserved(Some(2));
        buf.chan_mut(0).copy_from_slice(&[16384, 0]);
        buf.chan_mut(1).copy_from_slice(&[0, -32768]);
        let mut out = Vec::new();
        downmix(
            &AudioBufferRef::S16(std::borrow::Cow::Borrowed(&buf)),
            &mut out,
        );
        assert_eq!(out, vec![0.25, -0.5]);
    }

    #[test]
    fn interleaved_surround_is_averaged() {
        let mut out = Vec::new();
        downmix_interleaved(&[0.3, 0.3, 0.3, 0.0, 0.0, 0.9], 3, &mut out);
        assert!((out[0] - 0.3).abs() < 1e-6 && (out[1] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn non_finite_samples_are_found() {
        assert_eq!(first_non_finite(&[0.0, 1.0, -1.0]), None);
        assert_eq!(first_non_finite(&[0.0, f32::NAN]), Some(1));
        assert_eq!(first_non_finite(&[f32::INFINITY, 0.0]), Some(0));
        assert_eq!(first_non_finite(&[0.0, 0.0, f32::NEG_INFINITY]), Some(2));
    }
}
