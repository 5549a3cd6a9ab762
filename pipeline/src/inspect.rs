//! `speechmill inspect`: rows, hours of audio and rejects by reason per node, and
//! what the latest run did with it.

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use crate::runner::register_store_tables;
use crate::runs::{self, NodeRecord};
use crate::store::RunStore;

/// One node's line in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReport {
    pub node: String,
    pub stage: String,
    pub fingerprint: String,
    pub rows: u64,
    pub rejects: u64,
    pub audio_hours: Option<f64>,
    /// (reason, count), most frequent first.
    pub rejects_by_reason: Vec<(String, i64)>,
    /// Parquet part files of the data table (one per task that kept rows).
    pub data_parts: usize,
    /// What the store's latest run did with this node, if it had it.
    pub latest_run: Option<NodeRecord>,
}

/// Reports every committed node of the store.
pub async fn inspect(session: &SessionContext, store: &RunStore) -> Result<Vec<NodeReport>> {
    let markers = register_store_tables(session, store).await?;
    let latest = runs::latest(store).await?;
    let mut reports = Vec::new();
    for marker in markers {
        let query = format!(
            "SELECT reason, count(*) AS n FROM \"{}_rejects\" GROUP BY reason ORDER BY n DESC, reason",
            marker.node
        );
        let mut by_reason = Vec::new();
        for batch in session.sql(&query).await?.collect().await? {
            let reasons = cast(batch.column(0), &DataType::Utf8)?;
            let reasons = reasons.as_any().downcast_ref::<StringArray>();
            let counts = batch.column(1).as_any().downcast_ref::<Int64Array>();
            if let (Some(reasons), Some(counts)) = (reasons, counts) {
                for i in 0..batch.num_rows() {
                    by_reason.push((reasons.value(i).to_string(), counts.value(i)));
                }
            }
        }
        reports.push(NodeReport {
            node: marker.node.clone(),
            stage: marker.stage.clone(),
            fingerprint: marker.fingerprint.clone(),
            rows: marker.rows,
            rejects: marker.rejects,
            audio_hours: marker.audio_seconds.map(|s| s / 3600.0),
            rejects_by_reason: by_reason,
            data_parts: marker.data_files.len(),
            latest_run: latest
                .as_ref()
                .and_then(|run| run.nodes.iter().find(|n| n.node == marker.node))
                .cloned(),
        });
    }
    Ok(reports)
}
