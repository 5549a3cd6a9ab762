//! Stage `align`: places the words of each segment's text in time, with a score that
//! says whether the text fits the audio at all.
//!
//! Inputs: a labels table and the table with the segments' audio, joined on
//! `segment_id` (`inputs = ["asr", "segment"]`), or one table that has both (a
//! `segment` node whose list file brought its own transcripts: `text_column`).
//!
//! Method `ctc` (`auto` picks it wherever espeak-ng speaks the segment's language and
//! the text maps onto the model's phonemes; `whisper` otherwise):
//! the text is split into words as written, each word turned into IPA by espeak-ng and
//! mapped onto the phoneme inventory of the CTC model (`speechmill_models::
//! phoneme_ctc`), word boundaries (`<wb>`) between words, and the targets
//! force-aligned to the model's emissions with torchaudio's `forced_align` semantics
//! (`speechmill_models::ctc`). A word spans its phonemes' frames (20 ms each), then reaches
//! over its sound into the gaps beside it (`extend_to_sound`); its
//! score is their mean log-probability. `align_score` is the mean over the segment's
//! phonemes of each one's log-probability less that of the best label in the same
//! frames: 0 where the text reads as the model itself would read the audio, far
//! below where it does not, whatever the audio's clarity. Output per segment: `words` (list of `{word, start_s,
//! end_s, score}` in the source's time, rounded to the millisecond), `align_score`,
//! `unaligned_words` (words with no phoneme the model knows, left out of `words`) and
//! `method`.
//!
//! Method `whisper`: the text is fed to Whisper (param `whisper_model`, any language
//! it knows) after the prompt of the segment's language instead of the tokens it
//! would choose, and its words are timed by DTW over the alignment heads
//! (`Whisper::align_texts`); a word's score and `align_score` are mean token
//! log-probabilities. Every word is placed (`unaligned_words` 0).
//!
//! Rejects: `no_text`, `no_language`, `no_phonemizer` (a language espeak-ng does not
//! speak, method `ctc`), `nothing_mappable`, `no_model_for_language` (Whisper does
//! not know it), `text_too_long` (more phonemes or tokens than the audio has frames),
//! `too_long_for_whisper` (over 30 s), `bad_audio`.

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
use speechmill_models::user_ctc::{self, CtcUnits, Units, UserCtc};
use speechmill_models::whisper::{Precision, TextAlignment, Whisper};
use speechmill_models::{Device, ModelRef, SessionConfig, SessionPool};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::columns::{quote, stage_output};
use crate::udf::{WordLists, pcm16, string_array, string_values};
use crate::with_audio::labels_with_audio;

/// `align` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `auto`, `ctc` or `whisper`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The Whisper model of method `whisper` (and of `auto` where CTC cannot align).
    #[serde(default = "default_whisper_model")]
    pub whisper_model: String,
    /// `fp32` or `int8` (Whisper).
    #[serde(default = "default_precision")]
    pub precision: String,
    /// A directory with a user's own CTC model (`model.onnx`, `vocab.json`) for
    /// method `ctc` instead of the built-in phoneme model.
    #[serde(default)]
    pub ctc_model: Option<String>,
    /// `characters` or `phonemes`: what the user model's symbols are.
    #[serde(default = "default_ctc_units")]
    pub ctc_units: String,
    /// The user model's blank symbol.
    #[serde(default = "default_ctc_blank")]
    pub ctc_blank: String,
    /// The user model's symbol between words (default `|` where it has one).
    #[serde(default)]
    pub ctc_word_delimiter: Option<String>,
    /// Zero mean and unit variance before the user model (wav2vec2's `do_normalize`).
    #[serde(default = "default_true")]
    pub ctc_normalize: bool,
    /// Seconds per output frame of the user model (default: read off its output).
    #[serde(default)]
    pub ctc_frame_s: Option<f64>,
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
    /// Segments per Whisper encoder call, and per call of a user's CTC model that
    /// takes a mask or lengths (the built-in phoneme model takes one at a time).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_method() -> String {
    "auto".into()
}
fn default_whisper_model() -> String {
    "whisper-base".into()
}
fn default_precision() -> String {
    "int8".into()
}
fn default_batch_size() -> usize {
    4
}
fn default_ctc_units() -> String {
    "characters".into()
}
fn default_ctc_blank() -> String {
    "<pad>".into()
}
fn default_true() -> bool {
    true
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
    /// The phoneme CTC model (methods `auto`, `ctc`).
    ctc: Option<ModelRef>,
    /// The Whisper model (methods `auto`, `whisper`).
    whisper: Option<ModelRef>,
}

/// How a node aligns.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Auto,
    Ctc,
    Whisper,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Method::Auto),
            "ctc" => Ok(Method::Ctc),
            "whisper" => Ok(Method::Whisper),
            other => Err(format!(
                "parameter `method`: unknown method `{other}` (auto, ctc, whisper)"
            )),
        }
    }
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
        params.method.parse::<Method>()?;
        params
            .precision
            .parse::<Precision>()
            .map_err(|e| format!("parameter `precision`: {e}"))?;
        if params.batch_size == 0 {
            return Err("parameter `batch_size`: must be at least 1".into());
        }
        params
            .ctc_units
            .parse::<Units>()
            .map_err(|e| format!("parameter `ctc_units`: {e}"))?;
        if params
            .ctc_frame_s
            .is_some_and(|f| f <= 0.0 || !f.is_finite())
        {
            return Err("parameter `ctc_frame_s`: must be a positive number of seconds".into());
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
    fn method(&self) -> Method {
        self.params.method.parse().unwrap_or(Method::Auto)
    }

    /// The phoneme CTC model and the Whisper model this node's method uses.
    fn models(&self, cx: &StageContext) -> Result<(Option<ModelRef>, Option<ModelRef>)> {
        let method = self.method();
        let ctc = if method == Method::Whisper {
            None
        } else {
            let model = match &self.params.ctc_model {
                Some(dir) => user_ctc::model_ref(dir)
                    .map_err(|e| Error::node(&cx.node, format!("parameter `ctc_model`: {e}")))?,
                None => phoneme_ctc::model_ref().map_err(|e| Error::node(&cx.node, e))?,
            };
            Some(model)
        };
        let whisper = if method == Method::Ctc {
            None
        } else {
            let precision: Precision = self
                .params
                .precision
                .parse()
                .map_err(|e| Error::node(&cx.node, e))?;
            Some(
                Whisper::model_ref(&self.params.whisper_model, precision)
                    .map_err(|e| Error::node(&cx.node, e))?,
            )
        };
        Ok((ctc, whisper))
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
        &["device", "threads", "batch_size"]
    }

    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        let (ctc, whisper) = self.models(cx)?;
        Ok(serde_json::json!({
            "model": ctc.map(|m| m.sha256()),
            "whisper": whisper.map(|m| m.sha256()),
        }))
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
        let (ctc, whisper) = self.models(cx)?;
        if let (Some(model), Some(_)) = (&ctc, &self.params.ctc_model) {
            // The vocabulary and the symbols the params name, checked before any row.
            let path = model.path().map_err(|e| Error::node(&cx.node, e))?;
            user_units(&self.params, &path)
                .map_err(|e| Error::node(&cx.node, format!("parameter `ctc_model`: {e}")))?;
        }
        let config = serde_json::to_string(&UdfConfig {
            params: self.params.clone(),
            ctc,
            whisper,
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
        crate::udf::word_fields("score")
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

/// The units of a user's CTC model as the params describe them.
fn user_units(params: &Params, dir: &std::path::Path) -> std::result::Result<CtcUnits, String> {
    let symbols =
        user_ctc::read_vocabulary(&dir.join(user_ctc::VOCAB_FILE)).map_err(|e| e.to_string())?;
    let delimiter = match &params.ctc_word_delimiter {
        Some(d) => Some(d.clone()),
        None => symbols.iter().any(|s| s == "|").then(|| "|".to_string()),
    };
    let units: Units = params.ctc_units.parse()?;
    CtcUnits::from_vocabulary(symbols, units, &params.ctc_blank, delimiter.as_deref())
}

/// The CTC model of a UDF call: the built-in phoneme model or a user's.
enum CtcAligner {
    Builtin(Arc<SessionPool<PhonemeCtc>>),
    User {
        pool: Arc<SessionPool<UserCtc>>,
        units: CtcUnits,
        normalize: bool,
        frame_s: Option<f64>,
    },
}

impl CtcAligner {
    fn load(
        params: &Params,
        model: &ModelRef,
        session: &SessionConfig,
    ) -> std::result::Result<Self, String> {
        if params.ctc_model.is_none() {
            return PhonemeCtc::pool(model, session)
                .map(CtcAligner::Builtin)
                .map_err(|e| e.to_string());
        }
        let pool =
            SessionPool::shared(model, session, UserCtc::from_dir).map_err(|e| e.to_string())?;
        Ok(CtcAligner::User {
            units: user_units(params, pool.path())?,
            pool,
            normalize: params.ctc_normalize,
            frame_s: params.ctc_frame_s,
        })
    }

    /// One segment aligned, or its reject reason; a failing model is the error.
    fn align(
        &self,
        samples: &[f32],
        text: &str,
        language: &str,
    ) -> speechmill_models::Result<std::result::Result<Aligned, String>> {
        match self {
            CtcAligner::Builtin(pool) => pool.with(|m| {
                let units = CtcUnits::Phonemes(Arc::clone(&m.inventory));
                align_ctc(&units, text, language, || {
                    let (emissions, frames) = m.emissions(samples).map_err(|e| e.to_string())?;
                    Ok((emissions, frames, FRAME_S))
                })
                .map(|a| with_sound(a, samples))
            }),
            CtcAligner::User {
                pool,
                units,
                normalize,
                frame_s,
            } => pool.with(|m| {
                align_ctc(units, text, language, || {
                    m.emissions(samples, *normalize, *frame_s)
                        .map_err(|e| e.to_string())
                })
                .map(|a| with_sound(a, samples))
            }),
        }
    }
}

impl CtcAligner {
    /// Segments (samples, text, language) aligned, or their reject reasons, in order. A
    /// user's model that marks its padding takes up to `batch_size` segments per call
    /// (sorted by length, so little is padding). The built-in phoneme model goes one
    /// segment per call: its squeeze-and-excitation blocks average over the whole
    /// input, padding included, so padded segments would get other emissions.
    fn align_rows(
        &self,
        rows: &[(&[f32], &str, &str)],
        batch_size: usize,
    ) -> speechmill_models::Result<Vec<std::result::Result<Aligned, String>>> {
        let CtcAligner::User {
            pool,
            units,
            normalize,
            frame_s,
        } = self
        else {
            return rows
                .iter()
                .map(|(samples, text, language)| self.align(samples, text, language))
                .collect();
        };
        pool.with(|m| {
            let targets: Vec<_> = rows
                .iter()
                .map(|(_, text, language)| ctc_targets(units, text, language))
                .collect();
            let mut results: Vec<std::result::Result<Aligned, String>> = targets
                .iter()
                .map(|t| match t {
                    Ok(_) => Err("align_failed: not aligned".into()),
                    Err(reason) => Err(reason.clone()),
                })
                .collect();
            let mut ready: Vec<usize> = (0..rows.len()).filter(|&i| targets[i].is_ok()).collect();
            ready.sort_by_key(|&i| rows[i].0.len());
            let per_call = if m.batches() { batch_size.max(1) } else { 1 };
            for group in ready.chunks(per_call) {
                let clips: Vec<&[f32]> = group.iter().map(|&i| rows[i].0).collect();
                match m.emissions_batch(&clips, *normalize, *frame_s) {
                    Ok(emitted) => {
                        for (&i, (emissions, frames, step)) in group.iter().zip(emitted) {
                            if let Ok(t) = &targets[i] {
                                results[i] = align_targets(units, t, &emissions, frames, step)
                                    .map(|a| with_sound(a, rows[i].0));
                            }
                        }
                    }
                    Err(e) => {
                        for &i in group {
                            results[i] = Err(e.to_string());
                        }
                    }
                }
            }
            results
        })
    }
}

/// A CTC alignment with its words reaching over their sound ([`extend_to_sound`]).
fn with_sound(mut aligned: Aligned, samples: &[f32]) -> Aligned {
    extend_to_sound(&mut aligned.words, samples);
    aligned
}

/// A text's CTC targets: its words, the targets, and per aligned word its index in
/// `words` and its target positions.
pub struct Targets {
    words: Vec<String>,
    targets: Vec<u32>,
    placed: Vec<(usize, std::ops::Range<usize>)>,
}

/// Aligns `text` with a CTC model's emissions (`emit`: log-probabilities frames ×
/// vocabulary, the number of frames and seconds per frame, computed only once the
/// text has targets): the reject reason when it cannot.
pub fn align_ctc(
    units: &CtcUnits,
    text: &str,
    language: &str,
    emit: impl FnOnce() -> std::result::Result<(Vec<f32>, usize, f64), String>,
) -> std::result::Result<Aligned, String> {
    let targets = ctc_targets(units, text, language)?;
    let (emissions, frames, frame_s) = emit()?;
    align_targets(units, &targets, &emissions, frames, frame_s)
}

/// The targets of `text` in `units`, or why it has none that the model knows.
pub fn ctc_targets(
    units: &CtcUnits,
    text: &str,
    language: &str,
) -> std::result::Result<Targets, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return Err("no_text: the text is empty".into());
    }
    let word_targets = units.words(&words, language)?;
    let mut targets: Vec<u32> = Vec::new();
    let mut placed: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (i, tokens) in word_targets.into_iter().enumerate() {
        if tokens.is_empty() {
            continue;
        }
        if let Some(delimiter) = units.word_delimiter()
            && !targets.is_empty()
        {
            targets.push(delimiter);
        }
        let start = targets.len();
        targets.extend(tokens);
        placed.push((i, start..targets.len()));
    }
    if targets.is_empty() {
        return Err(format!(
            "nothing_mappable: no word has a symbol the model knows ({} words, language {language})",
            words.len()
        ));
    }
    Ok(Targets {
        words: words.into_iter().map(str::to_string).collect(),
        targets,
        placed,
    })
}

/// Forced alignment of `t` to `emissions` (frames × the units' vocabulary).
pub fn align_targets(
    units: &CtcUnits,
    t: &Targets,
    emissions: &[f32],
    frames: usize,
    frame_s: f64,
) -> std::result::Result<Aligned, String> {
    let (words, targets, placed) = (&t.words, &t.targets, &t.placed);
    let vocabulary = units.vocabulary();
    let blank = units.blank();
    let alignment = forced_align(emissions, vocabulary, targets, blank).map_err(|e| match e {
        AlignError::TooShort { .. } => format!("text_too_long: {e}"),
        other => format!("align_failed: {other}"),
    })?;
    let spans = merge_tokens(&alignment.labels, &alignment.scores, blank);
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
                start_s: s[0].start as f64 * frame_s,
                end_s: s[s.len() - 1].end as f64 * frame_s,
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

/// One row's alignment and its method, or its reject reason.
type Outcome = std::result::Result<(Aligned, &'static str), String>;

/// A Whisper alignment as the stage writes it: every word of the text is placed.
fn from_whisper(a: TextAlignment) -> Aligned {
    Aligned {
        words: a
            .words
            .into_iter()
            .map(|w| AlignedWord {
                word: w.word,
                start_s: w.start,
                end_s: w.end,
                score: w.logprob,
            })
            .collect(),
        align_score: a.avg_logprob,
        unaligned_words: 0,
    }
}

/// Frames of the silence test at word edges (10 ms).
const EDGE_FRAME: usize = 160;

/// Which 10 ms frames of a segment are silent: 30 dB below its loud frames (the
/// 95th percentile of frame RMS).
struct Silence {
    rms: Vec<f32>,
    threshold: f32,
}

impl Silence {
    fn of(samples: &[f32]) -> Option<Self> {
        let rms: Vec<f32> = samples
            .chunks(EDGE_FRAME)
            .map(|f| (f.iter().map(|s| s * s).sum::<f32>() / f.len() as f32).sqrt())
            .collect();
        let mut sorted = rms.clone();
        sorted.sort_by(f32::total_cmp);
        let loud = *sorted.get((sorted.len().max(1) - 1) * 95 / 100)?;
        (loud > 0.0).then(|| Silence {
            rms,
            threshold: loud * 10f32.powf(-30.0 / 20.0),
        })
    }

    fn silent(&self, frame: usize) -> bool {
        self.rms.get(frame).is_none_or(|&r| r < self.threshold)
    }
}

/// Seconds per silence frame.
const EDGE_FRAME_S: f64 = EDGE_FRAME as f64 / 16_000.0;

/// Moves each word's start forward and end backward past 10 ms frames that are
/// silent, never past each other. DTW over Whisper's attention hands a pause to the
/// word after it; a spoken word does not begin or end in silence.
fn trim_silent_edges(words: &mut [AlignedWord], samples: &[f32]) {
    let Some(silence) = Silence::of(samples) else {
        return;
    };
    for w in words {
        let mut first = (w.start_s / EDGE_FRAME_S).floor() as usize;
        let mut last = ((w.end_s / EDGE_FRAME_S).ceil() as usize).saturating_sub(1);
        while first < last && silence.silent(first) {
            first += 1;
        }
        while last > first && silence.silent(last) {
            last -= 1;
        }
        if first < last || !silence.silent(first) {
            w.start_s = w.start_s.max(first as f64 * EDGE_FRAME_S);
            w.end_s = w.end_s.min((last + 1) as f64 * EDGE_FRAME_S).max(w.start_s);
        }
    }
}

/// Moves each word's start back and end forward over 10 ms frames that are not
/// silent, into the gaps beside it: never into silence, and at most to the middle
/// of the gap to its neighbour (the segment's edges for the first and last word).
/// CTC's spans cover the frames where a phoneme's label peaks, not the whole sound
/// of the word: its onset comes before the first peak, its decay after the last.
fn extend_to_sound(words: &mut [AlignedWord], samples: &[f32]) {
    let Some(silence) = Silence::of(samples) else {
        return;
    };
    let total = samples.len() as f64 / 16_000.0;
    let spans: Vec<(f64, f64)> = words.iter().map(|w| (w.start_s, w.end_s)).collect();
    for (i, w) in words.iter_mut().enumerate() {
        let (start, end) = spans[i];
        let low = if i == 0 {
            0.0
        } else {
            (spans[i - 1].1 + start) / 2.0
        };
        let high = spans.get(i + 1).map_or(total, |next| (end + next.0) / 2.0);
        let mut frame = (start / EDGE_FRAME_S).round() as usize;
        while frame > 0
            && (frame - 1) as f64 * EDGE_FRAME_S >= low - 1e-9
            && !silence.silent(frame - 1)
        {
            frame -= 1;
        }
        w.start_s = start.min(frame as f64 * EDGE_FRAME_S);
        let mut frame = (end / EDGE_FRAME_S).round() as usize;
        while (frame + 1) as f64 * EDGE_FRAME_S <= high + 1e-9 && !silence.silent(frame) {
            frame += 1;
        }
        w.end_s = end.max(frame as f64 * EDGE_FRAME_S);
    }
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
        let method: Method = config.params.method.parse().map_err(fail)?;
        let session = SessionConfig::new(device, config.params.threads);
        let ctc = match &config.ctc {
            Some(model) if method != Method::Whisper => {
                Some(CtcAligner::load(&config.params, model, &session).map_err(fail)?)
            }
            _ => None,
        };
        let mut outcomes: Vec<Outcome> = vec![Err(String::new()); rows];
        // Rows for a model: (row, samples, text, language).
        let mut for_ctc: Vec<(usize, Vec<f32>, String, String)> = Vec::new();
        let mut for_whisper: Vec<(usize, Vec<f32>, String, String)> = Vec::new();
        for (i, slot) in outcomes.iter_mut().enumerate() {
            let samples = pcm16((!audio.is_null(i)).then(|| audio.value(i)));
            let language = languages[i]
                .clone()
                .or_else(|| config.params.language.clone());
            match (samples, texts[i].as_deref(), language) {
                (Err(reason), _, _) => *slot = Err(reason),
                (_, None, _) => *slot = Err("no_text: the text is NULL".into()),
                (_, _, None) => {
                    *slot = Err(format!(
                        "no_language: `{}` is NULL and param `language` is not set",
                        config.params.language_column
                    ))
                }
                (Ok(samples), Some(text), Some(language)) => {
                    let row = (i, samples, text.to_string(), language);
                    if ctc.is_some() {
                        for_ctc.push(row);
                    } else {
                        for_whisper.push(row);
                    }
                }
            }
        }
        if let Some(aligner) = &ctc {
            let rows: Vec<(&[f32], &str, &str)> = for_ctc
                .iter()
                .map(|(_, s, t, l)| (s.as_slice(), t.as_str(), l.as_str()))
                .collect();
            let aligned = aligner
                .align_rows(&rows, config.params.batch_size)
                .map_err(|e| fail(e.to_string()))?;
            for (row, result) in for_ctc.into_iter().zip(aligned) {
                match result {
                    // `auto`: what the CTC model cannot read goes to Whisper.
                    Err(reason)
                        if method == Method::Auto
                            && (reason.starts_with("no_phonemizer")
                                || reason.starts_with("nothing_mappable")) =>
                    {
                        for_whisper.push(row);
                    }
                    other => outcomes[row.0] = other.map(|a| (a, "ctc")),
                }
            }
        }
        if !for_whisper.is_empty() {
            let model = config
                .whisper
                .as_ref()
                .ok_or_else(|| fail("no Whisper model in the plan".into()))?;
            let precision: Precision = config
                .params
                .precision
                .parse()
                .map_err(|e| fail(format!("{e}")))?;
            let whisper = Whisper::shared_verified(model, precision, &session)
                .map_err(|e| fail(e.to_string()))?;
            let audio: Vec<&[f32]> = for_whisper.iter().map(|r| r.1.as_slice()).collect();
            let texts: Vec<&str> = for_whisper.iter().map(|r| r.2.as_str()).collect();
            let languages: Vec<&str> = for_whisper.iter().map(|r| r.3.as_str()).collect();
            let aligned = whisper
                .align_texts(&audio, &texts, &languages, config.params.batch_size)
                .map_err(|e| fail(e.to_string()))?;
            for ((i, samples, ..), a) in for_whisper.iter().zip(aligned) {
                outcomes[*i] = a.map(|a| {
                    let mut a = from_whisper(a);
                    trim_silent_edges(&mut a.words, samples);
                    (a, "whisper")
                });
            }
        }
        build_output(outcomes, starts)
    }
}

fn build_output(
    outcomes: Vec<Outcome>,
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
            Ok((a, by)) => {
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
                method.push(Some(by.to_string()));
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
        let err = AlignStage
            .configure(toml::from_str("method = \"whisper\"\nprecision = \"fp8\"").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("precision"), "{err}");
        assert!(AlignStage.configure(toml::Table::new()).is_ok());
        assert!(
            AlignStage
                .configure(toml::from_str("method = \"whisper\"").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn silent_word_edges_are_trimmed_but_speech_is_kept() {
        // 0.5 s silence, 0.3 s tone, 0.2 s silence.
        let mut samples = vec![0f32; 8000];
        samples.extend((0..4800).map(|i| (i as f32 * 0.1).sin() * 0.5));
        samples.extend(vec![0f32; 3200]);
        let word = |start_s, end_s| AlignedWord {
            word: "w".into(),
            start_s,
            end_s,
            score: 0.0,
        };
        let mut words = vec![word(0.1, 0.95), word(0.55, 0.7), word(0.85, 0.98)];
        trim_silent_edges(&mut words, &samples);
        assert!((words[0].start_s - 0.5).abs() < 1e-9, "{words:?}");
        assert!((words[0].end_s - 0.8).abs() < 1e-9, "{words:?}");
        // Inside the speech: unchanged.
        assert_eq!((words[1].start_s, words[1].end_s), (0.55, 0.7));
        // All silence: left as it was.
        assert_eq!((words[2].start_s, words[2].end_s), (0.85, 0.98));
    }

    #[test]
    fn ctc_words_reach_over_their_sound_but_not_into_silence_or_a_neighbour() {
        // 0.2 s silence, 0.4 s tone, 0.2 s silence, 0.3 s tone, 0.1 s silence.
        let tone = |n: usize| {
            (0..n)
                .map(|i| (i as f32 * 0.1).sin() * 0.5)
                .collect::<Vec<_>>()
        };
        let mut samples = vec![0f32; 3200];
        samples.extend(tone(6400));
        samples.extend(vec![0f32; 3200]);
        samples.extend(tone(4800));
        samples.extend(vec![0f32; 1600]);
        let word = |start_s, end_s| AlignedWord {
            word: "w".into(),
            start_s,
            end_s,
            score: 0.0,
        };
        // Peaks inside each tone; a third word sharing the second tone.
        let mut words = vec![word(0.3, 0.5), word(0.9, 0.94), word(1.0, 1.04)];
        extend_to_sound(&mut words, &samples);
        let spans: Vec<(f64, f64)> = words
            .iter()
            .map(|w| {
                (
                    (w.start_s * 100.0).round() / 100.0,
                    (w.end_s * 100.0).round() / 100.0,
                )
            })
            .collect();
        // To the tone's edges; the two words of one tone meet at their gap's middle.
        assert_eq!(spans, [(0.2, 0.6), (0.8, 0.97), (0.97, 1.1)]);
    }

    #[test]
    fn times_round_to_the_millisecond() {
        assert_eq!(millis(1.23456), 1.235);
        assert_eq!(millis(0.02 * 3.0), 0.06);
    }
}
