//! `dags/corpus.toml` end to end on a mixed set built here (clean read speech, the
//! same speech under heavy noise, tones and noise, German speech whose list entry
//! claims English): the filter keeps labels that are better than the rest, keeps no
//! non-speech, and accounts for every segment.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The LibriVox clips with their transcripts (the `transcription` file).
fn librivox_with_text() -> Vec<(PathBuf, String)> {
    let transcription = std::fs::read_to_string(Path::new(LIBRIVOX).join("transcription")).unwrap();
    transcription
        .lines()
        .map(|line| {
            let (text, id) = line.rsplit_once(" (").unwrap();
            let text = text
                .trim_start_matches("<s>")
                .trim_end_matches("</s>")
                .trim();
            let id = id.trim_end_matches(')');
            (
                Path::new(LIBRIVOX).join(format!("{id}.wav")),
                text.to_string(),
            )
        })
        .collect()
}

/// Writes the mixed set and its list file (uri, language, text); returns the list.
fn mixed_set(dir: &Path) -> PathBuf {
    let mut entries = Vec::new();
    for (k, (path, text)) in librivox_with_text().into_iter().enumerate() {
        let (speech, _) = read_wav_pcm16(&path);
        let clean = format!("clean-{k}.wav");
        write_wav_16k(&dir.join(&clean), &speech);
        entries.push(serde_json::json!({ "uri": clean, "language": "en", "text": text }));
        let noise = gaussian_noise(speech.len(), 40 + k as u64);
        let noisy = format!("noisy-{k}.wav");
        write_wav_16k(&dir.join(&noisy), &mix_at_snr(&speech, &noise, -5.0));
        entries.push(serde_json::json!({ "uri": noisy, "language": "en", "text": text }));
    }
    for (k, hz) in [330.0f32, 880.0].into_iter().enumerate() {
        let tone: Vec<f32> = (0..16_000 * 4)
            .map(|i| 0.4 * (2.0 * std::f32::consts::PI * hz * i as f32 / 16_000.0).sin())
            .collect();
        let name = format!("tone-{k}.wav");
        write_wav_16k(&dir.join(&name), &tone);
        entries.push(serde_json::json!({ "uri": name, "language": "en", "text": "" }));
        let noise: Vec<f32> = gaussian_noise(16_000 * 4, 90 + k as u64)
            .iter()
            .map(|n| n * 0.2)
            .collect();
        let name = format!("noise-{k}.wav");
        write_wav_16k(&dir.join(&name), &noise);
        entries.push(serde_json::json!({ "uri": name, "language": "en", "text": "" }));
    }
    // German speech whose list entry says English.
    require_program("espeak-ng");
    for (k, text) in [
        "Der Zug nach Berlin fährt heute um acht Uhr vom zweiten Gleis ab",
        "Im Sommer wandern wir gern durch die Wälder und an den Seen entlang",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("german-{k}.wav");
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", "de", "-w"])
            .arg(dir.join(&name))
            .arg(text)
            .status()
            .unwrap();
        assert!(status.success());
        entries.push(serde_json::json!({ "uri": name, "language": "en", "text": text }));
    }
    let list = dir.join("list.jsonl");
    let lines: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    list
}

#[test]
fn the_corpus_filter_keeps_better_labels_and_no_non_speech() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    let list = mixed_set(&audio);
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let paths = format!("ingest.paths=[\"{}\"]", list.display());
    ok(speechmill(&repo_root()).args([
        "run",
        "dags/corpus.toml",
        "--store",
        store,
        "--set",
        &paths,
    ]));
    let cwd = dir.path();

    // Every labelled segment is kept or rejected with a rule's name, once.
    let labelled = sql_number(cwd, store, "SELECT count(*) FROM asr");
    let kept = sql_number(cwd, store, "SELECT count(*) FROM filter");
    let rejected = sql_number(cwd, store, "SELECT count(*) FROM filter_rejects");
    assert_eq!(kept + rejected, labelled);
    assert!(kept > 0, "the filter kept nothing");
    let rules = [
        "duration",
        "language_prob",
        "language_hint",
        "no_speech",
        "avg_logprob",
        "compression_ratio",
        "dnsmos",
        "speech_rate",
        "asr_agreement",
    ];
    let reasons = sql_csv(cwd, store, "SELECT DISTINCT reason FROM filter_rejects");
    for reason in &reasons[1..] {
        assert!(rules.contains(&reason.as_str()), "unknown reason {reason}");
    }

    // Non-speech keeps nothing.
    assert_eq!(
        sql_number(
            cwd,
            store,
            "SELECT count(*) FROM filter WHERE uri LIKE '%tone-%' OR uri LIKE '%noise-%'"
        ),
        0
    );
    // Nor does speech in another language than its list entry claims.
    assert_eq!(
        sql_number(
            cwd,
            store,
            "SELECT count(*) FROM filter WHERE uri LIKE '%german-%'"
        ),
        0
    );

    // Kept labels are closer to the known texts than all labels are. Each clip is one
    // segment, so its list text is the segment's reference.
    let speech = "(uri LIKE '%clean-%' OR uri LIKE '%noisy-%')";
    assert_eq!(
        sql_number(
            cwd,
            store,
            &format!("SELECT count(*) - count(DISTINCT uri) FROM asr WHERE {speech}")
        ),
        0,
        "a speech clip gave several segments"
    );
    let wer_all: f64 = sql_value(
        cwd,
        store,
        &format!("SELECT avg(wer(text_input, text, 'en')) FROM asr WHERE {speech}"),
    );
    let wer_kept: f64 = sql_value(
        cwd,
        store,
        &format!("SELECT avg(wer(text_input, text, 'en')) FROM filter WHERE {speech}"),
    );
    eprintln!(
        "filter: kept {kept} of {labelled} labelled segments; WER all {wer_all:.3}, kept {wer_kept:.3}"
    );
    assert!(
        wer_kept < wer_all,
        "kept WER {wer_kept:.3} vs all {wer_all:.3}"
    );
}
