//! Tests against files generated at test time with ffmpeg and espeak-ng (installed
//! by `scripts/setup.sh`), compared with ffmpeg's own decode.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// Length of the generated source, in seconds (exact: 88200 frames at 22.05 kHz).
const SOURCE_S: f64 = 4.0;
const SOURCE_RATE: u32 = 22_050;

const SETUP_HINT: &str = "run `bash scripts/setup.sh` (it installs ffmpeg and espeak-ng)";

/// One generated test file and what decoding it must report.
struct Fixture {
    name: &'static str,
    ffmpeg_args: &'static [&'static str],
    stereo: bool,
    codec: &'static str,
    container: &'static str,
    rate: u32,
    channels: u16,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "s16_16k.wav",
        ffmpeg_args: &["-ar", "16000", "-c:a", "pcm_s16le"],
        stereo: false,
        codec: "pcm_s16le",
        container: "wav",
        rate: 16_000,
        channels: 1,
    },
    Fixture {
        name: "f32_22k.wav",
        ffmpeg_args: &["-c:a", "pcm_f32le"],
        stereo: false,
        codec: "pcm_f32le",
        container: "wav",
        rate: 22_050,
        channels: 1,
    },
    Fixture {
        name: "mulaw_8k.wav",
        ffmpeg_args: &["-ar", "8000", "-c:a", "pcm_mulaw"],
        stereo: false,
        codec: "pcm_mulaw",
        container: "wav",
        rate: 8_000,
        channels: 1,
    },
    Fixture {
        name: "alaw_8k.wav",
        ffmpeg_args: &["-ar", "8000", "-c:a", "pcm_alaw"],
        stereo: false,
        codec: "pcm_alaw",
        container: "wav",
        rate: 8_000,
        channels: 1,
    },
    Fixture {
        name: "s16_44k_stereo.wav",
        ffmpeg_args: &["-ar", "44100", "-c:a", "pcm_s16le"],
        stereo: true,
        codec: "pcm_s16le",
        container: "wav",
        rate: 44_100,
        channels: 2,
    },
    Fixture {
        name: "mono_48k.flac",
        ffmpeg_args: &["-ar", "48000", "-c:a", "flac"],
        stereo: false,
        codec: "flac",
        container: "flac",
        rate: 48_000,
        channels: 1,
    },
    Fixture {
        name: "stereo_44k.mp3",
        ffmpeg_args: &["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "128k"],
        stereo: true,
        codec: "mp3",
        container: "mp3",
        rate: 44_100,
        channels: 2,
    },
    Fixture {
        name: "mono_44k.ogg",
        ffmpeg_args: &["-ar", "44100", "-c:a", "libvorbis", "-q:a", "4"],
        stereo: false,
        codec: "vorbis",
        container: "ogg",
        rate: 44_100,
        channels: 1,
    },
    Fixture {
        name: "stereo_44k.m4a",
        ffmpeg_args: &["-ar", "44100", "-c:a", "aac", "-b:a", "96k"],
        stereo: true,
        codec: "aac",
        container: "mp4",
        rate: 44_100,
        channels: 2,
    },
    Fixture {
        name: "mono.opus",
        ffmpeg_args: &["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
        stereo: false,
        codec: "opus",
        container: "ogg",
        rate: 48_000,
        channels: 1,
    },
    Fixture {
        name: "stereo.webm",
        ffmpeg_args: &["-c:a", "libopus", "-b:a", "48k"],
        stereo: true,
        codec: "opus",
        container: "webm",
        rate: 48_000,
        channels: 2,
    },
    Fixture {
        name: "stereo_opus.mp4",
        ffmpeg_args: &["-c:a", "libopus", "-b:a", "48k"],
        stereo: true,
        codec: "opus",
        container: "mp4",
        rate: 48_000,
        channels: 2,
    },
];

struct Generated {
    dir: tempfile::TempDir,
}

impl Generated {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("reading fixture {name}: {e}"))
    }
}

fn run_tool(program: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {SETUP_HINT}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let mut all = vec!["-nostdin", "-hide_banner", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    run_tool("ffmpeg", &all)
}

/// Generates every fixture once per test process.
fn generated() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let speech = path("speech.wav");
        run_tool(
            "espeak-ng",
            &[
                "-v",
                "en",
                "-s",
                "170",
                "-w",
                &speech,
                "Speech mill turns raw audio into training data for speech models.",
            ],
        );
        let frames = (SOURCE_S * f64::from(SOURCE_RATE)) as u64;
        let fit =
            format!("aresample={SOURCE_RATE},apad=whole_len={frames},atrim=end_sample={frames}");
        let mono = path("source_mono.wav");
        ffmpeg(&[
            "-i",
            &speech,
            "-af",
            &fit,
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            &mono,
        ]);
        // Stereo with different channels: speech left, a quiet 300 Hz tone right.
        let stereo = path("source_stereo.wav");
        let graph = format!(
            "sine=f=300:r={SOURCE_RATE}:d={SOURCE_S}[t];[0:a][t]amerge=inputs=2,{fit}[out]"
        );
        ffmpeg(&[
            "-i",
            &mono,
            "-filter_complex",
            &graph,
            "-map",
            "[out]",
            "-c:a",
            "pcm_s16le",
            &stereo,
        ]);
        for fixture in FIXTURES {
            let input = if fixture.stereo { &stereo } else { &mono };
            let out = path(fixture.name);
            let mut args = vec!["-i", input.as_str()];
            args.extend_from_slice(fixture.ffmpeg_args);
            args.push(&out);
            ffmpeg(&args);
        }
        Generated { dir }
    })
}

/// ffmpeg's own 16 kHz mono decode of a file.
fn ffmpeg_16k(path: &Path) -> Vec<f32> {
    let path = path.to_string_lossy();
    let raw = ffmpeg(&["-i", &path, "-ac", "1", "-ar", "16000", "-f", "s16le", "-"]);
    raw.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

fn decode_to_vec(path: &Path, opts: &DecodeOptions) -> Result<(AudioInfo, Vec<f32>), DecodeError> {
    let mut samples = Vec::new();
    let info = decode_file_16k(path, opts, |chunk| samples.extend_from_slice(chunk))?;
    Ok((info, samples))
}

/// Normalised cross-correlation of `a` against `b` shifted by `lag`.
fn ncc_at(a: &[f32], b: &[f32], lag: isize, step: usize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    let mut i = 0usize;
    while i < a.len() {
        let j = i as isize + lag;
        if j >= 0 && (j as usize) < b.len() {
            let (x, y) = (f64::from(a[i]), f64::from(b[j as usize]));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        i += step;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// The best correlation within ±`max_lag` samples and the lag it occurs at
/// (a coarse search on every 4th sample, then a fine one around its peak).
fn best_alignment(a: &[f32], b: &[f32], max_lag: usize) -> (f64, isize) {
    let max_lag = max_lag as isize;
    let coarse = (-max_lag..=max_lag)
        .step_by(2)
        .map(|lag| (ncc_at(a, b, lag, 4), lag))
        .fold((f64::MIN, 0), |best, x| if x.0 > best.0 { x } else { best });
    (coarse.1 - 4..=coarse.1 + 4)
        .map(|lag| (ncc_at(a, b, lag, 1), lag))
        .fold((f64::MIN, 0), |best, x| if x.0 > best.0 { x } else { best })
}

fn fixture(name: &str) -> &'static Fixture {
    FIXTURES
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// Decodes a fixture and checks it against its expectations and ffmpeg's decode.
fn check_decodes_like_ffmpeg(name: &str) {
    let fx = fixture(name);
    let path = generated().path(name);
    let (info, ours) = decode_to_vec(&path, &DecodeOptions::default())
        .unwrap_or_else(|e| panic!("{name}: rejected ({}): {e}", e.reason_code()));
    assert_eq!(
        (info.codec, info.container, info.sample_rate, info.channels),
        (fx.codec, fx.container, fx.rate, fx.channels),
        "{name}: {info:?}"
    );
    assert!(
        (info.duration_s - SOURCE_S).abs() < 0.05,
        "{name}: duration {} s, expected {SOURCE_S} s",
        info.duration_s
    );
    assert!(!info.truncated, "{name}: flagged truncated: {info:?}");
    assert_eq!(
        info.samples_16k,
        ours.len() as u64,
        "{name}: reported vs produced 16 kHz samples"
    );
    let expected_16k = (info.duration_s * 16_000.0).round() as i64;
    assert!(
        (ours.len() as i64 - expected_16k).abs() <= 1,
        "{name}: {} samples for {} s",
        ours.len(),
        info.duration_s
    );

    // Like ffmpeg's decode of the same file (ffmpeg shifts MP4 Opus by a few ms)...
    let reference = ffmpeg_16k(&path);
    assert!(
        (ours.len() as i64 - reference.len() as i64).abs() <= 800,
        "{name}: {} samples, ffmpeg {}",
        ours.len(),
        reference.len()
    );
    let (ncc, lag) = best_alignment(&ours, &reference, 800);
    assert!(
        ncc > 0.95,
        "{name}: correlation with ffmpeg {ncc:.4} (lag {lag})"
    );
    // ...and aligned with the source, sample for sample.
    let source = generated().path(if fx.stereo {
        "source_stereo.wav"
    } else {
        "source_mono.wav"
    });
    let (ncc, lag) = best_alignment(&ours, &ffmpeg_16k(&source), 800);
    assert!(
        ncc > 0.95 && lag.abs() <= 1,
        "{name}: shifted {lag} samples against the source (ncc {ncc:.4})"
    );

    let probed = probe_file(&path, &DecodeOptions::default()).expect("probe");
    assert_eq!(probed, info, "{name}: probe and decode disagree");
}

macro_rules! decodes_like_ffmpeg {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            check_decodes_like_ffmpeg($name);
        }
    )*};
}

decodes_like_ffmpeg! {
    wav_s16_at_16k_passes_through_like_ffmpeg => "s16_16k.wav",
    wav_f32_decodes_like_ffmpeg => "f32_22k.wav",
    wav_mulaw_decodes_like_ffmpeg => "mulaw_8k.wav",
    wav_alaw_decodes_like_ffmpeg => "alaw_8k.wav",
    wav_44k_stereo_is_downmixed_like_ffmpeg => "s16_44k_stereo.wav",
    flac_decodes_like_ffmpeg => "mono_48k.flac",
    mp3_decodes_gaplessly_like_ffmpeg => "stereo_44k.mp3",
    ogg_vorbis_decodes_like_ffmpeg => "mono_44k.ogg",
    m4a_aac_decodes_like_ffmpeg => "stereo_44k.m4a",
    ogg_opus_decodes_like_ffmpeg => "mono.opus",
    webm_opus_decodes_like_ffmpeg => "stereo.webm",
    mp4_opus_decodes_like_ffmpeg => "stereo_opus.mp4",
}

#[test]
fn ogg_opus_honours_pre_skip_and_end_trim_exactly() {
    let info =
        probe_file(generated().path("mono.opus"), &DecodeOptions::default()).expect("decodes");
    assert_eq!(info.frames, (SOURCE_S * 48_000.0) as u64, "{info:?}");
}

#[test]
fn m4a_aac_priming_and_padding_are_trimmed_by_the_edit_list() {
    let info = probe_file(
        generated().path("stereo_44k.m4a"),
        &DecodeOptions::default(),
    )
    .expect("decodes");
    assert_eq!(info.frames, (SOURCE_S * 44_100.0) as u64, "{info:?}");
}

#[test]
fn s16le_output_is_the_rounded_f32_output() {
    let path = generated().path("mono_48k.flac");
    let (_, floats) = decode_to_vec(&path, &DecodeOptions::default()).expect("decodes");
    let mut bytes = Vec::new();
    let info = decode_file_to_s16le(&path, &DecodeOptions::default(), &mut bytes).expect("decodes");
    assert_eq!(bytes.len() as u64, info.samples_16k * 2);
    let ints: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    for (i, (&f, &s)) in floats.iter().zip(&ints).enumerate() {
        assert!(
            (f * 32768.0 - f32::from(s)).abs() <= 0.5 + 1e-3,
            "sample {i}: {f} vs {s}"
        );
    }
}

#[test]
fn in_memory_blobs_decode_like_files() {
    let name = "stereo_44k.mp3";
    let from_file = probe_file(generated().path(name), &DecodeOptions::default()).expect("file");
    let from_blob = probe_reader(
        Cursor::new(generated().bytes(name)),
        &DecodeOptions::default(),
    )
    .expect("blob");
    assert_eq!(from_file, from_blob);
}

#[test]
fn the_extension_is_only_a_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lying = dir.path().join("really_flac.mp3");
    std::fs::write(&lying, generated().bytes("mono_48k.flac")).expect("write");
    let info = probe_file(&lying, &DecodeOptions::default()).expect("decodes");
    assert_eq!((info.codec, info.container), ("flac", "flac"));
}

#[test]
fn chained_ogg_streams_decode_end_to_end() {
    let mut bytes = generated().bytes("mono_44k.ogg");
    bytes.extend(generated().bytes("mono.opus"));
    let result = probe_reader(Cursor::new(bytes), &DecodeOptions::default());
    let info = result.expect("chained stream decodes");
    assert!((info.duration_s - 2.0 * SOURCE_S).abs() < 0.1, "{info:?}");
}

// ---- rejections -------------------------------------------------------------------

fn reason(result: Result<AudioInfo, DecodeError>) -> &'static str {
    match result {
        Ok(info) => panic!("accepted: {info:?}"),
        Err(e) => {
            // The human message is one line.
            assert!(!e.to_string().contains('\n'), "multi-line message: {e}");
            e.reason_code()
        }
    }
}

fn probe_bytes(bytes: Vec<u8>) -> Result<AudioInfo, DecodeError> {
    probe_reader(Cursor::new(bytes), &DecodeOptions::default())
}

/// A canonical 44-byte-header WAV.
fn wav(format_tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block_align = channels * bits / 8;
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&format_tag.to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    w.extend_from_slice(&block_align.to_le_bytes());
    w.extend_from_slice(&bits.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(data);
    w
}

fn float_wav_with(bad: f32) -> Vec<u8> {
    let mut samples = vec![0.25f32; 4000];
    samples[3000] = bad;
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav(3, 1, 16_000, 32, &data)
}

#[test]
fn empty_file_is_rejected_as_zero_length() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").expect("write");
    assert_eq!(
        reason(probe_file(&empty, &DecodeOptions::default())),
        "zero_length"
    );
}

#[test]
fn wav_without_samples_is_rejected_as_zero_length() {
    assert_eq!(
        reason(probe_bytes(wav(1, 1, 16_000, 16, &[]))),
        "zero_length"
    );
}

#[test]
fn wav_with_zero_channels_is_rejected_as_zero_channels_or_rate() {
    assert_eq!(
        reason(probe_bytes(wav(1, 0, 16_000, 16, &[0; 64]))),
        "zero_channels_or_rate"
    );
}

#[test]
fn wav_with_zero_sample_rate_is_rejected_as_zero_channels_or_rate() {
    assert_eq!(
        reason(probe_bytes(wav(1, 1, 0, 16, &[0; 64]))),
        "zero_channels_or_rate"
    );
}

#[test]
fn nan_float_wav_is_rejected_as_non_finite() {
    let err = probe_bytes(float_wav_with(f32::NAN)).expect_err("NaN accepted");
    assert_eq!(err.reason_code(), "non_finite_samples");
    assert!(
        matches!(err, DecodeError::NonFiniteSamples { at_s } if (at_s - 3000.0 / 16_000.0).abs() < 1e-9)
    );
}

#[test]
fn infinite_float_wav_is_rejected_as_non_finite() {
    assert_eq!(
        reason(probe_bytes(float_wav_with(f32::NEG_INFINITY))),
        "non_finite_samples"
    );
}

#[test]
fn file_longer_than_max_is_rejected_as_too_long() {
    let path = generated().path("stereo_44k.mp3");
    let opts = DecodeOptions {
        max_duration_s: Some(1.0),
        ..DecodeOptions::default()
    };
    let mut produced = 0usize;
    let err = decode_file_16k(&path, &opts, |chunk| produced += chunk.len()).expect_err("accepted");
    assert_eq!(err.reason_code(), "too_long");
    // It stopped as soon as the limit was passed, not at the end of the file.
    assert!(
        produced <= 17_000,
        "produced {produced} samples before rejecting"
    );
    assert!(
        probe_file(
            &path,
            &DecodeOptions {
                max_duration_s: Some(5.0),
                ..opts
            }
        )
        .is_ok()
    );
}

#[test]
fn truncated_flac_header_is_rejected_as_corrupt() {
    let mut bytes = generated().bytes("mono_48k.flac");
    bytes.truncate(20);
    assert_eq!(reason(probe_bytes(bytes)), "corrupt");
}

#[test]
fn wav_cut_right_after_its_header_is_rejected_as_truncated() {
    let mut bytes = generated().bytes("s16_16k.wav");
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    bytes.truncate(data + 8);
    assert_eq!(reason(probe_bytes(bytes)), "truncated");
}

#[test]
fn truncated_mp3_keeps_its_decodable_prefix() {
    let mut bytes = generated().bytes("stereo_44k.mp3");
    bytes.truncate(bytes.len() / 2);
    let info = probe_bytes(bytes).expect("prefix accepted");
    assert!(info.truncated, "{info:?}");
    assert!((info.duration_s - SOURCE_S / 2.0).abs() < 0.3, "{info:?}");
}

#[test]
fn truncated_wav_is_rejected_when_truncation_is_not_accepted() {
    let mut bytes = generated().bytes("s16_44k_stereo.wav");
    bytes.truncate(bytes.len() / 2);
    let opts = DecodeOptions {
        reject_truncated: true,
        ..DecodeOptions::default()
    };
    assert_eq!(
        reason(probe_reader(Cursor::new(bytes.clone()), &opts)),
        "truncated"
    );
    let info = probe_bytes(bytes).expect("prefix accepted by default");
    assert!(
        info.truncated && (info.duration_s - SOURCE_S / 2.0).abs() < 0.01,
        "{info:?}"
    );
}

#[test]
fn mp3_with_garbage_in_the_middle_still_decodes() {
    let mut bytes = generated().bytes("stereo_44k.mp3");
    let mid = bytes.len() / 2;
    bytes[mid..mid + 1500].fill(0x55);
    let info = probe_bytes(bytes).expect("damaged middle tolerated");
    assert!((info.duration_s - SOURCE_S).abs() < 0.2, "{info:?}");
}

#[test]
fn mostly_garbage_mp3_is_rejected_as_corrupt() {
    let mut bytes = generated().bytes("stereo_44k.mp3");
    let len = bytes.len();
    // Keep the header frames, then flip bits all over the audio data.
    for (i, b) in bytes.iter_mut().enumerate().skip(2000) {
        if i % 7 < 5 {
            *b ^= 0xA5;
        }
    }
    assert!(len > 2000);
    let code = reason(probe_bytes(bytes));
    assert!(code == "corrupt" || code == "truncated", "{code}");
}

#[test]
fn text_file_is_rejected_as_unsupported_format() {
    let text = b"This is not audio, just some words in a text file.\n".repeat(20);
    assert_eq!(reason(probe_bytes(text)), "unsupported_format");
}

#[test]
fn alac_in_m4a_is_rejected_as_unsupported_codec() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("alac.m4a");
    let src = generated().path("source_mono.wav");
    ffmpeg(&[
        "-i",
        &src.to_string_lossy(),
        "-t",
        "0.5",
        "-c:a",
        "alac",
        &out.to_string_lossy(),
    ]);
    assert_eq!(
        reason(probe_file(&out, &DecodeOptions::default())),
        "unsupported_codec"
    );
}

#[test]
fn video_only_matroska_is_rejected_as_no_audio_track() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("video.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=d=0.2:s=32x32:r=5",
        "-c:v",
        "ffv1",
        &out.to_string_lossy(),
    ]);
    assert_eq!(
        reason(probe_file(&out, &DecodeOptions::default())),
        "no_audio_track"
    );
}

#[test]
fn a_panic_inside_the_decoder_becomes_a_quiet_corrupt_rejection() {
    let err = super::decode::guarded("the demuxer", || -> u32 {
        panic!("index out of bounds\nsecond line")
    })
    .expect_err("panic caught");
    assert_eq!(err.reason_code(), "corrupt");
    let message = err.to_string();
    assert!(
        message.contains("the demuxer panicked at ") && message.contains("tests.rs"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn missing_file_is_rejected_as_io() {
    assert_eq!(
        reason(probe_file(
            "/nonexistent/speechmill/audio.wav",
            &DecodeOptions::default()
        )),
        "io"
    );
}

#[test]
fn every_reason_code_is_listed() {
    let errors = [
        DecodeError::Io(std::io::Error::other("x")),
        DecodeError::ZeroLength("x"),
        DecodeError::ZeroChannelsOrRate {
            channels: 0,
            sample_rate: 0,
        },
        DecodeError::UnsupportedFormat("x".into()),
        DecodeError::NoAudioTrack,
        DecodeError::UnsupportedCodec("x".into()),
        DecodeError::Corrupt("x".into()),
        DecodeError::Truncated("x".into()),
        DecodeError::NonFiniteSamples { at_s: 0.0 },
        DecodeError::TooLong { max_s: 1.0 },
    ];
    let codes: Vec<_> = errors.iter().map(DecodeError::reason_code).collect();
    assert_eq!(codes, REASON_CODES);
}

// ---- robustness ---------------------------------------------------------------------

/// Any input decodes to a result or a listed reason, quickly, without panicking.
fn survives(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let result = decode_reader_16k(Cursor::new(bytes), &DecodeOptions::default(), |_| {});
    let elapsed = started.elapsed();
    prop_assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    if let Err(e) = result {
        prop_assert!(
            REASON_CODES.contains(&e.reason_code()),
            "unlisted reason {}",
            e.reason_code()
        );
    }
    Ok(())
}

/// A damaged copy of a valid file: cut at some point, and/or with bytes overwritten.
fn damaged(name: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let len = generated().bytes(name).len();
    (
        0.0f64..=1.0,
        prop::collection::vec((0..len, any::<u8>()), 0..24),
        any::<bool>(),
    )
        .prop_map(move |(cut, flips, truncate)| {
            let mut bytes = generated().bytes(name);
            for (at, value) in flips {
                bytes[at] = value;
            }
            if truncate {
                bytes.truncate((cut * len as f64) as usize);
            }
            bytes
        })
}

/// 64 cases per property by default (a few seconds each); `PROPTEST_CASES=5000` for a
/// deeper fuzzing run.
fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn random_bytes_never_panic_or_hang(bytes in prop::collection::vec(any::<u8>(), 0..8192)) {
        survives(bytes)?;
    }

    #[test]
    fn random_bytes_after_a_valid_magic_never_panic_or_hang(
        magic in prop::sample::select(vec![&b"RIFF\x24\0\0\0WAVEfmt "[..], b"fLaC", b"OggS\0\x02", b"ID3\x04\0\0", &[0x1A, 0x45, 0xDF, 0xA3][..], b"\0\0\0\x20ftypM4A "]),
        tail in prop::collection::vec(any::<u8>(), 0..8192),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend(tail);
        survives(bytes)?;
    }

    #[test]
    fn damaged_wav_never_panics_or_hangs(bytes in damaged("s16_44k_stereo.wav")) { survives(bytes)?; }

    #[test]
    fn damaged_float_wav_never_panics_or_hangs(bytes in damaged("f32_22k.wav")) { survives(bytes)?; }

    #[test]
    fn damaged_mulaw_wav_never_panics_or_hangs(bytes in damaged("mulaw_8k.wav")) { survives(bytes)?; }

    #[test]
    fn damaged_flac_never_panics_or_hangs(bytes in damaged("mono_48k.flac")) { survives(bytes)?; }

    #[test]
    fn damaged_mp3_never_panics_or_hangs(bytes in damaged("stereo_44k.mp3")) { survives(bytes)?; }

    #[test]
    fn damaged_vorbis_never_panics_or_hangs(bytes in damaged("mono_44k.ogg")) { survives(bytes)?; }

    #[test]
    fn damaged_m4a_never_panics_or_hangs(bytes in damaged("stereo_44k.m4a")) { survives(bytes)?; }

    #[test]
    fn damaged_ogg_opus_never_panics_or_hangs(bytes in damaged("mono.opus")) { survives(bytes)?; }

    #[test]
    fn damaged_webm_opus_never_panics_or_hangs(bytes in damaged("stereo.webm")) { survives(bytes)?; }
}
