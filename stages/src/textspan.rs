//! Stage `textspan`: text corpora in, the spans of synthetic interleaved speech-text
//! data out. No inputs; param `paths` names the documents: JSONL (one object per
//! line, `id` and `text`, optional `language`), Parquet (columns `id`, `text`,
//! optional `language`) or plain text (`.txt`: one document per file, its id the
//! file's name), as local files, folders or globs.
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
use std::path::{Path, PathBuf};
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
use crate::ingest::sources::expand_local;
use crate::udf::string_array;

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
    /// The language where a document gives none and detection fails.
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

impl ConfiguredTextspan {
    /// Every file `paths` names, in order, each once.
    fn files(&self) -> std::result::Result<Vec<PathBuf>, String> {
        let mut seen = HashSet::new();
        let mut files = Vec::new();
        for entry in self.params.paths.to_vec() {
            if entry.contains("://") {
                return Err(format!(
                    "paths: `{entry}`: textspan reads local files, folders and globs"
                ));
            }
            for f in expand_local(&entry)? {
                if seen.insert(f.clone()) {
                    files.push(f);
                }
            }
        }
        Ok(files)
    }
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

    /// Each file's path, size and modification time: an edited corpus reruns.
    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        let files = self.files().map_err(|e| Error::node(&cx.node, e))?;
        let listing: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let meta = std::fs::metadata(f).ok();
                let modified = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos().to_string());
                serde_json::json!([f.display().to_string(), meta.map(|m| m.len()), modified])
            })
            .collect();
        Ok(serde_json::json!({ "files": listing }))
    }

    async fn plan(&self, cx: &StageContext, _inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let files = self.files().map_err(|e| Error::node(&cx.node, e))?;
        let mut documents = Vec::new();
        for file in &files {
            documents.extend(read_documents(file).map_err(|e| Error::node(&cx.node, e))?);
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

/// The documents of one file, by its extension; an unreadable file is the error.
fn read_documents(path: &Path) -> std::result::Result<Vec<Document>, String> {
    let source = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let unreadable = |e: &dyn std::fmt::Display| format!("{source}: {e}");
    match ext.as_str() {
        "jsonl" | "ndjson" | "json" => {
            let bytes = std::fs::read(path).map_err(|e| unreadable(&e))?;
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
            let file = std::fs::File::open(path).map_err(|e| unreadable(&e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
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
            let bytes = std::fs::read(path).map_err(|e| unreadable(&e))?;
            let id = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| source.clone());
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
