//! `speechmill report`: the store as one self-contained HTML page.

use std::sync::Arc;

use speechmill_pipeline::RunStore;
use speechmill_pipeline::runner::new_session;

use crate::report;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Run store to report on (local directory or s3://bucket/prefix).
    #[arg(long)]
    pub store: String,
    /// The HTML file to write (one file: styles, charts and audio inline).
    #[arg(long, value_name = "FILE.html")]
    pub out: String,
    /// Sample rows shown per reject reason (the kept set shows twice as many).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub samples: usize,
    /// Seconds of audio embedded per sample (its start), as FLAC.
    #[arg(long, default_value_t = 6.0, value_name = "SECONDS")]
    pub clip_seconds: f64,
    /// Most megabytes of embedded audio in the page; later samples show none.
    #[arg(long, default_value_t = 4.0, value_name = "MB")]
    pub audio_mb: f64,
}

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let store = RunStore::open(&args.store).await?;
    let registry = Arc::new(speechmill_stages::builtin_registry());
    let session = new_session(&registry, &store, None);
    let options = report::Options {
        samples_per_reason: args.samples,
        kept_samples: args.samples * 2,
        clip_seconds: args.clip_seconds,
        audio_budget_bytes: (args.audio_mb.max(0.0) * 1024.0 * 1024.0) as usize,
        ..report::Options::default()
    };
    let gathered = report::gather(&session, &store, &options).await?;
    let html = report::page::render(&gathered);
    // Written beside the target and renamed, so a failed write leaves no half page.
    let out = std::path::Path::new(&args.out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot create the folder: {e}", dir.display()))?;
    }
    let partial = out.with_extension("html.partial");
    std::fs::write(&partial, &html)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the report: {e}", partial.display()))?;
    std::fs::rename(&partial, out)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the report: {e}", out.display()))?;
    let clips = gathered
        .samples
        .iter()
        .flat_map(|t| &t.rows)
        .filter(|r| matches!(r.audio, report::Audio::Clip { .. }))
        .count();
    println!(
        "report of {} → {} ({:.2} MB, {} nodes, {} sample tables, {clips} audio clips)",
        store.url(),
        out.display(),
        html.len() as f64 / 1e6,
        gathered.nodes.len(),
        gathered.samples.len()
    );
    Ok(())
}
