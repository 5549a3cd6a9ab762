//! ingest → segment → asr on real speech with the registry's Whisper models: labels
//! for speech, silence accounted for, a refresh that reruns only `asr`, and a
//! missing model named in a one-line error.

mod common;

use std::path::Path;

use common::*;

fn corpus_dag(dir: &std::path::Path, asr_params: &str) -> std::path::PathBuf {
    write_dag(
        dir,
        "corpus.toml",
        &format!(
            r#"
[nodes.ingest]
stage = "ingest"
params = {{ paths = ["audio/*"] }}

[nodes.segment]
stage = "segment"
inputs = ["ingest"]

[nodes.asr]
stage = "asr"
inputs = ["segment"]
params = {{ {asr_params} }}
"#
        ),
    )
}

/// Two LibriVox clips, a silent file and a file that is not audio.
fn corpus_audio(dir: &std::path::Path) {
    let audio = dir.join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    for clip in ["0880", "0930"] {
        std::fs::copy(
            format!("{LIBRIVOX}/sense_and_sensibility_01_austen_64kb-{clip}.wav"),
            audio.join(format!("{clip}.wav")),
        )
        .unwrap();
    }
    ffmpeg_make(
        "anullsrc=r=16000:cl=mono",
        &["-t", "5"],
        &audio.join("silence.wav"),
    );
    std::fs::write(audio.join("broken.mp3"), b"this is not an mp3 file at all").unwrap();
}

#[test]
fn corpus_labels_speech_and_accounts_for_every_source() {
    let dir = tempfile::tempdir().unwrap();
    corpus_audio(dir.path());
    let dag = corpus_dag(
        dir.path(),
        r#"model = "whisper-tiny.en", precision = "int8", beam_size = 1"#,
    );
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));

    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, start_s, end_s, text, language, language_prob, model FROM asr ORDER BY uri, start_s",
    );
    assert_eq!(
        rows[0],
        "uri,start_s,end_s,text,language,language_prob,model"
    );
    let text = rows[1..].join("\n").to_lowercase();
    // Independent reference: the LibriVox transcription shipped with the clips.
    for word in ["old", "young", "man", "amiable", "himself"] {
        assert!(text.contains(word), "`{word}` missing from {text}");
    }
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.contains(",en,") && r.ends_with("whisper-tiny.en:int8"))
    );

    // Every source: segmented, or rejected with a reason (silence and the broken file).
    let sources = sql_number(dir.path(), "store", "SELECT count(*) FROM ingest");
    let segmented = sql_number(
        dir.path(),
        "store",
        "SELECT count(DISTINCT uri) FROM segment",
    );
    let rejected = sql_number(dir.path(), "store", "SELECT count(*) FROM segment_rejects");
    assert_eq!(sources, 4);
    assert_eq!(
        segmented + rejected,
        sources,
        "segment: in = out + rejected"
    );
    let silent = sql_csv(
        dir.path(),
        "store",
        "SELECT reason FROM segment_rejects WHERE uri LIKE '%silence.wav'",
    );
    assert!(silent[1].starts_with("no_speech"), "{silent:?}");
    assert_eq!(
        sql_number(
            dir.path(),
            "store",
            "SELECT count(*) FROM asr WHERE uri LIKE '%silence.wav'"
        ),
        0
    );
    // Every segment: labelled or rejected.
    let segments = sql_number(dir.path(), "store", "SELECT count(*) FROM segment");
    let labelled = sql_number(dir.path(), "store", "SELECT count(*) FROM asr");
    let asr_rejected = sql_number(dir.path(), "store", "SELECT count(*) FROM asr_rejects");
    assert_eq!(
        labelled + asr_rejected,
        segments,
        "asr: in = out + rejected"
    );

    // Word timings lie inside their segment.
    let outside = sql_number(
        dir.path(),
        "store",
        "SELECT count(*) FROM (SELECT start_s, end_s, unnest(words) AS w FROM asr)
         WHERE w['start_s'] < start_s - 0.05 OR w['end_s'] > end_s + 0.05",
    );
    assert_eq!(outside, 0);

    let report = ok(speechmill(dir.path()).args(["inspect", "--store", "store"]));
    assert!(report.contains("no_speech"), "{report}");
}

/// A node's commit marker, found as `<store>/<node>/CURRENT.json` →
/// `<node>/<fingerprint>/_COMMITTED.json` (its `fingerprint`, `committed_at_unix_s`
/// and part lists say which run wrote it).
fn commit_of(store: &Path, node: &str) -> serde_json::Value {
    let read = |path: &Path| -> serde_json::Value {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let current = read(&store.join(node).join("CURRENT.json"));
    let fp = current["fingerprint"].as_str().unwrap();
    let marker = read(&store.join(node).join(fp).join("_COMMITTED.json"));
    assert_eq!(marker["fingerprint"], current["fingerprint"], "{node}");
    assert!(marker["committed_at_unix_s"].as_u64().is_some(), "{marker}");
    marker
}

/// The status column (`cached` or `ran`) of `node` in `speechmill run`'s summary.
fn run_status<'a>(out: &'a str, node: &str) -> &'a str {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&node))
        .and_then(|w| w.get(3).copied())
        .unwrap_or_else(|| panic!("{node} missing from the run summary:\n{out}"))
}

/// The shipped `dags/refresh.toml` on a store that `dags/corpus.toml` filled reuses
/// its committed `ingest` and `segment` (same markers, untouched) and commits a new
/// `asr` only. Both runs use tiny.en greedy to stay short; the refresh keeps its
/// own precision (fp32 against the corpus's int8), so its `asr` differs.
#[test]
fn refresh_with_another_model_reruns_only_asr() {
    let dir = tempfile::tempdir().unwrap();
    corpus_audio(dir.path());
    let d = dir.path();
    let dags = repo_root().join("dags");
    let (corpus, refresh) = (dags.join("corpus.toml"), dags.join("refresh.toml"));
    let common = [
        "--store",
        "store",
        "--set",
        r#"ingest.paths=["audio/*"]"#,
        "--set",
        "asr.model=whisper-tiny.en",
        "--set",
        "asr.language=en",
        "--set",
        "asr.beam_size=1",
    ];
    // The corpus DAG up to its labels: the rest of it (check, quality, filter,
    // shards) has tests of its own.
    let first = ok(speechmill(d)
        .arg("run")
        .arg(&corpus)
        .args(common)
        .args(["--until", "asr"]));
    for node in ["ingest", "segment", "asr"] {
        assert_eq!(run_status(&first, node), "ran", "{first}");
    }
    let store = d.join("store");
    let before = ["ingest", "segment", "asr"].map(|n| commit_of(&store, n));
    let models = sql_csv(d, "store", "SELECT DISTINCT model FROM asr");
    assert_eq!(models[1..], ["whisper-tiny.en:int8".to_string()]);

    let plan = ok(speechmill(d).arg("plan").arg(&refresh).args(common));
    let line = |node: &str| {
        plan.lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .unwrap_or_else(|| panic!("{node} missing from plan:\n{plan}"))
            .to_string()
    };
    assert!(line("ingest").contains("cached"), "{plan}");
    assert!(line("segment").contains("cached"), "{plan}");
    assert!(line("asr").contains("to-run"), "{plan}");

    let second = ok(speechmill(d).arg("run").arg(&refresh).args(common));
    assert_eq!(run_status(&second, "ingest"), "cached", "{second}");
    assert_eq!(run_status(&second, "segment"), "cached", "{second}");
    assert_eq!(run_status(&second, "asr"), "ran", "{second}");
    assert!(second.contains("1 node(s) ran, 2 cached"), "{second}");

    // ingest and segment: the corpus run's commits, untouched (same fingerprint,
    // commit time and parts); asr: a new one.
    assert_eq!(commit_of(&store, "ingest"), before[0]);
    assert_eq!(commit_of(&store, "segment"), before[1]);
    let asr = commit_of(&store, "asr");
    assert_ne!(
        asr["fingerprint"], before[2]["fingerprint"],
        "asr kept its fingerprint"
    );
    assert!(
        store
            .join("asr")
            .join(before[2]["fingerprint"].as_str().unwrap())
            .join("_COMMITTED.json")
            .is_file(),
        "the corpus run's labels stay in the store"
    );
    let models = sql_csv(d, "store", "SELECT DISTINCT model FROM asr");
    assert_eq!(models[1..], ["whisper-tiny.en".to_string()], "fp32 labels");
}

#[test]
fn a_missing_asr_model_is_a_one_line_error_naming_setup() {
    let dir = tempfile::tempdir().unwrap();
    corpus_audio(dir.path());
    let dag = corpus_dag(dir.path(), r#"model = "whisper-large-v9""#);
    let out =
        output(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("whisper-large-v9") && err.contains("setup.sh"),
        "{err}"
    );
}

#[test]
fn shipped_corpus_and_refresh_dags_plan() {
    let root = repo_root();
    let store = tempfile::tempdir().unwrap();
    let store = store.path().join("store");
    for dag in ["dags/corpus.toml", "dags/refresh.toml", "dags/demo.toml"] {
        let plan = ok(speechmill(&root).args(["plan", dag, "--store", store.to_str().unwrap()]));
        for node in ["ingest", "asr"] {
            if dag != "dags/demo.toml" || node == "ingest" {
                assert!(plan.contains(node), "{dag}: {plan}");
            }
        }
    }
}
