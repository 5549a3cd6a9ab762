//! `speechmill run` and `speechmill plan`.

use std::path::Path;
use std::sync::Arc;

use speechmill_pipeline::progress::{describe, format_hours};
use speechmill_pipeline::{Dag, NodeStatus, Progress, RunStore, Runner};

use speechmill_pipeline::cluster::Cluster;

use super::{DagArgs, RunArgs};

async fn prepare(args: &DagArgs, progress: Progress) -> anyhow::Result<(Dag, Runner)> {
    let registry = Arc::new(speechmill_stages::builtin_registry());
    let dag = Dag::load(Path::new(&args.dag), &registry, &args.overrides)?;
    if let Some(until) = &args.until {
        dag.ancestors_and_self(until)?;
    }
    let store = RunStore::open(&args.store).await?;
    Ok((dag, Runner::new(registry, store, progress)))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (dag, runner) = prepare(&args.dag, Progress::stderr()).await?;
    let mut runner = runner.with_parallel_nodes(args.parallel_nodes);
    if let Some(address) = &args.cluster {
        runner = runner.on_cluster(Cluster::connect(address, Some(args.partitions)).await?);
    }
    let args = args.dag;
    let started = std::time::Instant::now();
    let outcomes = runner.run(&dag, args.until.as_deref()).await?;
    println!("speechmill run {} → {}", dag.file, runner.store().url());
    println!(
        "{:<18} {:<8} {:<16} {:<7} {:>9} {:>9} {:>11} {:>8}",
        "node", "stage", "fingerprint", "status", "rows", "rejected", "audio", "time"
    );
    for o in &outcomes {
        println!(
            "{:<18} {:<8} {:<16} {:<7} {:>9} {:>9} {:>11} {:>7.1}s",
            o.name,
            o.stage,
            o.marker.fingerprint,
            if o.cached { "cached" } else { "ran" },
            o.marker.rows,
            o.marker.rejects,
            o.marker
                .audio_seconds
                .map(format_hours)
                .unwrap_or_else(|| "-".into()),
            if o.cached { 0.0 } else { o.marker.elapsed_s },
        );
    }
    let ran = outcomes.iter().filter(|o| !o.cached).count();
    let last = outcomes
        .last()
        .map(|o| describe(o.marker.rows, o.marker.rejects, o.marker.audio_seconds));
    println!(
        "done in {:.1}s: {ran} node(s) ran, {} cached{}",
        started.elapsed().as_secs_f64(),
        outcomes.len() - ran,
        last.map(|l| format!("; last node: {l}"))
            .unwrap_or_default()
    );
    Ok(())
}

pub async fn plan(args: DagArgs) -> anyhow::Result<()> {
    let (dag, runner) = prepare(&args, Progress::hidden()).await?;
    let planned = runner.plan(&dag, args.until.as_deref()).await?;
    println!(
        "{:<18} {:<8} {:<16} {:<7} reason",
        "node", "stage", "fingerprint", "status"
    );
    for p in planned {
        let (status, reason) = match p.status {
            NodeStatus::Cached => ("cached", "committed output found".to_string()),
            NodeStatus::ToRun { reason } => ("to-run", reason),
        };
        println!(
            "{:<18} {:<8} {:<16} {:<7} {reason}",
            p.name, p.stage, p.fingerprint, status
        );
    }
    Ok(())
}
