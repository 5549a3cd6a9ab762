//! ingest → segment on real speech, silence and broken files: every source is in
//! `segment` or `segment_rejects`, segments are bounded, ordered and carry their
//! audio, a changed parameter or VAD model reruns `segment` only; and Silero's speech
//! regions agree with faster-whisper's (an independent implementation; its venv
//! comes from `bash scripts/peers.sh`, and `SPEECHMILL_SKIP_PEERS=1` skips that test
//! with a message, never silently).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

const CLIPS: [&str; 5] = [
    "sense_and_sensibility_01_austen_64kb-0870",
    "sense_and_sensibility_01_austen_64kb-0880",
    "sense_and_sensibility_01_austen_64kb-0890",
    "sense_and_sensibility_01_austen_64kb-0920",
    "sense_and_sensibility_01_austen_64kb-0930",
];

const ESPEAK_TEXT: &str = "The quick brown fox jumps over the lazy dog. \
    Speech segmentation cuts long recordings into short pieces.";

fn run_ffmpeg(args: &[&str]) {
    require_program("ffmpeg");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

/// LibriVox clips, an espeak-ng clip, a 70 s FLAC (44.1 kHz stereo) of the clips
/// with pauses, a silent WAV and two broken files. Returns the number of files.
fn make_audio(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    for clip in CLIPS {
        std::fs::copy(
            Path::new(LIBRIVOX).join(format!("{clip}.wav")),
            dir.join(format!("{clip}.wav")),
        )
        .unwrap_or_else(|e| panic!("{clip}: {e}: run `bash scripts/setup.sh` first"));
    }
    require_program("espeak-ng");
    let status = Command::new("espeak-ng")
        .args(["-v", "en", "-w"])
        .arg(dir.join("espeak.wav"))
        .arg(ESPEAK_TEXT)
        .status()
        .unwrap();
    assert!(status.success());

    // The clips three times over with 1.5 s pauses: longer than max_segment_s.
    let mut inputs: Vec<String> = Vec::new();
    let mut filter = String::new();
    let mut n = 0;
    for _ in 0..3 {
        for clip in CLIPS {
            inputs.push("-i".into());
            inputs.push(format!("{LIBRIVOX}/{clip}.wav"));
            filter.push_str(&format!("[{n}:a]apad=pad_dur=1.5[a{n}];"));
            n += 1;
        }
    }
    let labels: String = (0..n).map(|i| format!("[a{i}]")).collect();
    filter.push_str(&format!("{labels}concat=n={n}:v=0:a=1[out]"));
    let long = dir.join("long.flac");
    let mut args: Vec<&str> = inputs.iter().map(String::as_str).collect();
    args.extend([
        "-filter_complex",
        &filter,
        "-map",
        "[out]",
        "-ar",
        "44100",
        "-ac",
        "2",
    ]);
    args.push(long.to_str().unwrap());
    run_ffmpeg(&args);

    let silent = dir.join("silent.wav");
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-t",
        "5",
        silent.to_str().unwrap(),
    ]);
    // Broken: random bytes named .mp3, and a WAV cut inside its header.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("noise.mp3"), &noise).unwrap();
    let wav = std::fs::read(dir.join(format!("{}.wav", CLIPS[0]))).unwrap();
    std::fs::write(dir.join("cut.wav"), &wav[..30]).unwrap();
    CLIPS.len() + 5
}

fn segment_dag(dir: &Path) -> String {
    write_dag(
        dir,
        "dag.toml",
        "[nodes.ingest]\nstage = \"ingest\"\nparams = { paths = [\"audio/*\"] }\n\n\
         [nodes.segment]\nstage = \"segment\"\ninputs = [\"ingest\"]\n",
    )
    .to_str()
    .unwrap()
    .to_string()
}

/// `uri → value` from a two-column query.
fn by_uri(dir: &Path, store: &str, query: &str) -> BTreeMap<String, String> {
    sql_csv(dir, store, query)[1..]
        .iter()
        .map(|l| {
            let (u, v) = l.split_once(',').unwrap();
            (u.rsplit('/').next().unwrap().to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn speech_is_segmented_and_every_source_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let files = make_audio(&dir.path().join("audio"));
    let dag = segment_dag(dir.path());
    let d = dir.path();
    ok(speechmill(d).args(["run", &dag, "--store", "store"]));

    // Every source is in `segment` or `segment_rejects`, never both.
    let ingested = sql_number(d, "store", "SELECT count(*) FROM ingest");
    assert_eq!(ingested, files as i64, "ingest keeps every non-empty file");
    let with_segments = sql_number(d, "store", "SELECT count(DISTINCT source_id) FROM segment");
    let rejected = sql_number(d, "store", "SELECT count(*) FROM segment_rejects");
    assert_eq!(with_segments + rejected, ingested, "in = out + rejected");
    let both = sql_number(
        d,
        "store",
        "SELECT count(*) FROM segment_rejects r WHERE r.source_id IN (SELECT source_id FROM segment)",
    );
    assert_eq!(both, 0);

    // Silence is `no_speech`; the broken files keep the decoder's reason.
    let reasons = by_uri(
        d,
        "store",
        "SELECT uri, reason FROM segment_rejects ORDER BY uri",
    );
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons["silent.wav"], "no_speech");
    for broken in ["noise.mp3", "cut.wav"] {
        let code = reasons[broken].split(':').next().unwrap();
        assert!(
            ["corrupt", "unsupported_format", "truncated", "zero_length"].contains(&code),
            "{broken}: {}",
            reasons[broken]
        );
    }
    let inspect = ok(speechmill(d).args(["inspect", "--store", "store"]));
    assert!(inspect.contains("no_speech"), "{inspect}");

    // Segments: within 30 s, non-empty, in order, not overlapping, numbered from 0,
    // with exactly their span of 16 kHz PCM16 audio.
    let bad = sql_number(
        d,
        "store",
        "SELECT count(*) FROM segment WHERE duration_s > 30.0 OR duration_s <= 0
            OR abs(end_s - start_s - duration_s) > 1e-9 OR start_s < 0
            OR end_s > source_duration_s + 0.001
            OR abs(length(encode(audio, 'hex')) / 4.0 - (end_s - start_s) * 16000) > 1
            OR speech_s > duration_s OR speech_prob < 0 OR speech_prob > 1
            OR NOT starts_with(segment_id, concat(source_id, ':'))",
    );
    assert_eq!(bad, 0, "segments breaking an invariant");
    let overlaps = sql_number(
        d,
        "store",
        "SELECT count(*) FROM (SELECT start_s, segment_index,
                lag(end_s) OVER (PARTITION BY source_id ORDER BY start_s) AS prev_end,
                row_number() OVER (PARTITION BY source_id ORDER BY start_s) - 1 AS k
            FROM segment) WHERE start_s < prev_end OR segment_index <> k",
    );
    assert_eq!(overlaps, 0);
    assert_eq!(
        sql_number(
            d,
            "store",
            "SELECT count(*) - count(DISTINCT segment_id) FROM segment"
        ),
        0
    );

    // Segments cover the speech: speech-only clips are mostly inside segments.
    let coverage = by_uri(
        d,
        "store",
        "SELECT uri, sum(duration_s) / max(source_duration_s) FROM segment GROUP BY uri ORDER BY uri",
    );
    for (uri, cover) in &coverage {
        let cover: f64 = cover.parse().unwrap();
        let min = if uri == "long.flac" { 0.7 } else { 0.8 };
        assert!(cover >= min, "{uri}: segments cover {cover:.2} of it");
    }
    assert_eq!(coverage.len(), CLIPS.len() + 2, "{coverage:?}");
    // The 70 s file needs several segments; the short clips are one each.
    let counts = by_uri(
        d,
        "store",
        "SELECT uri, count(*) FROM segment GROUP BY uri ORDER BY uri",
    );
    assert!(
        counts["long.flac"].parse::<i64>().unwrap() >= 3,
        "{counts:?}"
    );
    for clip in CLIPS {
        assert_eq!(counts[&format!("{clip}.wav")], "1", "{counts:?}");
    }

    // The audio is the source's: the first clip's segment equals its samples.
    let (start, end) = {
        let row = &sql_csv(
            d,
            "store",
            &format!(
                "SELECT start_s, end_s FROM segment WHERE uri LIKE '%{}.wav'",
                CLIPS[0]
            ),
        )[1];
        let (a, b) = row.split_once(',').unwrap();
        (a.parse::<f64>().unwrap(), b.parse::<f64>().unwrap())
    };
    let hex = sql_csv(
        d,
        "store",
        &format!(
            "SELECT encode(audio, 'hex') FROM segment WHERE uri LIKE '%{}.wav'",
            CLIPS[0]
        ),
    )[1]
    .clone();
    let wav = std::fs::read(Path::new(LIBRIVOX).join(format!("{}.wav", CLIPS[0]))).unwrap();
    let data_at = wav.windows(4).position(|w| w == b"data").unwrap() + 8;
    let (a, b) = (
        (start * 16000.0).round() as usize,
        (end * 16000.0).round() as usize,
    );
    let expected: String = wav[data_at + 2 * a..data_at + 2 * b]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert!(
        hex == expected,
        "segment audio differs from the source samples"
    );

    // A second store gets the same segments.
    ok(speechmill(d).args(["run", &dag, "--store", "again"]));
    let q = "SELECT segment_id, start_s, end_s, speech_prob, md5(audio) FROM segment ORDER BY segment_id";
    assert_eq!(sql_csv(d, "store", q), sql_csv(d, "again", q));
}

#[test]
fn a_changed_param_or_model_reruns_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("audio")).unwrap();
    for clip in &CLIPS[..2] {
        std::fs::copy(
            Path::new(LIBRIVOX).join(format!("{clip}.wav")),
            d.join("audio").join(format!("{clip}.wav")),
        )
        .unwrap();
    }
    let dag = segment_dag(d);
    ok(speechmill(d).args(["run", &dag, "--store", "store"]));
    let rerun = ok(speechmill(d).args(["run", &dag, "--store", "store"]));
    assert!(rerun.contains("0 node(s) ran, 2 cached"), "{rerun}");

    let set = ["--set", "segment.max_segment_s=2.5"];
    let plan = ok(speechmill(d)
        .args(["plan", &dag, "--store", "store"])
        .args(set));
    let line = |name: &str| {
        plan.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(line("ingest").contains("cached"), "{plan}");
    assert!(
        line("segment").contains("to-run") && line("segment").contains("max_segment_s"),
        "{plan}"
    );
    let out = ok(speechmill(d)
        .args(["run", &dag, "--store", "store"])
        .args(set));
    assert!(out.contains("1 node(s) ran, 1 cached"), "{out}");
    let longest: f64 = sql_csv(d, "store", "SELECT max(duration_s) FROM segment")[1]
        .parse()
        .unwrap();
    assert!(longest <= 2.5, "longest segment {longest} s");
    assert!(sql_number(d, "store", "SELECT count(*) FROM segment") > 2);

    // A bad value is a one-line error naming the parameter; nothing runs.
    let o = output(
        speechmill(d)
            .args(["run", &dag, "--store", "store"])
            .args(["--set", "segment.threshold=2"]),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("segment") && err.contains("`threshold`"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Another VAD model file (here: different bytes) reruns segment; no model at
    // all is a one-line error that says how to get it.
    let cache = d.join("cache");
    std::fs::create_dir_all(cache.join("models")).unwrap();
    let mut model = std::fs::read(cache_dir().join("models/silero_vad_sequence.onnx")).unwrap();
    model.push(0);
    std::fs::write(cache.join("models/silero_vad_sequence.onnx"), &model).unwrap();
    let plan = ok(speechmill(d)
        .env("SPEECHMILL_CACHE", &cache)
        .args(["plan", &dag, "--store", "store"]));
    let line = |name: &str| {
        plan.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(line("ingest").contains("cached"), "{plan}");
    assert!(line("segment").contains("to-run"), "{plan}");
    std::fs::remove_file(cache.join("models/silero_vad_sequence.onnx")).unwrap();
    let o = output(
        speechmill(d)
            .env("SPEECHMILL_CACHE", &cache)
            .args(["run", &dag, "--store", "store"]),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("silero_vad_sequence.onnx") && err.contains("bash scripts/setup.sh"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Speech regions (before padding, splitting and merging) of our Silero VAD + cut
/// against faster-whisper's `get_speech_timestamps` with the same settings. Needs the
/// peers venv (`bash scripts/peers.sh`); `SPEECHMILL_SKIP_PEERS=1` skips it.
#[test]
fn speech_regions_agree_with_faster_whisper() {
    use speechmill_stages::segment::cut::{CutParams, speech_regions};
    let Some(python) = peers_python("speech_regions_agree_with_faster_whisper") else {
        return;
    };
    let script = r#"
import json, sys, wave
import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps
opts = VadOptions(threshold=0.5, min_speech_duration_ms=250, min_silence_duration_ms=100, speech_pad_ms=0)
out = {}
for path in sys.argv[1:]:
    with wave.open(path) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    out[path] = [[t["start"], t["end"]] for t in get_speech_timestamps(a, opts)]
print(json.dumps(out))
"#;
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.wav");
    // A long file with pauses (16 kHz mono, so both sides read the same samples).
    let mut args: Vec<String> = Vec::new();
    for clip in CLIPS {
        args.extend(["-i".into(), format!("{LIBRIVOX}/{clip}.wav")]);
    }
    let filter: String = (0..CLIPS.len())
        .map(|i| format!("[{i}:a]apad=pad_dur=0.8[a{i}];"))
        .chain(std::iter::once(format!(
            "{}concat=n={}:v=0:a=1[out]",
            (0..CLIPS.len())
                .map(|i| format!("[a{i}]"))
                .collect::<String>(),
            CLIPS.len()
        )))
        .collect();
    args.extend(
        [
            "-filter_complex",
            &filter,
            "-map",
            "[out]",
            "-ar",
            "16000",
            "-ac",
            "1",
        ]
        .map(String::from),
    );
    args.push(long.to_str().unwrap().into());
    run_ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut paths: Vec<String> = CLIPS
        .iter()
        .map(|c| format!("{LIBRIVOX}/{c}.wav"))
        .collect();
    paths.push(long.to_str().unwrap().into());

    let o = output(Command::new(&python).arg("-c").arg(script).args(&paths));
    assert!(
        o.status.success(),
        "faster-whisper reference failed: {}",
        stderr(&o)
    );
    let reference: BTreeMap<String, Vec<(usize, usize)>> =
        serde_json::from_str(stdout(&o).trim()).unwrap();

    let vad = speechmill_models::SileroVad::new(&speechmill_models::SessionConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let params = CutParams {
        threshold: 0.5,
        neg_threshold: 0.35,
        min_speech: 4000,
        min_silence: 1600,
        pad: 0,
        max_segment: usize::MAX,
        max_gap: None,
    };
    let (mut total_ref, mut total_overlap, mut total_ours) = (0usize, 0usize, 0usize);
    for path in &paths {
        let mut samples = Vec::new();
        speechmill_stages::audio::decode_file_16k(path, &Default::default(), |c| {
            samples.extend(c.iter().map(|&s| (s * 32768.0).round() / 32768.0))
        })
        .unwrap();
        let probs = vad.probabilities(&samples).unwrap();
        let ours = speech_regions(&probs, samples.len(), &params);
        let theirs = &reference[path];
        let overlap: usize = ours
            .iter()
            .flat_map(|r| {
                theirs
                    .iter()
                    .map(move |&(s, e)| e.min(r.end).saturating_sub(s.max(r.start)))
            })
            .sum();
        let ref_len: usize = theirs.iter().map(|(s, e)| e - s).sum();
        let our_len: usize = ours.iter().map(|r| r.len()).sum();
        eprintln!(
            "{}: ours {:?}\n  faster-whisper {:?}",
            Path::new(path).file_name().unwrap().to_string_lossy(),
            ours.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(),
            theirs
        );
        assert!(
            (ours.len() as i64 - theirs.len() as i64).abs() <= 1 + theirs.len() as i64 / 5,
            "{path}: {} regions against {}",
            ours.len(),
            theirs.len()
        );
        total_ref += ref_len;
        total_ours += our_len;
        total_overlap += overlap;
    }
    // Intersection over union of speech time, over all files.
    let iou = total_overlap as f64 / (total_ref + total_ours - total_overlap) as f64;
    eprintln!("speech-time IoU against faster-whisper: {iou:.3}");
    assert!(iou > 0.9, "speech-time IoU {iou:.3}");
}
