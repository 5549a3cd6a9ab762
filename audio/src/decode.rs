//! The decode loop: probe the container, pick the audio track, pull packets, decode
//! them to mono, and hand the samples on — with the policies that decide when a
//! damaged file is still worth its decodable audio and when it is rejected.

use std::cell::{Cell, RefCell};
use std::io::{Read, Seek};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use symphonia::core::codecs::{
    self, CODEC_TYPE_NULL, CODEC_TYPE_OPUS, CodecParameters, CodecType, DecoderOptions,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Packet};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::error::DecodeError;
use super::mix::{downmix, first_non_finite};
use super::mp4::{EditTrimmer, Mp4Edit, read_edits};
use super::opus::{OPUS_RATE, OpusDecoder, OpusHead};
use super::resample::{MAX_RATE, MIN_RATE, Sink16k, To16k, frames_at_16k};
use super::source::{GuardedSource, ReadStats, check_wav_header, read_head, sniff_container};
use super::{AudioInfo, DecodeOptions};

/// A damaged stream is rejected when more than this many packets fail...
const MAX_BAD_PACKETS_ABSOLUTE: u64 = 10;
/// ...and they are more than 1/this of all packets (5 %).
const MAX_BAD_PACKETS_RATIO: u64 = 20;
/// A run of this many failing packets in a row rejects the stream at once.
const MAX_CONSECUTIVE_BAD_PACKETS: u64 = 100;
/// Demuxer errors in a row after which the stream is considered to end there.
const MAX_CONSECUTIVE_DEMUX_ERRORS: u32 = 8;
/// Loop iterations without reading a byte or decoding a frame before we call it a hang.
const MAX_IDLE_ITERATIONS: u32 = 10_000;

/// Where decoded mono audio goes.
pub(crate) trait MonoSink {
    /// Takes mono samples at `rate` (which may change between calls at chained streams).
    fn push(&mut self, rate: u32, mono: &[f32]) -> Result<(), DecodeError>;
    /// Ends the stream; returns how many 16 kHz frames it produced (or corresponds to).
    fn finish(&mut self) -> Result<u64, DecodeError>;
}

/// Counts only: what `probe_*` uses (the 16 kHz count follows from the frame count).
#[derive(Default)]
pub(crate) struct CountingSink {
    rate: u32,
    frames: u64,
    done_16k: u64,
}

impl MonoSink for CountingSink {
    fn push(&mut self, rate: u32, mono: &[f32]) -> Result<(), DecodeError> {
        if rate != self.rate {
            self.done_16k += frames_at_16k(self.frames, self.rate);
            (self.rate, self.frames) = (rate, 0);
        }
        self.frames += mono.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<u64, DecodeError> {
        Ok(self.done_16k + frames_at_16k(self.frames, self.rate))
    }
}

/// Resamples to 16 kHz and hands chunks to a callback.
pub(crate) struct ResamplingSink<'a> {
    resampler: Option<To16k>,
    sink: &'a mut Sink16k<'a>,
    done_16k: u64,
}

impl<'a> ResamplingSink<'a> {
    pub(crate) fn new(sink: &'a mut Sink16k<'a>) -> Self {
        ResamplingSink {
            resampler: None,
            sink,
            done_16k: 0,
        }
    }
}

impl MonoSink for ResamplingSink<'_> {
    fn push(&mut self, rate: u32, mono: &[f32]) -> Result<(), DecodeError> {
        let resampler = match &mut self.resampler {
            Some(r) if r.rate_in() == rate => r,
            slot => {
                if let Some(mut old) = slot.take() {
                    self.done_16k += old.finish(self.sink)?;
                }
                slot.insert(To16k::new(rate)?)
            }
        };
        resampler.push(mono, self.sink)
    }

    fn finish(&mut self) -> Result<u64, DecodeError> {
        let tail = match &mut self.resampler {
            Some(r) => r.finish(self.sink)?,
            None => 0,
        };
        Ok(self.done_16k + tail)
    }
}

thread_local! {
    /// Whether this thread is inside [`guarded`] (whose panics the hook keeps quiet).
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// Where the last quiet panic happened.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that records, instead of printing, panics
/// inside [`guarded`]: a fuzzed file is an expected input, not a crash to report with a
/// backtrace. Panics anywhere else still go to the previous hook.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                let at = info.location().map(|l| {
                    let short: Vec<&str> = l.file().rsplit('/').take(3).collect();
                    format!(
                        "{}:{}",
                        short.into_iter().rev().collect::<Vec<_>>().join("/"),
                        l.line()
                    )
                });
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic inside symphonia into a `corrupt` rejection.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, DecodeError> {
    install_quiet_panic_hook();
    let outer = GUARDED.with(|g| g.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let at = PANIC_AT
            .with(|p| p.borrow_mut().take())
            .map(|at| format!(" at {at}"))
            .unwrap_or_default();
        DecodeError::Corrupt(format!("{what} panicked{at}: {msg}").replace('\n', " "))
    })
}

/// The short lowercase codec name (ffmpeg's spelling where there is one).
fn codec_name(codec: CodecType) -> &'static str {
    if codec == CODEC_TYPE_OPUS {
        return "opus";
    }
    if let Some(desc) = symphonia::default::get_codecs().get_codec(codec) {
        return desc.short_name;
    }
    let known = [
        (codecs::CODEC_TYPE_ALAC, "alac"),
        (codecs::CODEC_TYPE_EAC3, "eac3"),
        (codecs::CODEC_TYPE_AC4, "ac4"),
        (codecs::CODEC_TYPE_DCA, "dts"),
        (codecs::CODEC_TYPE_WMA, "wma"),
        (codecs::CODEC_TYPE_SPEEX, "speex"),
        (codecs::CODEC_TYPE_WAVPACK, "wavpack"),
        (codecs::CODEC_TYPE_MONKEYS_AUDIO, "ape"),
        (codecs::CODEC_TYPE_TTA, "tta"),
        (codecs::CODEC_TYPE_MUSEPACK, "musepack"),
        (codecs::CODEC_TYPE_MP1, "mp1"),
        (codecs::CODEC_TYPE_MP2, "mp2"),
        (codecs::CODEC_TYPE_ADPCM_G722, "adpcm_g722"),
        (codecs::CODEC_TYPE_ADPCM_G726, "adpcm_g726"),
        (codecs::CODEC_TYPE_ADPCM_IMA_QT, "adpcm_ima_qt"),
        (codecs::CODEC_TYPE_ATRAC3, "atrac3"),
    ];
    known
        .iter()
        .find(|(c, _)| *c == codec)
        .map_or("unknown", |(_, name)| name)
}

fn map_open_error(err: SymphoniaError, stats: &ReadStats) -> DecodeError {
    match err {
        _ if stats.over_budget() => DecodeError::corrupt("the demuxer kept re-reading the input"),
        SymphoniaError::Unsupported(what) => DecodeError::UnsupportedFormat(what.to_owned()),
        SymphoniaError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::corrupt("the header ends early")
        }
        SymphoniaError::IoError(e) => DecodeError::Io(e),
        other => DecodeError::corrupt(other),
    }
}

enum TrackDecoder {
    Symphonia(Box<dyn codecs::Decoder>),
    Opus(Box<OpusDecoder>),
}

/// The audio track being decoded and what we know about it.
struct Track {
    id: u32,
    codec: &'static str,
    /// The decoder's output rate; 0 until known (set from the first decoded packet).
    rate: u32,
    channels: u16,
    declared_s: Option<f64>,
    decoder: TrackDecoder,
}

/// The duration a track's header declares, if it does.
fn declared_duration(params: &CodecParameters) -> Option<f64> {
    let frames = params.n_frames?;
    match params.time_base {
        Some(tb) if tb.denom > 0 => Some(frames as f64 * f64::from(tb.numer) / f64::from(tb.denom)),
        _ => params
            .sample_rate
            .filter(|&r| r > 0)
            .map(|r| frames as f64 / f64::from(r)),
    }
}

fn check_rate(rate: u32, channels: u32) -> Result<(), DecodeError> {
    if rate == 0 || channels == 0 {
        return Err(DecodeError::ZeroChannelsOrRate {
            channels,
            sample_rate: rate,
        });
    }
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(DecodeError::UnsupportedFormat(format!(
            "sample rate {rate} Hz outside the supported {MIN_RATE}..={MAX_RATE} Hz"
        )));
    }
    Ok(())
}

/// Picks the first track with a known codec, or explains why there is none.
/// `mp4` says the container is MP4, whose Opus header fields are big-endian.
fn open_track(format: &dyn FormatReader, mp4: bool) -> Result<Track, DecodeError> {
    let tracks = format.tracks();
    let Some(track) = tracks
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
    else {
        // Matroska gives audio tracks of unknown codecs a sample rate, video tracks none.
        return Err(
            if tracks.iter().any(|t| t.codec_params.sample_rate.is_some()) {
                DecodeError::UnsupportedCodec("unknown audio codec".to_owned())
            } else {
                DecodeError::NoAudioTrack
            },
        );
    };
    let params = &track.codec_params;
    let codec = codec_name(params.codec);
    let channels = params.channels.map_or(0, |c| c.count());
    if params.sample_rate == Some(0) || params.channels.is_some_and(|c| c.count() == 0) {
        return Err(DecodeError::ZeroChannelsOrRate {
            channels: channels as u32,
            sample_rate: params.sample_rate.unwrap_or(0),
        });
    }
    let declared_s = declared_duration(params);
    if params.codec == CODEC_TYPE_OPUS {
        let head = match &params.extra_data {
            Some(data) => OpusHead::parse(data, mp4)?,
            None => OpusHead::fallback(channels.clamp(1, 2) as u8),
        };
        return Ok(Track {
            id: track.id,
            codec,
            rate: OPUS_RATE,
            channels: u16::from(head.channels),
            declared_s,
            decoder: TrackDecoder::Opus(Box::new(OpusDecoder::new(&head)?)),
        });
    }
    if let Some(rate) = params.sample_rate {
        check_rate(rate, channels.max(1) as u32)?;
    }
    let decoder = guarded("creating the decoder", || {
        symphonia::default::get_codecs().make(params, &DecoderOptions { verify: false })
    })?
    .map_err(|e| match e {
        SymphoniaError::Unsupported(_) => DecodeError::UnsupportedCodec(if codec == "unknown" {
            format!("{:?}", params.codec)
        } else {
            codec.to_owned()
        }),
        other => DecodeError::corrupt(format!("cannot set up the {codec} decoder: {other}")),
    })?;
    Ok(Track {
        id: track.id,
        codec,
        rate: params.sample_rate.unwrap_or(0),
        channels: channels as u16,
        declared_s,
        decoder: TrackDecoder::Symphonia(decoder),
    })
}

/// What decoding one packet gave.
enum PacketOutcome {
    /// `mono` holds the packet's samples (possibly none, e.g. a codec's priming packet).
    Decoded,
    /// The packet could not be decoded; the message says why.
    Bad { unsupported: bool },
}

impl Track {
    fn decode(
        &mut self,
        packet: &Packet,
        mono: &mut Vec<f32>,
    ) -> Result<PacketOutcome, DecodeError> {
        mono.clear();
        match &mut self.decoder {
            TrackDecoder::Opus(decoder) => {
                // libopus turns an empty packet into up to 120 ms of loss concealment: a
                // file of empty packets would decode to hours of noise, so skip them.
                if packet.buf().is_empty() {
                    return Ok(PacketOutcome::Bad { unsupported: false });
                }
                let result = guarded("the Opus decoder", || {
                    decoder.decode(
                        packet.buf(),
                        packet.trim_start() as usize,
                        packet.trim_end() as usize,
                        mono,
                    )
                })?;
                Ok(match result {
                    Ok(()) => PacketOutcome::Decoded,
                    Err(_) => PacketOutcome::Bad { unsupported: false },
                })
            }
            TrackDecoder::Symphonia(decoder) => {
                let result = guarded("the decoder", || {
                    decoder.decode(packet).map(|buf| {
                        let spec = *buf.spec();
                        downmix(&buf, mono);
                        (spec.rate, spec.channels.count())
                    })
                })?;
                match result {
                    Ok((rate, channels)) => {
                        check_rate(rate, channels as u32)?;
                        if self.rate == 0 {
                            self.rate = rate;
                        } else if rate != self.rate {
                            // A false sync (e.g. in MP3 garbage) can claim another rate.
                            mono.clear();
                            return Ok(PacketOutcome::Bad { unsupported: false });
                        }
                        if self.channels == 0 {
                            self.channels = channels as u16;
                        }
                        Ok(PacketOutcome::Decoded)
                    }
                    Err(SymphoniaError::Unsupported(_)) => {
                        Ok(PacketOutcome::Bad { unsupported: true })
                    }
                    Err(SymphoniaError::ResetRequired) => {
                        guarded("resetting the decoder", || decoder.reset())?;
                        Ok(PacketOutcome::Decoded)
                    }
                    Err(_) => Ok(PacketOutcome::Bad { unsupported: false }),
                }
            }
        }
    }
}

/// Why the packet loop stopped.
enum End {
    Eof,
    /// The demuxer failed (repeatedly) before the end of the input.
    DemuxError(String),
}

/// Running totals of the packet loop.
#[derive(Default)]
struct Tally {
    packets: u64,
    bad: u64,
    consecutive_bad: u64,
    unsupported: u64,
    /// Seconds decoded in finished segments (chained streams change rate).
    done_s: f64,
    /// Frames decoded at the current rate.
    frames: u64,
    /// Frames decoded over all segments.
    total_frames: u64,
}

impl Tally {
    fn seconds(&self, rate: u32) -> f64 {
        self.done_s
            + if rate > 0 {
                self.frames as f64 / f64::from(rate)
            } else {
                0.0
            }
    }

    fn bad_packet(&mut self, unsupported: bool) -> Result<(), DecodeError> {
        self.bad += 1;
        self.consecutive_bad += 1;
        self.unsupported += u64::from(unsupported);
        if self.consecutive_bad > MAX_CONSECUTIVE_BAD_PACKETS {
            return Err(DecodeError::corrupt(format!(
                "{} packets in a row failed to decode",
                self.consecutive_bad
            )));
        }
        Ok(())
    }
}

/// Decodes the whole stream of `reader` into `sink`.
pub(crate) fn decode_stream<R: Read + Seek + Send + Sync + 'static>(
    reader: R,
    len: Option<u64>,
    extension: Option<&str>,
    opts: &DecodeOptions,
    sink: &mut dyn MonoSink,
) -> Result<AudioInfo, DecodeError> {
    decode_source(Box::new(reader), len, extension, opts, sink)
}

/// A seekable byte source, boxed.
pub(crate) trait Source: Read + Seek + Send + Sync {}
impl<R: Read + Seek + Send + Sync> Source for R {}

/// The decode loop, not generic: it is compiled once, here, at this crate's
/// optimisation level. Generic, it was compiled into each caller at the caller's
/// level (the binary's 0), which halved `speechmill decode`'s speed.
fn decode_source(
    mut reader: Box<dyn Source>,
    len: Option<u64>,
    extension: Option<&str>,
    opts: &DecodeOptions,
    sink: &mut dyn MonoSink,
) -> Result<AudioInfo, DecodeError> {
    let head = read_head(&mut reader)?;
    if head.is_empty() {
        return Err(DecodeError::ZeroLength("the input is empty"));
    }
    check_wav_header(&head)?;
    let sniffed = sniff_container(&head);
    let mp4 = sniffed == Some("mp4");
    let mp4_edits = match (mp4, len) {
        (true, Some(len)) => read_edits(&mut reader, len),
        _ => Vec::new(),
    };
    // Opus in MP4 has its priming in the header's pre-skip (the edit list repeats it).
    let trimmer_for = |track: &Track| {
        let edit = mp4_edits.get(track.id as usize).copied().flatten()?;
        let opus = matches!(track.decoder, TrackDecoder::Opus(_));
        Some(EditTrimmer::new(if opus {
            Mp4Edit {
                skip_s: 0.0,
                ..edit
            }
        } else {
            edit
        }))
    };

    let (source, stats) = GuardedSource::new(reader, len);
    let stream = MediaSourceStream::new(Box::new(source), MediaSourceStreamOptions::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let format_opts = FormatOptions {
        enable_gapless: true,
        ..FormatOptions::default()
    };
    let probed = guarded("probing the container", || {
        symphonia::default::get_probe().format(
            &hint,
            stream,
            &format_opts,
            &MetadataOptions::default(),
        )
    })?
    .map_err(|e| map_open_error(e, &stats))?;
    let mut format = probed.format;
    let mut track = open_track(format.as_ref(), mp4)?;
    let mut trimmer = trimmer_for(&track);
    let codec = track.codec;
    let declared_s = track.declared_s;
    // Rate and channels as the first decoded packet reports them.
    let mut first_format: Option<(u32, u16)> = None;

    let mut tally = Tally::default();
    let mut mono: Vec<f32> = Vec::with_capacity(8192);
    let mut demux_errors = 0u32;
    let mut idle = 0u32;
    let mut last_bytes = stats.bytes_read();

    let end = loop {
        let bytes = stats.bytes_read();
        if bytes == last_bytes {
            idle += 1;
            if idle > MAX_IDLE_ITERATIONS {
                return Err(DecodeError::corrupt("the demuxer stopped making progress"));
            }
        } else {
            (idle, last_bytes) = (0, bytes);
        }

        let packet = match guarded("the demuxer", || format.next_packet())? {
            Ok(packet) => packet,
            Err(_) if stats.over_budget() => {
                return Err(DecodeError::corrupt(
                    "the demuxer kept re-reading the input",
                ));
            }
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break End::Eof;
            }
            Err(SymphoniaError::IoError(e))
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData
                        | std::io::ErrorKind::InvalidInput
                        | std::io::ErrorKind::Other
                ) =>
            {
                return Err(DecodeError::Io(e));
            }
            Err(SymphoniaError::ResetRequired) => {
                // A chained stream (e.g. concatenated Ogg files): continue with its new track.
                match open_track(format.as_ref(), mp4) {
                    Ok(next) => {
                        tally.done_s = tally.seconds(track.rate);
                        tally.frames = 0;
                        track = next;
                        trimmer = None;
                        continue;
                    }
                    Err(e) => break End::DemuxError(format!("chained stream: {e}")),
                }
            }
            Err(e) => {
                demux_errors += 1;
                tally.bad += 1;
                if demux_errors >= MAX_CONSECUTIVE_DEMUX_ERRORS {
                    break End::DemuxError(e.to_string());
                }
                continue;
            }
        };
        demux_errors = 0;
        if packet.track_id() != track.id {
            continue;
        }
        tally.packets += 1;
        match track.decode(&packet, &mut mono)? {
            PacketOutcome::Bad { unsupported } => {
                tally.bad_packet(unsupported)?;
                continue;
            }
            PacketOutcome::Decoded => tally.consecutive_bad = 0,
        }
        if let Some(trimmer) = &mut trimmer {
            trimmer.apply(&mut mono, track.rate);
        }
        if mono.is_empty() {
            continue;
        }
        idle = 0;
        first_format.get_or_insert((track.rate, track.channels));
        if let Some(i) = first_non_finite(&mono) {
            let at_s = tally.seconds(track.rate) + i as f64 / f64::from(track.rate);
            return Err(DecodeError::NonFiniteSamples { at_s });
        }
        tally.frames += mono.len() as u64;
        tally.total_frames += mono.len() as u64;
        if let Some(max_s) = opts.max_duration_s
            && tally.seconds(track.rate) > max_s
        {
            return Err(DecodeError::TooLong { max_s });
        }
        sink.push(track.rate, &mono)?;
    };

    let decoded_s = tally.seconds(track.rate);
    let truncated = verdict(&tally, end, decoded_s, declared_s, codec, opts)?;
    let samples_16k = sink.finish()?;
    let container = sniffed.unwrap_or(match codec {
        "mp3" | "mp2" | "mp1" => "mp3",
        "aac" => "adts",
        "flac" => "flac",
        _ => "unknown",
    });
    Ok(AudioInfo {
        codec,
        container,
        sample_rate: first_format.map_or(0, |f| f.0),
        channels: first_format.map_or(0, |f| f.1),
        duration_s: decoded_s,
        frames: tally.total_frames,
        samples_16k,
        declared_duration_s: declared_s,
        truncated,
        bad_packets: tally.bad,
    })
}

/// Whether a stream that decoded `decoded_s` seconds and stopped at `end` is accepted,
/// and if so whether it counts as truncated (see the module docs for the policy).
fn verdict(
    tally: &Tally,
    end: End,
    decoded_s: f64,
    declared_s: Option<f64>,
    codec: &str,
    opts: &DecodeOptions,
) -> Result<bool, DecodeError> {
    if tally.total_frames == 0 {
        return Err(if tally.unsupported > 0 && tally.unsupported == tally.bad {
            DecodeError::UnsupportedCodec(format!("{codec}: no packet could be decoded"))
        } else if tally.bad > 0 {
            DecodeError::corrupt(format!(
                "none of {} packets decoded",
                tally.packets.max(tally.bad)
            ))
        } else if let End::DemuxError(why) = end {
            DecodeError::corrupt(why)
        } else if declared_s.is_some_and(|d| d > 0.0) {
            DecodeError::Truncated(format!(
                "the header declares {:.3} s but no audio could be read",
                declared_s.unwrap_or_default()
            ))
        } else {
            DecodeError::ZeroLength("the stream holds no samples")
        });
    }
    if tally.bad > MAX_BAD_PACKETS_ABSOLUTE && tally.bad * MAX_BAD_PACKETS_RATIO > tally.packets {
        return Err(DecodeError::corrupt(format!(
            "{} of {} packets failed to decode",
            tally.bad, tally.packets
        )));
    }
    let ended_early = matches!(end, End::DemuxError(_));
    let short_of_declared = declared_s.is_some_and(|d| decoded_s + (0.01 * d).max(0.5) < d);
    let truncated = ended_early || short_of_declared;
    if truncated && opts.reject_truncated {
        return Err(DecodeError::Truncated(match (end, declared_s) {
            (End::DemuxError(why), _) => {
                format!("stream ends at {decoded_s:.3} s on a demuxing error: {why}")
            }
            (End::Eof, d) => format!(
                "decoded {decoded_s:.3} s of the declared {:.3} s",
                d.unwrap_or_default()
            ),
        }));
    }
    Ok(truncated)
}
