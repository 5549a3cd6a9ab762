//! Stage `ingest`: crawls sources (local globs and folders, CSV/JSONL list files,
//! `s3://` prefixes, http(s) URLs) and stores each distinct file once in the run
//! store, content-addressed by sha256. Exact duplicates collapse to one source
//! whose `duplicate_uris` lists the others.
//!
//! Output columns: `source_id` (sha256), `uri`, `origin`, `blob` (store key),
//! `size_bytes`, `duplicate_uris`, then any list-file metadata columns (one named
//! like an output column is carried as `<name>_input`).
//! Rejects: `fetch_failed…`, `too_large…`, `empty…`, `outside_allowed_roots…`,
//! `bad_list_entry: <file> line <n>: …`, `unsupported_uri…`, `not_audio…` (a list
//! file found by a crawl: list files are read only when named in `paths`).
//! [`sources`] says how `paths` expand; [`fetch`] how sources are fetched.
//!
//! The plan is one query over the crawl listing (an in-memory table): a projection
//! calls `speechmill_fetch` once per listing row, in whichever process runs the
//! task (a cluster executor, or this one), and one `GROUP BY` collapses what it
//! returns: stored rows by `source_id` (duplicates become `duplicate_uris`),
//! rejected rows each by their own listing row. The listing's internal columns are
//! named `__sm_…`, so no metadata column can shadow them.

pub(crate) mod fetch;
pub(crate) mod sources;

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

pub use fetch::{FetchConfig, Fetched, blob_key, redact_credentials};
pub use sources::{ExpandOptions, Expansion, SourceRow, expand};

use crate::columns::quote;
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
                let options = ExpandOptions {
                    allowed_roots: self
                        .params
                        .allowed_roots
                        .iter()
                        .map(PathBuf::from)
                        .collect(),
                    // The listing sends HEAD requests only; it writes nothing.
                    fetch: self.fetch_config(String::new()),
                };
                expand(&self.params.paths.to_vec(), &options)
                    .await
                    .map(Arc::new)
                    .map_err(Error::Store)
            })
            .await
            .cloned()
    }

    fn fetch_config(&self, store: String) -> FetchConfig {
        FetchConfig {
            store,
            max_bytes: self.params.max_bytes,
            concurrency: self.params.concurrency,
            timeout_ms: (self.params.timeout_s * 1000.0) as u64,
            retries: self.params.retries,
        }
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredIngest {
    fn stage_name(&self) -> &'static str {
        "ingest"
    }

    fn version(&self) -> u32 {
        // 2: metadata named like an output column is `<name>_input` (was `meta_…`);
        // list files found by a crawl are rejected, not read; http versions by HEAD.
        2
    }

    fn input_arity(&self) -> InputArity {
        InputArity::Exactly(0)
    }

    /// The params, with credentials in `paths` redacted: they are part of the
    /// fingerprint material the store keeps, and a new token fetches the same bytes.
    fn params_json(&self) -> serde_json::Value {
        let mut params = self.params.clone();
        params.paths = OneOrMany::Many(
            params
                .paths
                .to_vec()
                .iter()
                .map(|p| redact_credentials(p).into_owned())
                .collect(),
        );
        serde_json::to_value(&params).unwrap_or_default()
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
        let config = self.fetch_config(cx.store.url().to_string());
        let listing = listing_table(&expansion, self.params.concurrency * 4)?;
        cx.session.register_table(LISTING_TABLE, listing)?;
        let config_json =
            serde_json::to_string(&config).map_err(|e| Error::Store(e.to_string()))?;
        let df = cx
            .session
            .sql(&plan_sql(&expansion.metadata_columns, &config_json))
            .await?;
        Ok(df)
    }
}

/// The name the crawl listing is registered under.
const LISTING_TABLE: &str = "__sm_ingest_listing";

/// The listing's column of metadata column `i`.
fn metadata_column(i: usize) -> String {
    format!("__sm_meta_{i}")
}

/// The ingest query over the listing. `speechmill_fetch` is volatile and appears
/// once, in the innermost projection, whose struct result the next projection
/// reads field by field (DataFusion keeps a projection whose non-trivial column is
/// read more than once, and the runner leaves leaf-expression pushdown off), so it
/// runs once per listing row. One aggregate then groups stored rows by
/// `source_id` and every rejected row by its own listing row, so each listing row
/// ends in exactly one output row: a source (with its duplicates) or a reject.
fn plan_sql(metadata_columns: &[String], config_json: &str) -> String {
    let meta_plain: String = (0..metadata_columns.len())
        .map(|i| format!(", {}", metadata_column(i)))
        .collect();
    let first = |column: &str| format!("first_value({column} ORDER BY __sm_uri, __sm_row)");
    let meta_first: String = metadata_columns
        .iter()
        .enumerate()
        .map(|(i, name)| format!(", {} AS {}", first(&metadata_column(i)), quote(name)))
        .collect();
    format!(
        "WITH fetched AS (
            SELECT __sm_row, __sm_uri, __sm_origin{meta_plain},
                   speechmill_fetch(__sm_fetch_uri, __sm_pre_reason, '{config}') AS __sm_f
            FROM {LISTING_TABLE}),
         flat AS (
            SELECT __sm_row, __sm_uri, __sm_origin{meta_plain},
                   __sm_f['source_id'] AS __sm_source_id, __sm_f['blob'] AS __sm_blob,
                   __sm_f['size_bytes'] AS __sm_size, __sm_f['reason'] AS __sm_reason
            FROM fetched)
         SELECT max(__sm_source_id) AS source_id,
                {uri} AS uri,
                {origin} AS origin,
                max(__sm_blob) AS blob,
                max(__sm_size) AS size_bytes,
                CASE WHEN max(__sm_reason) IS NULL
                     THEN array_slice(array_agg(__sm_uri ORDER BY __sm_uri, __sm_row), 2, count(*))
                END AS duplicate_uris
                {meta_first},
                max(__sm_reason) AS reject_reason
         FROM flat
         GROUP BY __sm_source_id, CASE WHEN __sm_source_id IS NULL THEN __sm_row END
         ORDER BY uri",
        config = config_json.replace('\'', "''"),
        uri = first("__sm_uri"),
        origin = first("__sm_origin"),
    )
}

/// The crawl listing as an in-memory table, in batches of `batch_rows`. Every
/// column is internal (`__sm_…`); `__sm_uri` is what `uri` stores (credentials
/// redacted), `__sm_fetch_uri` what the fetch reads.
fn listing_table(expansion: &Expansion, batch_rows: usize) -> Result<Arc<MemTable>> {
    let mut fields = vec![
        Field::new("__sm_row", DataType::Int64, false),
        Field::new("__sm_uri", DataType::Utf8, false),
        Field::new("__sm_fetch_uri", DataType::Utf8, false),
        Field::new("__sm_origin", DataType::Utf8, false),
        Field::new("__sm_pre_reason", DataType::Utf8, true),
    ];
    fields.extend(
        (0..expansion.metadata_columns.len())
            .map(|i| Field::new(metadata_column(i), DataType::Utf8, true)),
    );
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    let batch_rows = batch_rows.max(1);
    for (n, chunk) in expansion.rows.chunks(batch_rows).enumerate() {
        let first_row = (n * batch_rows) as i64;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                (0..chunk.len() as i64).map(|i| first_row + i),
            )),
            string_array(chunk.iter().map(|r| Some(r.uri.clone()))),
            string_array(chunk.iter().map(|r| Some(r.fetch_uri.clone()))),
            string_array(chunk.iter().map(|r| Some(r.origin.clone()))),
            string_array(chunk.iter().map(|r| r.reject.clone())),
        ];
        for c in &expansion.metadata_columns {
            columns.push(string_array(
                chunk.iter().map(|r| r.metadata.get(c).cloned()),
            ));
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::{cast, concat_batches};
    use datafusion::arrow::util::display::array_value_to_string;
    use speechmill_pipeline::runner::new_session;
    use speechmill_pipeline::{RunStore, StageRegistry};

    use super::*;

    /// The real `speechmill_fetch`, counting the rows it is called on.
    #[derive(Debug)]
    struct CountedFetch {
        inner: FetchUdf,
        rows: Arc<AtomicUsize>,
    }

    impl PartialEq for CountedFetch {
        fn eq(&self, _: &Self) -> bool {
            true
        }
    }
    impl Eq for CountedFetch {}
    impl std::hash::Hash for CountedFetch {
        fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
    }

    impl ScalarUDFImpl for CountedFetch {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn signature(&self) -> &Signature {
            self.inner.signature()
        }
        fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
            self.inner.return_type(args)
        }
        fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
            self.rows.fetch_add(args.number_rows, Ordering::SeqCst);
            self.inner.invoke_with_args(args)
        }
    }

    fn configure(paths: &[String], extra: &str) -> Box<dyn ConfiguredStage> {
        let quoted: Vec<String> = paths
            .iter()
            .map(|p| serde_json::Value::String(p.clone()).to_string())
            .collect();
        let params: toml::Table =
            toml::from_str(&format!("paths = [{}]\n{extra}", quoted.join(", "))).unwrap();
        IngestStage.configure(params).unwrap()
    }

    /// Runs an ingest plan over `paths` in a fresh store with a counting fetch UDF:
    /// (output rows, rows the UDF was called on).
    async fn run_counted(paths: &[String]) -> (RecordBatch, usize) {
        let store_dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(store_dir.path().to_str().unwrap())
            .await
            .unwrap();
        let session = new_session(&StageRegistry::new(), &store, None);
        let rows = Arc::new(AtomicUsize::new(0));
        session.register_udf(ScalarUDF::new_from_impl(CountedFetch {
            inner: FetchUdf::new(),
            rows: rows.clone(),
        }));
        let cx = StageContext {
            session,
            store,
            node: "ingest".to_string(),
            inputs: Vec::new(),
        };
        // Batches of 4 listing rows: the plan sees several batches.
        let stage = configure(paths, "concurrency = 1");
        let df = stage.plan(&cx, Vec::new()).await.unwrap();
        let batches = df.collect().await.unwrap();
        let out = concat_batches(&batches[0].schema(), &batches).unwrap();
        (out, rows.load(Ordering::SeqCst))
    }

    fn column(batch: &RecordBatch, name: &str) -> Vec<String> {
        let col = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let col = cast(col, &DataType::Utf8).unwrap_or_else(|_| col.clone());
        (0..col.len())
            .map(|i| {
                if col.is_null(i) {
                    String::new()
                } else if let Some(s) = col.as_string_opt::<i32>() {
                    s.value(i).to_string()
                } else {
                    array_value_to_string(&col, i).unwrap()
                }
            })
            .collect()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn fetch_runs_once_per_listing_row_and_every_row_ends_in_output_or_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let audio = dir.path().join("audio");
        let listed = dir.path().join("listed");
        std::fs::create_dir_all(&audio).unwrap();
        std::fs::create_dir_all(&listed).unwrap();
        std::fs::write(audio.join("a.wav"), b"aaaa").unwrap();
        std::fs::write(audio.join("b.wav"), b"aaaa").unwrap();
        std::fs::write(audio.join("c.wav"), b"cccc").unwrap();
        std::fs::write(audio.join("empty.wav"), b"").unwrap();
        std::fs::write(listed.join("d.wav"), b"dddd").unwrap();
        // Metadata named like the plan's helper columns and ingest's output columns.
        let list = dir.path().join("list.jsonl");
        std::fs::write(
            &list,
            "{\"uri\": \"listed/d.wav\", \"pre_reason\": \"p\", \"f\": \"x\", \"source_id\": \"s\", \
             \"blob\": \"b\", \"reject_reason\": \"r\", \"__sm_row\": \"9\", \"__sm_f\": \"y\"}\n\
             {\"uri\": \"../outside.wav\"}\n\
             not json\n",
        )
        .unwrap();
        let paths = [audio.display().to_string(), list.display().to_string()];
        let (out, fetched_rows) = run_counted(&paths).await;

        // 4 crawled + 3 list rows, each through the UDF exactly once.
        assert_eq!(fetched_rows, 7);
        // {a, b} collapse into one source; c and d are sources; empty, outside and
        // the bad line are rejects: 6 rows, in uri order.
        let uris = column(&out, "uri");
        let reasons = column(&out, "reject_reason");
        assert_eq!(out.num_rows(), 6, "{uris:?} {reasons:?}");
        let mut sorted = uris.clone();
        sorted.sort();
        assert_eq!(uris, sorted);
        let stored: Vec<usize> = (0..6).filter(|i| reasons[*i].is_empty()).collect();
        assert_eq!(stored.len(), 3, "{reasons:?}");
        let ids = column(&out, "source_id");
        let duplicates = column(&out, "duplicate_uris");
        let a = uris.iter().position(|u| u.ends_with("a.wav")).unwrap();
        assert_eq!(ids[a], sha256_hex(b"aaaa"));
        assert_eq!(
            duplicates[a],
            format!("[{}]", audio.join("b.wav").display())
        );
        let d = uris.iter().position(|u| u.ends_with("d.wav")).unwrap();
        assert_eq!(ids[d], sha256_hex(b"dddd"));
        assert_eq!(column(&out, "size_bytes")[d], "4");
        assert_eq!(column(&out, "blob")[d], blob_key(&sha256_hex(b"dddd")));
        for (name, value) in [
            ("pre_reason", "p"),
            ("f", "x"),
            ("source_id_input", "s"),
            ("blob_input", "b"),
            ("reject_reason_input", "r"),
            ("__sm_row", "9"),
            ("__sm_f", "y"),
        ] {
            assert_eq!(column(&out, name)[d], value, "{name}");
        }
        let mut rejected: Vec<&str> = reasons
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| r.split(':').next().unwrap_or(""))
            .collect();
        rejected.sort();
        assert_eq!(
            rejected,
            ["bad_list_entry", "empty", "outside_allowed_roots"]
        );
        let bad = reasons
            .iter()
            .position(|r| r.starts_with("bad_list_entry"))
            .unwrap();
        assert!(duplicates[bad].is_empty() && ids[bad].is_empty());
    }

    #[test]
    fn credentials_in_paths_stay_out_of_the_fingerprinted_params() {
        let stage = configure(&["https://bob:hunter2@example.org/a.wav".to_string()], "");
        let params = stage.params_json().to_string();
        assert!(params.contains("https://***@example.org/a.wav"), "{params}");
        assert!(!params.contains("hunter2"), "{params}");
    }
}
