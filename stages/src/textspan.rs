//! Stage `textspan`: text corpora in, the spans of synthetic interleaved speech-text
//! data out. No inputs; param `paths` names the documents: JSONL (one object per
//! line, `id` and `text`, optional `language`), Parquet (columns `id`, `text`,
//! optional `language`) or plain text (`.txt`: one document per file, its id the
//! file's name), as local files, folders or globs, or `s3://bucket/prefix` (every
//! object under it with one of those extensions; a `*` glob in the last part
//! filters the names).
//!
//! Per document: the text normalised for reading aloud
//! ([`speechmill_text::normalize_for_speech`]: NFKC, whitespace, numbers spelt where
//! a maintained speller covers the language), its language (the document's
//! `language` field, else whatlang on the whole text), split into sentences (Unicode
//! sentence boundaries), and the sentences to speak chosen with ratio `eta` by a
//! shuffle seeded with `seed` and the document's id, so a document's choice is the
//! same whatever else the corpus holds. One row per span, in document order:
//! `span_id` (`<doc_id>.<span_index>`), `doc_id`, `span_index`, `text`,
//! `language`, `language_prob` (1 when given), `speak`, `source`.
//!
//! Rejects, one row per document or line that gives no span: `bad_line` (not JSON,
//! no `id` or `text`), `duplicate_id`, `no_text`, `no_language` (detection failed
//! and none given).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use speechmill_pipeline::stage::{
    ConfiguredStage, InputArity, REJECT_REASON_COLUMN, Stage, StageContext, parse_params,
};
use speechmill_pipeline::{Error, Result};

use crate::ingest::OneOrMany;
use crate::ingest::fetch::{s3_key_path, split_s3_uri};
use crate::ingest::sources::expand_local;
use crate::udf::string_array;
use speechmill_pipeline::error::one_line;
use speechmill_pipeline::store::s3_builder;

/// `textspan` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// JSONL, Parquet or `.txt` files, folders or globs.
    pub paths: OneOrMany,
    /// The share of each document's sentences to speak (0–1).
    #[serde(default = "default_eta")]
    pub eta: f64,
    /// Seed of the choice of spoken sentences.
    #[serde(default)]
    pub seed: u64,
    /// The language where a document gives none and whatlang detects none, or with
    /// less than 0.5 confidence.
    #[serde(default)]
    pub language: Option<String>,
}

fn default_eta() -> f64 {
    0.3
}

/// The `textspan` stage.
pub struct TextspanStage;

impl Stage for TextspanStage {
    fn name(&self) -> &'static str {
        "textspan"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if params.paths.to_vec().is_empty() {
            return Err("parameter `paths`: give at least one JSONL, Parquet or .txt file".into());
        }
        if !(0.0..=1.0).contains(&params.eta) {
            return Err("parameter `eta`: must be between 0 and 1".into());
        }
        Ok(Box::new(ConfiguredTextspan { params }))
    }

    fn udfs(&self) -> Vec<datafusion::logical_expr::ScalarUDF> {
        Vec::new()
    }
}

struct ConfiguredTextspan {
    params: Params,
}

/// A file of the corpus: where it is and what identifies its version.
#[derive(Clone, Debug, PartialEq)]
struct TextFile {
    /// The local path or `s3://bucket/key`.
    name: String,
    /// Size and modification time (local) or size and ETag (S3).
    version: String,
}

/// Name endings read as corpora.
const EXTENSIONS: [&str; 6] = ["jsonl", "ndjson", "json", "parquet", "txt", "text"];

fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl ConfiguredTextspan {
    /// Every file `paths` names, in order, each once.
    async fn files(&self) -> std::result::Result<Vec<TextFile>, String> {
        let mut seen = HashSet::new();
        let mut files = Vec::new();
        for entry in self.params.paths.to_vec() {
            let found = if entry.starts_with("s3://") {
                s3_files(&entry).await?
            } else if entry.contains("://") {
                return Err(format!(
                    "paths: `{entry}`: unsupported scheme (local paths and globs, or s3://bucket/prefix)"
                ));
            } else {
                expand_local(&entry)?
                    .into_iter()
                    .map(|f| {
                        let meta = std::fs::metadata(&f).ok();
                        let modified = meta
                            .as_ref()
                            .and_then(|m| m.modified().ok())
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map(|d| d.as_nanos())
                            .unwrap_or_default();
                        TextFile {
                            name: f.display().to_string(),
                            version: format!("{}:{modified}", meta.map_or(0, |m| m.len())),
                        }
                    })
                    .collect()
            };
            for f in found {
                if seen.insert(f.name.clone()) {
                    files.push(f);
                }
            }
        }
        Ok(files)
    }
}

/// The corpus objects under an `s3://bucket/prefix` (a `*` in its last part globs).
async fn s3_files(entry: &str) -> std::result::Result<Vec<TextFile>, String> {
    use futures::TryStreamExt;
    let (bucket, key) = split_s3_uri(entry).map_err(|e| format!("paths: `{entry}`: {e}"))?;
    let (prefix, pattern) = match key.rsplit_once('/') {
        Some((dir, last)) if last.contains(['*', '?', '[']) => {
            (dir.to_string(), Some(last.to_string()))
        }
        None if key.contains(['*', '?', '[']) => (String::new(), Some(key.clone())),
        _ => (key.clone(), None),
    };
    let pattern = pattern
        .map(|p| glob::Pattern::new(&p).map_err(|e| format!("paths: `{entry}`: bad glob: {e}")))
        .transpose()?;
    let store = s3_builder(&bucket).build().map_err(|e| {
        format!(
            "paths: `{entry}`: cannot configure S3: {}",
            one_line(&e.to_string())
        )
    })?;
    let prefix_path = s3_key_path(&prefix).map_err(|e| format!("paths: `{entry}`: {e}"))?;
    let listing: Vec<_> = object_store::ObjectStore::list(&store, Some(&prefix_path))
        .try_collect()
        .await
        .map_err(|e| {
            format!(
                "paths: `{entry}`: cannot list: {}",
                one_line(&e.to_string())
            )
        })?;
    let mut files: Vec<TextFile> = listing
        .into_iter()
        .filter(|m| EXTENSIONS.contains(&extension(m.location.as_ref()).as_str()))
        .filter(|m| {
            pattern
                .as_ref()
                .is_none_or(|p| m.location.filename().is_some_and(|f| p.matches(f)))
        })
        .map(|m| TextFile {
            name: format!("s3://{bucket}/{}", m.location),
            version: format!("{}:{}", m.size, m.e_tag.unwrap_or_default()),
        })
        .collect();
    if files.is_empty() {
        return Err(format!(
            "paths: `{entry}` holds no .jsonl, .parquet or .txt object"
        ));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// A file's bytes, local or from S3.
async fn read_bytes(name: &str) -> std::result::Result<Vec<u8>, String> {
    if !name.starts_with("s3://") {
        return std::fs::read(name).map_err(|e| format!("{name}: {e}"));
    }
    let (bucket, key) = split_s3_uri(name)?;
    let store = s3_builder(&bucket)
        .build()
        .map_err(|e| format!("{name}: cannot configure S3: {}", one_line(&e.to_string())))?;
    let path = s3_key_path(&key)?;
    let got = object_store::ObjectStoreExt::get(&store, &path)
        .await
        .map_err(|e| format!("{name}: {}", one_line(&e.to_string())))?;
    got.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| format!("{name}: {}", one_line(&e.to_string())))
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredTextspan {
    fn stage_name(&self) -> &'static str {
        "textspan"
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

    /// Each file's name and version (size and mtime, or size and ETag): an edited
    /// corpus reruns.
    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        let files = self.files().await.map_err(|e| Error::node(&cx.node, e))?;
        let listing: Vec<serde_json::Value> = files
            .iter()
            .map(|f| serde_json::json!([f.name, f.version]))
            .collect();
        Ok(serde_json::json!({ "files": listing }))
    }

    async fn plan(&self, cx: &StageContext, _inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let files = self.files().await.map_err(|e| Error::node(&cx.node, e))?;
        let mut documents = Vec::new();
        for file in &files {
            let bytes = read_bytes(&file.name)
                .await
                .map_err(|e| Error::node(&cx.node, e))?;
            documents
                .extend(read_documents(&file.name, bytes).map_err(|e| Error::node(&cx.node, e))?);
        }
        let rows = spans(documents, &self.params);
        Ok(cx.session.read_batch(span_batch(&rows)?)?)
    }
}

/// One document as read, or a line that is not one.
#[derive(Clone, Debug, PartialEq)]
struct Document {
    id: Option<String>,
    text: Option<String>,
    language: Option<String>,
    source: String,
    /// Why this entry is not a document.
    bad: Option<String>,
}

/// The documents of one file (its bytes), by its extension; an unreadable file is
/// the error.
fn read_documents(name: &str, bytes: Vec<u8>) -> std::result::Result<Vec<Document>, String> {
    let source = name.to_string();
    let unreadable = |e: &dyn std::fmt::Display| format!("{source}: {e}");
    match extension(name).as_str() {
        "jsonl" | "ndjson" | "json" => {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            Ok(text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, line)| json_document(line, &source, i + 1))
                .collect())
        }
        "parquet" => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .and_then(|b| b.build())
                .map_err(|e| unreadable(&e))?;
            let mut out = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| unreadable(&e))?;
                let column = |name: &str| -> std::result::Result<Option<ArrayRef>, String> {
                    batch
                        .column_by_name(name)
                        .map(|c| datafusion::arrow::compute::cast(c, &DataType::Utf8))
                        .transpose()
                        .map_err(|e| unreadable(&e))
                };
                let (Some(ids), Some(texts)) = (column("id")?, column("text")?) else {
                    return Err(format!(
                        "{source}: a Parquet corpus needs columns `id` and `text`"
                    ));
                };
                let languages = column("language")?;
                let value = |a: &ArrayRef, i: usize| {
                    (!a.is_null(i)).then(|| a.as_string::<i32>().value(i).to_string())
                };
                for i in 0..batch.num_rows() {
                    out.push(Document {
                        id: value(&ids, i),
                        text: value(&texts, i),
                        language: languages.as_ref().and_then(|l| value(l, i)),
                        source: source.clone(),
                        bad: None,
                    });
                }
            }
            Ok(out)
        }
        "txt" | "text" => {
            let id = name.rsplit('/').next().unwrap_or(name).to_string();
            Ok(vec![Document {
                id: Some(id),
                text: Some(String::from_utf8_lossy(&bytes).to_string()),
                language: None,
                source,
                bad: None,
            }])
        }
        _ => Err(format!(
            "{source}: not a text corpus (.jsonl, .parquet or .txt)"
        )),
    }
}

/// One JSONL line: `id` (string or number) and `text`, optional `language`.
fn json_document(line: &str, source: &str, number: usize) -> Document {
    let bad = |why: String| Document {
        id: None,
        text: None,
        language: None,
        source: source.to_string(),
        bad: Some(format!("bad_line: {source} line {number}: {why}")),
    };
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return bad(format!("not JSON ({e})")),
    };
    let id = match value.get("id") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return bad("no `id` (a string or number)".into()),
    };
    let Some(text) = value.get("text").and_then(|t| t.as_str()) else {
        return bad(format!("document `{id}` has no `text` string"));
    };
    Document {
        id: Some(id),
        text: Some(text.to_string()),
        language: value
            .get("language")
            .and_then(|l| l.as_str())
            .map(str::to_string)
            .filter(|l| !l.trim().is_empty()),
        source: source.to_string(),
        bad: None,
    }
}

/// One output row: a span, or a rejected document.
#[derive(Clone, Debug, PartialEq)]
struct SpanRow {
    doc_id: Option<String>,
    span_index: Option<i32>,
    text: Option<String>,
    language: Option<String>,
    language_prob: Option<f64>,
    speak: Option<bool>,
    source: String,
    reason: Option<String>,
}

fn spans(documents: Vec<Document>, params: &Params) -> Vec<SpanRow> {
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for d in documents {
        let reject = |reason: String| SpanRow {
            doc_id: d.id.clone(),
            span_index: None,
            text: None,
            language: None,
            language_prob: None,
            speak: None,
            source: d.source.clone(),
            reason: Some(reason),
        };
        if let Some(bad) = &d.bad {
            rows.push(reject(bad.clone()));
            continue;
        }
        let id = d.id.clone().unwrap_or_default();
        if !seen.insert(id.clone()) {
            rows.push(reject(format!(
                "duplicate_id: `{id}` ({}) was given before",
                d.source
            )));
            continue;
        }
        let raw = d.text.as_deref().unwrap_or("");
        if raw.trim().is_empty() {
            rows.push(reject(format!("no_text: document `{id}` is empty")));
            continue;
        }
        let (language, prob) = match &d.language {
            Some(l) => (l.clone(), 1.0),
            None => match speechmill_text::text_lang(raw) {
                // A short text's guess below even odds yields to the param.
                Some((_, p)) if p < 0.5 && params.language.is_some() => {
                    (params.language.clone().unwrap_or_default(), 0.0)
                }
                Some(found) => found,
                None => match &params.language {
                    Some(l) => (l.clone(), 0.0),
                    None => {
                        rows.push(reject(format!(
                            "no_language: document `{id}`: no `language` given and none detected (set param `language`)"
                        )));
                        continue;
                    }
                },
            },
        };
        let normal = speechmill_text::normalize_for_speech(raw, Some(&language));
        let sentences = speechmill_text::sentences(&normal);
        let speak = speechmill_text::spoken_spans(sentences.len(), params.eta, params.seed, &id);
        for (i, (text, speak)) in sentences.into_iter().zip(speak).enumerate() {
            rows.push(SpanRow {
                doc_id: Some(id.clone()),
                span_index: Some(i as i32),
                text: Some(text),
                language: Some(language.clone()),
                language_prob: Some(prob),
                speak: Some(speak),
                source: d.source.clone(),
                reason: None,
            });
        }
    }
    rows
}

fn span_batch(rows: &[SpanRow]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("span_id", DataType::Utf8, true),
        Field::new("doc_id", DataType::Utf8, true),
        Field::new("span_index", DataType::Int32, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("language", DataType::Utf8, true),
        Field::new("language_prob", DataType::Float64, true),
        Field::new("speak", DataType::Boolean, true),
        Field::new("source", DataType::Utf8, false),
        Field::new(REJECT_REASON_COLUMN, DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        string_array(rows.iter().map(|r| match (&r.doc_id, r.span_index) {
            (Some(d), Some(i)) => Some(format!("{d}.{i}")),
            _ => None,
        })),
        string_array(rows.iter().map(|r| r.doc_id.clone())),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.span_index))),
        string_array(rows.iter().map(|r| r.text.clone())),
        string_array(rows.iter().map(|r| r.language.clone())),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.language_prob),
        )),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.speak))),
        string_array(rows.iter().map(|r| Some(r.source.clone()))),
        string_array(rows.iter().map(|r| r.reason.clone())),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Store(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(eta: f64) -> Params {
        Params {
            paths: OneOrMany::One("x".into()),
            eta,
            seed: 3,
            language: None,
        }
    }

    #[test]
    fn documents_become_sentence_spans_in_order_with_their_language() {
        let docs = vec![
            json_document(
                r#"{"id": 7, "text": "The train leaves at 8. It is late today! We wait."}"#,
                "c.jsonl",
                1,
            ),
            json_document(
                r#"{"id": "b", "text": "Der Zug hat heute Verspätung. Wir warten.", "language": "de"}"#,
                "c.jsonl",
                2,
            ),
        ];
        let rows = spans(docs, &params(0.5));
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_deref().unwrap()).collect();
        assert_eq!(
            texts,
            [
                "The train leaves at eight.",
                "It is late today!",
                "We wait.",
                "Der Zug hat heute Verspätung.",
                "Wir warten."
            ]
        );
        assert_eq!(rows[0].language.as_deref(), Some("en"));
        assert!(rows[0].language_prob.unwrap() < 1.0);
        assert_eq!(
            (rows[3].language.as_deref(), rows[3].language_prob),
            (Some("de"), Some(1.0))
        );
        let spoken = |doc: &str| {
            rows.iter()
                .filter(|r| r.doc_id.as_deref() == Some(doc) && r.speak == Some(true))
                .count()
        };
        assert_eq!((spoken("7"), spoken("b")), (2, 1));
        assert_eq!(rows[4].span_index, Some(1));
    }

    #[test]
    fn bad_lines_duplicates_and_empty_documents_are_rejects_with_reasons() {
        let docs = vec![
            json_document("{not json", "c.jsonl", 1),
            json_document(r#"{"text": "no id"}"#, "c.jsonl", 2),
            json_document(r#"{"id": "a", "text": "   "}"#, "c.jsonl", 3),
            json_document(r#"{"id": "x", "text": "One."}"#, "c.jsonl", 4),
            json_document(r#"{"id": "x", "text": "Two."}"#, "c.jsonl", 5),
            json_document(r#"{"id": "n", "text": "123 456"}"#, "c.jsonl", 6),
        ];
        let rows = spans(docs, &params(0.3));
        let reasons: Vec<&str> = rows
            .iter()
            .map(|r| {
                r.reason
                    .as_deref()
                    .map_or("ok", |r| r.split(':').next().unwrap())
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "bad_line",
                "bad_line",
                "no_text",
                "ok",
                "duplicate_id",
                "no_language"
            ]
        );
        assert!(
            rows[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("c.jsonl line 1")
        );
    }
}
