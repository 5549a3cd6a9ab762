//! The stage contract. `pipeline` never names a stage: it sees this trait and a
//! registry that maps the DAG's `stage = "…"` string to an implementation.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::store::RunStore;

/// A stage plan marks rows to reject by a non-null value in this column; the runner
/// routes them to the node's `<node>_rejects` table as `reason`.
pub const REJECT_REASON_COLUMN: &str = "reject_reason";

/// How many inputs a stage reads.
#[derive(Clone, Copy, Debug)]
pub enum InputArity {
    Exactly(usize),
    AtLeast(usize),
}

impl InputArity {
    pub fn accepts(&self, n: usize) -> bool {
        match *self {
            InputArity::Exactly(k) => n == k,
            InputArity::AtLeast(k) => n >= k,
        }
    }
}

impl std::fmt::Display for InputArity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |k: usize| if k == 1 { "" } else { "s" };
        match *self {
            InputArity::Exactly(0) => write!(f, "no inputs"),
            InputArity::Exactly(k) => write!(f, "exactly {k} input{}", plural(k)),
            InputArity::AtLeast(k) => write!(f, "at least {k} input{}", plural(k)),
        }
    }
}

/// What a stage gets while it fingerprints or plans a node.
pub struct StageContext {
    pub session: SessionContext,
    pub store: RunStore,
    pub node: String,
    /// The node's inputs, in the DAG's order: the names their committed tables are
    /// registered under in `session` (and the order of `plan`'s frames).
    pub inputs: Vec<String>,
}

/// A built-in stage: turns a node's params into a [`ConfiguredStage`].
pub trait Stage: Send + Sync {
    /// The name DAG files use (`stage = "ingest"`).
    fn name(&self) -> &'static str;
    /// Parses and validates a node's params; the error names the parameter.
    fn configure(&self, params: toml::Table) -> Result<Box<dyn ConfiguredStage>, String>;
    /// The UDFs this stage's plans call. Registered in every session, local or
    /// on cluster executors, so plans find them by name.
    fn udfs(&self) -> Vec<ScalarUDF>;
}

/// A stage with validated params, ready to fingerprint and plan.
#[async_trait::async_trait]
pub trait ConfiguredStage: Send + Sync {
    fn stage_name(&self) -> &'static str;
    /// Bumped whenever the stage's output for the same inputs changes.
    fn version(&self) -> u32;
    fn input_arity(&self) -> InputArity;
    /// The validated params (defaults filled in). The fingerprint hashes all of
    /// them but [`ConfiguredStage::speed_only_params`].
    fn params_json(&self) -> serde_json::Value;
    /// Params that change how fast the stage runs, never what it writes (threads,
    /// concurrency, batch sizes, device). The fingerprint leaves them out, so tuning
    /// them reuses committed output.
    fn speed_only_params(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whatever else decides the output besides params and inputs: the listing of
    /// the sources a crawl would read, model file hashes.
    async fn fingerprint_material(&self, _cx: &StageContext) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    /// Rows per batch this stage wants (small for heavy per-row work, so rows
    /// spread over cores).
    fn batch_rows(&self) -> Option<usize> {
        None
    }
    /// The node's plan over its inputs' committed tables. Rows whose
    /// [`REJECT_REASON_COLUMN`] is non-null become rejects.
    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame>;
}

/// Maps stage names to stages, and holds the SQL functions every session has
/// (the stages' UDFs and functions for users' queries, such as `wer`).
#[derive(Default, Clone)]
pub struct StageRegistry {
    stages: BTreeMap<&'static str, Arc<dyn Stage>>,
    functions: Vec<ScalarUDF>,
}

impl StageRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, stage: Arc<dyn Stage>) {
        self.stages.insert(stage.name(), stage);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Stage>> {
        self.stages.get(name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.stages.keys().copied().collect()
    }

    /// Every stage's UDFs, for registering in a session.
    pub fn udfs(&self) -> Vec<ScalarUDF> {
        self.stages
            .values()
            .flat_map(|s| s.udfs())
            .chain(self.functions.iter().cloned())
            .collect()
    }

    /// A SQL function of no stage (for `sql` nodes, filters, `speechmill sql`);
    /// registered in every session, locally and on a cluster, like stages' UDFs.
    pub fn register_function(&mut self, udf: ScalarUDF) {
        self.functions.push(udf);
    }
}

/// Parses a params table into a stage's typed params struct (which should be
/// `#[serde(deny_unknown_fields)]`), with errors worded for DAG authors.
pub fn parse_params<T: DeserializeOwned>(params: toml::Table) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(params)).map_err(|e| {
        let path = e.path().to_string();
        let msg = crate::error::one_line(e.inner().message())
            .replace("unknown field", "unknown parameter")
            .replace("missing field", "missing parameter");
        if path.is_empty() || path == "." || msg.starts_with("unknown parameter") {
            msg
        } else {
            format!("parameter `{path}`: {msg}")
        }
    })
}
