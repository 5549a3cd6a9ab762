//! Stage `interleave`: per document, its spans' tokens in document order, text and
//! speech interleaved, packed into training sequences.
//!
//! Input: `tokenize`. Vocabulary layout: text ids as the text tokenizer gives them
//! (`0 .. text_vocab_size`), then speech unit `u` at `speech_offset + u`
//! (`speech_offset = text_vocab_size`), then the begin- and end-of-speech markers at
//! `speech_offset + k` and `speech_offset + k + 1`; `vocab_size` counts them all. A
//! spoken span is `<bos_speech> units… <eos_speech>`. Spans are packed greedily into
//! sequences of at most `max_len` tokens, cut only between spans (a span longer than
//! `max_len` alone is split). Columns per sequence: `doc_id`, `seq_index`, `tokens`,
//! `n_tokens`, `tokens_text`, `tokens_speech` (markers included), `speech_s`,
//! `preview` (the sequence as text with `[speech: …]` around what was spoken), and
//! the layout (`text_vocab_size`, `speech_offset`, `speech_vocab_size`,
//! `bos_speech`, `eos_speech`, `vocab_size`).
//!
//! The sequences are built where the node is planned (a document's spans must meet in
//! one place; the tokens are small beside the audio).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int32Builder, Int64Array, ListBuilder,
    RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::ScalarUDF;
use serde::{Deserialize, Serialize};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::udf::string_array;

/// `interleave` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Tokens per sequence at most.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
}

fn default_max_len() -> usize {
    2048
}

/// The `interleave` stage.
pub struct InterleaveStage;

impl Stage for InterleaveStage {
    fn name(&self) -> &'static str {
        "interleave"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if params.max_len < 4 {
            return Err("parameter `max_len`: at least 4 tokens".into());
        }
        Ok(Box::new(ConfiguredInterleave { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        Vec::new()
    }
}

struct ConfiguredInterleave {
    params: Params,
}

/// Where speech ids and the markers sit in the joint vocabulary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub text_vocab_size: u32,
    pub speech_vocab_size: u32,
}

impl Layout {
    pub fn speech_offset(&self) -> u32 {
        self.text_vocab_size
    }
    pub fn bos_speech(&self) -> u32 {
        self.text_vocab_size + self.speech_vocab_size
    }
    pub fn eos_speech(&self) -> u32 {
        self.bos_speech() + 1
    }
    pub fn vocab_size(&self) -> u32 {
        self.eos_speech() + 1
    }
}

/// A span as interleave reads it.
#[derive(Clone, Debug)]
struct Span {
    speech: bool,
    tokens: Vec<u32>,
    text: String,
    speech_s: f64,
}

/// A packed sequence.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sequence {
    tokens: Vec<u32>,
    text: usize,
    speech: usize,
    speech_s: f64,
    preview: Vec<String>,
}

/// Packs a document's spans (in order) into sequences of at most `max_len`.
fn pack(spans: &[Span], layout: Layout, max_len: usize) -> Vec<Sequence> {
    let mut out = Vec::new();
    let mut current = Sequence::default();
    for span in spans {
        let piece: Vec<u32> = if span.speech {
            let mut p = vec![layout.bos_speech()];
            p.extend(span.tokens.iter().map(|u| u + layout.speech_offset()));
            p.push(layout.eos_speech());
            p
        } else {
            span.tokens.clone()
        };
        if !current.tokens.is_empty() && current.tokens.len() + piece.len() > max_len {
            out.push(std::mem::take(&mut current));
        }
        let label = if span.speech {
            format!("[speech: {}]", span.text)
        } else {
            span.text.clone()
        };
        let chunks: Vec<&[u32]> = piece.chunks(max_len).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            if span.speech {
                current.speech += chunk.len();
            } else {
                current.text += chunk.len();
            }
            current.tokens.extend_from_slice(chunk);
            if i == 0 {
                current.preview.push(label.clone());
                if span.speech {
                    current.speech_s += span.speech_s;
                }
            }
            if i < last {
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.tokens.is_empty() {
        out.push(current);
    }
    out
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredInterleave {
    fn stage_name(&self) -> &'static str {
        "interleave"
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
        let node = |e: &str| Error::node(&cx.node, e.to_string());
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| node("interleave takes one input: tokenize"))?;
        for c in [
            "doc_id",
            "span_index",
            "modality",
            "tokens",
            "text",
            "text_vocab_size",
            "speech_vocab_size",
        ] {
            if input.schema().inner().field_with_name(c).is_err() {
                return Err(node(&format!(
                    "interleave: the input has no column `{c}` (give it a tokenize node)"
                )));
            }
        }
        cx.session
            .register_table("__interleave_input", input.into_view())?;
        let batches = cx
            .session
            .sql(
                "SELECT doc_id, CAST(span_index AS BIGINT) AS span_index, modality, tokens, text,
                        CAST(coalesce(speech_s, 0.0) AS DOUBLE) AS speech_s,
                        text_vocab_size, speech_vocab_size
                 FROM __interleave_input ORDER BY doc_id, span_index",
            )
            .await?
            .collect()
            .await?;
        let mut docs: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        let mut layout: Option<Layout> = None;
        for b in &batches {
            let doc = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
            let doc = doc.as_string::<i32>();
            let modality = datafusion::arrow::compute::cast(b.column(2), &DataType::Utf8)?;
            let modality = modality.as_string::<i32>();
            let tokens = datafusion::arrow::compute::cast(
                b.column(3),
                &DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            )?;
            let tokens = tokens.as_list::<i32>();
            let text = datafusion::arrow::compute::cast(b.column(4), &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let seconds = b
                .column(5)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            let tv = b.column(6).as_primitive::<Int32Type>();
            let sv = b.column(7).as_primitive::<Int32Type>();
            for i in 0..b.num_rows() {
                if tokens.is_null(i) || doc.is_null(i) {
                    continue;
                }
                if layout.is_none() && !tv.is_null(i) && !sv.is_null(i) {
                    layout = Some(Layout {
                        text_vocab_size: tv.value(i) as u32,
                        speech_vocab_size: sv.value(i) as u32,
                    });
                }
                let ids = tokens.value(i);
                let ids = ids.as_primitive::<Int32Type>();
                docs.entry(doc.value(i).to_string())
                    .or_default()
                    .push(Span {
                        speech: modality.value(i) == "speech",
                        tokens: ids.values().iter().map(|&t| t as u32).collect(),
                        text: if text.is_null(i) {
                            String::new()
                        } else {
                            text.value(i).to_string()
                        },
                        speech_s: seconds.value(i),
                    });
            }
        }
        let layout = layout.unwrap_or(Layout {
            text_vocab_size: 0,
            speech_vocab_size: 0,
        });
        let mut rows: Vec<(String, i64, Sequence)> = Vec::new();
        for (doc, spans) in &docs {
            for (i, s) in pack(spans, layout, self.params.max_len)
                .into_iter()
                .enumerate()
            {
                rows.push((doc.clone(), i as i64, s));
            }
        }
        Ok(cx.session.read_batch(sequence_batch(&rows, layout)?)?)
    }
}

fn sequence_batch(rows: &[(String, i64, Sequence)], layout: Layout) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("seq_index", DataType::Int64, false),
        Field::new(
            "tokens",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            false,
        ),
        Field::new("n_tokens", DataType::Int32, false),
        Field::new("tokens_text", DataType::Int32, false),
        Field::new("tokens_speech", DataType::Int32, false),
        Field::new("speech_s", DataType::Float64, false),
        Field::new("preview", DataType::Utf8, false),
        Field::new("text_vocab_size", DataType::Int32, false),
        Field::new("speech_offset", DataType::Int32, false),
        Field::new("speech_vocab_size", DataType::Int32, false),
        Field::new("bos_speech", DataType::Int32, false),
        Field::new("eos_speech", DataType::Int32, false),
        Field::new("vocab_size", DataType::Int32, false),
    ]));
    let mut tokens = ListBuilder::new(Int32Builder::new());
    for (_, _, s) in rows {
        tokens
            .values()
            .append_slice(&s.tokens.iter().map(|&t| t as i32).collect::<Vec<_>>());
        tokens.append(true);
    }
    let n = rows.len();
    let constant = |v: u32| Arc::new(Int32Array::from(vec![v as i32; n])) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        string_array(rows.iter().map(|r| Some(r.0.clone()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(tokens.finish()),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.2.tokens.len() as i32),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.2.text as i32),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.2.speech as i32),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.2.speech_s),
        )),
        string_array(rows.iter().map(|r| Some(r.2.preview.join(" ")))),
        constant(layout.text_vocab_size),
        constant(layout.speech_offset()),
        constant(layout.speech_vocab_size),
        constant(layout.bos_speech()),
        constant(layout.eos_speech()),
        constant(layout.vocab_size()),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Store(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(speech: bool, tokens: &[u32], text: &str) -> Span {
        Span {
            speech,
            tokens: tokens.to_vec(),
            text: text.into(),
            speech_s: if speech { 1.5 } else { 0.0 },
        }
    }

    #[test]
    fn speech_is_offset_and_marked_and_sequences_break_between_spans() {
        let layout = Layout {
            text_vocab_size: 100,
            speech_vocab_size: 10,
        };
        assert_eq!(
            (
                layout.bos_speech(),
                layout.eos_speech(),
                layout.vocab_size()
            ),
            (110, 111, 112)
        );
        let spans = [
            span(false, &[1, 2, 3], "Hi."),
            span(true, &[0, 9], "Yes."),
            span(false, &[4, 5], "Bye."),
        ];
        let seqs = pack(&spans, layout, 7);
        assert_eq!(seqs.len(), 2);
        assert_eq!(seqs[0].tokens, [1, 2, 3, 110, 100, 109, 111]);
        assert_eq!(
            (seqs[0].text, seqs[0].speech, seqs[0].speech_s),
            (3, 4, 1.5)
        );
        assert_eq!(seqs[0].preview.join(" "), "Hi. [speech: Yes.]");
        assert_eq!(seqs[1].tokens, [4, 5]);
        // A span longer than max_len alone is split; nothing is lost.
        let long = pack(&[span(false, &[1; 10], "long")], layout, 4);
        assert_eq!(
            long.iter().map(|s| s.tokens.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
    }
}
