//! Subcommands. Each is a small function over the pipeline and stages crates.

mod cluster;
mod decode;
mod doctor;
mod output;
mod report;
mod run;
mod sql;

pub use sql::format_unix;

use clap::{Parser, Subcommand};
use speechmill_pipeline::Override;

/// speechmill turns raw audio into training data for speech models: it crawls
/// audio, decodes it, cuts it into speech segments and pseudo-labels them with
/// Whisper — as a DAG of DataFusion queries whose every node is committed to a run
/// store, so reruns resume and only changed nodes recompute.
///
/// Start with the demo:
///
///   speechmill run dags/demo.toml --store store/demo
///   speechmill inspect --store store/demo
///   speechmill sql --store store/demo "SELECT uri, codec, duration_s FROM decode"
///   speechmill report --store store/demo --out report.html
#[derive(Parser, Debug)]
#[command(name = "speechmill", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by `run` and `plan`.
#[derive(clap::Args, Debug)]
pub struct DagArgs {
    /// The DAG file (TOML), e.g. dags/demo.toml.
    pub dag: String,
    /// Run store: a local directory or s3://bucket/prefix (S3 settings come from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_ALLOW_HTTP).
    #[arg(long)]
    pub store: String,
    /// Override a node parameter: NODE.PARAM=VALUE, the value read as TOML (a bare
    /// word is a string). Repeatable. Example: --set 'ingest.paths=["a/*.wav"]'
    #[arg(long = "set", value_name = "NODE.PARAM=VALUE")]
    pub overrides: Vec<Override>,
    /// Only NODE and the nodes it depends on.
    #[arg(long, value_name = "NODE")]
    pub until: Option<String>,
}

/// Options of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub dag: DagArgs,
    /// Execute on a Ballista cluster: the scheduler's address, df://HOST:PORT
    /// (see `speechmill scheduler`). Planning and commits stay on this machine;
    /// executors fetch the sources, run the stages and write each node's parts
    /// into the store, so use an s3:// store (or a directory every executor
    /// shares).
    #[arg(long, value_name = "df://HOST:PORT")]
    pub cluster: Option<String>,
    /// With --cluster: how many tasks each node's work is split into (spread
    /// over the executors' task slots).
    #[arg(long, value_name = "N", requires = "cluster", default_value_t = speechmill_pipeline::cluster::DEFAULT_PARTITIONS)]
    pub partitions: usize,
    /// How many nodes run at once: nodes start in the DAG file's order as soon as
    /// their inputs are committed, beside earlier ones still running. Each node
    /// already uses every core; the others fill the cores where it leaves them idle
    /// (e.g. `align`, `asr_check` and `quality` side by side). 1 runs the nodes one
    /// after another (each node's time then is its own, as benchmarks per node want).
    #[arg(long, value_name = "N", default_value_t = speechmill_pipeline::runner::DEFAULT_PARALLEL_NODES)]
    pub parallel_nodes: usize,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a DAG: every node not already committed in the store runs, and its
    /// output is committed. Exits 0 when the run completes, whatever it rejected.
    /// One run at a time per store: a second is refused, naming the first.
    Run(RunArgs),
    /// Show the DAG's nodes in order, each marked cached or to-run, with the reason.
    Plan(DagArgs),
    /// Query committed tables with SQL: each node is a table by its name, and its
    /// rejects are `<node>_rejects`.
    Sql(sql::SqlArgs),
    /// Rows, hours of audio, rejects by reason and data parts, per committed node,
    /// then what the latest run did: cached or computed, wall time, rows and audio
    /// in and out, audio-seconds per second, executors.
    Inspect(sql::InspectArgs),
    /// Write one self-contained HTML page about a store (no network needed to view
    /// it): the funnel of rows kept and rejected by reason, distributions of the
    /// kept set, throughput per node, samples of every bucket with audio players,
    /// and the DAG with its parameters.
    Report(report::ReportArgs),
    /// Check every file the stages load (onnxruntime, the Silero VAD graph, the
    /// converted Whisper models) and list the demo's and tests' tools; exits
    /// non-zero naming what is missing and the command that installs it.
    Doctor,
    /// Decode audio files to 16 kHz mono PCM16 (s16le), the way stages see them.
    Decode(decode::DecodeArgs),
    /// Run a Ballista scheduler for `speechmill run --cluster` (until killed).
    Scheduler(cluster::SchedulerArgs),
    /// Run a Ballista executor: registers with a scheduler and runs speechmill
    /// tasks, writing their output into the store (until killed). Models load on
    /// first use from this machine's cache, checked against the plan's hashes.
    Executor(cluster::ExecutorArgs),
}

pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Plan(args) => run::plan(args).await,
        Command::Sql(args) => sql::sql(args).await,
        Command::Inspect(args) => sql::inspect(args).await,
        Command::Report(args) => report::report(args).await,
        Command::Doctor => doctor::doctor(),
        Command::Decode(args) => decode::decode(args),
        Command::Scheduler(args) => cluster::scheduler(args).await,
        Command::Executor(args) => cluster::executor(args).await,
    }
}
