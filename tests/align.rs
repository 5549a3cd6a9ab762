//! Forced alignment: the CTC aligner against a pure-Python port of torchaudio's
//! `forced_align` (tests/peers/forced_align_reference.py) on random emissions, and
//! the `align` stage on speech whose word times are known (words synthesized one by
//! one by espeak-ng and joined with known pauses), with true and shuffled texts.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use speechmill_models::ctc::{AlignError, forced_align, merge_tokens};

#[test]
fn ctc_aligner_equals_a_python_port_of_torchaudio_forced_align_on_random_emissions() {
    let Some(python) = peers_python("forced_align reference") else {
        return;
    };
    let script = repo_root().join("tests/peers/forced_align_reference.py");
    let out = output(Command::new(python).args([
        script.to_str().unwrap(),
        "--seed",
        "11",
        "--cases",
        "400",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (i, case) in cases.iter().enumerate() {
        let vocabulary = case["vocabulary"].as_u64().unwrap() as usize;
        let blank = case["blank"].as_u64().unwrap() as u32;
        let targets: Vec<u32> = case["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let emissions: Vec<f32> = case["emissions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let got = forced_align(&emissions, vocabulary, &targets, blank);
        let kind = case["kind"].as_str().unwrap();
        match case["error"].as_str() {
            Some(error) => {
                *seen.entry(format!("{kind}: {error}")).or_default() += 1;
                let matches = match error {
                    "too_short" => matches!(got, Err(AlignError::TooShort { .. })),
                    "out_of_range" => matches!(got, Err(AlignError::TokenOutOfRange { .. })),
                    "empty" => matches!(got, Err(AlignError::EmptyTarget)),
                    other => panic!("case {i}: unknown error {other}"),
                };
                assert!(
                    matches,
                    "case {i} ({kind}): the port says {error}, we say {got:?}"
                );
            }
            None => {
                *seen.entry(kind.to_string()).or_default() += 1;
                let got = got.unwrap_or_else(|e| panic!("case {i} ({kind}): {e}"));
                let path: Vec<u32> = case["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(got.labels, path, "case {i} ({kind}): paths differ");
                let scores: Vec<f32> = case["scores"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                assert_eq!(got.scores, scores, "case {i} ({kind}): scores differ");
                let spans = merge_tokens(&got.labels, &got.scores, blank);
                let expected = case["spans"].as_array().unwrap();
                assert_eq!(spans.len(), expected.len(), "case {i}: span counts differ");
                for (span, want) in spans.iter().zip(expected) {
                    assert_eq!(
                        (span.token, span.start, span.end, span.score),
                        (
                            want["token"].as_u64().unwrap() as u32,
                            want["start"].as_u64().unwrap() as usize,
                            want["end"].as_u64().unwrap() as usize,
                            want["score"].as_f64().unwrap() as f32
                        ),
                        "case {i}: spans differ"
                    );
                }
            }
        }
    }
    eprintln!("forced_align cases: {seen:?}");
    for kind in [
        "random",
        "repeats",
        "exact",
        "too_short: too_short",
        "out_of_range: out_of_range",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 20,
            "too few {kind} cases: {seen:?}"
        );
    }
}

/// Sentences in several languages: (language, text).
const SENTENCES: [(&str, &str); 8] = [
    ("en", "the committee will publish its findings next week"),
    ("en", "please keep the receipt until the repair is done"),
    ("en", "rain is expected over the hills this evening"),
    ("en", "she read the letter twice before answering"),
    ("de", "der zug nach berlin hat heute verspätung"),
    ("es", "el tren sale de la estación a las ocho"),
    ("fr", "le marché ouvre tous les jours à sept heures"),
    ("it", "la biblioteca resta aperta fino a sera"),
];

/// A word spoken alone by espeak-ng at 16 kHz, silence trimmed (1 % of its peak).
fn spoken_word(dir: &Path, language: &str, word: &str, n: usize) -> Vec<f32> {
    let raw = dir.join(format!("w{n}-22k.wav"));
    let wav = dir.join(format!("w{n}.wav"));
    let ok_status = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok_status(Command::new("espeak-ng").args(["-v", language, "-w", raw.to_str().unwrap(), word]));
    ok_status(Command::new("sox").args([
        raw.to_str().unwrap(),
        "-r",
        "16000",
        wav.to_str().unwrap(),
    ]));
    let (samples, rate) = read_wav_pcm16(&wav);
    assert_eq!(rate, 16_000);
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    let loud = |s: &&f32| s.abs() > 0.01 * peak;
    let first = samples.iter().position(|s| loud(&s)).unwrap_or(0);
    let last = samples.iter().rposition(|s| loud(&s)).unwrap_or(0);
    samples[first..=last].to_vec()
}

/// Writes each sentence as one file of its words joined by pauses of 150–450 ms,
/// 0.5 s of silence around; a JSONL list of (uri, language, text); and each file's
/// true word times.
fn known_word_times(dir: &Path) -> (std::path::PathBuf, Vec<Vec<(f64, f64)>>) {
    let mut truth = Vec::new();
    let mut list = String::new();
    let mut n = 0;
    for (i, (language, text)) in SENTENCES.iter().enumerate() {
        let mut audio = vec![0f32; 8000];
        let mut times = Vec::new();
        for (j, word) in text.split_whitespace().enumerate() {
            if j > 0 {
                let gap = 2400 + ((i * 7 + j * 13) % 5) * 1200;
                audio.extend(std::iter::repeat_n(0.0, gap));
            }
            let spoken = spoken_word(dir, language, word, n);
            n += 1;
            let start = audio.len() as f64 / 16_000.0;
            audio.extend(&spoken);
            times.push((start, audio.len() as f64 / 16_000.0));
        }
        audio.extend(std::iter::repeat_n(0.0, 8000));
        let path = dir.join(format!("sentence{i}.wav"));
        write_wav_16k(&path, &audio);
        list.push_str(
            &serde_json::json!({ "uri": path.to_str().unwrap(), "language": language, "text": text })
                .to_string(),
        );
        list.push('\n');
        truth.push(times);
    }
    let list_path = dir.join("list.jsonl");
    std::fs::write(&list_path, list).unwrap();
    (list_path, truth)
}

fn align_dag(dir: &Path, list: &Path, method: &str) -> std::path::PathBuf {
    write_dag(
        dir,
        &format!("align-{method}.toml"),
        &format!(
            r#"[nodes.ingest]
stage = "ingest"
params = {{ paths = ["{}"] }}

[nodes.segment]
stage = "segment"
inputs = ["ingest"]

[nodes.align]
stage = "align"
inputs = ["segment"]
params = {{ text_column = "text", method = "{method}" }}

[nodes.resegment]
stage = "resegment"
inputs = ["align", "segment"]
params = {{ min_s = 0.5, max_s = 2.5 }}
"#,
            list.display()
        ),
    )
}

/// A word as aligned: the word, its start and end (s).
type Word = (String, f64, f64);

/// Per source file: its uri, aligned words and align_score.
fn aligned(dir: &Path, store: &str) -> Vec<(String, Vec<Word>, f64)> {
    let rows = sql_json(
        dir,
        store,
        "SELECT uri, align_score, words FROM align ORDER BY uri",
    );
    rows.iter()
        .map(|r| {
            let words = r["words"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    (
                        w["word"].as_str().unwrap().to_string(),
                        w["start_s"].as_f64().unwrap(),
                        w["end_s"].as_f64().unwrap(),
                    )
                })
                .collect();
            (
                r["uri"].as_str().unwrap().to_string(),
                words,
                r["align_score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Runs the alignment DAG with `method` on the sentences of known word times: the
/// store (in `dir`) and the median and p90 absolute boundary error (s).
fn boundary_errors(dir: &Path, method: &str) -> (String, f64, f64) {
    require_program("espeak-ng");
    require_program("sox");
    let (list, truth) = known_word_times(dir);
    let dag = align_dag(dir, &list, method);
    let store = format!("store-{method}");
    ok(speechmill(dir).args(["run", dag.to_str().unwrap(), "--store", &store]));
    assert_eq!(
        sql_number(dir, &store, "SELECT count(*) FROM align_rejects"),
        0
    );
    assert_eq!(
        sql_csv(dir, &store, "SELECT DISTINCT method FROM align")[1..],
        [method]
    );
    let got = aligned(dir, &store);
    assert_eq!(got.len(), SENTENCES.len(), "{got:?}");
    let mut errors = Vec::new();
    let mut bias = (0.0, 0.0, 0.0);
    for (uri, words, _) in &got {
        let i: usize = uri
            .rsplit("sentence")
            .next()
            .unwrap()
            .trim_end_matches(".wav")
            .parse()
            .unwrap();
        let expected: Vec<&str> = SENTENCES[i].1.split_whitespace().collect();
        let written: Vec<&str> = words.iter().map(|(w, _, _)| w.as_str()).collect();
        assert_eq!(written, expected, "{uri}: words as written, in order");
        for ((_, start, end), (true_start, true_end)) in words.iter().zip(&truth[i]) {
            errors.push((start - true_start).abs());
            errors.push((end - true_end).abs());
            bias.0 += start - true_start;
            bias.1 += end - true_end;
            bias.2 += 1.0;
        }
    }
    let (median, p90) = (quantile(errors.clone(), 0.5), quantile(errors, 0.9));
    eprintln!(
        "{method} word boundaries: median error {:.0} ms, p90 {:.0} ms; mean start {:+.0} ms, end {:+.0} ms",
        median * 1e3,
        p90 * 1e3,
        bias.0 / bias.2 * 1e3,
        bias.1 / bias.2 * 1e3
    );
    (store, median, p90)
}

#[test]
fn whisper_alignment_places_the_given_words_near_their_true_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let (_, median, p90) = boundary_errors(dir.path(), "whisper");
    // DTW over the alignment heads: 20 ms frames, less exact than CTC (bench-align).
    assert!(
        median < 0.15 && p90 < 0.6,
        "median {median:.3} s, p90 {p90:.3} s"
    );
}

#[test]
fn ctc_alignment_places_words_near_their_true_boundaries_in_several_languages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, median, p90) = boundary_errors(dir.path(), "ctc");
    assert!(
        median < 0.04 && p90 < 0.1,
        "median {median:.3} s, p90 {p90:.3} s"
    );

    // resegment: pieces of at most 2.5 s at word boundaries that together hold each
    // parent's words in order, with their own audio.
    let pieces = sql_json(
        dir.path(),
        &store,
        "SELECT segment_id, parent_segment_id, piece_index, start_s, end_s, duration_s, text, \
         length(encode(audio, 'hex')) / 2 AS bytes, a.words AS parent_words, r.words AS words \
         FROM resegment r JOIN (SELECT segment_id AS parent, words FROM align) a \
         ON r.parent_segment_id = a.parent ORDER BY parent_segment_id, piece_index",
    );
    assert!(
        pieces.len() > SENTENCES.len(),
        "no segment was cut: {}",
        pieces.len()
    );
    let mut rebuilt: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in &pieces {
        let (id, parent) = (
            p["segment_id"].as_str().unwrap(),
            p["parent_segment_id"].as_str().unwrap(),
        );
        assert_eq!(id, format!("{parent}.{}", p["piece_index"]), "{p}");
        let duration = p["duration_s"].as_f64().unwrap();
        let words: Vec<String> = p["words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["word"].as_str().unwrap().to_string())
            .collect();
        assert!(duration <= 2.5 || words.len() == 1, "{p}");
        assert_eq!(p["text"].as_str().unwrap(), words.join(" "));
        let bytes = p["bytes"].as_i64().unwrap() as f64;
        assert!(
            (bytes - duration * 32_000.0).abs() <= 64.0,
            "{p}: {bytes} bytes"
        );
        rebuilt.entry(parent.to_string()).or_default().extend(words);
        let parent_words: Vec<String> = p["parent_words"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["word"].as_str().unwrap().to_string())
            .collect();
        assert!(parent_words.starts_with(&rebuilt[parent]), "{p}");
    }
    assert_eq!(rebuilt.len(), SENTENCES.len());
}

/// ROC AUC of `right` against `wrong` scores: the chance that a true pair scores
/// above a wrong one (ties count half; a wrong pair rejected as unalignable scores
/// below every true one).
fn roc_auc(right: &[f64], wrong: &[f64], wrong_rejected: usize) -> f64 {
    let mut wins = 0.0;
    for r in right {
        for w in wrong {
            wins += if r > w {
                1.0
            } else if r == w {
                0.5
            } else {
                0.0
            };
        }
        wins += wrong_rejected as f64;
    }
    wins / (right.len() as f64 * (wrong.len() + wrong_rejected) as f64)
}

/// The shipped dags/align.toml with `method` on the demo clips (LibriVox readings
/// and espeak-ng speech in ten languages, each with its text), once with each clip's
/// own text and once with the next clip's: the ROC AUC of their align_scores.
fn true_against_shuffled_auc(method: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let demo = cache_dir().join("demo-audio");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(demo.join("demo.jsonl"))
        .expect("demo audio: run `bash scripts/setup.sh`")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["text"].is_string())
        .filter(|r| demo.join(r["uri"].as_str().unwrap()).is_file())
        .collect();
    assert!(rows.len() >= 10, "{} demo clips with text", rows.len());
    for r in &rows {
        let name = r["uri"].as_str().unwrap();
        std::fs::copy(demo.join(name), dir.path().join(name)).unwrap();
    }
    let write = |name: &str, shift: usize| {
        let list: String = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut r = r.clone();
                r["text"] = rows[(i + shift) % rows.len()]["text"].clone();
                format!("{r}\n")
            })
            .collect();
        std::fs::write(dir.path().join(name), list).unwrap();
    };
    write("true.jsonl", 0);
    write("shuffled.jsonl", 1);
    let dag = repo_root().join("dags/align.toml");
    let scores = |list: &str| -> (Vec<f64>, usize) {
        let store = list.trim_end_matches(".jsonl");
        ok(speechmill(dir.path()).args([
            "run",
            dag.to_str().unwrap(),
            "--store",
            store,
            "--set",
            &format!("ingest.paths=[\"{list}\"]"),
            "--set",
            &format!("align.method=\"{method}\""),
        ]));
        let values = sql_csv(dir.path(), store, "SELECT align_score FROM align")
            .iter()
            .skip(1)
            .map(|s| s.parse().unwrap())
            .collect();
        let rejected = sql_number(dir.path(), store, "SELECT count(*) FROM align_rejects");
        (values, rejected as usize)
    };
    let ((right, right_rejected), (wrong, wrong_rejected)) =
        (scores("true.jsonl"), scores("shuffled.jsonl"));
    assert_eq!((right.len(), right_rejected), (rows.len(), 0));
    let auc = roc_auc(&right, &wrong, wrong_rejected);
    eprintln!(
        "{method} align_score: true {right:?}, shuffled {wrong:?} ({wrong_rejected} rejected), ROC AUC {auc:.3}"
    );
    auc
}

#[test]
fn ctc_align_score_tells_true_transcripts_from_shuffled_ones() {
    let auc = true_against_shuffled_auc("ctc");
    assert!(auc >= 0.95, "ROC AUC {auc:.3}");
}

#[test]
fn whisper_align_score_tells_true_transcripts_from_shuffled_ones() {
    let auc = true_against_shuffled_auc("whisper");
    assert!(auc >= 0.95, "ROC AUC {auc:.3}");
}

#[test]
fn unalignable_segments_are_rejects_with_reasons_not_failures() {
    require_program("espeak-ng");
    let dir = tempfile::tempdir().unwrap();
    let speech = dir.path().join("short.wav");
    let mut audio = vec![0f32; 4000];
    audio.extend(spoken_word(dir.path(), "en", "hello", 0));
    audio.extend(vec![0f32; 4000]);
    write_wav_16k(&speech, &audio);
    let long_text = "word ".repeat(200);
    let list = dir.path().join("list.jsonl");
    std::fs::write(
        &list,
        format!(
            "{}\n{}\n",
            serde_json::json!({ "uri": speech.to_str().unwrap(), "language": "en", "text": long_text }),
            serde_json::json!({ "uri": dir.path().join("copy.wav").to_str().unwrap(), "language": "xx-nonexistent", "text": "hello" }),
        ),
    )
    .unwrap();
    // A second copy of the audio, one sample changed so ingest keeps both.
    audio[0] = 0.001;
    write_wav_16k(&dir.path().join("copy.wav"), &audio);
    // `auto`: the made-up language has no espeak-ng voice, so Whisper is tried, which
    // does not know it either.
    let dag = align_dag(dir.path(), &list, "auto");
    let out = ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    assert!(out.contains("4 node(s) ran"), "{out}");
    let reasons = sql_csv(
        dir.path(),
        "store",
        "SELECT split_part(reason, ':', 1) FROM align_rejects ORDER BY 1",
    );
    assert_eq!(
        reasons[1..],
        ["no_model_for_language", "text_too_long"],
        "{reasons:?}"
    );
    assert_eq!(
        sql_number(dir.path(), "store", "SELECT count(*) FROM align"),
        0
    );
}

/// A user's phoneme CTC model: the built-in model's own graph and vocabulary, laid
/// out as a user's model directory (`model.onnx`, `vocab.json` by id), aligns every
/// word exactly where the built-in path puts it.
#[test]
fn a_users_phoneme_ctc_model_aligns_like_the_same_model_built_in() {
    let dir = tempfile::tempdir().unwrap();
    let (builtin_store, _, _) = boundary_errors(dir.path(), "ctc");
    let hama = cache_dir().join("models/hama");
    let user = dir.path().join("my-phoneme-model");
    std::fs::create_dir(&user).unwrap();
    std::os::unix::fs::symlink(hama.join("asr_waveform_fp16.onnx"), user.join("model.onnx"))
        .unwrap();
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hama.join("g2p_vocab.json")).unwrap())
            .unwrap();
    let mut symbols: Vec<String> = vocab["decoder"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    symbols.extend(["<wb>".to_string(), "<blank>".to_string()]);
    let by_id: serde_json::Map<String, serde_json::Value> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i.into()))
        .collect();
    std::fs::write(
        user.join("vocab.json"),
        serde_json::to_string(&by_id).unwrap(),
    )
    .unwrap();
    let list = dir.path().join("list.jsonl");
    let dag = write_dag(
        dir.path(),
        "user.toml",
        &format!(
            r#"[nodes.ingest]
stage = "ingest"
params = {{ paths = ["{}"] }}

[nodes.segment]
stage = "segment"
inputs = ["ingest"]

[nodes.align]
stage = "align"
inputs = ["segment"]
params = {{ method = "ctc", ctc_model = "{}", ctc_units = "phonemes", ctc_blank = "<blank>", ctc_word_delimiter = "<wb>", ctc_normalize = false }}
"#,
            list.display(),
            user.display()
        ),
    );
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "user"]));
    let (builtin, users) = (
        aligned(dir.path(), &builtin_store),
        aligned(dir.path(), "user"),
    );
    assert_eq!(users.len(), SENTENCES.len());
    for ((uri, words, score), (_, their_words, their_score)) in builtin.iter().zip(&users) {
        assert_eq!(words, their_words, "{uri}: {words:?} vs {their_words:?}");
        // The same log-probabilities, once more through log-softmax (float rounding).
        assert!(
            (score - their_score).abs() < 1e-4,
            "{uri}: {score} vs {their_score}"
        );
    }
}

/// A user's character CTC model with a wav2vec2 export's interface (a tiny graph the
/// test builds: tests/peers/tiny_ctc_model.py), on audio that "says" known
/// characters at known frames: every word of a text in another case and with
/// punctuation lands on its frames.
#[test]
fn a_users_character_ctc_model_places_words_on_their_frames() {
    let Some(python) = peers_python("user CTC model") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-ctc");
    let symbols = ["<pad>", "|", "A", "B", "C", "D", "E", "'"];
    let mut build = Command::new(python);
    build
        .arg(repo_root().join("tests/peers/tiny_ctc_model.py"))
        .arg(&model)
        .args(symbols);
    ok(&mut build);
    // Frames of 20 ms at the level 0.1 × symbol; three frames per letter, a pause
    // and the delimiter between words. Three files of different lengths, so that a
    // call of the model (batch_size 4, the default) pads two of them.
    let level = |c: char| symbols.iter().position(|s| *s == c.to_string()).unwrap();
    let clip = |words: &[&str]| {
        let mut frames: Vec<usize> = vec![0; 10];
        let mut truth = Vec::new();
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                frames.extend([0, 0, 1, 1, 0, 0]);
            }
            let start = frames.len();
            for c in word.chars() {
                frames.extend([level(c); 3]);
            }
            truth.push((start as f64 * 0.02, frames.len() as f64 * 0.02));
        }
        frames.extend([0; 10]);
        let audio: Vec<f32> = frames
            .iter()
            .flat_map(|&k| std::iter::repeat_n(0.1 * k as f32, 320))
            .collect();
        (audio, truth)
    };
    let files = [
        (
            "a-levels.wav",
            vec!["BAD", "CAB", "DEAD"],
            "bad cab, \"dead\"!",
        ),
        ("b-short.wav", vec!["CAB"], "cab"),
        (
            "c-long.wav",
            vec!["DEAD", "BAD", "CAB", "ACE", "DAB"],
            "dead bad cab ace dab",
        ),
    ];
    let mut lines = String::new();
    let mut truths = Vec::new();
    for (name, words, text) in &files {
        let (audio, truth) = clip(words);
        let wav = dir.path().join(name);
        write_wav_16k(&wav, &audio);
        lines += &format!(
            "{}\n",
            serde_json::json!({ "uri": wav.to_str().unwrap(), "language": "en", "text": text })
        );
        truths.push(truth);
    }
    let list = dir.path().join("list.jsonl");
    std::fs::write(&list, lines).unwrap();
    // These levels are no speech to the VAD: a threshold near 0 keeps the whole file.
    let dag = write_dag(
        dir.path(),
        "chars.toml",
        &format!(
            r#"[nodes.ingest]
stage = "ingest"
params = {{ paths = ["{}"] }}

[nodes.segment]
stage = "segment"
inputs = ["ingest"]
params = {{ threshold = 0.0001, neg_threshold = 0.00005, min_silence_s = 30.0, pad_s = 0.0 }}

[nodes.align]
stage = "align"
inputs = ["segment"]
params = {{ method = "ctc", ctc_model = "{}", ctc_normalize = false }}
"#,
            list.display(),
            model.display()
        ),
    );
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    let got = aligned(dir.path(), "store");
    assert_eq!(got.len(), 3, "{got:?}");
    let written: Vec<&str> = got[0].1.iter().map(|(w, _, _)| w.as_str()).collect();
    assert_eq!(written, ["bad", "cab,", "\"dead\"!"]);
    for ((uri, words, _), truth) in got.iter().zip(&truths) {
        assert_eq!(words.len(), truth.len(), "{uri}");
        for ((word, start, end), (true_start, true_end)) in words.iter().zip(truth) {
            assert!(
                (start - true_start).abs() < 1e-6 && (end - true_end).abs() < 1e-6,
                "{uri} {word}: {start}–{end}, true {true_start}–{true_end}"
            );
        }
    }
    // One segment per call aligns the same.
    ok(speechmill(dir.path())
        .args(["run", dag.to_str().unwrap(), "--store", "one"])
        .args(["--set", "align.batch_size=1"]));
    let one = aligned(dir.path(), "one");
    assert_eq!(
        one.iter().map(|(_, w, _)| w).collect::<Vec<_>>(),
        got.iter().map(|(_, w, _)| w).collect::<Vec<_>>()
    );

    // A vocabulary without the blank the params name: one line naming the param.
    let bad = write_dag(
        dir.path(),
        "bad.toml",
        &std::fs::read_to_string(&dag)
            .unwrap()
            .replace("ctc_normalize = false", "ctc_blank = \"<blank>\""),
    );
    let out = output(speechmill(dir.path()).args(["run", bad.to_str().unwrap(), "--store", "bad"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("ctc_model") && err.contains("<blank>"),
        "{err}"
    );
}
