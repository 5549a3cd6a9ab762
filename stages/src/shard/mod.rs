//! Stage `shard`: writes the kept samples as training shards that trainers read
//! directly. Inputs: the kept table (`filter`, or any table with `segment_id`) and the
//! table with the audio (`segment`), joined on `segment_id`.
//!
//! Formats (param `formats`):
//! - `webdataset`: `.tar` shards; each sample is `<key>.flac`, `<key>.json` (every
//!   column but audio) and `<key>.txt` (the `text` column), adjacent; keys are the
//!   segment ids without dots or colons;
//! - `parquet`: Hugging Face layout, `audio` as `struct<bytes, path>` (FLAC) with the
//!   `huggingface` schema metadata declaring an `Audio` feature at 16 kHz, then the
//!   label columns.
//!
//! Layout under `out`: `<split>/<split>-00000-of-00003.tar` (and `.parquet`), then
//! `manifest.json`, written last (every shard with its samples, hours, languages and
//! the sha256 of each file). A source's segments all go to one split, chosen by a
//! hash of its `source_id` (params `splits`, default train 0.98, dev 0.01, test
//! 0.01), so no source is in two splits. Within a split samples are ordered by source
//! and time and cut into shards of at most `max_shard_mb` (estimated from the PCM16
//! size, an upper bound of FLAC's). Shards are deterministic: the same input gives
//! byte-identical files.
//!
//! How it runs (locally or on a cluster): the plan lists the samples (a small table:
//! no audio) and assigns each its split, shard and place in it; tasks encode every
//! sample (FLAC, JSON, tar entries) and stage it under `out/.staging/`; one task per
//! shard then concatenates its staged samples in order into the shard files; one
//! last task writes the manifest and removes the staging. The node's own table lists
//! every sample with its `split`, `shard` (the files' path under `out` without
//! `.tar`/`.parquet`) and `key`, and the manifest's `manifest_sha256`.

mod files;
pub mod megatron;
pub mod tokens;

/// FLAC of segment audio (16 kHz mono PCM16), for anything that embeds it.
pub use files::{SAMPLE_RATE, flac};

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type, Schema};
use datafusion::catalog::MemTable;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use speechmill_pipeline::stage::{
    ConfiguredStage, InputArity, REJECT_REASON_COLUMN, Stage, StageContext, parse_params,
};
use speechmill_pipeline::store::open_location;
use speechmill_pipeline::{Error, Result};

use crate::columns::quote;
use crate::udf::{literal_json, run_async};

/// `shard` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A local folder or an `s3://bucket/prefix`.
    pub out: String,
    /// `webdataset` and/or `parquet`.
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// The most a shard holds (MB, estimated from PCM16: FLAC is smaller).
    #[serde(default = "default_max_shard_mb")]
    pub max_shard_mb: f64,
    /// Split name → share of sources (shares sum to 1).
    #[serde(default = "default_splits")]
    pub splits: BTreeMap<String, f64>,
}

fn default_formats() -> Vec<String> {
    vec!["webdataset".into(), "parquet".into()]
}
fn default_max_shard_mb() -> f64 {
    256.0
}
fn default_splits() -> BTreeMap<String, f64> {
    [("train", 0.98), ("dev", 0.01), ("test", 0.01)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

const FORMATS: [&str; 2] = ["webdataset", "parquet"];

impl Params {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.out.trim().is_empty() {
            return Err("parameter `out`: a local folder or s3://bucket/prefix".into());
        }
        if self.formats.is_empty() || self.formats.iter().any(|f| !FORMATS.contains(&f.as_str())) {
            return Err(format!(
                "parameter `formats`: one or both of {FORMATS:?}, got {:?}",
                self.formats
            ));
        }
        if self.max_shard_mb.is_nan() || self.max_shard_mb <= 0.0 {
            return Err("parameter `max_shard_mb`: must be above 0".into());
        }
        let total: f64 = self.splits.values().sum();
        if self.splits.is_empty()
            || self.splits.values().any(|v| !(0.0..=1.0).contains(v))
            || (total - 1.0).abs() > 1e-6
        {
            return Err(format!(
                "parameter `splits`: shares in [0, 1] that sum to 1 (these sum to {total})"
            ));
        }
        for name in self.splits.keys() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "parameter `splits`: `{name}` is not a split name (letters, digits, `_`)"
                ));
            }
        }
        Ok(())
    }

    /// The split of a source: a hash of its id against the cumulative shares, in name
    /// order.
    fn split_of(&self, source: &str) -> &str {
        let digest = Sha256::digest(source.as_bytes());
        let x = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])) as f64
            / (u64::MAX as f64 + 1.0);
        let mut cumulative = 0.0;
        let mut last = "";
        for (name, share) in &self.splits {
            cumulative += share;
            last = name;
            if x < cumulative {
                return name;
            }
        }
        last
    }

    fn wants(&self, format: &str) -> bool {
        self.formats.iter().any(|f| f == format)
    }
}

/// What the UDFs get: the params, with `out` made absolute, and where to stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdfConfig {
    params: Params,
    out: String,
}

impl UdfConfig {
    fn object(&self, relative: &str) -> DfResult<(Arc<dyn ObjectStore>, ObjectPath)> {
        let location = open_location(&self.out)
            .map_err(|e| DataFusionError::Execution(format!("shard: {e}")))?;
        let mut path = location.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        Ok((location.object_store.clone(), path))
    }
}

/// A sample's key: its segment id without the characters WebDataset splits on.
fn key_of(segment_id: &str) -> String {
    segment_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Bytes a sample adds to a shard at most: its PCM16 audio plus tar headers, JSON
/// and text.
fn estimated_bytes(duration_s: f64) -> f64 {
    duration_s.max(0.0) * 32_000.0 + 8.0 * 1024.0
}

/// The `shard` stage.
pub struct ShardStage;

impl Stage for ShardStage {
    fn name(&self) -> &'static str {
        "shard"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        params.validate()?;
        Ok(Box::new(ConfiguredShard { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![
            ScalarUDF::new_from_impl(StageSampleUdf::new()),
            ScalarUDF::new_from_impl(AssembleUdf::new()),
            ScalarUDF::new_from_impl(ManifestUdf::new()),
        ]
    }
}

struct ConfiguredShard {
    params: Params,
}

/// One sample's place.
struct Placed {
    segment_id: String,
    split: String,
    shard: String,
    ordinal: i64,
    key: String,
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredShard {
    fn stage_name(&self) -> &'static str {
        "shard"
    }

    fn version(&self) -> u32 {
        1
    }

    fn input_arity(&self) -> InputArity {
        InputArity::Exactly(2)
    }

    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or_default()
    }

    fn batch_rows(&self) -> Option<usize> {
        Some(16)
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let fail = |e: String| Error::node(&cx.node, e);
        let [kept, audio] = cx.inputs.as_slice() else {
            return Err(fail(
                "shard needs two inputs: the kept samples and `segment`".into(),
            ));
        };
        let kept_schema = inputs[0].schema().inner().clone();
        let audio_schema = inputs[1].schema().inner().clone();
        for (name, schema, needed) in [
            (kept, &kept_schema, &["segment_id", "duration_s"][..]),
            (audio, &audio_schema, &["segment_id", "audio"][..]),
        ] {
            for column in needed {
                if schema.field_with_name(column).is_err() {
                    return Err(fail(format!(
                        "input `{name}` has no `{column}` column (shard takes the kept samples, then `segment`)"
                    )));
                }
            }
        }
        let group = if kept_schema.field_with_name("source_id").is_ok() {
            "source_id"
        } else if kept_schema.field_with_name("uri").is_ok() {
            "uri"
        } else {
            "segment_id"
        };
        let start = if kept_schema.field_with_name("start_s").is_ok() {
            "CAST(start_s AS DOUBLE)"
        } else {
            "0.0"
        };
        // The sample list: small (no audio), read here to place every sample.
        let listing = cx
            .session
            .sql(&format!(
                "SELECT CAST(segment_id AS VARCHAR) AS segment_id, CAST({g} AS VARCHAR) AS source,
                        {start} AS start_s, CAST(duration_s AS DOUBLE) AS duration_s
                 FROM {kept}",
                g = quote(group),
                kept = quote(kept)
            ))
            .await?
            .collect()
            .await?;
        let mut samples: Vec<(String, String, String, f64, f64)> = Vec::new();
        for batch in &listing {
            // VARCHAR may come back as a string view: read every string as Utf8.
            let ids = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            let ids = ids.as_string::<i32>();
            let sources = datafusion::arrow::compute::cast(batch.column(1), &DataType::Utf8)?;
            let sources = sources.as_string::<i32>();
            let starts = batch.column(2).as_primitive::<Float64Type>();
            let durations = batch.column(3).as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                let id = ids.value(i).to_string();
                let source = if sources.is_null(i) {
                    id.clone()
                } else {
                    sources.value(i).to_string()
                };
                let split = self.params.split_of(&source).to_string();
                samples.push((split, source, id, starts.value(i), durations.value(i)));
            }
        }
        samples.sort_by(|a, b| {
            (&a.0, &a.1)
                .cmp(&(&b.0, &b.1))
                .then(a.3.total_cmp(&b.3))
                .then(a.2.cmp(&b.2))
        });
        let placed = place(&samples, self.params.max_shard_mb * 1e6);

        let config = UdfConfig {
            out: absolute(&self.params.out).map_err(fail)?,
            params: self.params.clone(),
        };
        clear_staging(&config)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let config = serde_json::to_string(&config).map_err(|e| fail(e.to_string()))?;
        let config = config.replace('\'', "''");

        let plan_schema = Arc::new(Schema::new(vec![
            Field::new("segment_id", DataType::Utf8, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("shard", DataType::Utf8, false),
            Field::new("ordinal", DataType::Int64, false),
            Field::new("key", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            plan_schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    placed.iter().map(|p| &p.segment_id),
                )),
                Arc::new(StringArray::from_iter_values(
                    placed.iter().map(|p| &p.split),
                )),
                Arc::new(StringArray::from_iter_values(
                    placed.iter().map(|p| &p.shard),
                )),
                Arc::new(Int64Array::from_iter_values(
                    placed.iter().map(|p| p.ordinal),
                )),
                Arc::new(StringArray::from_iter_values(placed.iter().map(|p| &p.key))),
            ],
        )?;
        let table = MemTable::try_new(plan_schema, vec![vec![batch]])?;
        cx.session.register_table("__shard_plan", Arc::new(table))?;

        // The label columns of each sample (all but audio), as one struct.
        let columns: Vec<String> = kept_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != "audio" && n != REJECT_REASON_COLUMN)
            .collect();
        let struct_args: Vec<String> = columns
            .iter()
            .map(|c| format!("'{}', f.{}", c.replace('\'', "''"), quote(c)))
            .collect();
        let text = if kept_schema.field_with_name("text").is_ok() {
            "f.\"text\""
        } else {
            "''"
        };
        let language = if kept_schema.field_with_name("language").is_ok() {
            "f.\"language\""
        } else {
            "CAST(NULL AS VARCHAR)"
        };
        let sql = format!(
            "WITH samples AS (
               SELECT p.shard, p.ordinal, p.key, s.audio AS __audio, {text} AS __text,
                      {language} AS __language, CAST(f.duration_s AS DOUBLE) AS __seconds,
                      named_struct({struct_args}) AS __columns
               FROM __shard_plan p
               JOIN {kept} f ON p.segment_id = f.segment_id
               JOIN {audio} s ON p.segment_id = s.segment_id),
             staged AS (
               SELECT shard, count(speechmill_shard_stage(shard, ordinal, key, __columns, __audio, __text, '{config}')) AS samples,
                      sum(__seconds) AS seconds, array_agg(DISTINCT __language) AS languages,
                      first_value(__columns) AS __example
               FROM samples GROUP BY shard),
             written AS (
               SELECT speechmill_shard_assemble(shard, samples, seconds, languages, __example, '{config}') AS file
               FROM staged),
             manifest AS (
               SELECT speechmill_shard_manifest(array_agg(file), '{config}') AS manifest_sha256 FROM written)
             SELECT p.segment_id, p.split, p.shard, p.key, m.manifest_sha256
             FROM manifest m CROSS JOIN __shard_plan p",
            struct_args = struct_args.join(", "),
            kept = quote(kept),
            audio = quote(audio),
        );
        Ok(cx.session.sql(&sql).await?)
    }
}

/// `out` as every process can open it: an absolute local path, or the S3 URL.
fn absolute(out: &str) -> std::result::Result<String, String> {
    if out.contains("://") {
        return Ok(out.to_string());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("parameter `out`: {out}: {e}"))?;
    std::fs::canonicalize(out)
        .map(|p| p.display().to_string())
        .map_err(|e| format!("parameter `out`: {out}: {e}"))
}

/// Removes what an earlier, interrupted run staged.
async fn clear_staging(config: &UdfConfig) -> DfResult<()> {
    let (store, staging) = config.object(".staging")?;
    let leftovers: Vec<ObjectPath> = store
        .list(Some(&staging))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| DataFusionError::Execution(format!("shard: listing {staging}: {e}")))?;
    for path in leftovers {
        store
            .delete(&path)
            .await
            .map_err(|e| DataFusionError::Execution(format!("shard: deleting {path}: {e}")))?;
    }
    Ok(())
}

/// Cuts each split's samples (ordered) into shards of at most `max_bytes`.
fn place(samples: &[(String, String, String, f64, f64)], max_bytes: f64) -> Vec<Placed> {
    // Shard index within the split, per sample, then the split's shard count.
    let mut assigned: Vec<(usize, i64)> = Vec::with_capacity(samples.len());
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut split, mut shard, mut ordinal, mut bytes) = ("", 0usize, 0i64, 0.0);
    for s in samples {
        let size = estimated_bytes(s.4);
        if s.0 != split {
            (split, shard, ordinal, bytes) = (&s.0, 0, 0, 0.0);
        } else if ordinal > 0 && bytes + size > max_bytes {
            (shard, ordinal, bytes) = (shard + 1, 0, 0.0);
        }
        assigned.push((shard, ordinal));
        counts.insert(&s.0, shard + 1);
        ordinal += 1;
        bytes += size;
    }
    samples
        .iter()
        .zip(assigned)
        .map(|(s, (shard, ordinal))| Placed {
            segment_id: s.2.clone(),
            split: s.0.clone(),
            shard: format!("{0}/{0}-{1:05}-of-{2:05}", s.0, shard, counts[s.0.as_str()]),
            ordinal,
            key: key_of(&s.2),
        })
        .collect()
}

fn exec(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("shard: {e}"))
}

/// `speechmill_shard_stage(shard, ordinal, key, columns, audio, text, config)`: encodes
/// a sample and stages it; returns its staged size.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StageSampleUdf {
    signature: Signature,
}

impl StageSampleUdf {
    fn new() -> Self {
        StageSampleUdf {
            signature: Signature::any(7, Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for StageSampleUdf {
    fn name(&self) -> &str {
        "speechmill_shard_stage"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let config: UdfConfig = literal_json(&args.args[6], self.name())?;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .take(6)
            .map(|a| a.to_array(rows))
            .collect::<DfResult<_>>()?;
        let shard = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let shard = shard.as_string::<i32>();
        let ordinal = datafusion::arrow::compute::cast(&arrays[1], &DataType::Int64)?;
        let ordinal = ordinal.as_primitive::<Int64Type>();
        let key = datafusion::arrow::compute::cast(&arrays[2], &DataType::Utf8)?;
        let key = key.as_string::<i32>();
        let columns = arrays[3].as_struct();
        let audio = datafusion::arrow::compute::cast(&arrays[4], &DataType::LargeBinary)?;
        let audio = audio.as_binary::<i64>();
        let text = datafusion::arrow::compute::cast(&arrays[5], &DataType::Utf8)?;
        let text = text.as_string::<i32>();

        let json_lines = json_lines(columns)?;
        let (store, _) = config.object("")?;
        let mut staged = Vec::with_capacity(rows);
        let mut puts = Vec::with_capacity(rows);
        for (i, json) in json_lines.iter().enumerate().take(rows) {
            if audio.is_null(i) || audio.value(i).len() % 2 != 0 {
                return Err(exec(format!("sample {} has no PCM16 audio", key.value(i))));
            }
            let flac = files::flac(audio.value(i)).map_err(exec)?;
            let body = files::sample_entries(
                key.value(i),
                &flac,
                json.as_bytes(),
                if text.is_null(i) { "" } else { text.value(i) },
            )
            .map_err(exec)?;
            staged.push(body.len() as i64);
            let (_, path) = config.object(&format!(
                ".staging/{}/{:09}",
                shard.value(i),
                ordinal.value(i)
            ))?;
            puts.push((path, body));
        }
        run_async(async {
            for (path, body) in puts {
                store
                    .put(&path, body.into())
                    .await
                    .map_err(|e| exec(format!("staging {path}: {e}")))?;
            }
            Ok::<_, DataFusionError>(())
        })?;
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(staged))))
    }
}

/// Each row of a struct array as one line of JSON (columns in order, nulls kept).
fn json_lines(columns: &StructArray) -> DfResult<Vec<String>> {
    let batch = RecordBatch::from(columns.clone());
    let mut out = Vec::new();
    {
        let mut writer = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut out);
        writer.write(&batch)?;
        writer.finish()?;
    }
    let text = String::from_utf8(out).map_err(exec)?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The fields of one written shard.
fn file_fields() -> Fields {
    Fields::from(vec![
        Field::new("shard", DataType::Utf8, false),
        Field::new("samples", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
        Field::new(
            "languages",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("tar", DataType::Utf8, true),
        Field::new("tar_sha256", DataType::Utf8, true),
        Field::new("tar_bytes", DataType::Int64, true),
        Field::new("parquet", DataType::Utf8, true),
        Field::new("parquet_sha256", DataType::Utf8, true),
        Field::new("parquet_bytes", DataType::Int64, true),
    ])
}

/// `speechmill_shard_assemble(shard, samples, seconds, languages, example, config)`:
/// writes one shard's files from its staged samples, in order.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AssembleUdf {
    signature: Signature,
}

impl AssembleUdf {
    fn new() -> Self {
        AssembleUdf {
            signature: Signature::any(6, Volatility::Volatile),
        }
    }
}

/// One shard's files, written.
struct Written {
    shard: String,
    samples: i64,
    seconds: f64,
    languages: Vec<String>,
    tar: Option<(String, String, i64)>,
    parquet: Option<(String, String, i64)>,
}

impl ScalarUDFImpl for AssembleUdf {
    fn name(&self) -> &str {
        "speechmill_shard_assemble"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(file_fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let config: UdfConfig = literal_json(&args.args[5], self.name())?;
        let shard = args.args[0].to_array(rows)?;
        let shard = datafusion::arrow::compute::cast(&shard, &DataType::Utf8)?;
        let shard = shard.as_string::<i32>();
        let samples = args.args[1].to_array(rows)?;
        let samples = datafusion::arrow::compute::cast(&samples, &DataType::Int64)?;
        let samples = samples.as_primitive::<Int64Type>();
        let seconds = args.args[2].to_array(rows)?;
        let seconds = datafusion::arrow::compute::cast(&seconds, &DataType::Float64)?;
        let seconds = seconds.as_primitive::<Float64Type>();
        let languages = args.args[3].to_array(rows)?;
        let example = args.args[4].to_array(rows)?;
        let DataType::Struct(columns) = example.data_type().clone() else {
            return Err(exec("the example row is not a struct"));
        };
        let mut written = Vec::with_capacity(rows);
        for i in 0..rows {
            let langs: Vec<String> = match languages.as_list_opt::<i32>() {
                Some(list) if !list.is_null(i) => {
                    let values = list.value(i);
                    let values = datafusion::arrow::compute::cast(&values, &DataType::Utf8)?;
                    let values = values.as_string::<i32>();
                    let mut v: Vec<String> = values.iter().flatten().map(str::to_string).collect();
                    v.sort();
                    v
                }
                _ => Vec::new(),
            };
            written.push(run_async(assemble(
                &config,
                shard.value(i),
                samples.value(i),
                seconds.value(i),
                langs,
                &columns,
            ))?);
        }
        Ok(ColumnarValue::Array(Arc::new(written_array(&written)?)))
    }
}

fn written_array(written: &[Written]) -> DfResult<StructArray> {
    let opt = |f: &dyn Fn(&Written) -> Option<String>| -> ArrayRef {
        Arc::new(written.iter().map(f).collect::<StringArray>())
    };
    let mut languages =
        datafusion::arrow::array::ListBuilder::new(datafusion::arrow::array::StringBuilder::new());
    for w in written {
        for l in &w.languages {
            languages.values().append_value(l);
        }
        languages.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            written.iter().map(|w| &w.shard),
        )),
        Arc::new(Int64Array::from_iter_values(
            written.iter().map(|w| w.samples),
        )),
        Arc::new(Float64Array::from_iter_values(
            written.iter().map(|w| w.seconds),
        )),
        Arc::new(languages.finish()),
        opt(&|w| w.tar.as_ref().map(|t| t.0.clone())),
        opt(&|w| w.tar.as_ref().map(|t| t.1.clone())),
        Arc::new(
            written
                .iter()
                .map(|w| w.tar.as_ref().map(|t| t.2))
                .collect::<Int64Array>(),
        ),
        opt(&|w| w.parquet.as_ref().map(|t| t.0.clone())),
        opt(&|w| w.parquet.as_ref().map(|t| t.1.clone())),
        Arc::new(
            written
                .iter()
                .map(|w| w.parquet.as_ref().map(|t| t.2))
                .collect::<Int64Array>(),
        ),
    ];
    Ok(StructArray::try_new(file_fields(), columns, None)?)
}

/// Writes `bytes` to `relative` under `out` unless the file there already has them;
/// returns its sha256.
async fn put_if_changed(config: &UdfConfig, relative: &str, bytes: Vec<u8>) -> DfResult<String> {
    let sha = hex::encode(Sha256::digest(&bytes));
    let (store, path) = config.object(relative)?;
    if let Ok(existing) = store.get(&path).await {
        let same = existing
            .bytes()
            .await
            .is_ok_and(|b| b.len() == bytes.len() && hex::encode(Sha256::digest(&b)) == sha);
        if same {
            return Ok(sha);
        }
    }
    store
        .put(&path, bytes.into())
        .await
        .map_err(|e| exec(format!("writing {path}: {e}")))?;
    Ok(sha)
}

async fn assemble(
    config: &UdfConfig,
    shard: &str,
    samples: i64,
    seconds: f64,
    languages: Vec<String>,
    columns: &Fields,
) -> DfResult<Written> {
    let (store, staging) = config.object(&format!(".staging/{shard}"))?;
    let mut staged: Vec<ObjectPath> = store
        .list(Some(&staging))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| exec(format!("listing {staging}: {e}")))?;
    staged.sort();
    if staged.len() as i64 != samples {
        return Err(exec(format!(
            "shard {shard}: {} samples staged, {samples} expected",
            staged.len()
        )));
    }
    let mut tar = Vec::new();
    let mut json = Vec::new();
    let mut audio = Vec::new();
    for path in &staged {
        let body = store
            .get(path)
            .await
            .map_err(|e| exec(format!("reading {path}: {e}")))?
            .bytes()
            .await
            .map_err(|e| exec(format!("reading {path}: {e}")))?;
        if config.params.wants("parquet") {
            let entries = files::read_entries(&body).map_err(exec)?;
            for (name, data) in entries {
                if name.ends_with(".flac") {
                    audio.push((name, data));
                } else if name.ends_with(".json") {
                    json.extend_from_slice(&data);
                    json.push(b'\n');
                }
            }
        }
        if config.params.wants("webdataset") {
            tar.extend_from_slice(&body);
        }
    }
    let mut out = Written {
        shard: shard.to_string(),
        samples,
        seconds,
        languages,
        tar: None,
        parquet: None,
    };
    if config.params.wants("webdataset") {
        tar.extend_from_slice(&files::tar_end());
        let name = format!("{shard}.tar");
        let len = tar.len() as i64;
        let sha = put_if_changed(config, &name, tar).await?;
        out.tar = Some((name, sha, len));
    }
    if config.params.wants("parquet") {
        let schema = Arc::new(Schema::new(columns.clone()));
        let rows = datafusion::arrow::json::ReaderBuilder::new(schema)
            .build(std::io::Cursor::new(json))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let rows = datafusion::arrow::compute::concat_batches(
            &Arc::new(Schema::new(columns.clone())),
            &rows,
        )?;
        let bytes =
            files::parquet_shard(&files::parquet_schema(columns), &rows, audio).map_err(exec)?;
        let name = format!("{shard}.parquet");
        let len = bytes.len() as i64;
        let sha = put_if_changed(config, &name, bytes).await?;
        out.parquet = Some((name, sha, len));
    }
    Ok(out)
}

/// `speechmill_shard_manifest(files, config)`: writes `manifest.json` from every
/// written shard, removes the staging, and returns the manifest's sha256 (the same
/// wherever the run ran, since the shards are).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ManifestUdf {
    signature: Signature,
}

impl ManifestUdf {
    fn new() -> Self {
        ManifestUdf {
            signature: Signature::any(2, Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for ManifestUdf {
    fn name(&self) -> &str {
        "speechmill_shard_manifest"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let config: UdfConfig = literal_json(&args.args[1], self.name())?;
        let files = args.args[0].to_array(rows)?;
        let mut paths = Vec::with_capacity(rows);
        for i in 0..rows {
            let mut shards: Vec<serde_json::Value> = Vec::new();
            if let Some(list) = files.as_list_opt::<i32>().filter(|l| !l.is_null(i)) {
                let values = list.value(i);
                let batch = RecordBatch::from(values.as_struct().clone());
                let mut out = Vec::new();
                {
                    let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut out);
                    writer.write(&batch)?;
                    writer.finish()?;
                }
                shards = serde_json::from_slice(&out).map_err(exec)?;
            }
            let shards = manifest_shards(shards);
            let manifest = manifest_json(&config.params, &shards);
            let text = serde_json::to_vec_pretty(&manifest).map_err(exec)?;
            let sha = run_async(async {
                let sha = put_if_changed(&config, "manifest.json", text).await?;
                clear_staging(&config).await?;
                Ok::<_, DataFusionError>(sha)
            })?;
            paths.push(sha);
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(paths))))
    }
}

/// The shards sorted by name, with hours instead of seconds.
fn manifest_shards(mut shards: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    shards.sort_by(|a, b| a["shard"].as_str().cmp(&b["shard"].as_str()));
    shards
        .into_iter()
        .map(|mut s| {
            let seconds = s["seconds"].as_f64().unwrap_or(0.0);
            if let Some(o) = s.as_object_mut() {
                o.remove("seconds");
                o.insert(
                    "hours".into(),
                    serde_json::json!((seconds / 3600.0 * 1e6).round() / 1e6),
                );
            }
            s
        })
        .collect()
}

fn manifest_json(params: &Params, shards: &[serde_json::Value]) -> serde_json::Value {
    let mut splits = serde_json::Map::new();
    for name in params.splits.keys() {
        let of: Vec<&serde_json::Value> = shards
            .iter()
            .filter(|s| {
                s["shard"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("{name}/")))
            })
            .collect();
        let samples: i64 = of.iter().filter_map(|s| s["samples"].as_i64()).sum();
        // `+ 0.0`: an empty float sum is -0.0.
        let hours: f64 = of.iter().filter_map(|s| s["hours"].as_f64()).sum::<f64>() + 0.0;
        let mut languages: Vec<String> = of
            .iter()
            .filter_map(|s| s["languages"].as_array())
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        languages.sort();
        languages.dedup();
        splits.insert(
            name.clone(),
            serde_json::json!({ "samples": samples, "hours": (hours * 1e6).round() / 1e6,
                                "languages": languages, "shards": of.len() }),
        );
    }
    serde_json::json!({
        "format": "speechmill-shards/1",
        "formats": params.formats,
        "sample_rate": files::SAMPLE_RATE,
        "audio": "flac",
        "splits": splits,
        "shards": shards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(extra: &str) -> std::result::Result<Params, String> {
        let p: Params = parse_params(toml::from_str(&format!("out = \"x\"\n{extra}")).unwrap())?;
        p.validate()?;
        Ok(p)
    }

    #[test]
    fn bad_params_name_the_parameter() {
        assert!(
            params("formats = [\"zip\"]")
                .unwrap_err()
                .contains("formats")
        );
        assert!(
            params("max_shard_mb = 0")
                .unwrap_err()
                .contains("max_shard_mb")
        );
        assert!(
            params("splits = { train = 0.5 }")
                .unwrap_err()
                .contains("splits")
        );
        assert!(
            params("splits = { \"a/b\" = 1.0 }")
                .unwrap_err()
                .contains("split name")
        );
    }

    #[test]
    fn splits_follow_their_shares_and_keep_a_source_in_one() {
        let p = params("").unwrap();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for i in 0..20_000 {
            *counts
                .entry(p.split_of(&format!("source-{i}")))
                .or_default() += 1;
        }
        assert!(
            (counts["train"] as f64 / 20_000.0 - 0.98).abs() < 0.005,
            "{counts:?}"
        );
        assert!(counts["dev"] > 100 && counts["test"] > 100, "{counts:?}");
        assert_eq!(p.split_of("a"), p.split_of("a"));
    }

    #[test]
    fn shards_close_before_they_pass_the_bound() {
        let samples: Vec<(String, String, String, f64, f64)> = (0..10)
            .map(|i| {
                (
                    "train".into(),
                    "s".into(),
                    format!("s:{i:09}"),
                    i as f64,
                    10.0,
                )
            })
            .collect();
        // 10 s of PCM16 is 320 kB (+ 8 kB): three samples per 1 MB shard.
        let placed = place(&samples, 1e6);
        let shards: Vec<&str> = placed.iter().map(|p| p.shard.as_str()).collect();
        assert_eq!(shards[0], "train/train-00000-of-00004");
        assert_eq!(shards[3], "train/train-00001-of-00004");
        assert_eq!(shards[9], "train/train-00003-of-00004");
        assert_eq!(placed[4].ordinal, 1);
        assert_eq!(placed[0].key, "s_000000000");
    }
}
