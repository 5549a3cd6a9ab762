//! `speechmill scheduler`: a Ballista scheduler that knows speechmill's UDFs.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_scheduler::SessionBuilder;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use super::{MAX_MESSAGE_BYTES, SpeechmillCodec, config_producer, server_state};
use crate::error::{Error, Result};
use crate::stage::StageRegistry;

/// How the scheduler is started.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The name executors and clients reach this scheduler by (default: the bind host).
    pub external_host: Option<String>,
    /// An executor silent this long is declared dead and its tasks rescheduled.
    pub executor_timeout_s: u64,
}

/// A bound scheduler, not yet serving.
pub struct BoundScheduler {
    listener: tokio::net::TcpListener,
    config: Arc<SchedulerConfig>,
}

impl BoundScheduler {
    /// Binds the port, so the caller can print the real address before serving.
    pub async fn bind(registry: Arc<StageRegistry>, options: &SchedulerOptions) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|e| {
                Error::Cluster(format!("scheduler: cannot listen on {}: {e}", options.bind))
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Cluster(format!("scheduler: {e}")))?
            .port();
        let session_builder: SessionBuilder =
            Arc::new(move |config: SessionConfig| server_state(&registry, config));
        let message_bytes = MAX_MESSAGE_BYTES as u32;
        let config = SchedulerConfig {
            bind_host: options.bind.ip().to_string(),
            bind_port: port,
            external_host: options
                .external_host
                .clone()
                .unwrap_or_else(|| options.bind.ip().to_string()),
            // Executors ask for work; the scheduler never dials them.
            scheduling_policy: TaskSchedulingPolicy::PullStaged,
            executor_timeout_seconds: options.executor_timeout_s.max(2),
            expire_dead_executor_interval_seconds: (options.executor_timeout_s / 4).max(1),
            no_executors_grace_period_seconds: options.executor_timeout_s.max(2),
            grpc_server_max_decoding_message_size: message_bytes,
            grpc_server_max_encoding_message_size: message_bytes,
            grpc_client_max_message_size: message_bytes,
            override_config_producer: Some(Arc::new(config_producer)),
            override_physical_codec: Some(Arc::new(SpeechmillCodec::default())),
            override_session_builder: Some(session_builder),
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| Error::Cluster(format!("scheduler: {e}")))?;
        Ok(BoundScheduler {
            listener,
            config: Arc::new(config),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Cluster(format!("scheduler: {e}")))
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<()> {
        let cluster = BallistaCluster::new_from_config(&self.config)
            .await
            .map_err(|e| Error::Cluster(format!("scheduler: {e}")))?;
        let scheduler =
            create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, self.config.clone())
                .await
                .map_err(|e| Error::Cluster(format!("scheduler: {e}")))?;
        start_grpc_service_with_listener(self.listener, scheduler)
            .await
            .map_err(|e| Error::Cluster(format!("scheduler: {e}")))
    }
}
