//! `speechmill scheduler` and `speechmill executor`: the two Ballista server
//! processes, with speechmill's UDFs and stores registered.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use speechmill_pipeline::cluster::executor::{self, ExecutorOptions};
use speechmill_pipeline::cluster::parse_address;
use speechmill_pipeline::cluster::scheduler::{BoundScheduler, SchedulerOptions};

#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    /// Address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50050")]
    pub bind: String,
    /// Name executors and clients reach this scheduler by, when not the bind host.
    #[arg(long, value_name = "NAME")]
    pub external_host: Option<String>,
    /// Seconds without a heartbeat before an executor is declared dead and its
    /// tasks are run elsewhere (executors beat every 5 s).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub executor_timeout: u64,
}

#[derive(clap::Args, Debug)]
pub struct ExecutorArgs {
    /// The scheduler to register with: HOST:PORT (or df://HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    pub scheduler: String,
    /// Interface to listen on.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub bind: String,
    /// Name other executors and the client reach this one by (default: the
    /// address the scheduler sees). Set it to the pod IP on Kubernetes.
    #[arg(long, value_name = "NAME")]
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle and result fetches); 0 picks a free one.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub port: u16,
    /// Executor gRPC port; 0 picks a free one.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub grpc_port: u16,
    /// Tasks run at once; 0 means one per core.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Folder for shuffle and spill files (default: a new folder under the
    /// system temp dir).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

pub async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let bind: SocketAddr = args
        .bind
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| {
            format!(
                "--bind {}: expected HOST:PORT, e.g. 0.0.0.0:50050",
                args.bind
            )
        })?;
    let registry = Arc::new(speechmill_stages::builtin_registry());
    let bound = BoundScheduler::bind(
        registry,
        &SchedulerOptions {
            bind,
            external_host: args.external_host,
            executor_timeout_s: args.executor_timeout,
        },
    )
    .await?;
    println!("scheduler listening on {}", bound.local_addr()?);
    bound.serve().await?;
    Ok(())
}

pub async fn executor(args: ExecutorArgs) -> anyhow::Result<()> {
    let (scheduler_host, scheduler_port) = parse_address(&args.scheduler)
        .map_err(|_| anyhow::anyhow!("--scheduler {}: expected HOST:PORT", args.scheduler))?;
    let work_dir = match args.work_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("speechmill-executor-{}", std::process::id())),
    };
    let registry = Arc::new(speechmill_stages::builtin_registry());
    executor::run(
        registry,
        ExecutorOptions {
            scheduler_host,
            scheduler_port,
            bind_host: args.bind,
            external_host: args.external_host,
            flight_port: args.port,
            grpc_port: args.grpc_port,
            concurrent_tasks: args.concurrent_tasks,
            work_dir,
        },
    )
    .await?;
    Ok(())
}
