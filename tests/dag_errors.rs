//! Bad DAG files and parameters give one-line errors naming the file and node.

mod common;

use common::*;

fn run_dag(text: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let dag = write_dag(dir.path(), "bad.toml", text);
    let o = output(
        speechmill(dir.path())
            .args(["run", dag.to_str().unwrap(), "--store", "store"])
            .args(extra),
    );
    assert!(!o.status.success(), "a bad DAG ran: {}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(
        err.contains("bad.toml"),
        "error does not name the file: {err}"
    );
    err
}

#[test]
fn unknown_stage_is_named() {
    let err = run_dag("[nodes.a]\nstage = \"transmogrify\"\n", &[]);
    assert!(
        err.contains("node `a`") && err.contains("unknown stage `transmogrify`"),
        "{err}"
    );
}

#[test]
fn cycle_is_reported() {
    let err = run_dag(
        "[nodes.a]\nsql = \"SELECT * FROM b\"\ninputs = [\"b\"]\n[nodes.b]\nsql = \"SELECT * FROM a\"\ninputs = [\"a\"]\n",
        &[],
    );
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn missing_input_is_named() {
    let err = run_dag(
        "[nodes.decode]\nstage = \"decode\"\ninputs = [\"ingest\"]\n",
        &[],
    );
    assert!(
        err.contains("node `decode`") && err.contains("input `ingest`"),
        "{err}"
    );
}

#[test]
fn unknown_parameter_is_named() {
    let err = run_dag(
        "[nodes.ingest]\nstage = \"ingest\"\nparams = { paths = [\"x\"], colour = \"red\" }\n",
        &[],
    );
    assert!(
        err.contains("node `ingest`") && err.contains("unknown parameter `colour`"),
        "{err}"
    );
}

#[test]
fn mistyped_parameter_is_named() {
    let err = run_dag(
        "[nodes.ingest]\nstage = \"ingest\"\nparams = { paths = [\"x\"], max_bytes = \"lots\" }\n",
        &[],
    );
    assert!(
        err.contains("node `ingest`") && err.contains("max_bytes"),
        "{err}"
    );
}

#[test]
fn mistyped_override_is_named() {
    let err = run_dag(
        "[nodes.ingest]\nstage = \"ingest\"\nparams = { paths = [\"x\"] }\n",
        &["--set", "ingest.retries=many"],
    );
    assert!(
        err.contains("node `ingest`") && err.contains("retries"),
        "{err}"
    );
}

#[test]
fn override_of_unknown_node_is_named() {
    let err = run_dag(
        "[nodes.ingest]\nstage = \"ingest\"\nparams = { paths = [\"x\"] }\n",
        &["--set", "asr.beam_size=3"],
    );
    assert!(err.contains("no node named `asr`"), "{err}");
}

#[test]
fn toml_syntax_error_is_one_line() {
    let err = run_dag("[nodes.a\nstage = \n", &[]);
    assert!(err.contains("not a valid DAG"), "{err}");
}

#[test]
fn a_glob_matching_nothing_fails_the_run_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let dag = ingest_decode_dag(dir.path(), &["nothing-here/*.wav"]);
    let o = output(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("nothing-here/*.wav") && err.contains("matches no file"),
        "{err}"
    );
}
