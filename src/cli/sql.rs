//! `speechmill sql` and `speechmill inspect`.

use std::sync::Arc;

use speechmill_pipeline::progress::format_hours;
use speechmill_pipeline::runner::{new_session, register_store_tables};
use speechmill_pipeline::{RunStore, inspect as node_summary, runs};

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
    let reports = node_summary::inspect(&session, &store).await?;
    let latest = runs::latest(&store).await?;
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
    if let Some(run) = latest {
        print_run(&run);
    }
    Ok(())
}

/// The latest run's record: what each node did and how fast.
fn print_run(run: &runs::RunRecord) {
    let took = run
        .finished_at_unix_s
        .map(|end| format!(", {} s", end.saturating_sub(run.started_at_unix_s)))
        .unwrap_or_default();
    println!();
    println!(
        "latest run {}: {} ({}), {}, started {}{took}",
        run.run_id,
        run.dag,
        run.mode,
        run.status,
        format_unix(run.started_at_unix_s)
    );
    println!(
        "{:<18} {:<8} {:>8} {:>9} {:>9} {:>9} {:>11} {:>11} {:>10} {:>9}",
        "node",
        "status",
        "wall",
        "rows in",
        "rows out",
        "rejected",
        "audio in",
        "audio out",
        "audio-s/s",
        "executors"
    );
    let hours = |h: Option<f64>| {
        h.map(|h| format_hours(h * 3600.0))
            .unwrap_or_else(|| "-".into())
    };
    for n in &run.nodes {
        println!(
            "{:<18} {:<8} {:>7.1}s {:>9} {:>9} {:>9} {:>11} {:>11} {:>10} {:>9}",
            n.node,
            if n.cached { "cached" } else { "computed" },
            n.wall_s,
            n.rows_in,
            n.rows_out,
            n.rejected,
            hours(n.audio_hours_in),
            hours(n.audio_hours_out),
            n.audio_seconds_per_second()
                .map(|r| format!("{r:.1}"))
                .unwrap_or_else(|| "-".into()),
            n.executors
        );
    }
}

/// `2026-12-03 10:35:41 UTC`
pub fn format_unix(seconds: u64) -> String {
    chrono::DateTime::from_timestamp(seconds as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| seconds.to_string())
}

/// The reason code before the first `:`, which is what groups rejects.
fn short_reason(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason)
}
