//! Stage `align`: places the words of each segment's text in time, with a score that
//! says whether the text fits the audio at all.
//!
//! Inputs: a labels table and the table with the segments' audio, joined on
//! `segment_id` (`inputs = ["asr", "segment"]`), or one table that has both (a
//! `segment` node whose list file brought its own transcripts: `text_column`).
//!
//! Method `ctc` (`auto` picks it wherever espeak-ng speaks the segment's language):
//! the text is split into words as written, each word turned into IPA by espeak-ng and
//! mapped onto the phoneme inventory of the CTC model (`speechmill_models::
//! phoneme_ctc`), word boundaries (`<wb>`) between words, and the targets
//! force-aligned to the model's emissions with torchaudio's `forced_align` semantics
//! (`speechmill_models::ctc`). A word spans its phonemes' frames (20 ms each); its
//! score is their mean log-probability. `align_score` is the mean over the segment's
//! phonemes of each one's log-probability less that of the best label in the same
//! frames: 0 where the text reads as the model itself would read the audio, far
//! below where it does not, whatever the audio's clarity. Output per segment: `words` (list of `{word, start_s,
//! end_s, score}` in the source's time, rounded to the millisecond), `align_score`,
//! `unaligned_words` (words with no phoneme the model knows, left out of `words`) and
//! `method`. Rejects: `no_text`, `no_phonemizer` (a language espeak-ng does not
//! speak), `nothing_mappable`, `text_too_long` (more phonemes than the audio has
//! frames), `bad_audio`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int32Array, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_models::ctc::{AlignError, forced_align, merge_tokens};
use speechmill_models::phoneme_ctc::{self, FRAME_S, PhonemeCtc};
use speechmill_models::{Device, ModelRef, SessionConfig};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::columns::{quote, stage_output};
use crate::udf::{WordLists, pcm16, string_array, string_values};
use crate::with_audio::labels_with_audio;

/// `align` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `auto` or `ctc`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The column with the text to align (asr's `text`, or a list file's own).
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// The column with each segment's language (ISO 639-1, as asr writes it).
    #[serde(default = "default_language_column")]
    pub language_column: String,
    /// The language where that column is missing or NULL.
    #[serde(default)]
    pub language: Option<String>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// ONNX Runtime threads per session (every partition has its own session).
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_method() -> String {
    "auto".into()
}
fn default_text_column() -> String {
    "text".into()
}
fn default_language_column() -> String {
    "language".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_threads() -> usize {
    1
}

/// Segments per UDF call.
const SEGMENTS_PER_CALL: usize = 8;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdfConfig {
    params: Params,
    model: ModelRef,
}

/// The `align` stage.
pub struct AlignStage;

impl Stage for AlignStage {
    fn name(&self) -> &'static str {
        "align"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        match params.method.as_str() {
            "auto" | "ctc" => {}
            "whisper" => {
                return Err(
                    "parameter `method`: `whisper` (teacher-forced Whisper alignment) is not \
                     built yet; use `ctc` or `auto`"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "parameter `method`: unknown method `{other}` (auto, ctc)"
                ));
            }
        }
        params
            .device
            .parse::<Device>()
            .map_err(|e| format!("parameter `device`: {e}"))?;
        Ok(Box::new(ConfiguredAlign { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(AlignUdf::new())]
    }
}

struct ConfiguredAlign {
    params: Params,
}

impl ConfiguredAlign {
    fn model(&self, cx: &StageContext) -> Result<ModelRef> {
        phoneme_ctc::model_ref().map_err(|e| Error::node(&cx.node, e))
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredAlign {
    fn stage_name(&self) -> &'static str {
        "align"
    }

    fn version(&self) -> u32 {
        1
    }

    fn input_arity(&self) -> InputArity {
        InputArity::AtLeast(1)
    }

    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or_default()
    }

    fn speed_only_params(&self) -> &'static [&'static str] {
        &["device", "threads"]
    }

    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        Ok(serde_json::json!({ "model": self.model(cx)?.sha256() }))
    }

    fn batch_rows(&self) -> Option<usize> {
        Some(SEGMENTS_PER_CALL)
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let joined_df = labels_with_audio(cx, "align", inputs).await?;
        let text = &self.params.text_column;
        if joined_df.schema().inner().field_with_name(text).is_err() {
            return Err(Error::node(
                &cx.node,
                format!("align: the first input has no column `{text}` (param `text_column`)"),
            ));
        }
        let schema = joined_df.schema().inner().clone();
        cx.session
            .register_table("__align_input", joined_df.into_view())?;
        let column_or_null = |c: &str, kind: &str| {
            if schema.field_with_name(c).is_ok() {
                format!("CAST({} AS {kind})", quote(c))
            } else {
                format!("CAST(NULL AS {kind})")
            }
        };
        let config = serde_json::to_string(&UdfConfig {
            params: self.params.clone(),
            model: self.model(cx)?,
        })
        .map_err(|e| Error::node(&cx.node, e))?;
        let select = stage_output(&schema, &["audio"], "__align", &AlignUdf::fields());
        Ok(cx
            .session
            .sql(&format!(
                "WITH aligned AS (
                   SELECT *, speechmill_align(audio, {}, {}, {}, '{}') AS __align FROM __align_input)
                 SELECT {select} FROM aligned",
                column_or_null(text, "VARCHAR"),
                column_or_null(&self.params.language_column, "VARCHAR"),
                column_or_null("start_s", "DOUBLE"),
                config.replace('\'', "''")
            ))
            .await?)
    }
}

/// `speechmill_align(audio, text, language, start_s, config_json)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AlignUdf {
    signature: Signature,
}

impl AlignUdf {
    fn new() -> Self {
        AlignUdf {
            signature: Signature::any(5, Volatility::Volatile),
        }
    }

    fn word_fields() -> Fields {
        Fields::from(vec![
            Field::new("word", DataType::Utf8, false),
            Field::new("start_s", DataType::Float64, false),
            Field::new("end_s", DataType::Float64, false),
            Field::new("score", DataType::Float64, false),
        ])
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new(
                "words",
                DataType::List(Arc::new(Field::new(
                    "item",
                    DataType::Struct(Self::word_fields()),
                    true,
                ))),
                true,
            ),
            Field::new("align_score", DataType::Float64, true),
            Field::new("unaligned_words", DataType::Int32, true),
            Field::new("method", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }
}

/// One word placed in time (seconds of the segment).
#[derive(Clone, Debug, PartialEq)]
pub struct AlignedWord {
    pub word: String,
    pub start_s: f64,
    pub end_s: f64,
    pub score: f64,
}

/// One segment's alignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Aligned {
    pub words: Vec<AlignedWord>,
    pub align_score: f64,
    pub unaligned_words: usize,
}

/// Aligns `text` to `samples` with the phoneme CTC model: the reject reason when it
/// cannot.
pub fn align_ctc(
    model: &PhonemeCtc,
    samples: &[f32],
    text: &str,
    language: &str,
) -> std::result::Result<Aligned, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return Err("no_text: the text is empty".into());
    }
    let voice = phoneme_ctc::espeak_voice(language);
    if !phoneme_ctc::espeak_knows(&voice) {
        return Err(format!(
            "no_phonemizer: espeak-ng has no voice for language `{language}`"
        ));
    }
    let ipa = phoneme_ctc::phonemize(&words, &voice)?;
    let inventory = &model.inventory;
    let mut targets: Vec<u32> = Vec::new();
    // Per aligned word: its index in `words` and its target positions.
    let mut placed: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (i, word_ipa) in ipa.iter().enumerate() {
        let (tokens, _) = inventory.tokens(word_ipa);
        if tokens.is_empty() {
            continue;
        }
        if !targets.is_empty() {
            targets.push(inventory.word_boundary);
        }
        let start = targets.len();
        targets.extend(tokens);
        placed.push((i, start..targets.len()));
    }
    if targets.is_empty() {
        return Err(format!(
            "nothing_mappable: no word has a phoneme the model knows ({} words, language {language})",
            words.len()
        ));
    }
    let (emissions, frames) = model.emissions(samples).map_err(|e| e.to_string())?;
    let alignment = forced_align(&emissions, inventory.len(), &targets, inventory.blank).map_err(
        |e| match e {
            AlignError::TooShort { .. } => format!("text_too_long: {e}"),
            other => format!("align_failed: {other}"),
        },
    )?;
    let spans = merge_tokens(&alignment.labels, &alignment.scores, inventory.blank);
    if spans.len() != targets.len() {
        return Err(format!(
            "align_failed: {} spans for {} targets over {frames} frames",
            spans.len(),
            targets.len()
        ));
    }
    // Per phoneme: how far its frames' log-probability falls below the best label's
    // in the same frames. A transcript that fits reads like the model's own best
    // guess (near 0); one that does not is forced through unlikely labels. Unlike the
    // raw log-probability, this does not drift with how clear the audio is.
    let vocabulary = inventory.len();
    let best_of = |t: usize| {
        emissions[t * vocabulary..(t + 1) * vocabulary]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max) as f64
    };
    let mut all = Vec::new();
    let aligned: Vec<AlignedWord> = placed
        .iter()
        .map(|(i, range)| {
            let s = &spans[range.clone()];
            let scores: Vec<f64> = s.iter().map(|t| t.score as f64).collect();
            all.extend(s.iter().map(|t| {
                let best = (t.start..t.end).map(best_of).sum::<f64>() / (t.end - t.start) as f64;
                t.score as f64 - best
            }));
            AlignedWord {
                word: words[*i].to_string(),
                start_s: s[0].start as f64 * FRAME_S,
                end_s: s[s.len() - 1].end as f64 * FRAME_S,
                score: scores.iter().sum::<f64>() / scores.len() as f64,
            }
        })
        .collect();
    Ok(Aligned {
        unaligned_words: words.len() - aligned.len(),
        align_score: all.iter().sum::<f64>() / all.len() as f64,
        words: aligned,
    })
}

fn millis(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

impl ScalarUDFImpl for AlignUdf {
    fn name(&self) -> &str {
        "speechmill_align"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let config: UdfConfig = crate::udf::literal_json(&args.args[4], self.name())?;
        let audio = args.args[0].to_array(rows)?;
        let audio = datafusion::arrow::compute::cast(&audio, &DataType::LargeBinary)?;
        let audio = audio.as_binary::<i64>();
        let texts = string_values(&args.args[1], rows)?;
        let languages = string_values(&args.args[2], rows)?;
        let starts = args.args[3].to_array(rows)?;
        let starts = datafusion::arrow::compute::cast(&starts, &DataType::Float64)?;
        let starts = starts.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let fail = |e: String| DataFusionError::Execution(format!("align: {e}"));
        let device: Device = config
            .params
            .device
            .parse()
            .map_err(|e| fail(format!("{e}")))?;
        let session = SessionConfig::new(device, config.params.threads);
        let pool = PhonemeCtc::pool(&config.model, &session).map_err(|e| fail(e.to_string()))?;
        let mut outcomes: Vec<std::result::Result<Aligned, String>> = Vec::with_capacity(rows);
        for i in 0..rows {
            let samples = pcm16((!audio.is_null(i)).then(|| audio.value(i)));
            let language = languages[i]
                .clone()
                .or_else(|| config.params.language.clone());
            let outcome = match (samples, texts[i].as_deref(), language) {
                (Err(reason), _, _) => Err(reason),
                (_, None, _) => Err("no_text: the text is NULL".into()),
                (_, _, None) => Err(format!(
                    "no_language: `{}` is NULL and param `language` is not set",
                    config.params.language_column
                )),
                (Ok(samples), Some(text), Some(language)) => pool
                    .with(|m| align_ctc(m, &samples, text, &language))
                    .map_err(|e| fail(e.to_string()))?,
            };
            outcomes.push(outcome);
        }
        build_output(outcomes, starts)
    }
}

fn build_output(
    outcomes: Vec<std::result::Result<Aligned, String>>,
    starts: &datafusion::arrow::array::Float64Array,
) -> DfResult<ColumnarValue> {
    let n = outcomes.len();
    let mut words = WordLists::new(AlignUdf::word_fields());
    let (mut score, mut unaligned, mut method, mut reason) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let offset = if starts.is_null(i) {
            0.0
        } else {
            starts.value(i)
        };
        match outcome {
            Ok(a) => {
                words.push_row(Some(a.words.into_iter().map(|w| {
                    (
                        w.word,
                        millis(offset + w.start_s),
                        millis(offset + w.end_s),
                        w.score,
                    )
                })));
                score.push(Some(a.align_score));
                unaligned.push(Some(a.unaligned_words as i32));
                method.push(Some("ctc".to_string()));
                reason.push(None);
            }
            Err(r) => {
                words.push_row(None::<Vec<_>>);
                score.push(None);
                unaligned.push(None);
                method.push(None);
                reason.push(Some(r));
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        words.finish()?,
        Arc::new(Float64Array::from(score)),
        Arc::new(Int32Array::from(unaligned)),
        string_array(method),
        string_array(reason),
    ];
    Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
        AlignUdf::fields(),
        columns,
        None,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_params_name_the_parameter() {
        let err = AlignStage
            .configure(toml::from_str("method = \"dtw\"").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("method"), "{err}");
        let err = AlignStage
            .configure(toml::from_str("device = \"tpu\"").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("device"), "{err}");
        assert!(AlignStage.configure(toml::Table::new()).is_ok());
    }

    #[test]
    fn times_round_to_the_millisecond() {
        assert_eq!(millis(1.23456), 1.235);
        assert_eq!(millis(0.02 * 3.0), 0.06);
    }
}
