//! `speechmill sql` and `speechmill inspect`.

use std::sync::Arc;

use speechmill_pipeline::progress::format_hours;
use speechmill_pipeline::runner::{new_session, register_store_tables};
use speechmill_pipeline::{RunStore, report};

use super::output::{Format, print_batches};

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// Run store to read (local directory or s3://bucket/prefix).
    #[arg(long)]
    pub store: String,
    /// Output format; csv prints a header line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The query, e.g. "SELECT reason, count(*) FROM decode_rejects GROUP BY reason".
    pub query: String,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Run store to read (local directory or s3://bucket/prefix).
    #[arg(long)]
    pub store: String,
    /// Print JSON instead of a table (adds the fingerprint of each node).
    #[arg(long)]
    pub json: bool,
}

pub async fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let store = RunStore::open(&args.store).await?;
    let registry = Arc::new(speechmill_stages::builtin_registry());
    let session = new_session(&registry, &store, None);
    let markers = register_store_tables(&session, &store).await?;
    if markers.is_empty() {
        anyhow::bail!(
            "{}: no committed node in this store; run a DAG first (speechmill run DAG --store {})",
            store.url(),
            args.store
        );
    }
    let df = session.sql(&args.query).await.map_err(|e| {
        let tables: Vec<&str> = markers.iter().map(|m| m.node.as_str()).collect();
        anyhow::anyhow!(
            "{e} (tables: {}, each with <node>_rejects)",
            tables.join(", ")
        )
    })?;
    let schema = df.schema().as_arrow().clone();
    let mut batches = df.collect().await?;
    if batches.is_empty() {
        batches.push(datafusion::arrow::array::RecordBatch::new_empty(Arc::new(
            schema,
        )));
    }
    print_batches(&batches, args.format)
}

pub async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let store = RunStore::open(&args.store).await?;
    let registry = Arc::new(speechmill_stages::builtin_registry());
    let session = new_session(&registry, &store, None);
    let reports = report::inspect(&session, &store).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    if reports.is_empty() {
        println!("{}: no committed node yet", store.url());
        return Ok(());
    }
    println!("store {}", store.url());
    println!(
        "{:<18} {:<8} {:>9} {:>11} {:>9} {:>5}  rejects by reason",
        "node", "stage", "rows", "audio", "rejected", "parts"
    );
    for r in reports {
        let reasons: Vec<String> = r
            .rejects_by_reason
            .iter()
            .map(|(reason, n)| format!("{n}× {}", short_reason(reason)))
            .collect();
        println!(
            "{:<18} {:<8} {:>9} {:>11} {:>9} {:>5}  {}",
            r.node,
            r.stage,
            r.rows,
            r.audio_hours
                .map(|h| format_hours(h * 3600.0))
                .unwrap_or_else(|| "-".into()),
            r.rejects,
            r.data_parts,
            if reasons.is_empty() {
                "-".to_string()
            } else {
                reasons.join(", ")
            }
        );
    }
    Ok(())
}

/// The reason code before the first `:`, which is what groups rejects.
fn short_reason(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason)
}
