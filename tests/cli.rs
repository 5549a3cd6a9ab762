//! The CLI surface other tools rely on: `sql` formats, `inspect`, `doctor`, help.

mod common;

use common::*;

#[test]
fn sql_csv_prints_a_header_and_every_node_has_a_rejects_table() {
    let dir = tempfile::tempdir().unwrap();
    mixed_audio_dir(&dir.path().join("audio"));
    let dag = ingest_decode_dag(dir.path(), &["audio/tone.wav"]);
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    let lines = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, reason FROM decode_rejects",
    );
    assert_eq!(
        lines,
        vec!["uri,reason".to_string()],
        "an empty rejects table still prints its header"
    );
    let lines = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, reason FROM ingest_rejects",
    );
    assert_eq!(lines, vec!["uri,reason".to_string()]);
    let json = ok(speechmill(dir.path()).args([
        "sql",
        "--store",
        "store",
        "--format",
        "json",
        "SELECT codec, channels FROM decode",
    ]));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!([{"codec": "pcm_s16le", "channels": 1}])
    );
}

#[test]
fn sql_on_an_unknown_table_names_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    mixed_audio_dir(&dir.path().join("audio"));
    let dag = ingest_decode_dag(dir.path(), &["audio/tone.wav"]);
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    let o = output(speechmill(dir.path()).args(["sql", "--store", "store", "SELECT * FROM asr"]));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("tables: ingest, decode") || err.contains("tables: decode, ingest"),
        "{err}"
    );
}

#[test]
fn inspect_counts_rows_hours_and_rejects_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    mixed_audio_dir(&dir.path().join("audio"));
    let dag = ingest_decode_dag(dir.path(), &["audio/*"]);
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    let json = ok(speechmill(dir.path()).args(["inspect", "--store", "store", "--json"]));
    let reports: serde_json::Value = serde_json::from_str(&json).unwrap();
    let decode = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == "decode")
        .unwrap();
    assert_eq!(decode["rows"], 5);
    let hours = decode["audio_hours"].as_f64().unwrap();
    assert!((hours * 3600.0 - 7.7).abs() < 0.2, "{hours}");
    let by_reason: i64 = decode["rejects_by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_i64().unwrap())
        .sum();
    assert_eq!(by_reason, decode["rejects"].as_i64().unwrap());
}

#[test]
fn help_teaches_with_the_demo() {
    let out = ok(speechmill(&repo_root()).arg("--help"));
    assert!(out.contains("speechmill run dags/demo.toml"), "{out}");
    let out = ok(speechmill(&repo_root()).args(["run", "--help"]));
    assert!(out.contains("--set") && out.contains("--until"), "{out}");
}

#[test]
fn doctor_passes_on_the_setup_cache() {
    let out = ok(speechmill(&repo_root())
        .arg("doctor")
        .env_remove("ORT_DYLIB_PATH"));
    for what in [
        "onnxruntime loads",
        "Whisper whisper-base",
        "Whisper whisper-tiny.en",
        "Silero VAD sequence graph",
        "everything speechmill needs is here",
    ] {
        assert!(out.contains(what), "{what} not in:\n{out}");
    }
    assert!(!out.contains("\nmissing"), "{out}");
}

#[test]
fn doctor_on_an_empty_cache_fails_naming_what_is_missing_and_the_setup_command() {
    let empty = tempfile::tempdir().unwrap();
    let o = output(
        speechmill(&repo_root())
            .arg("doctor")
            .env("SPEECHMILL_CACHE", empty.path())
            .env_remove("ORT_DYLIB_PATH"),
    );
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        !o.status.success(),
        "doctor passed on an empty cache:\n{all}"
    );
    for what in [
        "onnxruntime/libonnxruntime.so.1.32.0",
        "models/whisper-base/encoder_int8.onnx",
        "models/whisper-base/decoder_int8.onnx",
        "models/whisper-base/whisper.json",
        "models/whisper-tiny.en/tokenizer.json",
        "models/whisper-tiny.en/decoder.onnx",
        "models/silero_vad_sequence.onnx",
        "bash scripts/setup.sh",
    ] {
        assert!(all.contains(what), "{what} not in:\n{all}");
    }
    let error = stderr(&o);
    assert_eq!(error.trim_end().lines().count(), 1, "{error}");
    assert!(
        error.contains("missing") && error.contains("bash scripts/setup.sh"),
        "{error}"
    );
}
