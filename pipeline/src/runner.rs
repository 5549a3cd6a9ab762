//! Runs a DAG: each node in dependency order, as a DataFusion plan whose output is
//! committed to the run store. Committed nodes are skipped, so a rerun resumes
//! where a crash stopped and a changed node recomputes only what depends on it.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, Float64Array, RecordBatch};
use datafusion::arrow::compute::{cast, filter_record_batch, is_not_null, is_null};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::config::SessionConfig;
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use object_store::buffered::BufWriter;

use crate::cluster::Cluster;
use crate::dag::{Dag, Node, NodeKind};
use crate::error::{Error, Result};
use crate::fingerprint;
use crate::progress::{NodeProgress, Progress};
use crate::stage::{REJECT_REASON_COLUMN, StageContext, StageRegistry};
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
}

impl Runner {
    pub fn new(registry: Arc<StageRegistry>, store: RunStore, progress: Progress) -> Self {
        Runner {
            registry,
            store,
            progress,
            cluster: None,
        }
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

    /// Runs the nodes that `until` needs, skipping committed ones.
    pub async fn run(&self, dag: &Dag, until: Option<&str>) -> Result<Vec<NodeOutcome>> {
        let planned = self.plan(dag, until).await?;
        let mut outcomes: Vec<NodeOutcome> = Vec::new();
        for plan in &planned {
            let Some(node) = dag.node(&plan.name) else {
                continue;
            };
            let bar = self.progress.node(&plan.name, &plan.stage);
            let outcome = match plan.status {
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
                    NodeOutcome {
                        name: plan.name.clone(),
                        stage: plan.stage.clone(),
                        cached: true,
                        marker,
                    }
                }
                NodeStatus::ToRun { .. } => {
                    let inputs: Vec<&CommitMarker> = node
                        .inputs
                        .iter()
                        .filter_map(|i| outcomes.iter().find(|o| &o.name == i).map(|o| &o.marker))
                        .collect();
                    let marker = self.run_node(node, plan, &inputs, &bar).await?;
                    bar.finish(&marker);
                    NodeOutcome {
                        name: plan.name.clone(),
                        stage: plan.stage.clone(),
                        cached: false,
                        marker,
                    }
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn run_node(
        &self,
        node: &Node,
        plan: &PlannedNode,
        inputs: &[&CommitMarker],
        bar: &NodeProgress,
    ) -> Result<CommitMarker> {
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
        for input in inputs {
            register_marker(&session, &self.store, input).await?;
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
        let stream = match &self.cluster {
            None => df.execute_stream().await.map_err(Error::from),
            Some(cluster) => cluster.execute(df).await,
        }
        .map_err(|e| Error::node(&node.name, e))?;
        let written = write_output(&self.store, &node.name, &plan.fingerprint, stream, bar)
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
            data_files: vec![written.data_file],
            reject_files: vec![written.reject_file],
            committed_at_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        self.store.commit(&marker).await?;
        Ok(marker)
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

/// Registers a committed node as `<node>` and its rejects as `<node>_rejects`.
pub async fn register_marker(
    session: &SessionContext,
    store: &RunStore,
    marker: &CommitMarker,
) -> Result<()> {
    for (name, files) in [
        (marker.node.clone(), &marker.data_files),
        (format!("{}_rejects", marker.node), &marker.reject_files),
    ] {
        let urls = store.file_urls(files);
        let Some(first) = urls.first() else { continue };
        session
            .register_parquet(name.as_str(), first.as_str(), ParquetReadOptions::default())
            .await?;
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

struct Written {
    rows: u64,
    rejects: u64,
    audio_seconds: Option<f64>,
    data_file: String,
    reject_file: String,
}

/// Streams `df` into the node's data and rejects Parquet files, splitting rows on
/// the reject-reason column.
async fn write_output(
    store: &RunStore,
    node: &str,
    fingerprint: &str,
    mut stream: SendableRecordBatchStream,
    bar: &NodeProgress,
) -> Result<Written> {
    let schema: SchemaRef = stream.schema();
    let reason_index = schema.index_of(REJECT_REASON_COLUMN).ok();
    if let Some(i) = reason_index
        && !matches!(
            schema.field(i).data_type(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        )
    {
        return Err(Error::node(
            node,
            format!("`{REJECT_REASON_COLUMN}` must be a string column"),
        ));
    }

    let data_columns: Vec<usize> = (0..schema.fields().len())
        .filter(|i| Some(*i) != reason_index)
        .collect();
    let data_schema = Arc::new(schema.project(&data_columns)?);
    let reject_schema = Arc::new(match reason_index {
        Some(_) => {
            let mut fields: Vec<Field> = data_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            fields.push(Field::new("reason", DataType::Utf8, false));
            Schema::new(fields)
        }
        None => Schema::new(vec![
            Field::new("uri", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, false),
        ]),
    });

    let data_path = store.part_path(node, fingerprint, "data", 0);
    let reject_path = store.part_path(node, fingerprint, "rejects", 0);
    let mut data_writer = AsyncArrowWriter::try_new(
        BufWriter::new(store.object_store().clone(), data_path.clone()),
        data_schema.clone(),
        None,
    )?;
    let mut reject_writer = AsyncArrowWriter::try_new(
        BufWriter::new(store.object_store().clone(), reject_path.clone()),
        reject_schema.clone(),
        None,
    )?;

    let mut rows = 0u64;
    let mut rejects = 0u64;
    let mut audio_seconds: Option<f64> = None;
    while let Some(batch) = stream.next().await {
        let batch = conform(batch?, &schema)?;
        let (kept, rejected) = match reason_index {
            Some(i) => {
                let reasons = &cast(batch.column(i), &DataType::Utf8)?;
                let kept = filter_record_batch(&batch.project(&data_columns)?, &is_null(reasons)?)?;
                let rejected = filter_record_batch(&batch, &is_not_null(reasons)?)?;
                let mut columns: Vec<Arc<dyn Array>> = data_columns
                    .iter()
                    .map(|c| rejected.column(*c).clone())
                    .collect();
                columns.push(cast(rejected.column(i), &DataType::Utf8)?);
                (kept, RecordBatch::try_new(reject_schema.clone(), columns)?)
            }
            None => (batch, RecordBatch::new_empty(reject_schema.clone())),
        };
        if let Some(seconds) = batch_audio_seconds(&kept) {
            *audio_seconds.get_or_insert(0.0) += seconds;
        }
        rows += kept.num_rows() as u64;
        rejects += rejected.num_rows() as u64;
        write_bounded(&mut data_writer, &kept).await?;
        write_bounded(&mut reject_writer, &rejected).await?;
        bar.update(rows, rejects, audio_seconds);
    }
    data_writer.close().await?;
    reject_writer.close().await?;
    Ok(Written {
        rows,
        rejects,
        audio_seconds,
        data_file: store.relative(&data_path),
        reject_file: store.relative(&reject_path),
    })
}

/// Bytes a Parquet row group may buffer before it is flushed. The writer's own
/// limit counts rows only, and segments carry their audio: without this, a node's
/// whole output sat in memory until the end, so memory grew with the corpus.
const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

async fn write_bounded(
    writer: &mut AsyncArrowWriter<BufWriter>,
    batch: &RecordBatch,
) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    writer.write(batch).await?;
    if writer.in_progress_size() >= ROW_GROUP_BYTES {
        writer.flush().await?;
    }
    Ok(())
}

/// Casts columns whose type differs from the plan's schema (branches of a UNION
/// can disagree on string encodings) so every batch matches the files' schema.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Seconds of audio in a batch: `duration_s`, else `end_s - start_s`.
pub fn batch_audio_seconds(batch: &RecordBatch) -> Option<f64> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
    };
    if let Some(d) = column("duration_s") {
        return Some(d.iter().flatten().sum());
    }
    let (start, end) = (column("start_s")?, column("end_s")?);
    Some(
        start
            .iter()
            .zip(end.iter())
            .filter_map(|(s, e)| Some(e? - s?))
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use datafusion::arrow::array::{ArrayRef, Int64Array, StructArray};
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
}
