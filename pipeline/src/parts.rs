//! A node's output as parts. Every task of a node's plan writes its own Parquet
//! files (`data/part-…` and `rejects/part-…`) into the node's folder in the store
//! and returns one summary row; the client sums the summaries and commits a marker
//! listing every part. [`PartWriterExec`] is that last operator. It runs wherever
//! the task runs, so on a cluster the executors write and only summaries travel
//! back to the client.
//!
//! A part's name carries its partition and a token unique to the attempt
//! (`part-00003-5f1c9a2e.parquet`): a task that Ballista reruns after its executor
//! died writes under a new name, and only the parts whose summaries reached the
//! client are listed in the marker. Readers look at the marker, never the folder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::compute::{cast, filter_record_batch, is_not_null, is_null};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::stage::REJECT_REASON_COLUMN;
use crate::store::RunStore;

/// Where a node's parts go: the store (as [`crate::store::open_location`] takes
/// it), the node and its fingerprint. All a task needs, so it travels in the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartTarget {
    pub store: String,
    pub node: String,
    pub fingerprint: String,
}

/// How a plan's rows split into the data and rejects tables: rows with a non-null
/// [`REJECT_REASON_COLUMN`] are rejects, that column becoming `reason`.
#[derive(Debug)]
pub struct OutputLayout {
    plan_schema: SchemaRef,
    reason_index: Option<usize>,
    data_columns: Vec<usize>,
    pub data_schema: SchemaRef,
    pub reject_schema: SchemaRef,
}

impl OutputLayout {
    pub fn new(plan_schema: SchemaRef, node: &str) -> Result<Self> {
        let reason_index = plan_schema.index_of(REJECT_REASON_COLUMN).ok();
        if let Some(i) = reason_index
            && !matches!(
                plan_schema.field(i).data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            )
        {
            return Err(Error::node(
                node,
                format!("`{REJECT_REASON_COLUMN}` must be a string column"),
            ));
        }
        let data_columns: Vec<usize> = (0..plan_schema.fields().len())
            .filter(|i| Some(*i) != reason_index)
            .collect();
        let data_schema = Arc::new(plan_schema.project(&data_columns)?);
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
        Ok(OutputLayout {
            plan_schema,
            reason_index,
            data_columns,
            data_schema,
            reject_schema,
        })
    }

    /// Splits one batch of the plan into kept rows and rejects.
    fn split(&self, batch: RecordBatch) -> Result<(RecordBatch, RecordBatch)> {
        let batch = conform(batch, &self.plan_schema)?;
        Ok(match self.reason_index {
            Some(i) => {
                let reasons = &cast(batch.column(i), &DataType::Utf8)?;
                let kept =
                    filter_record_batch(&batch.project(&self.data_columns)?, &is_null(reasons)?)?;
                let rejected = filter_record_batch(&batch, &is_not_null(reasons)?)?;
                let mut columns: Vec<ArrayRef> = self
                    .data_columns
                    .iter()
                    .map(|c| rejected.column(*c).clone())
                    .collect();
                columns.push(cast(rejected.column(i), &DataType::Utf8)?);
                (
                    kept,
                    RecordBatch::try_new(self.reject_schema.clone(), columns)?,
                )
            }
            None => (batch, RecordBatch::new_empty(self.reject_schema.clone())),
        })
    }
}

/// Called with the rows, rejects and audio seconds each written batch adds
/// (the local runner's progress bar; absent on executors).
pub type ProgressHook = Arc<dyn Fn(u64, u64, Option<f64>) + Send + Sync>;

/// Writes each partition of its input as part files and yields one summary row per
/// partition (see [`summary_schema`]).
pub struct PartWriterExec {
    input: Arc<dyn ExecutionPlan>,
    target: PartTarget,
    layout: Arc<OutputLayout>,
    progress: Option<ProgressHook>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for PartWriterExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartWriterExec")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PartWriterExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, target: PartTarget) -> Result<Self> {
        let layout = Arc::new(OutputLayout::new(input.schema(), &target.node)?);
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(summary_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(PartWriterExec {
            input,
            target,
            layout,
            progress: None,
            properties,
        })
    }

    pub fn with_progress(mut self, hook: ProgressHook) -> Self {
        self.progress = Some(hook);
        self
    }

    pub fn target(&self) -> &PartTarget {
        &self.target
    }

    pub fn layout(&self) -> &Arc<OutputLayout> {
        &self.layout
    }
}

impl DisplayAs for PartWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "PartWriterExec: {}/{}",
            self.target.node, self.target.fingerprint
        )
    }
}

impl ExecutionPlan for PartWriterExec {
    fn name(&self) -> &str {
        "PartWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|_| {
            DataFusionError::Internal("PartWriterExec takes exactly one input".into())
        })?;
        let mut writer = PartWriterExec::new(input, self.target.clone())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        writer.progress = self.progress.clone();
        Ok(Arc::new(writer))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let target = self.target.clone();
        let layout = self.layout.clone();
        let progress = self.progress.clone();
        let write = async move {
            write_part(&target, &layout, partition, input, progress.as_ref())
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            summary_schema(),
            futures::stream::once(write),
        )))
    }
}

/// One summary row per partition: the part files it wrote (null when it had no
/// such rows), and what they hold.
pub fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("data_file", DataType::Utf8, true),
        Field::new("reject_file", DataType::Utf8, true),
        Field::new("rows", DataType::UInt64, false),
        Field::new("rejects", DataType::UInt64, false),
        Field::new("audio_seconds", DataType::Float64, true),
        Field::new("worker", DataType::Utf8, false),
    ]))
}

/// The process that ran a task, `host:pid`: run records count a node's executors
/// by it.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// A part file being written, opened at its first row so that an empty partition
/// leaves no file.
struct LazyPart {
    store: RunStore,
    path: Path,
    schema: SchemaRef,
    writer: Option<AsyncArrowWriter<BufWriter>>,
}

impl LazyPart {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(AsyncArrowWriter::try_new(
                BufWriter::new(self.store.object_store().clone(), self.path.clone()),
                self.schema.clone(),
                None,
            )?),
        };
        writer.write(batch).await?;
        if writer.in_progress_size() >= ROW_GROUP_BYTES {
            writer.flush().await?;
        }
        Ok(())
    }

    /// Closes the file; its path relative to the store, if it was written.
    async fn close(self) -> Result<Option<String>> {
        match self.writer {
            Some(w) => {
                w.close().await?;
                Ok(Some(self.store.relative(&self.path)))
            }
            None => Ok(None),
        }
    }
}

/// Bytes a Parquet row group may buffer before it is flushed. The writer's own
/// limit counts rows only, and segments carry their audio: without this, a part's
/// whole output would sit in memory until the end.
const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

async fn write_part(
    target: &PartTarget,
    layout: &OutputLayout,
    partition: usize,
    mut input: SendableRecordBatchStream,
    progress: Option<&ProgressHook>,
) -> Result<RecordBatch> {
    let store = RunStore::open_unchecked(&target.store)?;
    let name = part_name(partition);
    let mut data = LazyPart {
        path: store.part_path(&target.node, &target.fingerprint, "data", &name),
        store: store.clone(),
        schema: layout.data_schema.clone(),
        writer: None,
    };
    let mut rejected = LazyPart {
        path: store.part_path(&target.node, &target.fingerprint, "rejects", &name),
        store: store.clone(),
        schema: layout.reject_schema.clone(),
        writer: None,
    };
    let (mut rows, mut rejects, mut audio_seconds) = (0u64, 0u64, None::<f64>);
    while let Some(batch) = input.next().await {
        let (kept, dropped) = layout.split(batch?)?;
        let seconds = batch_audio_seconds(&kept);
        if let Some(s) = seconds {
            *audio_seconds.get_or_insert(0.0) += s;
        }
        // Progress counts the audio a task got through, rejected rows' too.
        let progressed = match (seconds, batch_audio_seconds(&dropped)) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        rows += kept.num_rows() as u64;
        rejects += dropped.num_rows() as u64;
        data.write(&kept).await?;
        rejected.write(&dropped).await?;
        if let Some(hook) = progress {
            hook(
                kept.num_rows() as u64,
                dropped.num_rows() as u64,
                progressed,
            );
        }
    }
    let data_file = data.close().await?;
    let reject_file = rejected.close().await?;
    Ok(RecordBatch::try_new(
        summary_schema(),
        vec![
            Arc::new(StringArray::from(vec![data_file])),
            Arc::new(StringArray::from(vec![reject_file])),
            Arc::new(UInt64Array::from(vec![rows])),
            Arc::new(UInt64Array::from(vec![rejects])),
            Arc::new(Float64Array::from(vec![audio_seconds])),
            Arc::new(StringArray::from(vec![worker_name()])),
        ],
    )?)
}

/// `part-00003-5f1c9a2e.parquet`: the partition, then a token unique to this
/// attempt (process, time, a counter), so a rerun task never overwrites a part
/// that an earlier attempt of the same partition may still be writing.
fn part_name(partition: usize) -> String {
    static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(nanos.to_le_bytes());
    hasher.update(ATTEMPTS.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(partition.to_le_bytes());
    format!(
        "part-{partition:05}-{}.parquet",
        hex::encode(&hasher.finalize()[..4])
    )
}

/// What a node's parts hold, summed over the summary rows.
#[derive(Debug, Default)]
pub struct Written {
    pub rows: u64,
    pub rejects: u64,
    pub audio_seconds: Option<f64>,
    pub data_files: Vec<String>,
    pub reject_files: Vec<String>,
    /// The processes that ran the tasks (`host:pid`).
    pub workers: std::collections::BTreeSet<String>,
}

impl Written {
    /// Adds one batch of summary rows.
    pub fn add(&mut self, summary: &RecordBatch) -> Result<()> {
        let column = |name: &str| {
            summary
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::Store(format!("part summary without `{name}`")))
        };
        let data = column("data_file")?;
        let rejects = column("reject_file")?;
        let rows = column("rows")?;
        let reject_rows = column("rejects")?;
        let seconds = column("audio_seconds")?;
        let workers = column("worker")?;
        let strings = |a: &ArrayRef| a.as_any().downcast_ref::<StringArray>().cloned();
        let counts = |a: &ArrayRef| a.as_any().downcast_ref::<UInt64Array>().cloned();
        let (
            Some(data),
            Some(rejects),
            Some(rows),
            Some(reject_rows),
            Some(seconds),
            Some(workers),
        ) = (
            strings(&data),
            strings(&rejects),
            counts(&rows),
            counts(&reject_rows),
            seconds.as_any().downcast_ref::<Float64Array>().cloned(),
            strings(&workers),
        )
        else {
            return Err(Error::Store("part summary of unexpected types".into()));
        };
        self.data_files
            .extend(data.iter().flatten().map(String::from));
        self.reject_files
            .extend(rejects.iter().flatten().map(String::from));
        self.rows += rows.iter().flatten().sum::<u64>();
        self.rejects += reject_rows.iter().flatten().sum::<u64>();
        for s in seconds.iter().flatten() {
            *self.audio_seconds.get_or_insert(0.0) += s;
        }
        self.workers
            .extend(workers.iter().flatten().map(String::from));
        Ok(())
    }

    /// Sorts the part lists and, for a table no task wrote a row of, writes one
    /// empty part so that every committed table has its schema on disk.
    pub async fn finish(
        &mut self,
        store: &RunStore,
        target: &PartTarget,
        layout: &OutputLayout,
    ) -> Result<()> {
        for (files, table, schema) in [
            (&mut self.data_files, "data", &layout.data_schema),
            (&mut self.reject_files, "rejects", &layout.reject_schema),
        ] {
            files.sort();
            if files.is_empty() {
                let path = store.part_path(
                    &target.node,
                    &target.fingerprint,
                    table,
                    "part-empty.parquet",
                );
                let writer = AsyncArrowWriter::try_new(
                    BufWriter::new(store.object_store().clone(), path.clone()),
                    schema.clone(),
                    None,
                )?;
                writer.close().await?;
                files.push(store.relative(&path));
            }
        }
        Ok(())
    }
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
    use super::*;

    #[test]
    fn part_names_are_unique_per_attempt_and_carry_the_partition() {
        let a = part_name(3);
        let b = part_name(3);
        assert_ne!(a, b);
        assert!(
            a.starts_with("part-00003-") && a.ends_with(".parquet"),
            "{a}"
        );
    }
}
