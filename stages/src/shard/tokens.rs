//! Stage `token_shard`: interleaved token sequences as files a trainer reads
//! directly. Input: `interleave`. Under param `out` (a local folder or `s3://`
//! prefix), by `formats`:
//! - `megatron`: `<name>.bin` + `<name>.idx`, Megatron-LM's indexed dataset
//!   ([`super::megatron`]): one document per source document, its sequences in order;
//!   `uint16` when the joint vocabulary fits, else `int32`;
//! - `parquet`: `<name>.parquet` with `doc_id`, `seq_index`, `tokens` (list of int32),
//!   `n_tokens`, `tokens_text`, `tokens_speech`;
//!
//! then `preview.jsonl` (each sequence as text, spoken spans as `[speech: …]`) and
//! `manifest.json`, written last: documents, sequences, tokens by modality, hours of
//! speech, the vocabulary layout (`text_vocab_size`, `speech_offset`,
//! `speech_vocab_size`, `bos_speech`, `eos_speech`, `vocab_size`), the dtype and
//! each file's sha256. Documents are ordered by `doc_id`, sequences by index: the
//! same input gives byte-identical files. The sequences are collected and written
//! where the node is planned (they are small beside audio). The node's table lists
//! the files with their sha256 and sizes.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::ScalarUDF;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::store::open_location;
use speechmill_pipeline::{Error, Result};

use super::megatron::{DTYPE_UINT16, IndexedWriter};
use crate::udf::string_array;

/// `token_shard` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A local folder or `s3://bucket/prefix`.
    pub out: String,
    /// `megatron` and/or `parquet`.
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// The files' stem.
    #[serde(default = "default_name")]
    pub name: String,
}

fn default_formats() -> Vec<String> {
    vec!["megatron".into(), "parquet".into()]
}
fn default_name() -> String {
    "interleaved".into()
}

/// The `token_shard` stage.
pub struct TokenShardStage;

impl Stage for TokenShardStage {
    fn name(&self) -> &'static str {
        "token_shard"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if params.formats.is_empty() {
            return Err("parameter `formats`: name at least one (megatron, parquet)".into());
        }
        if let Some(f) = params
            .formats
            .iter()
            .find(|f| !["megatron", "parquet"].contains(&f.as_str()))
        {
            return Err(format!(
                "parameter `formats`: unknown format `{f}` (megatron, parquet)"
            ));
        }
        if params.name.is_empty() || params.name.contains(['/', '.']) {
            return Err("parameter `name`: a file stem without `/` or `.`".into());
        }
        Ok(Box::new(ConfiguredTokenShard { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        Vec::new()
    }
}

struct ConfiguredTokenShard {
    params: Params,
}

/// What the sequences add up to.
#[derive(Default)]
struct Totals {
    documents: usize,
    sequences: usize,
    text: i64,
    speech: i64,
    speech_s: f64,
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredTokenShard {
    fn stage_name(&self) -> &'static str {
        "token_shard"
    }

    fn version(&self) -> u32 {
        1
    }

    fn input_arity(&self) -> InputArity {
        InputArity::Exactly(1)
    }

    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or_default()
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let node = |e: String| Error::node(&cx.node, e);
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| node("token_shard takes one input: interleave".into()))?;
        for c in [
            "doc_id",
            "seq_index",
            "tokens",
            "tokens_text",
            "tokens_speech",
            "speech_s",
            "preview",
            "vocab_size",
        ] {
            if input.schema().inner().field_with_name(c).is_err() {
                return Err(node(format!(
                    "token_shard: the input has no column `{c}` (give it an interleave node)"
                )));
            }
        }
        cx.session
            .register_table("__token_shard_input", input.into_view())?;
        let ordered = cx
            .session
            .sql(
                "SELECT doc_id, seq_index, tokens, n_tokens, tokens_text, tokens_speech, speech_s, preview,
                        text_vocab_size, speech_offset, speech_vocab_size, bos_speech, eos_speech, vocab_size
                 FROM __token_shard_input ORDER BY doc_id, seq_index",
            )
            .await?;
        let batches = ordered.collect().await?;
        let layout_of = |name: &str| -> i64 {
            batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .and_then(|b| b.column_by_name(name))
                .map(|c| c.as_primitive::<Int32Type>().value(0) as i64)
                .unwrap_or(0)
        };
        let vocab_size = layout_of("vocab_size") as usize;
        let mut writer = IndexedWriter::new(vocab_size.max(1));
        let mut totals = Totals::default();
        let mut preview = String::new();
        let mut current: Option<(String, Vec<Vec<u32>>)> = None;
        for b in &batches {
            let doc = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
            let doc = doc.as_string::<i32>();
            let seq = b.column(1).as_primitive::<Int64Type>();
            let tokens = datafusion::arrow::compute::cast(
                b.column(2),
                &DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            )?;
            let tokens = tokens.as_list::<i32>();
            let text = b.column(4).as_primitive::<Int32Type>();
            let speech = b.column(5).as_primitive::<Int32Type>();
            let seconds = b
                .column(6)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            let shown = datafusion::arrow::compute::cast(b.column(7), &DataType::Utf8)?;
            let shown = shown.as_string::<i32>();
            for i in 0..b.num_rows() {
                let ids: Vec<u32> = tokens
                    .value(i)
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|&t| t as u32)
                    .collect();
                let d = doc.value(i).to_string();
                if current.as_ref().is_some_and(|(c, _)| *c != d)
                    && let Some((_, seqs)) = current.take()
                {
                    writer.add_document(&seqs).map_err(&node)?;
                    totals.documents += 1;
                }
                current
                    .get_or_insert_with(|| (d.clone(), Vec::new()))
                    .1
                    .push(ids);
                totals.sequences += 1;
                totals.text += text.value(i) as i64;
                totals.speech += speech.value(i) as i64;
                totals.speech_s += seconds.value(i);
                preview.push_str(
                    &serde_json::json!({ "doc_id": d, "seq_index": seq.value(i), "text": shown.value(i) })
                        .to_string(),
                );
                preview.push('\n');
            }
        }
        if let Some((_, seqs)) = current.take() {
            writer.add_document(&seqs).map_err(&node)?;
            totals.documents += 1;
        }
        let dtype = writer.dtype_code();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let name = &self.params.name;
        if self.params.formats.iter().any(|f| f == "megatron") {
            let (bin, idx) = writer.finish();
            files.push((format!("{name}.bin"), bin));
            files.push((format!("{name}.idx"), idx));
        }
        if self.params.formats.iter().any(|f| f == "parquet") {
            files.push((
                format!("{name}.parquet"),
                parquet_bytes(&batches).map_err(node)?,
            ));
        }
        files.push(("preview.jsonl".into(), preview.into_bytes()));
        let shas: Vec<(String, String, usize)> = files
            .iter()
            .map(|(n, b)| (n.clone(), hex::encode(Sha256::digest(b)), b.len()))
            .collect();
        let manifest = serde_json::json!({
            "documents": totals.documents,
            "sequences": totals.sequences,
            "tokens_text": totals.text,
            "tokens_speech": totals.speech,
            "hours_speech": totals.speech_s / 3600.0,
            "text_vocab_size": layout_of("text_vocab_size"),
            "speech_offset": layout_of("speech_offset"),
            "speech_vocab_size": layout_of("speech_vocab_size"),
            "bos_speech": layout_of("bos_speech"),
            "eos_speech": layout_of("eos_speech"),
            "vocab_size": vocab_size,
            "dtype": if dtype == DTYPE_UINT16 { "uint16" } else { "int32" },
            "files": shas.iter().map(|(n, s, len)| serde_json::json!({ "path": n, "sha256": s, "bytes": len })).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| node(e.to_string()))?;
        files.push(("manifest.json".into(), manifest));
        let location =
            open_location(&self.params.out).map_err(|e| node(format!("parameter `out`: {e}")))?;
        let mut rows = Vec::new();
        // The manifest goes last: a reader that finds it finds every file it lists.
        for (file, bytes) in files {
            let mut path = location.prefix.clone();
            path = path.join(file.as_str());
            let sha = hex::encode(Sha256::digest(&bytes));
            let len = bytes.len();
            location
                .object_store
                .put(&path, bytes.into())
                .await
                .map_err(|e| node(format!("writing {path}: {e}")))?;
            rows.push((file, sha, len as i64));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("file", DataType::Utf8, false),
            Field::new("sha256", DataType::Utf8, false),
            Field::new("bytes", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            string_array(rows.iter().map(|r| Some(r.0.clone()))),
            string_array(rows.iter().map(|r| Some(r.1.clone()))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ];
        let batch =
            RecordBatch::try_new(schema, columns).map_err(|e| Error::Store(e.to_string()))?;
        Ok(cx.session.read_batch(batch)?)
    }
}

/// The sequences as one Parquet file (no statistics that vary with the writer's
/// clock; the same rows give the same bytes).
fn parquet_bytes(batches: &[RecordBatch]) -> std::result::Result<Vec<u8>, String> {
    let keep = [
        "doc_id",
        "seq_index",
        "tokens",
        "n_tokens",
        "tokens_text",
        "tokens_speech",
    ];
    let mut out = Vec::new();
    let Some(first) = batches.first() else {
        return Ok(out);
    };
    let schema = Arc::new(
        first
            .schema()
            .project(
                &keep
                    .iter()
                    .map(|c| first.schema().index_of(c))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
    );
    let props = WriterProperties::builder()
        .set_created_by("speechmill".into())
        .build();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).map_err(|e| e.to_string())?;
    for b in batches {
        let columns: Vec<ArrayRef> = keep
            .iter()
            .map(|c| b.column_by_name(c).cloned())
            .collect::<Option<_>>()
            .ok_or("missing column")?;
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
        if batch.num_rows() > 0 {
            writer.write(&batch).map_err(|e| e.to_string())?;
        }
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(out)
}
