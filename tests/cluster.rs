//! The demo DAG on a Ballista cluster on loopback: a scheduler and executors
//! started by the test, the run store on the moto S3 server. Executors fetch the
//! sources and write the nodes' parts themselves; output tables equal the local
//! run's row for row; an executor killed mid-task has its tasks rerun by Ballista
//! and nothing is lost; bad cluster configuration gets one line.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Tables of the demo DAG, each with the columns compared (binary audio columns
/// are compared through their length and hash).
const DEMO_TABLES: [&str; 23] = [
    "ingest",
    "ingest_rejects",
    "decode",
    "decode_rejects",
    "by_language",
    "segment",
    "segment_rejects",
    "asr",
    "asr_rejects",
    "align",
    "align_rejects",
    "language_check",
    "language_check_rejects",
    "english",
    "asr_check",
    "asr_check_rejects",
    "quality",
    "quality_rejects",
    "filter",
    "filter_rejects",
    // The shards' manifest hash is in every row: equal rows mean byte-identical shards.
    "shard",
    "shard_rejects",
    "english_rejects",
];

/// Nodes of the demo DAG.
const DEMO_NODES: usize = 12;

fn start_scheduler() -> Server {
    let port = free_port();
    let child = speechmill(&repo_root())
        .args([
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--executor-timeout",
            "10",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("scheduler starts");
    wait_for_port(port, Duration::from_secs(30));
    Server { child, port }
}

/// What executors and clients log in these tests: Ballista's task lines and every
/// source fetch (`speechmill::fetch`).
const CLUSTER_LOG: &str = "warn,ballista_executor=info,speechmill::fetch=debug";

/// An executor with the S3 settings of moto at `s3_port`; `cache` overrides the
/// model cache it loads from. Its log goes to `<work>.log` ([`executor_log`]).
fn start_executor(scheduler: u16, s3_port: u16, work: &Path, cache: Option<&Path>) -> Server {
    let port = free_port();
    let mut cmd = speechmill(&repo_root());
    cmd.env("SPEECHMILL_LOG", CLUSTER_LOG);
    s3_env(&mut cmd, s3_port).args([
        "executor",
        "--scheduler",
        &format!("127.0.0.1:{scheduler}"),
        "--port",
        &port.to_string(),
        "--concurrent-tasks",
        "1",
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    if let Some(cache) = cache {
        cmd.env("SPEECHMILL_CACHE", cache);
    }
    std::fs::create_dir_all(work).unwrap();
    let log = std::fs::File::create(executor_log(work)).unwrap();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("executor starts");
    wait_for_port(port, Duration::from_secs(30));
    Server { child, port }
}

fn executor_log(work: &Path) -> std::path::PathBuf {
    work.with_extension("log")
}

fn read_log(work: &Path) -> String {
    std::fs::read_to_string(executor_log(work)).unwrap_or_default()
}

/// Lines saying this process fetched a source (the ingest UDF's debug line).
fn fetch_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("speechmill::fetch") && l.contains("fetched"))
        .collect()
}

/// `n` executors with their work dirs under `dir`.
fn start_executors(n: usize, scheduler: u16, s3_port: u16, dir: &Path) -> Vec<Server> {
    (0..n)
        .map(|i| start_executor(scheduler, s3_port, &dir.join(format!("work-{i}")), None))
        .collect()
}

/// The demo DAG into `store`, its shards into `shards`.
fn run_demo(store: &str, shards: &str, s3_port: u16, cluster: Option<u16>) -> Command {
    let mut cmd = speechmill(&repo_root());
    s3_env(&mut cmd, s3_port).args([
        "run",
        "dags/demo.toml",
        "--store",
        store,
        "--set",
        &format!("shard.out={shards}"),
    ]);
    if let Some(port) = cluster {
        cmd.args([
            "--cluster",
            &format!("df://127.0.0.1:{port}"),
            "--partitions",
            "4",
        ]);
    }
    cmd
}

/// Every row of `table` as CSV, sorted, with binary columns reduced to their
/// length and SHA-256 so rows stay comparable and small.
fn table_rows(store: &str, s3_port: u16, table: &str) -> Vec<String> {
    let query = |q: &str| {
        let mut cmd = speechmill(&repo_root());
        ok(s3_env(&mut cmd, s3_port).args(["sql", "--store", store, "--format", "csv", q]))
    };
    let columns = query(&format!(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = '{table}' ORDER BY ordinal_position"
    ));
    let select: Vec<String> = columns
        .lines()
        .skip(1)
        .map(|line| {
            let (name, kind) = line.split_once(',').unwrap();
            if kind.contains("Binary") {
                format!("sha256(CAST(\"{name}\" AS BYTEA)) AS \"{name}\"")
            } else {
                format!("\"{name}\"")
            }
        })
        .collect();
    assert!(!select.is_empty(), "{table}: no columns in {store}");
    let out = query(&format!("SELECT {} FROM \"{table}\"", select.join(", ")));
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// `speechmill report` of `store` into `out`; the page as text.
fn report_of(store: &str, s3_port: u16, out: &Path) -> String {
    let mut cmd = speechmill(&repo_root());
    let said = ok(s3_env(&mut cmd, s3_port).args([
        "report",
        "--store",
        store,
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(said.contains("audio clips"), "{said}");
    let html = std::fs::read_to_string(out).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{}: the page refers to something to load",
        out.display()
    );
    html
}

/// The report of the demo store as headless Chromium shows it: every chart drew,
/// the funnel's numbers are the tables' counts, the first clip decodes, nothing
/// loads from the network. The screenshot is kept for a person to look at.
fn assert_report_shows_the_store(store: &str, s3_port: u16, dir: &Path) {
    let page = dir.join("report.html");
    report_of(store, s3_port, &page);
    let Some(python) = peers_python("the demo report in Chromium") else {
        return;
    };
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-report.png");
    let shown = output(
        Command::new(python).args([
            repo_root()
                .join("tests/peers/report_browser.py")
                .to_str()
                .unwrap(),
            "--html",
            page.to_str().unwrap(),
            "--screenshot",
            screenshot.to_str().unwrap(),
        ]),
    );
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown: serde_json::Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    eprintln!(
        "report: {} bytes, load {} ms, screenshot {}",
        shown["html_bytes"],
        shown["load_ms"],
        screenshot.display()
    );
    let charts = shown["charts"].as_array().unwrap();
    let names: Vec<&str> = charts.iter().filter_map(|c| c["chart"].as_str()).collect();
    for expected in [
        "funnel",
        "language",
        "filter.duration_s",
        "filter.dnsmos_ovrl",
        "filter.snr_db",
        "filter.speech_rate",
        "filter.check_cer",
        "align.align_score",
        "throughput",
        "dag",
    ] {
        assert!(
            names.contains(&expected),
            "no {expected} chart in {names:?}"
        );
    }
    for chart in charts {
        assert!(
            chart["width"].as_f64().unwrap() > 0.0
                && chart["height"].as_f64().unwrap() > 0.0
                && chart["drawn"].as_u64().unwrap() > 0,
            "a chart did not draw: {chart}"
        );
    }
    let funnel = shown["funnel"].as_array().unwrap();
    assert_eq!(funnel.len(), DEMO_NODES, "{funnel:?}");
    for row in funnel {
        let node = row["node"].as_str().unwrap();
        let count = |table: &str| {
            s3_sql_number(
                &repo_root(),
                s3_port,
                store,
                &format!("SELECT count(*) FROM \"{table}\""),
            )
        };
        assert_eq!(row["rows"].as_i64(), Some(count(node)), "{node}: {row}");
        assert_eq!(row["shown_rows"], row["rows"], "{node}: {row}");
        assert_eq!(
            row["rejects"].as_i64(),
            Some(count(&format!("{node}_rejects"))),
            "{node}: {row}"
        );
        assert_eq!(row["shown_rejects"], row["rejects"], "{node}: {row}");
    }
    let audio = &shown["audio"];
    assert!(audio["count"].as_u64().unwrap() > 0, "{audio}");
    let first = &audio["first"];
    assert!(
        first["length"].as_u64().unwrap_or(0) > 8000
            && (first["seconds"].as_f64().unwrap() - first["expected_seconds"].as_f64().unwrap())
                .abs()
                < 0.05,
        "the first clip did not decode to its length: {first}"
    );
    assert_eq!(shown["external"], serde_json::json!([]), "{shown}");
}

/// The latest run record of `store` (from `inspect --json`), node by node.
fn latest_run_executors(store: &str, s3_port: u16) -> Vec<(String, bool, u64)> {
    let mut cmd = speechmill(&repo_root());
    let json = ok(s3_env(&mut cmd, s3_port).args(["inspect", "--store", store, "--json"]));
    let nodes: serde_json::Value = serde_json::from_str(&json).unwrap();
    nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let run = &n["latest_run"];
            (
                n["node"].as_str().unwrap().to_string(),
                run["cached"].as_bool().unwrap(),
                run["executors"].as_u64().unwrap(),
            )
        })
        .collect()
}

// The report checks ride on this test because the demo runs here already, on a
// local store and on an S3 store written by a cluster.
#[test]
fn demo_dag_on_two_executors_equals_the_local_run_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let moto = start_moto();
    create_bucket(moto.port, "speechmill-cluster");
    let local = dir.path().join("local-store");
    let local = local.to_str().unwrap();
    let local_shards = dir.path().join("local-shards");
    ok(&mut run_demo(
        local,
        local_shards.to_str().unwrap(),
        moto.port,
        None,
    ));
    assert_report_shows_the_store(local, moto.port, dir.path());
    for (node, cached, executors) in latest_run_executors(local, moto.port) {
        assert!(
            !cached && executors == 1,
            "{node}: local run record {executors}"
        );
    }

    let scheduler = start_scheduler();
    let _executors: Vec<Server> = start_executors(2, scheduler.port, moto.port, dir.path());
    let store = "s3://speechmill-cluster/demo";
    let shards = "s3://speechmill-cluster/demo-shards";
    let run = output(
        run_demo(store, shards, moto.port, Some(scheduler.port)).env("SPEECHMILL_LOG", CLUSTER_LOG),
    );
    let (out, client_log) = (stdout(&run), stderr(&run));
    assert!(run.status.success(), "{out}\n{client_log}");
    assert!(out.contains(&format!("{DEMO_NODES} node(s) ran")), "{out}");
    for table in DEMO_TABLES {
        let (here, there) = (
            table_rows(local, moto.port, table),
            table_rows(store, moto.port, table),
        );
        assert_eq!(here.len(), there.len(), "{table}: row counts differ");
        assert_eq!(
            here, there,
            "{table}: rows differ between local and cluster"
        );
    }
    assert!(
        table_rows(store, moto.port, "asr").len() > 10,
        "the demo labels its speech"
    );

    // The executors fetched every stored source; the client fetched none.
    let sources = s3_sql_number(
        &repo_root(),
        moto.port,
        store,
        "SELECT count(*) FROM ingest",
    );
    let executor_fetches: usize = (0..2)
        .map(|i| fetch_lines(&read_log(&dir.path().join(format!("work-{i}")))).len())
        .sum();
    assert!(
        executor_fetches as i64 >= sources && sources > 5,
        "executors logged {executor_fetches} fetches for {sources} sources"
    );
    assert!(
        fetch_lines(&client_log).is_empty(),
        "the client fetched sources itself:\n{client_log}"
    );

    // Executors wrote the nodes' parts, which every reader sees (the tables above):
    // the heavy nodes ran as several tasks, each writing its own part.
    let mut cmd = speechmill(&repo_root());
    let report = ok(s3_env(&mut cmd, moto.port).args(["inspect", "--store", store, "--json"]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let parts = |node: &str| {
        report
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node"] == node)
            .unwrap_or_else(|| panic!("{node} missing from {report}"))["data_parts"]
            .as_u64()
            .unwrap()
    };
    eprintln!("parts: segment {}, asr {}", parts("segment"), parts("asr"));
    assert!(
        parts("segment") > 1 && parts("asr") > 1,
        "segment wrote {} part(s), asr {}",
        parts("segment"),
        parts("asr")
    );

    // The run record counts the executors that ran each node's tasks; the S3 store
    // the cluster wrote gives a report too.
    let executors = latest_run_executors(store, moto.port);
    assert!(
        executors
            .iter()
            .all(|(_, cached, n)| !cached && (1..=2).contains(n))
            && executors.iter().any(|(_, _, n)| *n == 2),
        "{executors:?}"
    );
    report_of(store, moto.port, &dir.path().join("cluster-report.html"));

    // A rerun on the cluster is a cache hit, as locally.
    let rerun = ok(&mut run_demo(
        store,
        shards,
        moto.port,
        Some(scheduler.port),
    ));
    assert!(
        rerun.contains(&format!("0 node(s) ran, {DEMO_NODES} cached")),
        "{rerun}"
    );
}

/// Waits until `node` is committed in `store` (then `speechmill sql` finds its
/// table); false if the run ends first.
fn wait_for_commit(store: &str, s3_port: u16, node: &str, run: &mut Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        if run.try_wait().unwrap().is_some() {
            return false;
        }
        let mut cmd = speechmill(&repo_root());
        let query = format!("SELECT 1 FROM {node} LIMIT 1");
        if output(s3_env(&mut cmd, s3_port).args(["sql", "--store", store, &query]))
            .status
            .success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

/// `TID job/stage.attempt/task.attempt` of tasks an executor received but has not
/// finished, per Ballista's executor log lines.
fn unfinished_tasks(log: &str) -> Vec<String> {
    let tid = |line: &str| {
        let start = line.find("[TID ")? + 1;
        let len = line[start..].find(']')?;
        Some(line[start..start + len].to_string())
    };
    let received: Vec<String> = log
        .lines()
        .filter(|l| l.contains("Received task"))
        .filter_map(tid)
        .collect();
    let finished: Vec<String> = log
        .lines()
        .filter(|l| l.contains("Finished task"))
        .filter_map(tid)
        .collect();
    received
        .into_iter()
        .filter(|t| !finished.contains(t))
        .collect()
}

/// `job/stage` of a `TID job/stage.attempt/task.attempt`.
fn job_stage(tid: &str) -> String {
    let rest = tid.trim_start_matches("TID ");
    let (job, stage) = rest.split_once('/').unwrap_or((rest, ""));
    format!("{job}/{}", stage.split('.').next().unwrap_or(""))
}

#[test]
fn killing_an_executor_mid_task_reruns_its_tasks_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let moto = start_moto();
    create_bucket(moto.port, "speechmill-kill");
    let scheduler = start_scheduler();
    let mut executors: Vec<Server> = start_executors(2, scheduler.port, moto.port, dir.path());
    let works = [dir.path().join("work-0"), dir.path().join("work-1")];
    let store = "s3://speechmill-kill/demo";
    let shards = "s3://speechmill-kill/demo-shards";
    // Up to asr, the node it kills in; the demo test runs the rest on a cluster.
    let mut run = run_demo(store, shards, moto.port, Some(scheduler.port))
        .args(["--until", "asr"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The asr node is the long one: once segment is committed, wait until an
    // executor has been inside one task for half a second, then kill it.
    if !wait_for_commit(store, moto.port, "segment", &mut run) {
        let o = run.wait_with_output().unwrap();
        panic!(
            "the run ended before segment was committed:\n{}\n{}",
            stdout(&o),
            stderr(&o)
        );
    }
    let start = Instant::now();
    let mut running_since: [Option<(String, Instant)>; 2] = [None, None];
    let (victim, killed_task) = 'watch: loop {
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before an executor was seen mid-task:\n{}\n{}",
            read_log(&works[0]),
            read_log(&works[1])
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no long task seen"
        );
        for (i, work) in works.iter().enumerate() {
            match (unfinished_tasks(&read_log(work)).pop(), &running_since[i]) {
                (Some(task), Some((seen, since))) if *seen == task => {
                    if since.elapsed() > Duration::from_millis(500) {
                        break 'watch (i, task);
                    }
                }
                (Some(task), _) => running_since[i] = Some((task, Instant::now())),
                (None, _) => running_since[i] = None,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let survivor = &works[1 - victim];
    let survivor_before_kill = read_log(survivor).len();
    drop(executors.remove(victim));

    // Ballista reruns the dead executor's work on the other one; the run succeeds.
    let first = run.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "the run failed after an executor was killed mid-task:\n{}\n{}",
        stdout(&first),
        stderr(&first)
    );
    let after = read_log(survivor)[survivor_before_kill..].to_string();
    assert!(
        after
            .lines()
            .any(|l| l.contains("Received task") && l.contains(&job_stage(&killed_task))),
        "no task of {} (killed in {killed_task}) ran again on the other executor:\n{after}",
        job_stage(&killed_task)
    );

    let rerun =
        ok(run_demo(store, shards, moto.port, Some(scheduler.port)).args(["--until", "asr"]));
    assert!(rerun.contains("0 node(s) ran, 3 cached"), "{rerun}");
    let number = |q: &str| s3_sql_number(&repo_root(), moto.port, store, q);
    let segments = number("SELECT count(*) FROM segment");
    assert!(segments > 10, "{segments}");
    assert_eq!(
        number("SELECT count(*) FROM asr") + number("SELECT count(*) FROM asr_rejects"),
        segments,
        "every segment is labelled or rejected"
    );
    assert_eq!(
        number("SELECT count(*) FROM (SELECT DISTINCT uri, start_s FROM asr)"),
        number("SELECT count(*) FROM asr"),
        "no segment is labelled twice"
    );
}

#[test]
fn bad_cluster_configuration_gets_one_line_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let dag = ingest_decode_dag(dir.path(), &["."]);
    // No scheduler at the address.
    let o = output(speechmill(dir.path()).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        "store",
        "--cluster",
        &format!("df://127.0.0.1:{}", free_port()),
    ]));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot reach the scheduler") && err.contains("speechmill scheduler"),
        "{err}"
    );

    // Not an address.
    let o = output(speechmill(dir.path()).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        "store",
        "--cluster",
        "http://nowhere",
    ]));
    assert!(stderr(&o).contains("df://HOST:PORT"), "{}", stderr(&o));

    // Bad S3 credentials (moto checks them when told to): one line with S3's reason.
    let strict_s3 = start_moto_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let mut cmd = speechmill(dir.path());
    let o = output(s3_env(&mut cmd, strict_s3.port).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        "s3://speechmill-creds/run",
        "--cluster",
        "df://127.0.0.1:1",
    ]));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("InvalidAccessKeyId") && err.contains("credentials") && !err.contains("<"),
        "{err}"
    );

    // An executor without models: the run fails with one line naming the setup command.
    let moto = start_moto();
    create_bucket(moto.port, "speechmill-nomodel");
    let scheduler = start_scheduler();
    let empty_cache = dir.path().join("empty-cache");
    std::fs::create_dir_all(&empty_cache).unwrap();
    let o = segment_on_one_executor(
        dir.path(),
        moto.port,
        scheduler.port,
        &empty_cache,
        "s3://speechmill-nomodel/run",
    );
    let line = failure_line(&o);
    assert!(line.contains("scripts/setup.sh"), "{line}");
}

/// The `error:` line of a run that must have failed.
fn failure_line(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "{}", stdout(o));
    let err = stderr(o);
    err.lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{err}"))
        .to_string()
}

/// Runs ingest → segment of one LibriVox clip into `store` on a cluster of one
/// executor that loads its models from `cache`.
fn segment_on_one_executor(
    dir: &Path,
    s3_port: u16,
    scheduler: u16,
    cache: &Path,
    store: &str,
) -> std::process::Output {
    let _executor = start_executor(scheduler, s3_port, &dir.join("work"), Some(cache));
    let audio = dir.join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    std::fs::copy(
        format!("{LIBRIVOX}/sense_and_sensibility_01_austen_64kb-0880.wav"),
        audio.join("0880.wav"),
    )
    .unwrap();
    let dag = write_dag(
        dir,
        "segment.toml",
        "[nodes.ingest]\nstage = \"ingest\"\nparams = { paths = [\"audio/*\"] }\n\n\
         [nodes.segment]\nstage = \"segment\"\ninputs = [\"ingest\"]\n",
    );
    let mut cmd = speechmill(dir);
    output(s3_env(&mut cmd, s3_port).args([
        "run",
        dag.to_str().unwrap(),
        "--store",
        store,
        "--cluster",
        &format!("df://127.0.0.1:{scheduler}"),
    ]))
}

/// A copy of the model cache in which every entry is a link to the real one except
/// `models/<changed>`, a copy of the real file with one byte more: the same model
/// name and path, different contents.
fn cache_with_a_changed_model(dir: &Path, changed: &str) -> std::path::PathBuf {
    let real = cache_dir();
    let cache = dir.join("changed-cache");
    std::fs::create_dir_all(cache.join("models")).unwrap();
    let link_entries = |from: &Path, to: &Path, except: &str| {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != except {
                std::os::unix::fs::symlink(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    };
    link_entries(&real, &cache, "models");
    link_entries(&real.join("models"), &cache.join("models"), changed);
    let mut bytes = std::fs::read(real.join("models").join(changed)).unwrap();
    bytes.push(0);
    std::fs::write(cache.join("models").join(changed), bytes).unwrap();
    cache
}

fn sha256_of(path: &Path) -> String {
    let out = ok(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

#[test]
fn an_executor_whose_model_differs_from_the_plans_fails_naming_model_and_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let moto = start_moto();
    create_bucket(moto.port, "speechmill-model");
    let scheduler = start_scheduler();
    let vad = "silero_vad_sequence.onnx";
    let cache = cache_with_a_changed_model(dir.path(), vad);
    let store = "s3://speechmill-model/run";
    let o = segment_on_one_executor(dir.path(), moto.port, scheduler.port, &cache, store);
    let line = failure_line(&o);
    let (in_plan, on_executor) = (
        sha256_of(&cache_dir().join("models").join(vad)),
        sha256_of(&cache.join("models").join(vad)),
    );
    assert_ne!(in_plan, on_executor);
    for needle in ["silero", &in_plan, &on_executor, "scripts/setup.sh"] {
        assert!(line.contains(needle), "{needle} missing from: {line}");
    }
    // Nothing was labelled with the other model: segment has no commit.
    let mut cmd = speechmill(dir.path());
    let inspect = ok(s3_env(&mut cmd, moto.port).args(["inspect", "--store", store, "--json"]));
    assert!(
        !inspect.contains("\"segment\""),
        "segment was committed: {inspect}"
    );
}
