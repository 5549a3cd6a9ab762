//! `sql` nodes: any query over their inputs, and a `reject_reason` column routes the
//! rows where it is non-null to `<node>_rejects` with that `reason`.

mod common;

use std::path::Path;

use common::*;

/// `<dir>/audio/<name>.wav`: a 440 Hz tone of `seconds`, 16 kHz mono.
fn tone(dir: &Path, name: &str, seconds: &str) {
    let audio = dir.join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    ffmpeg_make(
        &format!("sine=frequency=440:duration={seconds}"),
        &["-ar", "16000", "-ac", "1"],
        &audio.join(format!("{name}.wav")),
    );
}

/// Four tones of 1, 1.5, 2 and 3 seconds, ingested and decoded, then `checked`
/// rejects those under 1.8 s and `plain` keeps everything.
fn dag(dir: &Path) -> String {
    for (name, seconds) in [("a", "1"), ("b", "1.5"), ("c", "2"), ("d", "3")] {
        tone(dir, name, seconds);
    }
    write_dag(
        dir,
        "dag.toml",
        r#"
[nodes.ingest]
stage = "ingest"
params = { paths = ["audio/*.wav"] }

[nodes.decode]
stage = "decode"
inputs = ["ingest"]

[nodes.checked]
sql = """
SELECT uri, duration_s,
       CASE WHEN duration_s < 1.8 THEN 'too_short: under 1.8 s' END AS reject_reason
FROM decode"""
inputs = ["decode"]

[nodes.plain]
sql = "SELECT uri, duration_s FROM decode"
inputs = ["decode"]
"#,
    )
    .to_str()
    .unwrap()
    .to_string()
}

fn file_name(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap()
}

#[test]
fn rows_with_a_reject_reason_go_to_the_rejects_table_with_that_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dag = dag(d);
    ok(speechmill(d).args(["run", &dag, "--store", "store"]));

    let decoded = sql_number(d, "store", "SELECT count(*) FROM decode");
    assert_eq!(decoded, 4);
    let kept = sql_csv(
        d,
        "store",
        "SELECT uri, duration_s FROM checked ORDER BY uri",
    );
    let rejected = sql_csv(
        d,
        "store",
        "SELECT uri, duration_s, reason FROM checked_rejects ORDER BY uri",
    );
    assert_eq!(kept[0], "uri,duration_s");
    assert_eq!(rejected[0], "uri,duration_s,reason");
    assert_eq!(
        (kept.len() - 1) + (rejected.len() - 1),
        decoded as usize,
        "in = out + rejected: {kept:?} {rejected:?}"
    );

    let kept: Vec<&str> = kept[1..]
        .iter()
        .map(|l| file_name(l.split(',').next().unwrap()))
        .collect();
    assert_eq!(kept, ["c.wav", "d.wav"]);
    let rejected: Vec<(String, String)> = rejected[1..]
        .iter()
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            (file_name(fields[0]).to_string(), fields[2].to_string())
        })
        .collect();
    assert_eq!(
        rejected,
        [
            ("a.wav".to_string(), "too_short: under 1.8 s".to_string()),
            ("b.wav".to_string(), "too_short: under 1.8 s".to_string()),
        ]
    );

    // The reason column is the rejects' `reason`, not a column of the kept rows.
    let err = output(speechmill(d).args([
        "sql",
        "--store",
        "store",
        "SELECT reject_reason FROM checked",
    ]));
    assert!(!err.status.success());
    assert!(stderr(&err).contains("reject_reason"), "{}", stderr(&err));

    // The commit marker's counts add up too, as `inspect` reports them.
    let report = ok(speechmill(d).args(["inspect", "--store", "store", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let checked = report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == "checked")
        .unwrap_or_else(|| panic!("no `checked` in {report}"));
    assert_eq!(checked["rows"], 2, "{checked}");
    assert_eq!(checked["rejects"], 2, "{checked}");

    // Without the column, nothing is rejected and the rejects table is still there.
    assert_eq!(sql_number(d, "store", "SELECT count(*) FROM plain"), 4);
    assert_eq!(
        sql_number(d, "store", "SELECT count(*) FROM plain_rejects"),
        0
    );
}

#[test]
fn a_reject_reason_that_is_not_a_string_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tone(d, "a", "1");
    let dag = write_dag(
        d,
        "dag.toml",
        r#"
[nodes.ingest]
stage = "ingest"
params = { paths = ["audio/*.wav"] }

[nodes.flagged]
sql = "SELECT uri, 1 AS reject_reason FROM ingest"
inputs = ["ingest"]
"#,
    );
    let out = output(speechmill(d).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("flagged") && err.contains("reject_reason") && err.contains("string"),
        "{err}"
    );
}

#[test]
fn text_functions_filter_rows_in_sql_nodes_and_in_speechmill_sql() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tone(d, "a", "1");
    tone(d, "b", "2");
    // A list file with each entry's transcript and a second model's.
    std::fs::write(
        d.join("list.csv"),
        "uri,text,check\naudio/a.wav,\"Good morning, Anna!\",good morning anna\n\
         audio/b.wav,It is 3 o'clock,the cat sat down\n",
    )
    .unwrap();
    let dag = write_dag(
        d,
        "dag.toml",
        r#"
[nodes.ingest]
stage = "ingest"
params = { paths = ["list.csv"] }

[nodes.agree]
sql = """
SELECT uri, text, check,
       CASE WHEN cer(text, check) > 0.15 THEN 'asr_disagree' END AS reject_reason
FROM ingest"""
inputs = ["ingest"]
"#,
    );
    ok(speechmill(d).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    let rows = |q: &str| {
        sql_csv(d, "store", q)
            .into_iter()
            .skip(1)
            .collect::<Vec<_>>()
    };
    let kept = rows("SELECT uri FROM agree");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with("a.wav"), "{kept:?}");
    let rejected = rows("SELECT uri, reason FROM agree_rejects");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].ends_with("b.wav,asr_disagree"), "{rejected:?}");
    let out = rows("SELECT normalize_text(text, 'en'), wer(text, check) FROM agree_rejects");
    assert_eq!(out, vec!["it is three o'clock,1.0".to_string()], "{out:?}");
}
