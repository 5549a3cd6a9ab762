//! ingest → decode on real files: every input is accounted for, reruns are cache
//! hits, and a run killed mid-node resumes to the same rows.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn every_input_file_is_in_the_output_or_the_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    let (good, broken) = mixed_audio_dir(&audio);
    // An exact duplicate collapses into one source.
    std::fs::copy(audio.join("tone.wav"), audio.join("tone-copy.wav")).unwrap();
    let dag = ingest_decode_dag(dir.path(), &["audio/*"]);
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));

    let inputs = (good + broken + 1) as i64;
    let ingested = sql_number(dir.path(), "store", "SELECT count(*) FROM ingest");
    let duplicates = sql_number(
        dir.path(),
        "store",
        "SELECT CAST(sum(array_length(duplicate_uris)) AS BIGINT) FROM ingest",
    );
    let ingest_rejects = sql_number(dir.path(), "store", "SELECT count(*) FROM ingest_rejects");
    assert_eq!(
        ingested + duplicates + ingest_rejects,
        inputs,
        "ingest: in = out + duplicates + rejected"
    );
    assert_eq!(duplicates, 1);
    assert_eq!(ingest_rejects, 1, "only the empty file fails ingest");
    let empty = sql_csv(dir.path(), "store", "SELECT reason FROM ingest_rejects");
    assert!(empty[1].starts_with("empty"), "{empty:?}");

    let decoded = sql_number(dir.path(), "store", "SELECT count(*) FROM decode");
    let decode_rejects = sql_number(dir.path(), "store", "SELECT count(*) FROM decode_rejects");
    assert_eq!(
        decoded + decode_rejects,
        ingested,
        "decode: in = out + rejected"
    );
    assert_eq!(decoded, good as i64);
    let reasons = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, reason FROM decode_rejects ORDER BY uri",
    );
    assert_eq!(reasons[0], "uri,reason");
    for line in &reasons[1..] {
        let reason = line.split(',').nth(1).unwrap_or("");
        assert!(
            !reason.trim().is_empty(),
            "a reject without a reason: {line}"
        );
    }

    // The probe reports the source as stored.
    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT codec, sample_rate, channels, round(duration_s, 1) FROM decode WHERE uri LIKE '%tone44k.wav'",
    );
    assert_eq!(rows[1], "pcm_s16le,44100,2,2.0");
    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT codec, sample_rate FROM decode WHERE uri LIKE '%.webm'",
    );
    assert_eq!(rows[1], "opus,48000");
}

#[test]
fn a_second_run_is_a_cache_hit() {
    let dir = tempfile::tempdir().unwrap();
    mixed_audio_dir(&dir.path().join("audio"));
    let dag = ingest_decode_dag(dir.path(), &["audio/*.wav", "audio/*.flac"]);
    let dag = dag.to_str().unwrap();
    ok(speechmill(dir.path()).args(["run", dag, "--store", "store"]));
    let plan = ok(speechmill(dir.path()).args(["plan", dag, "--store", "store"]));
    assert_eq!(
        plan.lines().filter(|l| l.contains(" cached ")).count(),
        2,
        "{plan}"
    );
    let rerun = ok(speechmill(dir.path()).args(["run", dag, "--store", "store"]));
    assert!(rerun.contains("0 node(s) ran, 2 cached"), "{rerun}");

    // A changed parameter reruns only the node it changes (and what follows).
    let plan = ok(speechmill(dir.path()).args([
        "plan",
        dag,
        "--store",
        "store",
        "--set",
        "decode.max_duration_s=1.2",
    ]));
    let ingest = plan.lines().find(|l| l.starts_with("ingest")).unwrap();
    let decode = plan.lines().find(|l| l.starts_with("decode")).unwrap();
    assert!(ingest.contains("cached"), "{plan}");
    assert!(
        decode.contains("to-run") && decode.contains("params changed: max_duration_s"),
        "{plan}"
    );
    ok(speechmill(dir.path()).args([
        "run",
        dag,
        "--store",
        "store",
        "--set",
        "decode.max_duration_s=1.2",
    ]));
    let too_long = sql_number(
        dir.path(),
        "store",
        "SELECT count(*) FROM decode_rejects WHERE reason LIKE 'too_long%'",
    );
    assert!(too_long >= 1);
}

#[test]
fn until_runs_only_the_node_and_its_inputs() {
    let dir = tempfile::tempdir().unwrap();
    mixed_audio_dir(&dir.path().join("audio"));
    let dag = ingest_decode_dag(dir.path(), &["audio/tone.wav"]);
    let out = ok(speechmill(dir.path()).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        "store",
        "--until",
        "ingest",
    ]));
    assert!(
        out.contains("ingest") && !out.lines().any(|l| l.starts_with("decode")),
        "{out}"
    );
    let plan = ok(speechmill(dir.path()).args(["plan", dag.to_str().unwrap(), "--store", "store"]));
    assert!(
        plan.lines()
            .any(|l| l.starts_with("decode") && l.contains("to-run")),
        "{plan}"
    );
}

#[test]
fn a_run_killed_mid_node_resumes_to_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    // Enough distinct sources that decode takes seconds: one long MP3 remuxed with
    // a different title each time (distinct bytes, no re-encoding).
    let base = dir.path().join("base.mp3");
    ffmpeg_make(
        "sine=frequency=440:duration=180",
        &["-ar", "44100", "-ac", "2", "-b:a", "128k"],
        &base,
    );
    for i in 0..24 {
        let status = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(&base)
            .args(["-c", "copy", "-metadata", &format!("title=copy {i}")])
            .arg(audio.join(format!("long{i:02}.mp3")))
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::write(audio.join("broken.mp3"), b"ID3 not really").unwrap();
    let dag = ingest_decode_dag(dir.path(), &["audio/*.mp3"]);
    let dag = dag.to_str().unwrap();

    let mut child = speechmill(dir.path())
        .args(["run", dag, "--store", "killed"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until decode has started writing, then SIGKILL.
    let store = dir.path().join("killed");
    let start = Instant::now();
    while !store.join("ingest/CURRENT.json").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "ingest never committed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !store.join("decode/CURRENT.json").exists(),
        "decode finished before the kill; make the test audio longer"
    );
    // Nothing of the interrupted node is visible.
    let out = output(speechmill(dir.path()).args([
        "sql",
        "--store",
        "killed",
        "SELECT count(*) FROM decode",
    ]));
    assert!(!out.status.success());

    ok(speechmill(dir.path()).args(["run", dag, "--store", "killed"]));
    ok(speechmill(dir.path()).args(["run", dag, "--store", "clean"]));
    for table in ["ingest", "decode", "decode_rejects"] {
        let q = format!("SELECT * FROM {table} ORDER BY uri");
        assert_eq!(
            sql_csv(dir.path(), "killed", &q),
            sql_csv(dir.path(), "clean", &q),
            "{table} differs"
        );
    }
}
