//! The `shard` stage: shards that the real consumers read (`webdataset` and `datasets`
//! in the peers venv from `bash scripts/peers.sh`; `SPEECHMILL_SKIP_PEERS=1` skips
//! the readers), bounded, split by source, listed in a manifest whose hashes hold,
//! byte-identical when made again, and left alone by a rerun.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

fn dag(dir: &Path, out: &Path) -> PathBuf {
    write_dag(
        dir,
        "shard.toml",
        &format!(
            r#"
[nodes.ingest]
stage = "ingest"
params = {{ paths = ["{LIBRIVOX}/*.wav"] }}

[nodes.segment]
stage = "segment"
inputs = ["ingest"]

[nodes.asr]
stage = "asr"
inputs = ["segment"]
params = {{ model = "whisper-tiny.en", language = "en", beam_size = 1 }}

[nodes.filter]
stage = "filter"
inputs = ["asr"]
params = {{ rules = [{{ name = "has_text", keep = "length(text) > 0" }}] }}

[nodes.shard]
stage = "shard"
inputs = ["filter", "segment"]
params = {{ out = "{out}", max_shard_mb = 0.3, splits = {{ train = 0.6, dev = 0.2, test = 0.2 }} }}
"#,
            out = out.display()
        ),
    )
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn shards_are_bounded_split_by_source_listed_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shards");
    let dag = dag(dir.path(), &out);
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", store]));

    let kept = sql_number(dir.path(), store, "SELECT count(*) FROM filter");
    assert!(kept >= 5, "{kept} kept");
    assert_eq!(
        sql_number(dir.path(), store, "SELECT count(*) FROM shard"),
        kept
    );
    // No source in two splits.
    assert_eq!(
        sql_number(
            dir.path(),
            store,
            "SELECT count(*) FROM (SELECT f.source_id FROM shard s JOIN filter f \
             ON s.segment_id = f.segment_id GROUP BY f.source_id HAVING count(DISTINCT s.split) > 1)"
        ),
        0
    );

    let written = files(&out);
    assert!(
        !written.keys().any(|k| k.contains(".staging")),
        "staging left: {:?}",
        written.keys()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&written["manifest.json"]).expect("manifest.json");
    let shards = manifest["shards"].as_array().unwrap();
    assert!(shards.len() >= 3, "{} shards", shards.len());
    let mut listed_samples = 0;
    for shard in shards {
        listed_samples += shard["samples"].as_i64().unwrap();
        for (file, sha) in [("tar", "tar_sha256"), ("parquet", "parquet_sha256")] {
            let name = shard[file].as_str().unwrap();
            let bytes = &written[name];
            assert_eq!(sha256_hex(bytes), shard[sha].as_str().unwrap(), "{name}");
            if file == "tar" {
                assert!(bytes.len() as f64 <= 0.3e6, "{name}: {} bytes", bytes.len());
            }
        }
    }
    assert_eq!(listed_samples, kept);

    // The same inputs into a fresh store and folder give byte-identical files.
    let out2 = dir.path().join("shards2");
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let dag2 = self::dag(&again, &out2);
    let store2 = dir.path().join("store2");
    ok(speechmill(dir.path()).args([
        "run",
        dag2.to_str().unwrap(),
        "--store",
        store2.to_str().unwrap(),
    ]));
    assert_eq!(files(&out2), written, "shards differ between two runs");

    // A rerun finds the node committed and rewrites nothing.
    let mtimes = |d: &Path| -> Vec<std::time::SystemTime> {
        files(d)
            .keys()
            .map(|k| std::fs::metadata(d.join(k)).unwrap().modified().unwrap())
            .collect()
    };
    let before = mtimes(&out);
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", store]));
    assert_eq!(mtimes(&out), before);

    // The real consumers read every sample: its audio decodes to the segment's
    // length and its text is the table's.
    let Some(python) = peers_python("shards_are_bounded_split_by_source_listed_and_deterministic")
    else {
        return;
    };
    let result = dir.path().join("read.json");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(repo_root().join("tests/peers/shard_reader.py"))
        .arg(&out)
        .arg(&result);
    ok(&mut cmd);
    let read: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(read["parquet_audio_feature"]["type"], "Audio");
    assert_eq!(read["parquet_audio_feature"]["sampling_rate"], 16000);
    let expected = sql_csv(
        dir.path(),
        store,
        "SELECT s.key, s.segment_id, length(encode(g.audio, 'hex')) / 4 AS samples, f.text \
         FROM shard s JOIN segment g ON s.segment_id = g.segment_id \
         JOIN filter f ON s.segment_id = f.segment_id ORDER BY s.key",
    );
    let table: Vec<(String, String, i64)> = expected[1..]
        .iter()
        .map(|line| {
            let mut parts = line.splitn(4, ',');
            let key = parts.next().unwrap().to_string();
            let id = parts.next().unwrap().to_string();
            let samples = parts.next().unwrap().parse().unwrap();
            (key, id, samples)
        })
        .collect();
    assert_eq!(table.len() as i64, kept);
    let texts: BTreeMap<String, String> =
        sql_csv(dir.path(), store, "SELECT segment_id, text FROM filter")[1..]
            .iter()
            .map(|l| {
                let (id, text) = l.split_once(',').unwrap();
                (id.to_string(), text.trim_matches('"').replace("\"\"", "\""))
            })
            .collect();
    assert_eq!(read["webdataset"].as_object().unwrap().len() as i64, kept);
    assert_eq!(read["parquet"].as_object().unwrap().len() as i64, kept);
    for (key, id, samples) in &table {
        let w = &read["webdataset"][key];
        assert_eq!(w["samples"].as_i64(), Some(*samples), "{key} (webdataset)");
        assert_eq!(w["sample_rate"], 16000);
        assert_eq!(
            w["text"].as_str(),
            Some(texts[id].as_str()),
            "{key} (webdataset)"
        );
        let p = &read["parquet"][id.as_str()];
        assert_eq!(p["samples"].as_i64(), Some(*samples), "{key} (parquet)");
        assert_eq!(
            p["text"].as_str(),
            Some(texts[id].as_str()),
            "{key} (parquet)"
        );
    }
}
