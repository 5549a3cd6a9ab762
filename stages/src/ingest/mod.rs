//! Stage `ingest`: crawls sources (local globs and folders, CSV/JSONL list files,
//! `s3://` prefixes, http(s) URLs) and stores each distinct file once in the run
//! store, content-addressed by sha256. Exact duplicates collapse to one source
//! whose `duplicate_uris` lists the others.
//!
//! Output columns: `source_id` (sha256), `uri`, `origin`, `blob` (store key),
//! `size_bytes`, `duplicate_uris`, then any list-file metadata columns.
//! Rejects: `fetch_failed…`, `too_large…`, `empty…`, `outside_allowed_roots…`,
//! `bad_list_entry…`, `unsupported_uri…`.

mod fetch;
mod sources;

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::catalog::MemTable;
use datafusion::common::Result as DfResult;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};
use tokio::sync::OnceCell;

pub use fetch::{FetchConfig, Fetched, blob_key};
pub use sources::{Expansion, SourceRow, expand};

use crate::udf::{literal_json, run_async, string_array, string_values};

/// `ingest` node params.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Local globs, files or folders; CSV/JSONL list files; `s3://bucket/prefix`;
    /// http(s) URLs. One string or a list.
    pub paths: OneOrMany,
    /// Local folders that list-file entries may point into, besides the list
    /// file's own folder.
    #[serde(default)]
    pub allowed_roots: Vec<String>,
    /// Largest source accepted, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Fetches in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of one fetch attempt, in seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Retries of a failed remote fetch (with exponential backoff).
    #[serde(default = "default_retries")]
    pub retries: usize,
}

/// A parameter that takes one string or a list of strings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

fn default_max_bytes() -> u64 {
    4 << 30
}
fn default_concurrency() -> usize {
    16
}
fn default_timeout_s() -> f64 {
    60.0
}
fn default_retries() -> usize {
    3
}

/// The `ingest` stage.
pub struct IngestStage;

impl Stage for IngestStage {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn configure(&self, params: toml::Table) -> Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if params.paths.to_vec().is_empty() {
            return Err("parameter `paths`: give at least one glob, list file or URI".into());
        }
        if params.concurrency == 0 {
            return Err("parameter `concurrency`: must be at least 1".into());
        }
        if !(params.timeout_s > 0.0 && params.timeout_s.is_finite()) {
            return Err("parameter `timeout_s`: must be a positive number of seconds".into());
        }
        Ok(Box::new(ConfiguredIngest {
            params,
            expansion: OnceCell::new(),
        }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(FetchUdf::new())]
    }
}

struct ConfiguredIngest {
    params: Params,
    /// The crawl listing, made once per run (fingerprint and plan both need it).
    expansion: OnceCell<Arc<Expansion>>,
}

impl ConfiguredIngest {
    async fn expansion(&self) -> Result<Arc<Expansion>> {
        self.expansion
            .get_or_try_init(|| async {
                let roots: Vec<PathBuf> = self
                    .params
                    .allowed_roots
                    .iter()
                    .map(PathBuf::from)
                    .collect();
                expand(&self.params.paths.to_vec(), &roots)
                    .await
                    .map(Arc::new)
                    .map_err(Error::Store)
            })
            .await
            .cloned()
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredIngest {
    fn stage_name(&self) -> &'static str {
        "ingest"
    }

    fn version(&self) -> u32 {
        1
    }

    fn input_arity(&self) -> InputArity {
        InputArity::Exactly(0)
    }

    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or_default()
    }

    fn speed_only_params(&self) -> &'static [&'static str] {
        &["concurrency", "timeout_s", "retries"]
    }

    async fn fingerprint_material(&self, _cx: &StageContext) -> Result<serde_json::Value> {
        let expansion = self.expansion().await?;
        let mut hasher = Sha256::new();
        for row in &expansion.rows {
            hasher.update(row.uri.as_bytes());
            hasher.update([0]);
            hasher.update(row.version.as_bytes());
            hasher.update([0]);
            hasher.update(row.reject.as_deref().unwrap_or("").as_bytes());
            for (k, v) in &row.metadata {
                hasher.update(k.as_bytes());
                hasher.update([1]);
                hasher.update(v.as_bytes());
            }
            hasher.update([2]);
        }
        Ok(serde_json::json!({
            "sources": expansion.rows.len(),
            "listing_sha256": hex::encode(hasher.finalize()),
        }))
    }

    async fn plan(&self, cx: &StageContext, _inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let expansion = self.expansion().await?;
        let config = FetchConfig {
            store: cx.store.url().to_string(),
            max_bytes: self.params.max_bytes,
            concurrency: self.params.concurrency,
            timeout_ms: (self.params.timeout_s * 1000.0) as u64,
            retries: self.params.retries,
        };
        let listing = listing_table(&expansion, self.params.concurrency * 4)?;
        let session = &cx.session;
        session.register_table("__ingest_listing", listing)?;
        let config_json =
            serde_json::to_string(&config).map_err(|e| Error::Store(e.to_string()))?;
        let meta_first: String = expansion
            .metadata_columns
            .iter()
            .map(|c| format!(", first_value(\"{c}\" ORDER BY uri) AS \"{c}\""))
            .collect();
        let meta_plain: String = expansion
            .metadata_columns
            .iter()
            .map(|c| format!(", \"{c}\""))
            .collect();
        // Fetch once (the UDF is volatile, so it is never evaluated twice) and keep the
        // small result in memory; then collapse duplicates and keep the rejects.
        let fetched = session
            .sql(&format!(
                "SELECT uri, origin{meta_plain}, speechmill_fetch(uri, pre_reason, '{}') AS f FROM __ingest_listing",
                config_json.replace('\'', "''")
            ))
            .await?
            .cache()
            .await?;
        session.register_table("__ingest_fetched", fetched.into_view())?;
        let df = session
            .sql(&format!(
                "WITH flat AS (
                    SELECT uri, origin{meta_plain}, f['source_id'] AS source_id, f['blob'] AS blob,
                           f['size_bytes'] AS size_bytes, f['reason'] AS reject_reason
                    FROM __ingest_fetched)
                 SELECT source_id, first_value(uri ORDER BY uri) AS uri,
                        first_value(origin ORDER BY uri) AS origin,
                        first_value(blob ORDER BY uri) AS blob,
                        first_value(size_bytes ORDER BY uri) AS size_bytes,
                        array_slice(array_agg(uri ORDER BY uri), 2, count(uri)) AS duplicate_uris
                        {meta_first},
                        CAST(NULL AS VARCHAR) AS reject_reason
                 FROM flat WHERE reject_reason IS NULL GROUP BY source_id
                 UNION ALL
                 SELECT source_id, uri, origin, blob, size_bytes, CAST(NULL AS VARCHAR[]) AS duplicate_uris
                        {meta_plain}, reject_reason
                 FROM flat WHERE reject_reason IS NOT NULL
                 ORDER BY uri"
            ))
            .await?;
        Ok(df)
    }
}

/// The crawl listing as an in-memory table, in batches of `batch_rows`.
fn listing_table(expansion: &Expansion, batch_rows: usize) -> Result<Arc<MemTable>> {
    let mut fields = vec![
        Field::new("uri", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
    ];
    fields.extend(
        expansion
            .metadata_columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true)),
    );
    fields.push(Field::new("pre_reason", DataType::Utf8, true));
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for chunk in expansion.rows.chunks(batch_rows.max(1)) {
        let mut columns: Vec<ArrayRef> = vec![
            string_array(chunk.iter().map(|r| Some(r.uri.clone()))),
            string_array(chunk.iter().map(|r| Some(r.origin.clone()))),
        ];
        for c in &expansion.metadata_columns {
            columns.push(string_array(
                chunk.iter().map(|r| r.metadata.get(c).cloned()),
            ));
        }
        columns.push(string_array(chunk.iter().map(|r| r.reject.clone())));
        batches.push(
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::Store(e.to_string()))?,
        );
    }
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// `speechmill_fetch(uri, pre_reason, config_json)`: stores each source in the
/// run store and returns `{source_id, blob, size_bytes, reason}`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FetchUdf {
    signature: Signature,
}

impl FetchUdf {
    fn new() -> Self {
        FetchUdf {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
                Volatility::Volatile,
            ),
        }
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("source_id", DataType::Utf8, true),
            Field::new("blob", DataType::Utf8, true),
            Field::new("size_bytes", DataType::Int64, true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }
}

impl ScalarUDFImpl for FetchUdf {
    fn name(&self) -> &str {
        "speechmill_fetch"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let uris = string_values(&args.args[0], rows)?;
        let pre = string_values(&args.args[1], rows)?;
        let config: FetchConfig = literal_json(&args.args[2], self.name())?;
        // Rows already rejected while listing are not fetched.
        let to_fetch: Vec<Option<String>> = uris
            .iter()
            .zip(&pre)
            .map(|(u, p)| if p.is_some() { None } else { u.clone() })
            .collect();
        let fetched = run_async(fetch::fetch_all(to_fetch, &config));
        let mut ids = Vec::with_capacity(rows);
        let mut blobs = Vec::with_capacity(rows);
        let mut sizes = Vec::with_capacity(rows);
        let mut reasons = Vec::with_capacity(rows);
        for (i, f) in fetched.into_iter().enumerate() {
            match f {
                Some(Fetched::Stored {
                    source_id,
                    blob,
                    size_bytes,
                }) => {
                    ids.push(Some(source_id));
                    blobs.push(Some(blob));
                    sizes.push(Some(size_bytes as i64));
                    reasons.push(None);
                }
                Some(Fetched::Rejected(reason)) => {
                    ids.push(None);
                    blobs.push(None);
                    sizes.push(None);
                    reasons.push(Some(reason));
                }
                None => {
                    ids.push(None);
                    blobs.push(None);
                    sizes.push(None);
                    reasons.push(Some(
                        pre[i].clone().unwrap_or_else(|| "missing uri".to_string()),
                    ));
                }
            }
        }
        let array = StructArray::try_new(
            Self::fields(),
            vec![
                string_array(ids),
                string_array(blobs),
                Arc::new(Int64Array::from(sizes)),
                string_array(reasons),
            ],
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}
