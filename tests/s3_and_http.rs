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
    assert!(inspect.contains("latest run"), "{inspect}");

    // A store with only ingest and decode, on S3, gives a report too.
    let page = dir.path().join("report.html");
    ok(s3_env(&mut speechmill(dir.path()), moto.port).args([
        "report",
        "--store",
        store,
        "--out",
        page.to_str().unwrap(),
    ]));
    let html = std::fs::read_to_string(&page).unwrap();
    for node in ["ingest", "decode"] {
        assert!(
            html.contains(&format!("<tr data-node=\"{node}\"")),
            "no funnel row for {node}"
        );
    }
    assert!(html.contains("data-chart=\"funnel\""), "no funnel chart");
    assert!(
        !html.contains("://speechmill-test"),
        "a source URI reads as a link"
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

fn ingest_line(plan: &str) -> String {
    plan.lines()
        .find(|l| l.starts_with("ingest"))
        .unwrap_or_else(|| panic!("no ingest line in {plan}"))
        .to_string()
}

#[test]
fn s3_keys_with_special_characters_fetch_the_right_object() {
    let moto = start_moto();
    create_bucket(moto.port, "odd-keys");
    let keys = [
        "odd/with space.wav",
        "odd/100%.wav",
        "odd/a#b.wav",
        "odd/q?x=1.wav",
        "odd/plus+sign.wav",
        "odd/ünïcødé-日本.wav",
        "odd/%20literal.wav",
    ];
    // Distinct bytes per key, naming the key: a mix-up shows in the blob.
    for key in keys {
        put_object_raw_key(
            moto.port,
            "odd-keys",
            key,
            format!("bytes of {key}").as_bytes(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // The same keys, verbatim, in a list file.
    std::fs::write(
        dir.path().join("list.jsonl"),
        "{\"uri\": \"s3://odd-keys/odd/a#b.wav\", \"tag\": \"listed\"}\n\
         {\"uri\": \"s3://odd-keys/odd/q?x=1.wav\", \"tag\": \"listed\"}\n",
    )
    .unwrap();
    let dag = ingest_dag(
        dir.path(),
        &["s3://odd-keys/odd/", "list.jsonl"],
        "retries = 0, timeout_s = 5",
    );
    ok(s3_env(&mut speechmill(dir.path()), moto.port).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        "store",
    ]));
    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, blob FROM ingest ORDER BY uri",
    );
    let rejects = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, reason FROM ingest_rejects",
    );
    assert_eq!(rows.len(), keys.len() + 1, "{rows:?}\n{rejects:?}");
    for key in keys {
        let uri = format!("s3://odd-keys/{key}");
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("{uri},")) || r.starts_with(&format!("\"{uri}\",")))
            .unwrap_or_else(|| panic!("no row for {uri} in {rows:?}"));
        let blob = row.rsplit(',').next().unwrap().trim_matches('"');
        let bytes = std::fs::read(dir.path().join("store").join(blob)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            format!("bytes of {key}"),
            "{uri}"
        );
    }
    // Listed and crawled, the same object is one source with a duplicate.
    assert_eq!(
        sql_number(
            dir.path(),
            "store",
            "SELECT count(*) FROM ingest WHERE array_length(duplicate_uris) = 1"
        ),
        2
    );
}

#[test]
fn a_changed_http_source_reruns_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("clip.wav"), b"first version").unwrap();
    let server = LoopbackHttp::serve(&served, None);
    let dag = ingest_dag(
        dir.path(),
        &[&server.url("clip.wav")],
        "retries = 0, timeout_s = 5",
    );
    let dag = dag.to_str().unwrap();
    ok(speechmill(dir.path()).args(["run", dag, "--store", "store"]));
    let plan = ok(speechmill(dir.path()).args(["plan", dag, "--store", "store"]));
    assert!(ingest_line(&plan).contains("cached"), "{plan}");

    // Same size, other bytes: only the ETag tells.
    std::fs::write(served.join("clip.wav"), b"other version").unwrap();
    let plan = ok(speechmill(dir.path()).args(["plan", dag, "--store", "store"]));
    assert!(ingest_line(&plan).contains("to-run"), "{plan}");
    ok(speechmill(dir.path()).args(["run", dag, "--store", "store"]));
    let blob = sql_csv(dir.path(), "store", "SELECT blob FROM ingest");
    let bytes = std::fs::read(dir.path().join("store").join(blob[1].trim())).unwrap();
    assert_eq!(bytes, b"other version");

    // Another size reruns too; an unchanged file does not.
    std::fs::write(served.join("clip.wav"), b"a longer third version").unwrap();
    let plan = ok(speechmill(dir.path()).args(["plan", dag, "--store", "store"]));
    assert!(ingest_line(&plan).contains("to-run"), "{plan}");
    ok(speechmill(dir.path()).args(["run", dag, "--store", "store"]));
    let plan = ok(speechmill(dir.path()).args(["plan", dag, "--store", "store"]));
    assert!(ingest_line(&plan).contains("cached"), "{plan}");
}

#[test]
fn credentials_in_an_http_uri_never_reach_the_store_or_the_logs() {
    const SECRET: &str = "tok-5ecr3t-XYZ";
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("clip.wav"), b"protected bytes").unwrap();
    // Basic base64("alice:tok-5ecr3t-XYZ"): the server answers 401 without it.
    let server = LoopbackHttp::serve(&served, Some("Basic YWxpY2U6dG9rLTVlY3IzdC1YWVo=".into()));
    let with_secret =
        |path: &str| format!("http://alice:{SECRET}@127.0.0.1:{}/{path}", server.port);
    std::fs::write(
        dir.path().join("list.jsonl"),
        format!(
            "{{\"uri\": \"{}\", \"language\": \"en\"}}\n",
            with_secret("missing.wav")
        ),
    )
    .unwrap();
    let dag = ingest_dag(
        dir.path(),
        &[&with_secret("clip.wav"), "list.jsonl"],
        "retries = 0, timeout_s = 5",
    );
    let dag = dag.to_str().unwrap();
    let mut logs = String::new();
    for args in [
        vec!["plan", dag, "--store", "store"],
        vec!["run", dag, "--store", "store"],
        vec!["plan", dag, "--store", "store"],
        vec!["inspect", "--store", "store"],
    ] {
        let o = output(
            speechmill(dir.path())
                .env("SPEECHMILL_LOG", "debug")
                .env("NO_COLOR", "1")
                .args(&args),
        );
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        logs.push_str(&stdout(&o));
        logs.push_str(&stderr(&o));
    }
    assert!(
        !logs.contains(SECRET),
        "the secret is in the output:\n{logs}"
    );
    // The credentials were used: the protected file was fetched, and logged redacted.
    let redacted = format!("http://***@127.0.0.1:{}", server.port);
    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, origin, size_bytes FROM ingest",
    );
    assert_eq!(
        rows[1..],
        [format!("{redacted}/clip.wav,{redacted}/clip.wav,15")]
    );
    let rejects = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, reason FROM ingest_rejects",
    );
    assert_eq!(
        rejects[1..],
        [format!("{redacted}/missing.wav,fetch_failed: not found")]
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("speechmill::fetch: fetched")
                && l.contains(&format!("uri={redacted}/clip.wav"))
                && l.contains("bytes=15")),
        "no fetch log line:\n{logs}"
    );
    let leaked = files_containing(&dir.path().join("store"), SECRET);
    assert!(leaked.is_empty(), "the secret is in {leaked:?}");
}
