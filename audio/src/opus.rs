//! Opus, which symphonia demuxes (Ogg, Matroska/WebM) but cannot decode: libopus
//! decodes the packets at 48 kHz, and this module applies the `OpusHead` header
//! (channel count and mapping, pre-skip, output gain).
//!
//! Mono and stereo streams (mapping family 0) use a mono libopus decoder, which
//! downmixes inside the codec for less work than decoding both channels; surround
//! streams (families 1 and 255) use the multistream decoder and are averaged here.

use super::error::DecodeError;
use super::mix::downmix_interleaved;

/// Opus always decodes at 48 kHz here (the rate the pre-skip is counted in).
pub(crate) const OPUS_RATE: u32 = 48_000;

/// The longest Opus packet: 120 ms at 48 kHz.
const MAX_FRAMES_PER_PACKET: usize = 5760;

/// The fields of an `OpusHead` identification header (RFC 7845 §5.1) we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpusHead {
    pub(crate) channels: u8,
    pub(crate) pre_skip: u16,
    /// Q7.8 dB gain to apply to the output.
    pub(crate) output_gain: i16,
    pub(crate) mapping_family: u8,
    pub(crate) streams: u8,
    pub(crate) coupled_streams: u8,
    pub(crate) mapping: Vec<u8>,
}

impl OpusHead {
    /// Parses the header symphonia passes as codec extra data: the Ogg identification
    /// packet, Matroska's CodecPrivate (the same bytes), or, with `big_endian`, MP4's
    /// `dOps` box behind an `OpusHead` magic (same layout, big-endian fields).
    pub(crate) fn parse(data: &[u8], big_endian: bool) -> Result<Self, DecodeError> {
        let bad = |why: &str| DecodeError::corrupt(format!("OpusHead: {why}"));
        if data.len() < 19 || &data[..8] != b"OpusHead" {
            return Err(bad("missing or too short"));
        }
        let channels = data[9];
        if channels == 0 {
            return Err(DecodeError::ZeroChannelsOrRate {
                channels: 0,
                sample_rate: OPUS_RATE,
            });
        }
        let (pre_skip, output_gain) = if big_endian {
            (
                u16::from_be_bytes([data[10], data[11]]),
                i16::from_be_bytes([data[16], data[17]]),
            )
        } else {
            (
                u16::from_le_bytes([data[10], data[11]]),
                i16::from_le_bytes([data[16], data[17]]),
            )
        };
        let mapping_family = data[18];
        let (streams, coupled_streams, mapping) = if mapping_family == 0 {
            if channels > 2 {
                return Err(bad("mapping family 0 with more than 2 channels"));
            }
            (1, channels - 1, (0..channels).collect())
        } else {
            let table = data
                .get(19..21 + usize::from(channels))
                .ok_or_else(|| bad("mapping table cut short"))?;
            let (streams, coupled) = (table[0], table[1]);
            let valid = streams > 0
                && coupled <= streams
                && u16::from(streams) + u16::from(coupled) <= 255
                && table[2..]
                    .iter()
                    .all(|&m| m == 255 || u16::from(m) < u16::from(streams) + u16::from(coupled));
            if !valid {
                return Err(bad("invalid channel mapping"));
            }
            (streams, coupled, table[2..].to_vec())
        };
        Ok(OpusHead {
            channels,
            pre_skip,
            output_gain,
            mapping_family,
            streams,
            coupled_streams,
            mapping,
        })
    }

    /// What a stream without an identification header (a Matroska file lacking
    /// CodecPrivate) is decoded as: mono or stereo, no pre-skip, no gain.
    pub(crate) fn fallback(channels: u8) -> Self {
        let channels = channels.clamp(1, 2);
        OpusHead {
            channels,
            pre_skip: 0,
            output_gain: 0,
            mapping_family: 0,
            streams: 1,
            coupled_streams: channels - 1,
            mapping: (0..channels).collect(),
        }
    }
}

enum Codec {
    /// Family 0: libopus mixes stereo down itself.
    Mono(opus::Decoder),
    /// Families 1 and 255: decoded to `channels` interleaved channels.
    Multi {
        decoder: opus::MSDecoder,
        channels: usize,
    },
}

/// A libopus decoder that yields mono 48 kHz samples with the pre-skip removed.
pub(crate) struct OpusDecoder {
    codec: Codec,
    pre_skip_left: usize,
    interleaved: Vec<f32>,
}

impl OpusDecoder {
    pub(crate) fn new(head: &OpusHead) -> Result<Self, DecodeError> {
        let setup =
            |e: opus::Error| DecodeError::corrupt(format!("cannot set up the Opus decoder: {e}"));
        let gain = i32::from(head.output_gain);
        let (codec, channels) = if head.mapping_family == 0 {
            let mut decoder = opus::Decoder::new(OPUS_RATE, opus::Channels::Mono).map_err(setup)?;
            if gain != 0 {
                decoder.set_gain(gain).map_err(setup)?;
            }
            (Codec::Mono(decoder), 1)
        } else {
            let mut decoder =
                opus::MSDecoder::new(OPUS_RATE, head.streams, head.coupled_streams, &head.mapping)
                    .map_err(setup)?;
            if gain != 0 {
                decoder.set_gain(gain).map_err(setup)?;
            }
            let channels = head.mapping.len();
            (Codec::Multi { decoder, channels }, channels)
        };
        Ok(OpusDecoder {
            codec,
            pre_skip_left: usize::from(head.pre_skip),
            interleaved: vec![0.0; MAX_FRAMES_PER_PACKET * channels],
        })
    }

    /// Decodes one packet into `mono` (replacing its contents), after dropping
    /// `trim_start`/`trim_end` frames the demuxer asks for and what is left of the pre-skip.
    /// An error means the packet is bad; the decoder stays usable.
    pub(crate) fn decode(
        &mut self,
        packet: &[u8],
        trim_start: usize,
        trim_end: usize,
        mono: &mut Vec<f32>,
    ) -> Result<(), opus::Error> {
        let (frames, channels) = match &mut self.codec {
            Codec::Mono(decoder) => (
                decoder.decode_float(packet, &mut self.interleaved, false)?,
                1,
            ),
            Codec::Multi { decoder, channels } => (
                decoder.decode_float(packet, &mut self.interleaved, false)?,
                *channels,
            ),
        };
        let frames = frames.min(MAX_FRAMES_PER_PACKET);
        let end = frames.saturating_sub(trim_end);
        let mut start = trim_start.min(end);
        let skip = self.pre_skip_left.min(end - start);
        self.pre_skip_left -= skip;
        start += skip;
        downmix_interleaved(
            &self.interleaved[start * channels..end * channels],
            channels,
            mono,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(channels: u8, family: u8, tail: &[u8]) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.extend_from_slice(&[1, channels]);
        h.extend_from_slice(&312u16.to_le_bytes());
        h.extend_from_slice(&48_000u32.to_le_bytes());
        h.extend_from_slice(&0i16.to_le_bytes());
        h.push(family);
        h.extend_from_slice(tail);
        h
    }

    #[test]
    fn stereo_head_is_parsed() {
        let parsed = OpusHead::parse(&head(2, 0, &[]), false).expect("valid head");
        assert_eq!(
            (
                parsed.channels,
                parsed.pre_skip,
                parsed.streams,
                parsed.coupled_streams
            ),
            (2, 312, 1, 1)
        );
    }

    #[test]
    fn surround_head_with_mapping_table_is_parsed() {
        let parsed =
            OpusHead::parse(&head(6, 1, &[4, 2, 0, 4, 1, 2, 3, 5]), false).expect("valid head");
        assert_eq!(parsed.mapping, vec![0, 4, 1, 2, 3, 5]);
    }

    #[test]
    fn bad_heads_are_rejected() {
        assert!(OpusHead::parse(b"OpusHead", false).is_err());
        assert_eq!(
            OpusHead::parse(&head(0, 0, &[]), false).map_err(|e| e.reason_code()),
            Err("zero_channels_or_rate")
        );
        assert!(OpusHead::parse(&head(3, 0, &[]), false).is_err());
        assert!(OpusHead::parse(&head(6, 1, &[4, 2, 0, 4]), false).is_err());
        assert!(OpusHead::parse(&head(2, 1, &[1, 1, 0, 9]), false).is_err());
    }
}
