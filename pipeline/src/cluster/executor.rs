//! `speechmill executor`: a Ballista executor with speechmill's UDFs and stores.
//! Models load lazily inside the UDFs, once per executor process.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::RuntimeProducer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::prelude::SessionConfig;

use super::{MAX_MESSAGE_BYTES, SpeechmillCodec, config_producer, server_runtime, server_state};
use crate::error::{Error, Result};
use crate::stage::StageRegistry;

/// How an executor is started.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Interface the Flight server listens on.
    pub bind_host: String,
    /// The name other executors and clients reach this one by (default: the
    /// address the scheduler sees it connect from).
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle and result fetches); 0 picks a free one.
    pub flight_port: u16,
    /// Executor gRPC port; 0 picks a free one.
    pub grpc_port: u16,
    /// Tasks run at once; 0 means one per core.
    pub concurrent_tasks: usize,
    /// Shuffle and spill files.
    pub work_dir: PathBuf,
}

/// Registers with the scheduler and runs tasks until the process is stopped.
pub async fn run(registry: Arc<StageRegistry>, options: ExecutorOptions) -> Result<()> {
    std::fs::create_dir_all(&options.work_dir).map_err(|e| {
        Error::Cluster(format!(
            "executor: cannot create work dir {}: {e}",
            options.work_dir.display()
        ))
    })?;
    let work_dir = options.work_dir.display().to_string();
    let functions = server_state(&registry, config_producer())?;
    let functions = Arc::new(BallistaFunctionRegistry::from(&functions));
    let temp_dir = work_dir.clone();
    let runtime_producer: RuntimeProducer =
        Arc::new(move |_: &SessionConfig| server_runtime(Some(&temp_dir)));
    let port = pick_port(&options.bind_host, options.flight_port)?;
    let grpc_port = pick_port(&options.bind_host, options.grpc_port)?;
    let message_bytes = MAX_MESSAGE_BYTES as u32;
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: options.external_host.clone(),
        port,
        grpc_port,
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: options.concurrent_tasks,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: Some(work_dir),
        grpc_max_decoding_message_size: message_bytes,
        grpc_max_encoding_message_size: message_bytes,
        override_function_registry: Some(functions),
        override_runtime_producer: Some(runtime_producer),
        override_config_producer: Some(Arc::new(config_producer)),
        override_physical_codec: Some(Arc::new(SpeechmillCodec::default())),
        ..Default::default()
    };
    eprintln!(
        "executor: flight port {port}, scheduler {}:{}",
        options.scheduler_host, options.scheduler_port
    );
    start_executor_process(Arc::new(config)).await.map_err(|e| {
        Error::Cluster(format!(
            "executor: {} (is the scheduler at {}:{} running?)",
            crate::error::one_line(&e.to_string()),
            options.scheduler_host,
            options.scheduler_port
        ))
    })
}

/// Ballista advertises the configured port as is, so 0 must become a real port
/// here (another process could take it before the executor binds: rare, and
/// the executor then fails with one line).
fn pick_port(host: &str, port: u16) -> Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Cluster(format!("executor: cannot find a free port on {host}: {e}")))
}
