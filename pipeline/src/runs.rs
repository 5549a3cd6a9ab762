//! Run records: what each `speechmill run` did, node by node (cached or computed,
//! wall time, rows and audio in and out, executors), appended to the store as
//! `_runs/<run id>.json`. The record is rewritten after every node, so a run that
//! crashed still says how far it got; `inspect` shows the latest, `report` charts
//! them.

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{CommitMarker, RunStore, object_store_error};

/// Folder of run records under the store root (`_` keeps it out of the node list).
pub const RUNS_DIR: &str = "_runs";

/// One `speechmill run`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// `<start time>-<token>`: sorts by start, unique per run.
    pub run_id: String,
    pub dag: String,
    /// `local`, or `cluster df://HOST:PORT`.
    pub mode: String,
    pub until: Option<String>,
    pub started_at_unix_s: u64,
    pub finished_at_unix_s: Option<u64>,
    /// `running`, `completed`, or `failed: <one line>`.
    pub status: String,
    pub nodes: Vec<NodeRecord>,
}

/// What one node did in one run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub node: String,
    pub stage: String,
    pub inputs: Vec<String>,
    pub fingerprint: String,
    /// True when the node's committed output was reused.
    pub cached: bool,
    pub wall_s: f64,
    /// Rows of its first input (the base of a join: `filter` keeps or rejects each
    /// of them); for a node without inputs (ingest), the rows it accounted for
    /// (kept plus rejected).
    pub rows_in: u64,
    pub rows_out: u64,
    pub rejected: u64,
    /// Audio of its first input.
    pub audio_hours_in: Option<f64>,
    pub audio_hours_out: Option<f64>,
    /// Distinct processes that ran the node's tasks (1 for a local run, 0 cached).
    pub executors: usize,
    /// The node's params as fingerprinted.
    pub params: serde_json::Value,
}

impl NodeRecord {
    /// The record of a node whose output is `marker`, from inputs `inputs`.
    pub fn new(
        marker: &CommitMarker,
        inputs: &[&CommitMarker],
        cached: bool,
        wall_s: f64,
        executors: usize,
    ) -> Self {
        let rows_in = match inputs.first() {
            None => marker.rows + marker.rejects,
            Some(base) => base.rows,
        };
        NodeRecord {
            node: marker.node.clone(),
            stage: marker.stage.clone(),
            inputs: inputs.iter().map(|m| m.node.clone()).collect(),
            fingerprint: marker.fingerprint.clone(),
            cached,
            wall_s,
            rows_in,
            rows_out: marker.rows,
            rejected: marker.rejects,
            audio_hours_in: inputs
                .first()
                .and_then(|m| m.audio_seconds)
                .map(|s| s / 3600.0),
            audio_hours_out: marker.audio_seconds.map(|s| s / 3600.0),
            executors: if cached { 0 } else { executors },
            params: marker
                .fingerprint_material
                .get("params")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        }
    }

    /// Audio seconds the node processed per second of wall time: its input audio,
    /// or its output audio for a node without audio inputs (ingest, decode).
    pub fn audio_seconds_per_second(&self) -> Option<f64> {
        let hours = self.audio_hours_in.or(self.audio_hours_out)?;
        (self.wall_s > 0.0 && !self.cached).then(|| hours * 3600.0 / self.wall_s)
    }
}

impl RunRecord {
    /// A record for a run starting now.
    pub fn start(dag: &str, mode: &str, until: Option<&str>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let token = format!("{:08x}", (now.subsec_nanos() ^ std::process::id()) as u32);
        RunRecord {
            run_id: format!("{}-{token}", now.as_millis()),
            dag: dag.to_string(),
            mode: mode.to_string(),
            until: until.map(str::to_string),
            started_at_unix_s: now.as_secs(),
            finished_at_unix_s: None,
            status: "running".to_string(),
            nodes: Vec::new(),
        }
    }

    /// Marks the run finished, completed or failed with `error`.
    pub fn finish(&mut self, error: Option<&str>) {
        self.finished_at_unix_s = Some(unix_now());
        self.status = match error {
            None => "completed".to_string(),
            Some(e) => format!("failed: {}", crate::error::one_line(e)),
        };
    }

    /// Writes (or rewrites) the record into the store.
    pub async fn save(&self, store: &RunStore) -> Result<()> {
        let path = store.path(&format!("{RUNS_DIR}/{}.json", self.run_id));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Store(e.to_string()))?;
        store
            .object_store()
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| {
                Error::Store(format!(
                    "{}: cannot write run record: {}",
                    store.url(),
                    object_store_error(&e)
                ))
            })?;
        Ok(())
    }
}

/// Every run record of the store, oldest first. A record that cannot be parsed
/// (written by a later version) is skipped rather than failing the reader.
pub async fn list(store: &RunStore) -> Result<Vec<RunRecord>> {
    let dir = store.path(RUNS_DIR);
    let objects: Vec<_> = store
        .object_store()
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| {
            Error::Store(format!(
                "{}: cannot list run records: {}",
                store.url(),
                object_store_error(&e)
            ))
        })?;
    let mut records = Vec::new();
    for meta in objects {
        if !meta.location.as_ref().ends_with(".json") {
            continue;
        }
        let got = store.object_store().get(&meta.location).await;
        let Ok(got) = got else { continue };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        if let Ok(record) = serde_json::from_slice::<RunRecord>(&bytes) {
            records.push(record);
        }
    }
    records.sort_by(|a, b| {
        a.started_at_unix_s
            .cmp(&b.started_at_unix_s)
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
    Ok(records)
}

/// The latest run record of the store, if any run wrote one.
pub async fn latest(store: &RunStore) -> Result<Option<RunRecord>> {
    Ok(list(store).await?.pop())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(node: &str, rows: u64, rejects: u64, seconds: Option<f64>) -> CommitMarker {
        CommitMarker {
            node: node.into(),
            stage: "s".into(),
            fingerprint: format!("fp-{node}"),
            fingerprint_material: serde_json::json!({ "params": { "k": 1 } }),
            rows,
            rejects,
            audio_seconds: seconds,
            data_files: vec![],
            reject_files: vec![],
            committed_at_unix_s: 0,
            elapsed_s: 0.0,
        }
    }

    #[test]
    fn rows_and_audio_in_come_from_the_inputs_or_from_what_a_source_node_accounted_for() {
        let ingest = marker("ingest", 10, 2, Some(7200.0));
        let first = NodeRecord::new(&ingest, &[], false, 4.0, 1);
        assert_eq!((first.rows_in, first.rows_out, first.rejected), (12, 10, 2));
        assert_eq!(first.audio_hours_in, None);
        assert_eq!(first.audio_seconds_per_second(), Some(1800.0));

        let asr = marker("asr", 8, 1, Some(3600.0));
        let segment = marker("segment", 9, 0, Some(5400.0));
        let scores = marker("quality", 7, 0, Some(1.0));
        let record = NodeRecord::new(&asr, &[&segment, &scores], false, 60.0, 2);
        assert_eq!(record.rows_in, 9);
        assert_eq!(record.audio_hours_in, Some(1.5));
        assert_eq!(record.audio_hours_out, Some(1.0));
        assert_eq!(record.audio_seconds_per_second(), Some(90.0));
        assert_eq!(record.params, serde_json::json!({ "k": 1 }));

        let cached = NodeRecord::new(&asr, &[&segment], true, 0.01, 2);
        assert_eq!(
            (cached.executors, cached.audio_seconds_per_second()),
            (0, None)
        );
    }

    #[tokio::test]
    async fn records_are_listed_oldest_first_and_a_rewrite_replaces_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap()).await.unwrap();
        assert_eq!(latest(&store).await.unwrap(), None);
        let mut first = RunRecord::start("a.toml", "local", None);
        first.started_at_unix_s -= 10;
        first.save(&store).await.unwrap();
        let mut second = RunRecord::start("b.toml", "local", Some("asr"));
        second.save(&store).await.unwrap();
        second.nodes.push(NodeRecord::new(
            &marker("x", 1, 0, None),
            &[],
            false,
            1.0,
            1,
        ));
        second.finish(Some("boom\nat line 2"));
        second.save(&store).await.unwrap();
        let all = list(&store).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].dag, "a.toml");
        assert_eq!(all[1], second);
        assert_eq!(all[1].status, "failed: boom at line 2");
        // Run records never show up as nodes.
        assert!(store.current_nodes().await.unwrap().is_empty());
    }
}
