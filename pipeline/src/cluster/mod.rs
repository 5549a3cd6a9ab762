//! Running speechmill on a DataFusion Ballista cluster.
//!
//! The client plans each node exactly as a local run does (same session, same
//! UDFs, the ingest listing in memory), then submits the *physical* plan to the
//! scheduler instead of executing it. Submitting physical plans, not logical
//! ones, keeps one planning path for both modes: in-memory tables serialize
//! inside the plan, and the scheduler only cuts the plan into stages at its
//! repartitions. The plan's top is a [`crate::parts::PartWriterExec`]: executors
//! write the node's parts into the store themselves and send back one summary row
//! per task, from which the client commits the marker, as a local run does.
//!
//! [`scheduler`] and [`executor`] are the two server processes. Both register
//! every speechmill UDF (plans name them) and open `s3://` buckets on demand
//! with the same settings as the run store ([`crate::store::LazyS3Registry`]).

mod codec;
pub mod executor;
pub mod scheduler;

pub use codec::SpeechmillCodec;

use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::common::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::PhysicalPlanNode;

use crate::error::{Error, Result};
use crate::stage::StageRegistry;
use crate::store::LazyS3Registry;

/// gRPC message limit for plans and results (Ballista's default is 16 MiB; an
/// ingest listing travels inside the plan).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Tasks a heavy stage is split into on a cluster when `--partitions` is not given.
pub const DEFAULT_PARTITIONS: usize = 16;

/// A scheduler address the client submits plans to.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// `df://host:port`, as the user wrote it.
    pub address: String,
    host: String,
    port: u16,
    /// How many tasks a stage's work is split into.
    pub partitions: usize,
}

impl Cluster {
    /// Parses `df://HOST:PORT` and checks that a scheduler listens there, so a
    /// wrong address fails at once with one line instead of mid-run.
    pub async fn connect(address: &str, partitions: Option<usize>) -> Result<Self> {
        let (host, port) = parse_address(address)?;
        let reach = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await;
        let failure = match reach {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("timed out after 5 s".to_string()),
        };
        if let Some(why) = failure {
            return Err(Error::Cluster(format!(
                "{address}: cannot reach the scheduler ({why}); start one with \
                 `speechmill scheduler --bind {host}:{port}` or fix --cluster"
            )));
        }
        Ok(Cluster {
            address: address.to_string(),
            host,
            port,
            partitions: partitions.unwrap_or(DEFAULT_PARTITIONS).max(1),
        })
    }

    /// Adds what Ballista needs to a node's session config: its settings
    /// extension, the job name and message limits.
    pub fn configure(&self, config: SessionConfig, job_name: &str) -> Result<SessionConfig> {
        let mut config = config
            .with_option_extension(BallistaConfig::default())
            .with_ballista_physical_extension_codec(Arc::new(SpeechmillCodec::default()))
            .with_target_partitions(self.partitions);
        let options = config.options_mut();
        options.set("ballista.job.name", job_name)?;
        // Ballista's adaptive planner merges shuffle partitions by bytes. A row of
        // ours is a blob key or a segment that costs seconds of decoding, VAD or
        // Whisper, not bytes: merging would put a node's whole work in one task.
        options.set("ballista.planner.coalesce.enabled", "false")?;
        // The scheduler swaps hash-join inputs once it knows stage sizes, which
        // DataFusion refuses for a join whose dynamic filter the client's planning
        // already built; Ballista then leaves the job hanging. A `filter` node's joins
        // are over small label tables, where the dynamic filter buys nothing.
        options.optimizer.enable_dynamic_filter_pushdown = false;
        options.optimizer.enable_join_dynamic_filter_pushdown = false;
        options.set(
            "ballista.client.grpc_max_message_size",
            &MAX_MESSAGE_BYTES.to_string(),
        )?;
        Ok(config)
    }

    /// Runs a physical plan (planned here) on the cluster; the stream yields the
    /// job's result batches once the job has finished.
    pub async fn execute_plan(
        &self,
        session: &SessionContext,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<SendableRecordBatchStream> {
        let state = session.state();
        let config = state.config().clone();
        let codec = config.ballista_physical_extension_codec();
        let stream = execute_physical_plan::<PhysicalPlanNode>(
            format!("http://{}:{}", self.host, self.port),
            &config.ballista_config(),
            plan,
            codec.as_ref(),
            state.session_id().to_string(),
            config,
        )
        .await
        .map_err(|e| self.explain(e))?;
        Ok(stream)
    }

    /// Names the cluster in errors raised while talking to it.
    pub fn explain(&self, e: DataFusionError) -> Error {
        Error::Cluster(format!(
            "cluster {}: {}",
            self.address,
            crate::error::one_line(&e.to_string())
        ))
    }
}

/// Columns a cluster hashes rows on to spread a node's work over tasks, the first
/// one a plan has: rows of one source (or segment, document) stay in one task.
const SPREAD_KEYS: [&str; 4] = ["source_id", "segment_id", "doc_id", "uri"];

/// Makes a locally planned physical plan split into tasks on Ballista.
///
/// DataFusion's optimizer replaces our repartitions by round-robin ones where a
/// cheap input (one parquet part) feeds expensive UDFs, and Ballista's planner
/// cuts stages only at hash exchanges and drops every other repartition: the
/// node would run as one task writing one part. Each round-robin exchange
/// becomes a hash exchange on the first of [`SPREAD_KEYS`] its input has, with
/// the same partition count; an input with none of them stays round-robin.
pub fn distributable(
    plan: Arc<dyn ExecutionPlan>,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::repartition::RepartitionExec;

    plan.transform_up(|node| {
        let Some(exchange) = node.downcast_ref::<RepartitionExec>() else {
            return Ok(Transformed::no(node));
        };
        let Partitioning::RoundRobinBatch(n) = exchange.partitioning() else {
            return Ok(Transformed::no(node));
        };
        let input = exchange.input().clone();
        let schema = input.schema();
        let Some(key) = SPREAD_KEYS.iter().find_map(|k| col(k, &schema).ok()) else {
            return Ok(Transformed::no(node));
        };
        let mut hash = RepartitionExec::try_new(input, Partitioning::Hash(vec![key], *n))?;
        if exchange.preserve_order() {
            hash = hash.with_preserve_order();
        }
        Ok(Transformed::yes(Arc::new(hash) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// `df://HOST:PORT` (the `df://` may be left out) → host and port.
pub fn parse_address(address: &str) -> Result<(String, u16)> {
    let bad = || {
        Error::Cluster(format!(
            "{address}: not a cluster address; expected df://HOST:PORT (the scheduler's --bind)"
        ))
    };
    let rest = address.strip_prefix("df://").unwrap_or(address);
    if rest.contains("://") {
        return Err(bad());
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.trim_end_matches('/').parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The UDFs every cluster process registers: the stages' own.
pub(crate) fn udfs(registry: &StageRegistry) -> Vec<Arc<ScalarUDF>> {
    registry.udfs().into_iter().map(Arc::new).collect()
}

/// A runtime whose object stores open `s3://` buckets on demand; `temp_dir`
/// receives spill files.
pub(crate) fn server_runtime(
    temp_dir: Option<&str>,
) -> datafusion::common::Result<Arc<RuntimeEnv>> {
    let mut runtime =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(LazyS3Registry::default()));
    if let Some(dir) = temp_dir {
        runtime = runtime.with_temp_file_path(dir);
    }
    runtime.build_arc()
}

/// A session state with DataFusion's default functions, speechmill's UDFs and
/// the object stores, as the scheduler and executors need to decode plans.
pub(crate) fn server_state(
    registry: &StageRegistry,
    config: SessionConfig,
) -> datafusion::common::Result<SessionState> {
    let mut state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(server_runtime(None)?)
        .build();
    for udf in udfs(registry) {
        datafusion::execution::FunctionRegistry::register_udf(&mut state, udf)?;
    }
    Ok(state)
}

/// Settings every cluster process starts from (clients send theirs on top).
pub(crate) fn config_producer() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista()
        .with_ballista_physical_extension_codec(Arc::new(SpeechmillCodec::default()));
    // As in `Cluster::configure`: no dynamic join filters, whose joins the scheduler
    // could not reorder.
    config
        .options_mut()
        .optimizer
        .enable_dynamic_filter_pushdown = false;
    config
        .options_mut()
        .optimizer
        .enable_join_dynamic_filter_pushdown = false;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_addresses_parse_with_or_without_the_scheme() {
        assert_eq!(
            parse_address("df://127.0.0.1:50050").unwrap(),
            ("127.0.0.1".to_string(), 50050)
        );
        assert_eq!(
            parse_address("sched.local:7").unwrap(),
            ("sched.local".to_string(), 7)
        );
        for bad in ["http://h:1", "df://h", "df://:1", "df://h:x", "df://h:0"] {
            let e = parse_address(bad).unwrap_err().to_string();
            assert!(e.contains("df://HOST:PORT"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn round_robin_exchanges_become_hash_exchanges_on_the_source_id() {
        use datafusion::arrow::array::{ArrayRef, StringArray};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::physical_plan::{ExecutionPlanProperties, displayable};

        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
        let ids: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c", "d"]));
        let blobs: ArrayRef = Arc::new(StringArray::from(vec!["1", "2", "3", "4"]));
        let batch = RecordBatch::try_from_iter([("source_id", ids), ("blob", blobs)]).unwrap();
        ctx.register_batch("sources", batch).unwrap();
        use datafusion::physical_plan::Partitioning;
        use datafusion::physical_plan::repartition::RepartitionExec;
        let scan = ctx
            .sql("SELECT source_id, upper(blob) FROM sources")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        // What DataFusion's optimizer plants over a one-part input.
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(RepartitionExec::try_new(scan, Partitioning::RoundRobinBatch(4)).unwrap());
        let before = displayable(plan.as_ref()).indent(false).to_string();
        assert!(before.contains("RoundRobinBatch(4)"), "{before}");
        let after = distributable(plan).unwrap();
        let text = displayable(after.as_ref()).indent(false).to_string();
        assert!(!text.contains("RoundRobinBatch"), "{text}");
        assert!(text.contains("Hash([source_id@0], 4)"), "{text}");
        assert_eq!(after.output_partitioning().partition_count(), 4);
    }

    #[tokio::test]
    async fn an_unreachable_scheduler_is_one_line_naming_the_fix() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Cluster::connect(&format!("df://127.0.0.1:{port}"), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot reach the scheduler"), "{e}");
        assert!(e.contains("speechmill scheduler --bind"), "{e}");
        assert!(!e.contains('\n'));
    }
}
