//! Two runs never corrupt one store: a run on a store that another live run holds
//! is refused with one line naming that run, a crashed run's lease is taken over,
//! and a `blob` value written by a SQL node cannot point a stage outside the store.

mod common;

use common::*;

/// The lease a run on another live process would hold: this test process's pid on
/// this machine, refreshed just now.
fn live_lease(now: u64) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    serde_json::json!({
        "run_id": "0123456789ab",
        "host": host,
        "pid": std::process::id(),
        "what": "run dags/other.toml",
        "started_at_unix_s": now - 3,
        "refreshed_at_unix_s": now,
    })
    .to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_run_on_a_store_held_by_a_live_run_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    ffmpeg_make("sine=frequency=440:duration=1", &["-ar", "16000"], &{
        std::fs::create_dir_all(&audio).unwrap();
        audio.join("tone.wav")
    });
    let dag = ingest_decode_dag(dir.path(), &["audio/*.wav"]);
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("_LEASE.json"), live_lease(unix_now())).unwrap();

    let o = output(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    assert!(!o.status.success(), "{}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("0123456789ab") && err.contains("run dags/other.toml"),
        "{err}"
    );
    assert!(
        !store.join("ingest").exists(),
        "the refused run wrote nothing"
    );
    // `plan` and `sql` only read: they are not refused.
    ok(speechmill(dir.path()).args(["plan", dag.to_str().unwrap(), "--store", "store"]));

    // The holder's process is gone (a crash): the next run takes the lease over.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let stale = live_lease(unix_now()).replace(
        &format!("\"pid\":{}", std::process::id()),
        &format!("\"pid\":{pid}"),
    );
    std::fs::write(store.join("_LEASE.json"), stale).unwrap();
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    assert!(
        !store.join("_LEASE.json").exists(),
        "a finished run gives its lease back"
    );
}

#[test]
fn a_sql_node_cannot_point_a_stage_at_a_file_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    ffmpeg_make(
        "sine=frequency=440:duration=1",
        &["-ar", "16000"],
        &audio.join("tone.wav"),
    );
    // A real audio file outside the store, which decode must not open.
    let outside = dir.path().join("outside.wav");
    std::fs::copy(audio.join("tone.wav"), &outside).unwrap();
    let dag = write_dag(
        dir.path(),
        "dag.toml",
        &format!(
            "[nodes.ingest]\nstage = \"ingest\"\nparams = {{ paths = [\"audio/*.wav\"] }}\n\n\
             [nodes.redirect]\nsql = \"SELECT * REPLACE ('{}' AS blob) FROM ingest\"\ninputs = [\"ingest\"]\n\n\
             [nodes.decode]\nstage = \"decode\"\ninputs = [\"redirect\"]\n",
            outside.display()
        ),
    );
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));
    assert_eq!(
        sql_number(dir.path(), "store", "SELECT count(*) FROM decode"),
        0
    );
    let reasons = sql_csv(dir.path(), "store", "SELECT reason FROM decode_rejects");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[1].starts_with("bad_blob"), "{reasons:?}");
}
