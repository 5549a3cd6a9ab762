//! Remote sources and stores against real servers on 127.0.0.1: the moto S3
//! server (installed by setup) and Python's http.server.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn s3_prefix_ingests_into_an_s3_store() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    mixed_audio_dir(&audio);
    create_bucket(moto.port, "speechmill-test");
    let mut uploaded = 0;
    for name in ["tone.wav", "tone.mp3", "tone.flac", "notes.ogg"] {
        put_object(
            moto.port,
            "speechmill-test",
            &format!("corpus/{name}"),
            &std::fs::read(audio.join(name)).unwrap(),
        );
        uploaded += 1;
    }
    let dag = ingest_decode_dag(dir.path(), &["s3://speechmill-test/corpus/"]);
    let store = "s3://speechmill-test/runs/first";
    let out = ok(s3_env(&mut speechmill(dir.path()), moto.port).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        store,
    ]));
    assert!(out.contains("2 node(s) ran"), "{out}");

    let count = |q: &str| s3_sql_number(dir.path(), moto.port, store, q);
    assert_eq!(
        count("SELECT count(*) FROM ingest") + count("SELECT count(*) FROM ingest_rejects"),
        uploaded
    );
    assert_eq!(
        count("SELECT count(*) FROM ingest WHERE uri LIKE 's3://speechmill-test/corpus/%'"),
        uploaded
    );
    assert_eq!(count("SELECT count(*) FROM decode"), 3);
    assert_eq!(count("SELECT count(*) FROM decode_rejects"), 1);

    // The blobs are in the S3 store, and a rerun is a cache hit.
    let rerun = ok(s3_env(&mut speechmill(dir.path()), moto.port).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        store,
    ]));
    assert!(rerun.contains("0 node(s) ran, 2 cached"), "{rerun}");
    let inspect =
        ok(s3_env(&mut speechmill(dir.path()), moto.port).args(["inspect", "--store", store]));
    assert!(
        inspect.contains("decode") && inspect.contains("unsupported")
            || inspect.contains("corrupt"),
        "{inspect}"
    );
}

#[test]
fn unreachable_s3_store_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let dag = ingest_decode_dag(dir.path(), &["."]);
    let port = free_port();
    let o = output(
        s3_env(&mut speechmill(dir.path()), port)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["plan", dag.to_str().unwrap(), "--store", "s3://nobucket/x"]),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("s3://nobucket/x") && err.contains("AWS_ENDPOINT_URL"),
        "{err}"
    );
}

#[test]
fn http_list_file_fetches_urls_and_rejects_failures_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    mixed_audio_dir(&served);
    let port = free_port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&served)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server starts");
    wait_for_port(port, Duration::from_secs(20));
    let dead = free_port();
    let list = format!(
        "{{\"uri\": \"http://127.0.0.1:{port}/tone.mp3\", \"language\": \"en\", \"license\": \"cc0\"}}\n\
         {{\"uri\": \"http://127.0.0.1:{port}/tone.flac\", \"language\": \"de\"}}\n\
         {{\"uri\": \"http://127.0.0.1:{port}/missing.wav\"}}\n\
         {{\"uri\": \"http://127.0.0.1:{dead}/gone.wav\"}}\n"
    );
    std::fs::write(dir.path().join("list.jsonl"), list).unwrap();
    let dag = ingest_decode_dag(dir.path(), &["list.jsonl"]);
    ok(speechmill(dir.path()).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        "store",
        "--set",
        "ingest.retries=1",
        "--set",
        "ingest.timeout_s=5",
    ]));
    let _ = server.kill();
    let _ = server.wait();

    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT language, license, codec FROM decode ORDER BY language",
    );
    assert_eq!(
        rows[1..],
        ["de,,flac".to_string(), "en,cc0,mp3".to_string()]
    );
    let rejects = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, reason FROM ingest_rejects ORDER BY uri",
    );
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    assert!(
        rejects
            .iter()
            .any(|r| r.contains("missing.wav") && r.contains("fetch_failed: not found")),
        "{rejects:?}"
    );
    assert!(
        rejects
            .iter()
            .any(|r| r.contains("gone.wav") && r.contains("fetch_failed after 1 retries")),
        "{rejects:?}"
    );
}
