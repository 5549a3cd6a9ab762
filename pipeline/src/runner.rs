//! Runs a DAG: each node once its inputs are committed (independent nodes side by
//! side, [`DEFAULT_PARALLEL_NODES`] at a time), as a DataFusion plan whose output is
//! committed to the run store. Committed nodes are skipped, so a rerun resumes
//! where a crash stopped and a changed node recomputes only what depends on it.

use std::sync::Arc;
use std::time::Instant;

use std::sync::Mutex;

use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::config::SessionConfig;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::cluster::Cluster;
use crate::dag::{Dag, Node, NodeKind};
use crate::error::{Error, Result};
use crate::fingerprint;
use crate::lease::RunLease;
use crate::parts::{PartTarget, PartWriterExec, Written};
use crate::progress::{NodeProgress, Progress};
use crate::runs::{NodeRecord, RunRecord};
use crate::stage::{StageContext, StageRegistry};
use crate::store::{CommitMarker, RunStore};

/// Whether a node will run, and why.
#[derive(Clone, Debug)]
pub enum NodeStatus {
    Cached,
    ToRun { reason: String },
}

/// A node of the DAG with its fingerprint and status.
#[derive(Clone, Debug)]
pub struct PlannedNode {
    pub name: String,
    pub stage: String,
    pub fingerprint: String,
    pub material: serde_json::Value,
    pub status: NodeStatus,
}

/// What happened to one node in a run.
#[derive(Clone, Debug)]
pub struct NodeOutcome {
    pub name: String,
    pub stage: String,
    pub cached: bool,
    pub marker: CommitMarker,
}

/// Executes DAGs against one run store.
pub struct Runner {
    registry: Arc<StageRegistry>,
    store: RunStore,
    progress: Progress,
    /// Where nodes execute: here when `None`, else on this Ballista cluster.
    cluster: Option<Cluster>,
    /// How many nodes whose inputs are ready may run at once.
    parallel_nodes: usize,
}

/// Nodes run at once by default. Each node's work already spreads over every core;
/// others beside it fill the cores where it leaves them idle (a model's tail, a
/// decoder waiting on its encoder), without holding many models at once. On the
/// corpus DAG (2 cores, 20 min of audio) one at a time took 127 s, two 121 s, three
/// 114.5 s (align, asr_check and quality side by side).
pub const DEFAULT_PARALLEL_NODES: usize = 3;

impl Runner {
    pub fn new(registry: Arc<StageRegistry>, store: RunStore, progress: Progress) -> Self {
        Runner {
            registry,
            store,
            progress,
            cluster: None,
            parallel_nodes: DEFAULT_PARALLEL_NODES,
        }
    }

    /// At most `n` nodes at once (at least 1; 1 runs them one after another).
    pub fn with_parallel_nodes(mut self, n: usize) -> Self {
        self.parallel_nodes = n.max(1);
        self
    }

    /// Executes nodes on a Ballista cluster; planning, commits and progress stay here.
    pub fn on_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    /// A DataFusion session with every speechmill UDF and the store registered.
    pub fn session(&self, batch_rows: Option<usize>) -> SessionContext {
        new_session(&self.registry, &self.store, batch_rows)
    }

    /// Fingerprints the nodes that `until` needs (all when `None`) and says which
    /// are committed already.
    pub async fn plan(&self, dag: &Dag, until: Option<&str>) -> Result<Vec<PlannedNode>> {
        let wanted = match until {
            Some(target) => dag.ancestors_and_self(target)?,
            None => dag.nodes.iter().map(|n| n.name.clone()).collect(),
        };
        let mut planned: Vec<PlannedNode> = Vec::new();
        for node in dag.nodes.iter().filter(|n| wanted.contains(&n.name)) {
            let inputs: Vec<(String, String)> = node
                .inputs
                .iter()
                .filter_map(|i| planned.iter().find(|p| &p.name == i))
                .map(|p| (p.name.clone(), p.fingerprint.clone()))
                .collect();
            let material = match &node.kind {
                NodeKind::Stage(stage) => {
                    let cx = StageContext {
                        session: self.session(stage.batch_rows()),
                        store: self.store.clone(),
                        node: node.name.clone(),
                        inputs: node.inputs.clone(),
                    };
                    let extra = stage
                        .fingerprint_material(&cx)
                        .await
                        .map_err(|e| e.in_node(&node.name))?;
                    fingerprint::material(
                        stage.stage_name(),
                        stage.version(),
                        stage.params_json(),
                        stage.speed_only_params(),
                        extra,
                        &inputs,
                    )
                }
                NodeKind::Sql(sql) => fingerprint::material(
                    "sql",
                    1,
                    serde_json::json!({ "sql": sql }),
                    &[],
                    serde_json::Value::Null,
                    &inputs,
                ),
            };
            let fp = fingerprint::fingerprint(&material);
            let status = if self.store.committed(&node.name, &fp).await?.is_some() {
                NodeStatus::Cached
            } else {
                let reason = match self.store.current(&node.name).await? {
                    None => "never run in this store".to_string(),
                    Some(old) => fingerprint::explain_change(&old.fingerprint_material, &material),
                };
                NodeStatus::ToRun { reason }
            };
            planned.push(PlannedNode {
                name: node.name.clone(),
                stage: node.stage_name().to_string(),
                fingerprint: fp,
                material,
                status,
            });
        }
        Ok(planned)
    }

    /// Runs the nodes that `until` needs, skipping committed ones. The run holds the
    /// store's lease throughout, so a second run on the same store is refused. Its
    /// record (see [`crate::runs`]) is rewritten in the store after every node.
    pub async fn run(&self, dag: &Dag, until: Option<&str>) -> Result<Vec<NodeOutcome>> {
        let lease = RunLease::acquire(&self.store, &format!("run {}", dag.file)).await?;
        let mode = match &self.cluster {
            None => "local".to_string(),
            Some(c) => format!("cluster {}", c.address),
        };
        let mut record = RunRecord::start(&dag.file, &mode, until);
        let outcome = self.run_leased(dag, until, &mut record).await;
        record.finish(outcome.as_ref().err().map(|e| e.to_string()).as_deref());
        let saved = record.save(&self.store).await;
        lease.release().await?;
        let outcome = outcome?;
        saved?;
        Ok(outcome)
    }

    async fn run_leased(
        &self,
        dag: &Dag,
        until: Option<&str>,
        record: &mut RunRecord,
    ) -> Result<Vec<NodeOutcome>> {
        let planned = self.plan(dag, until).await?;
        record.save(&self.store).await?;
        let overall = self.progress.run_line(planned.len());
        let planned_names: std::collections::HashSet<&str> =
            planned.iter().map(|p| p.name.as_str()).collect();
        let mut done: Vec<NodeOutcome> = Vec::new();
        let mut started = vec![false; planned.len()];
        let mut running = futures::stream::FuturesUnordered::new();
        let mut failure: Option<Error> = None;
        loop {
            // Start nodes in plan order (the DAG file's, dependencies first) while
            // fewer than `parallel_nodes` run: a node whose inputs are not committed
            // yet holds back the ones after it, so nodes start in the order the user
            // wrote them, beside whichever earlier ones still run. None after a failure.
            for (i, plan) in planned.iter().enumerate() {
                if failure.is_some() || running.len() >= self.parallel_nodes {
                    break;
                }
                if started[i] {
                    continue;
                }
                let Some(node) = dag.node(&plan.name) else {
                    started[i] = true;
                    continue;
                };
                let ready = node.inputs.iter().all(|input| {
                    !planned_names.contains(input.as_str()) || done.iter().any(|o| &o.name == input)
                });
                if !ready {
                    break;
                }
                started[i] = true;
                let inputs: Vec<CommitMarker> = node
                    .inputs
                    .iter()
                    .filter_map(|i| done.iter().find(|o| &o.name == i).map(|o| o.marker.clone()))
                    .collect();
                // What the node works through: its first input's audio (a join's base).
                let audio_in = inputs.first().and_then(|m| m.audio_seconds);
                let bar = overall.node(&self.progress, &plan.name, &plan.stage, audio_in);
                running.push(async move {
                    let begun = Instant::now();
                    let refs: Vec<&CommitMarker> = inputs.iter().collect();
                    let result = self.execute_node(node, plan, &refs, &bar).await;
                    (inputs, begun.elapsed().as_secs_f64(), result)
                });
            }
            let Some((inputs, elapsed_s, result)) = running.next().await else {
                break;
            };
            match result {
                Ok((outcome, executors)) => {
                    let refs: Vec<&CommitMarker> = inputs.iter().collect();
                    record.nodes.push(NodeRecord::new(
                        &outcome.marker,
                        &refs,
                        outcome.cached,
                        elapsed_s,
                        executors,
                    ));
                    record.save(&self.store).await?;
                    done.push(outcome);
                }
                // The nodes already running finish (and commit) before the run stops.
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        overall.finish();
        if let Some(e) = failure {
            return Err(e);
        }
        // In plan order, whatever order they finished in.
        done.sort_by_key(|o| planned.iter().position(|p| p.name == o.name));
        Ok(done)
    }

    /// One planned node: its committed output when cached, else runs it. With the
    /// number of executors that ran it (0 here or cached).
    async fn execute_node(
        &self,
        node: &Node,
        plan: &PlannedNode,
        inputs: &[&CommitMarker],
        bar: &NodeProgress,
    ) -> Result<(NodeOutcome, usize)> {
        match plan.status {
            NodeStatus::Cached => {
                let marker = self
                    .store
                    .committed(&plan.name, &plan.fingerprint)
                    .await?
                    .ok_or_else(|| {
                        Error::node(&plan.name, "committed output vanished during the run")
                    })?;
                // Point CURRENT back here in case another DAG moved it.
                self.store.commit(&marker).await?;
                bar.finish_cached(&marker);
                let outcome = NodeOutcome {
                    name: plan.name.clone(),
                    stage: plan.stage.clone(),
                    cached: true,
                    marker,
                };
                Ok((outcome, 0))
            }
            NodeStatus::ToRun { .. } => {
                let (marker, executors) = self.run_node(node, plan, inputs, bar).await?;
                bar.finish(&marker);
                let outcome = NodeOutcome {
                    name: plan.name.clone(),
                    stage: plan.stage.clone(),
                    cached: false,
                    marker,
                };
                Ok((outcome, executors))
            }
        }
    }

    async fn run_node(
        &self,
        node: &Node,
        plan: &PlannedNode,
        inputs: &[&CommitMarker],
        bar: &NodeProgress,
    ) -> Result<(CommitMarker, usize)> {
        let started = Instant::now();
        let batch_rows = match &node.kind {
            NodeKind::Stage(s) => s.batch_rows(),
            NodeKind::Sql(_) => None,
        };
        let session = match &self.cluster {
            None => self.session(batch_rows),
            Some(cluster) => session_with_config(
                &self.registry,
                &self.store,
                cluster.configure(session_config(batch_rows), &node.name)?,
            ),
        };
        // A node may read one input twice (`tokenize` reads `wordspan` as its spans
        // and their speech): register each once.
        let mut registered = std::collections::BTreeSet::new();
        for input in inputs {
            if registered.insert(input.node.as_str()) {
                register_marker(&session, &self.store, input).await?;
            }
        }
        let frames = {
            let mut frames = Vec::new();
            for input in &node.inputs {
                frames.push(session.table(input.as_str()).await?);
            }
            frames
        };
        let df = match &node.kind {
            NodeKind::Stage(stage) => {
                let cx = StageContext {
                    session: session.clone(),
                    store: self.store.clone(),
                    node: node.name.clone(),
                    inputs: node.inputs.clone(),
                };
                stage
                    .plan(&cx, frames)
                    .await
                    .map_err(|e| e.in_node(&node.name))?
            }
            NodeKind::Sql(sql) => session
                .sql(sql)
                .await
                .map_err(|e| Error::node(&node.name, e))?,
        };

        self.store.clear(&node.name, &plan.fingerprint).await?;
        let target = PartTarget {
            store: self.store.url().to_string(),
            node: node.name.clone(),
            fingerprint: plan.fingerprint.clone(),
        };
        let written = self
            .execute_parts(&session, df, &target, bar)
            .await
            .map_err(|e| e.in_node(&node.name))?;
        let marker = CommitMarker {
            node: node.name.clone(),
            stage: plan.stage.clone(),
            fingerprint: plan.fingerprint.clone(),
            fingerprint_material: plan.material.clone(),
            rows: written.rows,
            rejects: written.rejects,
            audio_seconds: written.audio_seconds,
            data_files: written.data_files,
            reject_files: written.reject_files,
            committed_at_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        self.store.commit(&marker).await?;
        Ok((marker, written.workers.len()))
    }
}

impl Runner {
    /// Runs `df` with a [`PartWriterExec`] on top, here or on the cluster: each task
    /// writes its own parts into the node's folder and returns a summary row.
    async fn execute_parts(
        &self,
        session: &SessionContext,
        df: DataFrame,
        target: &PartTarget,
        bar: &NodeProgress,
    ) -> Result<Written> {
        let mut plan = df
            .create_physical_plan()
            .await
            .map_err(|e| Error::node(&target.node, e))?;
        if self.cluster.is_some() {
            plan = crate::cluster::distributable(plan).map_err(|e| Error::node(&target.node, e))?;
        }
        let writer = PartWriterExec::new(plan, target.clone())?;
        let layout = writer.layout().clone();
        let mut summaries = match &self.cluster {
            None => {
                let tally = Arc::new(Mutex::new(Written::default()));
                let hook_tally = tally.clone();
                let hook_bar = bar.clone();
                let writer = writer.with_progress(Arc::new(move |rows, rejects, seconds| {
                    let mut t = hook_tally.lock().unwrap_or_else(|p| p.into_inner());
                    t.rows += rows;
                    t.rejects += rejects;
                    if let Some(s) = seconds {
                        *t.audio_seconds.get_or_insert(0.0) += s;
                    }
                    hook_bar.update(t.rows, t.rejects, t.audio_seconds);
                }));
                execute_stream(Arc::new(writer), session.task_ctx())?
            }
            Some(cluster) => cluster.execute_plan(session, Arc::new(writer)).await?,
        };
        // Polled on a task of its own: a plan of one partition computes inside its
        // stream's poll, which would otherwise hold up the nodes running beside it.
        let collect = tokio::spawn(async move {
            let mut written = Written::default();
            while let Some(summary) = summaries.next().await {
                written.add(&summary?)?;
            }
            Ok::<Written, Error>(written)
        });
        let mut written = match collect.await {
            Ok(written) => written?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(Error::node(&target.node, format!("its task stopped: {e}"))),
        };
        written.finish(&self.store, target, &layout).await?;
        Ok(written)
    }
}

/// A session with speechmill's UDFs and the store's object store.
pub fn new_session(
    registry: &StageRegistry,
    store: &RunStore,
    batch_rows: Option<usize>,
) -> SessionContext {
    session_with_config(registry, store, session_config(batch_rows))
}

/// The settings of every speechmill session.
fn session_config(batch_rows: Option<usize>) -> SessionConfig {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut config = SessionConfig::new()
        .with_target_partitions(cores)
        .with_information_schema(true);
    // Stages read several fields of one struct-returning UDF call (`f(x)['a'],
    // f(x)['b']`). Leaf-expression pushdown inlines the call into every field access,
    // so an ASR or decode UDF would run once per field (apache/datafusion#23655,
    // #24678): it stays off.
    config
        .options_mut()
        .optimizer
        .enable_leaf_expression_pushdown = false;
    if let Some(rows) = batch_rows {
        config = config.with_batch_size(rows.max(1));
    }
    config
}

fn session_with_config(
    registry: &StageRegistry,
    store: &RunStore,
    config: SessionConfig,
) -> SessionContext {
    let session = SessionContext::new_with_config(config);
    store.register(&session);
    for udf in registry.udfs() {
        session.register_udf(udf);
    }
    session
}

/// Registers a committed node as `<node>` and its rejects as `<node>_rejects`, each
/// a table over every part the marker lists.
pub async fn register_marker(
    session: &SessionContext,
    store: &RunStore,
    marker: &CommitMarker,
) -> Result<()> {
    for (name, files) in [
        (marker.node.clone(), &marker.data_files),
        (format!("{}_rejects", marker.node), &marker.reject_files),
    ] {
        let urls = store
            .file_urls(files)
            .iter()
            .map(ListingTableUrl::parse)
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        if urls.is_empty() {
            continue;
        }
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .infer_schema(&session.state())
            .await?;
        session.register_table(name.as_str(), Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(())
}

/// Registers every committed node of the store (for `speechmill sql` and reports).
pub async fn register_store_tables(
    session: &SessionContext,
    store: &RunStore,
) -> Result<Vec<CommitMarker>> {
    let markers = store.current_nodes().await?;
    for marker in &markers {
        register_marker(session, store, marker).await?;
    }
    Ok(markers)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StructArray};
    use datafusion::arrow::datatypes::{DataType, Field, Fields};
    use datafusion::logical_expr::{
        ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    };

    use super::*;

    /// `counted(x)` = `{a: x, b: x}`, counting the rows it is called on.
    #[derive(Debug)]
    struct Counted {
        signature: Signature,
        rows: Arc<AtomicUsize>,
    }

    impl PartialEq for Counted {
        fn eq(&self, _: &Self) -> bool {
            true
        }
    }
    impl Eq for Counted {}
    impl std::hash::Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ])
    }

    impl ScalarUDFImpl for Counted {
        fn name(&self) -> &str {
            "counted"
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
            Ok(DataType::Struct(fields()))
        }
        fn invoke_with_args(
            &self,
            args: ScalarFunctionArgs,
        ) -> datafusion::common::Result<ColumnarValue> {
            let x = args.args[0].to_array(args.number_rows)?;
            self.rows.fetch_add(x.len(), Ordering::SeqCst);
            let x: ArrayRef = Arc::new(Int64Array::from(
                x.as_any().downcast_ref::<Int64Array>().unwrap().clone(),
            ));
            Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
                fields(),
                vec![x.clone(), x],
                None,
            )?)))
        }
    }

    #[tokio::test]
    async fn each_task_writes_its_own_parts_and_readers_see_every_part() {
        use datafusion::arrow::array::StringArray;
        use datafusion::arrow::datatypes::Schema;
        use datafusion::catalog::MemTable;

        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let registry = Arc::new(StageRegistry::new());
        let session = new_session(&registry, &store, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("reject_reason", DataType::Utf8, true),
        ]));
        let batch = |xs: Vec<i64>, reasons: Vec<Option<&str>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(xs)),
                    Arc::new(StringArray::from(reasons)),
                ],
            )
            .unwrap()
        };
        // Three partitions: kept rows and a reject, kept rows only, nothing.
        let partitions = vec![
            vec![batch(vec![1, 2, 3], vec![None, Some("bad: x"), None])],
            vec![batch(vec![4, 5], vec![None, None])],
            vec![],
        ];
        session
            .register_table(
                "t",
                Arc::new(MemTable::try_new(schema.clone(), partitions).unwrap()),
            )
            .unwrap();
        let runner = Runner::new(registry.clone(), store.clone(), Progress::hidden());
        let target = PartTarget {
            store: store.url().to_string(),
            node: "t".into(),
            fingerprint: "f0".into(),
        };
        let bar = Progress::hidden().node("t", "sql");
        let df = session.table("t").await.unwrap();
        let written = runner
            .execute_parts(&session, df, &target, &bar)
            .await
            .unwrap();
        assert_eq!((written.rows, written.rejects), (4, 1));
        assert_eq!(written.data_files.len(), 2, "{:?}", written.data_files);
        assert_eq!(written.reject_files.len(), 1, "{:?}", written.reject_files);

        let marker = CommitMarker {
            node: "t".into(),
            stage: "sql".into(),
            fingerprint: "f0".into(),
            fingerprint_material: serde_json::Value::Null,
            rows: written.rows,
            rejects: written.rejects,
            audio_seconds: None,
            data_files: written.data_files,
            reject_files: written.reject_files,
            committed_at_unix_s: 0,
            elapsed_s: 0.0,
        };
        let reader = new_session(&registry, &store, None);
        register_marker(&reader, &store, &marker).await.unwrap();
        let count = |sql: &str| {
            let reader = reader.clone();
            let sql = sql.to_string();
            async move {
                let batches = reader.sql(&sql).await.unwrap().collect().await.unwrap();
                batches[0]
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0)
            }
        };
        assert_eq!(count("SELECT sum(x) FROM t").await, 1 + 3 + 4 + 5);
        assert_eq!(
            count("SELECT count(*) FROM t_rejects WHERE reason = 'bad: x'").await,
            1
        );
    }

    #[tokio::test]
    async fn a_node_without_rows_still_commits_tables_with_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let registry = Arc::new(StageRegistry::new());
        let session = new_session(&registry, &store, None);
        let runner = Runner::new(registry, store.clone(), Progress::hidden());
        let target = PartTarget {
            store: store.url().to_string(),
            node: "empty".into(),
            fingerprint: "f1".into(),
        };
        let df = session
            .sql("SELECT 1 AS x, CAST(NULL AS VARCHAR) AS reject_reason WHERE false")
            .await
            .unwrap();
        let bar = Progress::hidden().node("empty", "sql");
        let written = runner
            .execute_parts(&session, df, &target, &bar)
            .await
            .unwrap();
        assert_eq!((written.rows, written.rejects), (0, 0));
        assert_eq!(written.data_files.len(), 1);
        assert_eq!(written.reject_files.len(), 1);
    }

    #[tokio::test]
    async fn a_struct_udf_runs_once_per_row_however_many_fields_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let session = new_session(&StageRegistry::new(), &store, None);
        let rows = Arc::new(AtomicUsize::new(0));
        session.register_udf(ScalarUDF::new_from_impl(Counted {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Volatile),
            rows: rows.clone(),
        }));
        let out = session
            .sql(
                "WITH t AS (SELECT *, counted(x) AS s FROM (VALUES (1), (2), (3)) AS v(x))
                 SELECT x, s['a'] AS a, s['b'] AS b FROM t",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(rows.load(Ordering::SeqCst), 3);
    }

    /// `meet(x, tag)`: arrives, waits (up to 20 s) until two calls have arrived, then
    /// gives `x` back, or fails when `tag` is 'fail' or it waited alone.
    #[derive(Debug)]
    struct Meet {
        signature: Signature,
        arrived: Arc<AtomicUsize>,
    }

    impl PartialEq for Meet {
        fn eq(&self, _: &Self) -> bool {
            true
        }
    }
    impl Eq for Meet {}
    impl std::hash::Hash for Meet {
        fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
    }

    impl ScalarUDFImpl for Meet {
        fn name(&self) -> &str {
            "meet"
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
            Ok(DataType::Int64)
        }
        fn invoke_with_args(
            &self,
            args: ScalarFunctionArgs,
        ) -> datafusion::common::Result<ColumnarValue> {
            self.arrived.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + std::time::Duration::from_secs(20);
            while self.arrived.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let tag = args.args[1].to_array(args.number_rows)?;
            let tag = datafusion::arrow::compute::cast(&tag, &DataType::Utf8)?;
            let tag = tag
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .unwrap();
            if self.arrived.load(Ordering::SeqCst) < 2 {
                return datafusion::common::exec_err!("meet: waited alone");
            }
            if !datafusion::arrow::array::Array::is_empty(tag) && tag.value(0) == "fail" {
                return datafusion::common::exec_err!("meet: told to fail");
            }
            Ok(args.args[0].clone())
        }
    }

    fn meeting_dag(c_tag: &str) -> (Arc<StageRegistry>, Dag) {
        let mut registry = StageRegistry::new();
        registry.register_function(ScalarUDF::new_from_impl(Meet {
            signature: Signature::exact(
                vec![DataType::Int64, DataType::Utf8],
                Volatility::Volatile,
            ),
            arrived: Arc::new(AtomicUsize::new(0)),
        }));
        let text = format!(
            r#"
            [nodes.a]
            sql = "SELECT CAST(1 AS BIGINT) AS x"
            [nodes.b]
            sql = "SELECT meet(x, 'ok') AS x FROM a"
            inputs = ["a"]
            [nodes.c]
            sql = "SELECT meet(x, '{c_tag}') AS x FROM a"
            inputs = ["a"]
            [nodes.d]
            sql = "SELECT x FROM b UNION ALL SELECT x FROM c"
            inputs = ["b", "c"]
            "#
        );
        let dag = Dag::parse(&text, "meet.toml", &registry, &[]).unwrap();
        (Arc::new(registry), dag)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn independent_nodes_run_side_by_side_and_outcomes_keep_the_plan_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let (registry, dag) = meeting_dag("ok");
        // b and c each wait for the other: they only finish when they run at once.
        let outcomes = Runner::new(registry, store, Progress::hidden())
            .with_parallel_nodes(2)
            .run(&dag, None)
            .await
            .unwrap();
        let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(outcomes[3].marker.rows, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_node_lets_the_nodes_beside_it_commit_and_the_rerun_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().to_str().unwrap()).await.unwrap();
        let (registry, dag) = meeting_dag("fail");
        let runner = Runner::new(registry, store, Progress::hidden()).with_parallel_nodes(2);
        let err = runner.run(&dag, None).await.unwrap_err().to_string();
        assert!(err.contains("told to fail"), "{err}");
        let plan = runner.plan(&dag, None).await.unwrap();
        let status = |n: &str| plan.iter().find(|p| p.name == n).unwrap().status.clone();
        assert!(
            matches!(status("b"), NodeStatus::Cached),
            "{:?}",
            status("b")
        );
        assert!(matches!(status("c"), NodeStatus::ToRun { .. }));
        assert!(matches!(status("d"), NodeStatus::ToRun { .. }));
    }
}
