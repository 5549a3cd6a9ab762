//! Why a file was rejected: one variant per reason, each with a stable code.

use std::fmt;

/// Why a source could not be decoded.
///
/// `Display` gives a one-line human message; [`DecodeError::reason_code`] a short,
/// stable machine code for rejects tables (see [`REASON_CODES`]).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Reading the input (or writing the output) failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The input has no bytes, or a valid stream holds no samples.
    #[error("no audio: {0}")]
    ZeroLength(&'static str),
    /// The stream declares zero channels or a zero sample rate.
    #[error("stream declares {channels} channel(s) at {sample_rate} Hz")]
    ZeroChannelsOrRate { channels: u32, sample_rate: u32 },
    /// No container we know was recognised (or its parameters are outside what we support).
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    /// The container is fine but holds no audio track.
    #[error("no audio track in the container")]
    NoAudioTrack,
    /// The audio track uses a codec we cannot decode.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// The data is malformed: bad headers, too many undecodable packets, a decoder panic.
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    /// The stream ends early and nothing (or, with `reject_truncated`, not all) of it decoded.
    #[error("truncated audio: {0}")]
    Truncated(String),
    /// A decoded sample is NaN or infinite (typically a float WAV).
    #[error("non-finite sample (NaN or infinity) at {at_s:.3} s")]
    NonFiniteSamples { at_s: f64 },
    /// The decoded audio exceeds [`super::DecodeOptions::max_duration_s`]; decoding
    /// stopped as soon as the limit was passed.
    #[error("audio longer than the maximum of {max_s} s")]
    TooLong { max_s: f64 },
}

/// Every code [`DecodeError::reason_code`] can return.
pub const REASON_CODES: &[&str] = &[
    "io",
    "zero_length",
    "zero_channels_or_rate",
    "unsupported_format",
    "no_audio_track",
    "unsupported_codec",
    "corrupt",
    "truncated",
    "non_finite_samples",
    "too_long",
];

impl DecodeError {
    /// Short, stable machine code of the rejection reason (one of [`REASON_CODES`]).
    pub fn reason_code(&self) -> &'static str {
        match self {
            DecodeError::Io(_) => "io",
            DecodeError::ZeroLength(_) => "zero_length",
            DecodeError::ZeroChannelsOrRate { .. } => "zero_channels_or_rate",
            DecodeError::UnsupportedFormat(_) => "unsupported_format",
            DecodeError::NoAudioTrack => "no_audio_track",
            DecodeError::UnsupportedCodec(_) => "unsupported_codec",
            DecodeError::Corrupt(_) => "corrupt",
            DecodeError::Truncated(_) => "truncated",
            DecodeError::NonFiniteSamples { .. } => "non_finite_samples",
            DecodeError::TooLong { .. } => "too_long",
        }
    }

    pub(crate) fn corrupt(what: impl fmt::Display) -> Self {
        DecodeError::Corrupt(what.to_string())
    }
}
