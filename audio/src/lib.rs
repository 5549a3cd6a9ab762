//! Decode any supported audio file to 16 kHz mono `f32`, streaming.
//!
//! Containers and codecs: WAV (PCM integer and float, μ-law, A-law, ADPCM), FLAC, MP3,
//! Ogg Vorbis, AAC in MP4/M4A or ADTS — all through symphonia — and Opus in Ogg,
//! Matroska/WebM and MP4, which symphonia demuxes and libopus decodes (at 48 kHz, with
//! the `OpusHead` pre-skip, output gain and channel mapping applied). Encoder delay and
//! padding are trimmed where the file says how much (MP3 LAME/Xing header, Ogg granule
//! positions, Opus pre-skip, MP4 edit lists), so the output lines up with the source.
//! The file extension is only a hint: the container is recognised from its content.
//!
//! Every packet is mixed down to mono (the average of the channels), resampled to
//! 16 kHz ([`TARGET_RATE`]) with rubato, and handed to a callback in chunks, so a
//! file of any length decodes in bounded memory. `n` source frames at rate `r` give
//! `round(n * 16000 / r)` output samples, aligned with the source (the resampler's
//! delay is compensated).
//!
//! A file that cannot be used is rejected with a [`DecodeError`], whose
//! [`reason_code`](DecodeError::reason_code) is stable enough for a rejects table.
//! The policy for damaged input:
//!
//! - A stream that *ends early* (a cut-off download: end of file before the declared
//!   length, or a demuxer that fails for good mid-stream) keeps its decodable prefix:
//!   the result is `Ok` with [`AudioInfo::truncated`] set, unless
//!   [`DecodeOptions::reject_truncated`] asks for a `truncated` rejection instead.
//!   If nothing at all decodes, it is rejected (`truncated` when the header declared
//!   audio, `corrupt` when packets failed, `zero_length` when there was none).
//! - Undecodable packets are skipped like ffmpeg does, up to a point: more than 100 in
//!   a row, or more than 10 that are also more than 5 % of all packets, reject the
//!   file as `corrupt`.
//! - A NaN or infinite sample rejects the file (`non_finite_samples`); so does passing
//!   [`DecodeOptions::max_duration_s`] (`too_long`), as soon as it happens.
//! - Nothing panics and nothing hangs: symphonia calls run under `catch_unwind`
//!   (a panic becomes `corrupt`), the demuxer may read at most 4× the input (plus
//!   16 MiB) and must make progress.
//!
//! ```no_run
//! use speechmill_audio::{decode_file_16k, DecodeOptions};
//!
//! let opts = DecodeOptions { max_duration_s: Some(4.0 * 3600.0), ..DecodeOptions::default() };
//! let mut samples = 0usize;
//! match decode_file_16k("talk.opus", &opts, |chunk| samples += chunk.len()) {
//!     Ok(info) => println!("{} in {}: {:.1} s, {samples} samples at 16 kHz", info.codec, info.container, info.duration_s),
//!     Err(e) => println!("rejected ({}): {e}", e.reason_code()),
//! }
//! ```

mod decode;
mod error;
pub mod measures;
mod mix;
mod mp4;
mod opus;
mod resample;
mod source;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::{DecodeError, REASON_CODES};
pub use resample::{TARGET_RATE, resample_to_16k};

use decode::{CountingSink, ResamplingSink, decode_stream};

/// How to decode, and what to reject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeOptions {
    /// Reject sources longer than this many seconds (`too_long`). Decoding stops as
    /// soon as the limit is passed; no limit when unset.
    pub max_duration_s: Option<f64>,
    /// Reject a source that ends before its declared length or at a demuxing error
    /// (`truncated`) instead of keeping its decodable prefix.
    pub reject_truncated: bool,
}

/// What a decode found out about a source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioInfo {
    /// Short lowercase codec name: `pcm_s16le`, `pcm_f32le`, `pcm_mulaw`, `flac`,
    /// `mp3`, `vorbis`, `aac`, `opus`, ...
    pub codec: &'static str,
    /// Container: `wav`, `flac`, `mp3`, `ogg`, `webm`, `mkv`, `mp4`, `adts`.
    pub container: &'static str,
    /// The decoder's output rate (48000 for Opus).
    pub sample_rate: u32,
    /// Channels in the source (before the mono mix).
    pub channels: u16,
    /// Seconds actually decoded (frames / rate), after encoder delay and padding are trimmed.
    pub duration_s: f64,
    /// Source frames decoded.
    pub frames: u64,
    /// 16 kHz mono samples the source gives (produced, or for a probe, that would be).
    pub samples_16k: u64,
    /// The duration the container declares, if it does.
    pub declared_duration_s: Option<f64>,
    /// The stream ended before its declared length or at a demuxing error; what
    /// decoded was kept.
    pub truncated: bool,
    /// Packets skipped because they failed to demux or decode.
    pub bad_packets: u64,
}

fn open(path: &Path) -> Result<(File, Option<u64>, Option<&str>), DecodeError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let extension = path.extension().and_then(|e| e.to_str());
    Ok((file, Some(len), extension))
}

/// Decodes the whole file to validate it and measure it, without keeping (or
/// resampling) samples.
pub fn probe_file(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<AudioInfo, DecodeError> {
    let (file, len, extension) = open(path.as_ref())?;
    decode_stream(file, len, extension, opts, &mut CountingSink::default())
}

/// [`probe_file`] for any seekable reader (an in-memory blob: `Cursor<Vec<u8>>`).
pub fn probe_reader<R: Read + Seek + Send + Sync + 'static>(
    reader: R,
    opts: &DecodeOptions,
) -> Result<AudioInfo, DecodeError> {
    let (reader, len) = with_len(reader)?;
    decode_stream(reader, len, None, opts, &mut CountingSink::default())
}

/// Decodes the file to 16 kHz mono `f32` in [-1, 1], handing chunks to `sink` as
/// they are ready (a few thousand samples each).
pub fn decode_file_16k(
    path: impl AsRef<Path>,
    opts: &DecodeOptions,
    mut sink: impl FnMut(&[f32]),
) -> Result<AudioInfo, DecodeError> {
    let (file, len, extension) = open(path.as_ref())?;
    let mut fallible = |chunk: &[f32]| {
        sink(chunk);
        Ok(())
    };
    decode_stream(
        file,
        len,
        extension,
        opts,
        &mut ResamplingSink::new(&mut fallible),
    )
}

/// [`decode_file_16k`] for any seekable reader (an in-memory blob: `Cursor<Vec<u8>>`).
pub fn decode_reader_16k<R: Read + Seek + Send + Sync + 'static>(
    reader: R,
    opts: &DecodeOptions,
    mut sink: impl FnMut(&[f32]),
) -> Result<AudioInfo, DecodeError> {
    let (reader, len) = with_len(reader)?;
    let mut fallible = |chunk: &[f32]| {
        sink(chunk);
        Ok(())
    };
    decode_stream(
        reader,
        len,
        None,
        opts,
        &mut ResamplingSink::new(&mut fallible),
    )
}

/// Decodes the file to 16 kHz mono little-endian 16-bit PCM written to `out`
/// (what `speechmill decode` writes). A failed write is an `io` error.
pub fn decode_file_to_s16le(
    path: impl AsRef<Path>,
    opts: &DecodeOptions,
    mut out: impl Write,
) -> Result<AudioInfo, DecodeError> {
    decode_path_to_s16le(path.as_ref(), opts, &mut out)
}

/// [`decode_file_to_s16le`]'s body, not generic, so that its per-sample loop is
/// compiled here at this crate's optimisation level rather than in the caller.
fn decode_path_to_s16le(
    path: &Path,
    opts: &DecodeOptions,
    out: &mut dyn Write,
) -> Result<AudioInfo, DecodeError> {
    let (file, len, extension) = open(path)?;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut bytes: Vec<u8> = Vec::new();
    let mut write = |chunk: &[f32]| {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|&s| f32_to_s16(s).to_le_bytes()));
        out.write_all(&bytes).map_err(DecodeError::Io)
    };
    let mut sink = ResamplingSink::new(&mut write);
    let info = decode_stream(file, len, extension, opts, &mut sink)?;
    drop(sink);
    out.flush()?;
    Ok(info)
}

/// Rounds to the nearest 16-bit value, saturating at full scale.
#[inline]
pub fn f32_to_s16(sample: f32) -> i16 {
    let scaled = sample * 32768.0;
    // `as` saturates (and maps NaN to 0); adding ±0.5 rounds half away from zero.
    (scaled + if scaled >= 0.0 { 0.5 } else { -0.5 }) as i16
}

fn with_len<R: Read + Seek>(mut reader: R) -> Result<(R, Option<u64>), DecodeError> {
    let len = reader.seek(std::io::SeekFrom::End(0))?;
    reader.seek(std::io::SeekFrom::Start(0))?;
    Ok((reader, Some(len)))
}
