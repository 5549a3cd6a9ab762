//! Stage `asr`: pseudo-labels every segment with a Whisper model (ONNX Runtime, CPU
//! or CUDA), decoding as faster-whisper does on the same weights. Input: a table with
//! the segment's 16 kHz PCM16 `audio` and its `start_s` (the `segment` stage's
//! output). Output: the input's columns without `audio` (one named like an output column
//! is carried as `<name>_input`), plus `text`, `language`,
//! `language_prob`, `avg_logprob`, `no_speech_prob`, `compression_ratio`,
//! `temperature`, `words` (word, start_s, end_s, probability; in the source's time)
//! and `model`. Segments Whisper judges silent are rejected as `no_speech`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_models::whisper::{DecodeOptions, Precision, Transcript, Whisper};
use speechmill_models::{Device, ModelRef, SessionConfig};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::columns::stage_output;
use crate::udf::WordLists;

/// `asr` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `whisper-base`, `whisper-tiny.en` (converted by setup) or a model directory.
    #[serde(default = "default_model")]
    pub model: String,
    /// `int8` (fp32 encoder + int8 decoder, fastest on CPU) or `fp32`.
    #[serde(default = "default_precision")]
    pub precision: String,
    /// `auto` detects the language per segment; or a code such as `en`, `de`.
    #[serde(default = "default_language")]
    pub language: String,
    /// 1 = greedy.
    #[serde(default = "default_beam_size")]
    pub beam_size: usize,
    #[serde(default = "default_patience")]
    pub patience: f64,
    #[serde(default = "default_best_of")]
    pub best_of: usize,
    #[serde(default = "default_temperatures")]
    pub temperatures: Vec<f64>,
    #[serde(default = "default_compression_ratio_threshold")]
    pub compression_ratio_threshold: f64,
    #[serde(default = "default_log_prob_threshold")]
    pub log_prob_threshold: f64,
    #[serde(default = "default_no_speech_threshold")]
    pub no_speech_threshold: f64,
    #[serde(default = "default_true")]
    pub word_timestamps: bool,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// ONNX Runtime threads: the encoder and two decoders (one from a single thread)
    /// run side by side, each with half of them; 0 = all cores.
    #[serde(default)]
    pub threads: usize,
    /// Segments per encoder call. On CPU one is fastest and leanest (measured on
    /// bench-asr: batch 8 took 1.3× the time and 3.6× the peak RSS of batch 1 with
    /// tiny.en); batches pay off on CUDA.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

/// Segments per UDF call (at least `batch_size`).
const SEGMENTS_PER_CALL: usize = 16;

fn default_model() -> String {
    "whisper-base".into()
}
fn default_precision() -> String {
    "int8".into()
}
fn default_language() -> String {
    "auto".into()
}
fn default_beam_size() -> usize {
    5
}
fn default_patience() -> f64 {
    1.0
}
fn default_best_of() -> usize {
    5
}
fn default_temperatures() -> Vec<f64> {
    vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
}
fn default_compression_ratio_threshold() -> f64 {
    2.4
}
fn default_log_prob_threshold() -> f64 {
    -1.0
}
fn default_no_speech_threshold() -> f64 {
    0.6
}
fn default_true() -> bool {
    true
}
fn default_device() -> String {
    "cpu".into()
}
fn default_batch_size() -> usize {
    1
}

impl Params {
    fn validate(&self) -> Result<(), String> {
        self.precision
            .parse::<Precision>()
            .map_err(|e| format!("parameter `precision`: {e}"))?;
        self.device
            .parse::<Device>()
            .map_err(|e| format!("parameter `device`: {e}"))?;
        if self.beam_size == 0 || self.beam_size > 32 {
            return Err("parameter `beam_size`: must be between 1 and 32".into());
        }
        if self.best_of == 0 {
            return Err("parameter `best_of`: must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("parameter `batch_size`: must be at least 1".into());
        }
        if self.temperatures.is_empty()
            || self.temperatures.iter().any(|t| !(0.0..=2.0).contains(t))
        {
            return Err("parameter `temperatures`: a non-empty list of values in [0, 2]".into());
        }
        if self.language.is_empty() {
            return Err("parameter `language`: `auto` or a language code such as `en`".into());
        }
        Ok(())
    }

    fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            language: (self.language != "auto").then(|| self.language.clone()),
            beam_size: self.beam_size,
            patience: self.patience,
            best_of: self.best_of,
            temperatures: self.temperatures.clone(),
            compression_ratio_threshold: Some(self.compression_ratio_threshold),
            log_prob_threshold: Some(self.log_prob_threshold),
            no_speech_threshold: Some(self.no_speech_threshold),
            word_timestamps: self.word_timestamps,
            seed: 0,
        }
    }
}

/// What the UDF gets as its literal configuration argument: the params, and the model
/// files with the sha256s the node was fingerprinted with, which the process that runs
/// the UDF checks its own files against.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdfConfig {
    params: Params,
    model: ModelRef,
}

/// The `asr` stage.
pub struct AsrStage;

impl Stage for AsrStage {
    fn name(&self) -> &'static str {
        "asr"
    }

    fn configure(&self, params: toml::Table) -> Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        params.validate()?;
        Ok(Box::new(ConfiguredAsr { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(AsrUdf::new())]
    }
}

struct ConfiguredAsr {
    params: Params,
}

impl ConfiguredAsr {
    /// The Whisper files this node runs, hashed in this (the client's) process.
    fn model(&self, cx: &StageContext) -> Result<ModelRef> {
        let precision: Precision = self
            .params
            .precision
            .parse()
            .map_err(|e| Error::node(&cx.node, e))?;
        Whisper::model_ref(&self.params.model, precision).map_err(|e| Error::node(&cx.node, e))
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredAsr {
    fn stage_name(&self) -> &'static str {
        "asr"
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

    fn speed_only_params(&self) -> &'static [&'static str] {
        &["device", "threads", "batch_size"]
    }

    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        Ok(serde_json::json!({ "model_files": self.model(cx)?.sha256() }))
    }

    fn batch_rows(&self) -> Option<usize> {
        // Several encoder batches per call, so that encoding the next overlaps decoding
        // this one (Whisper::transcribe); 16 segments of audio are at most 31 MB.
        Some(self.params.batch_size.max(SEGMENTS_PER_CALL))
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let Some(input) = inputs.into_iter().next() else {
            return Err(Error::node(&cx.node, "asr needs one input"));
        };
        let columns: Vec<String> = input
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for needed in ["audio", "start_s"] {
            if !columns.iter().any(|c| c == needed) {
                return Err(Error::node(
                    &cx.node,
                    format!(
                        "asr needs an input with column `{needed}` (the `segment` stage's output); it has {}",
                        columns.join(", ")
                    ),
                ));
            }
        }
        let config = serde_json::to_string(&UdfConfig {
            params: self.params.clone(),
            model: self.model(cx)?,
        })
        .map_err(|e| Error::node(&cx.node, e))?;
        let select = stage_output(
            input.schema().inner(),
            &["audio"],
            "__labels",
            &AsrUdf::fields(),
        );
        cx.session
            .register_table("__asr_input", input.into_view())?;
        // No ORDER BY: rows keep the input's order (a source's segments in time
        // order) within each task's part. A global sort would gather every label
        // into one task and one part, and hold them all until the last segment.
        let df = cx
            .session
            .sql(&format!(
                "WITH labelled AS (
                   SELECT *, speechmill_asr(audio, start_s, '{}') AS __labels FROM __asr_input)
                 SELECT {select}
                 FROM labelled",
                config.replace('\'', "''")
            ))
            .await?;
        Ok(df)
    }
}

/// `speechmill_asr(audio, start_s, config_json)`: a struct of labels per segment.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AsrUdf {
    signature: Signature,
}

impl AsrUdf {
    fn new() -> Self {
        AsrUdf {
            signature: Signature::any(3, Volatility::Volatile),
        }
    }

    fn word_fields() -> Fields {
        crate::udf::word_fields("probability")
    }

    fn words_type() -> DataType {
        DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(Self::word_fields()),
            true,
        )))
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("language", DataType::Utf8, true),
            Field::new("language_prob", DataType::Float64, true),
            Field::new("avg_logprob", DataType::Float64, true),
            Field::new("no_speech_prob", DataType::Float64, true),
            Field::new("compression_ratio", DataType::Float64, true),
            Field::new("temperature", DataType::Float64, true),
            Field::new("words", Self::words_type(), true),
            Field::new("model", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }
}

/// One row's outcome.
type Labelled = Result<Transcript, String>;

impl ScalarUDFImpl for AsrUdf {
    fn name(&self) -> &str {
        "speechmill_asr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let config: UdfConfig = crate::udf::literal_json(&args.args[2], self.name())?;
        let params = &config.params;
        let audio = args.args[0].to_array(rows)?;
        let audio = datafusion::arrow::compute::cast(&audio, &DataType::LargeBinary)?;
        let audio = audio.as_binary::<i64>();
        let starts = args.args[1].to_array(rows)?;
        let starts = datafusion::arrow::compute::cast(&starts, &DataType::Float64)?;
        let starts = starts.as_primitive::<Float64Type>();

        let fail = |e: String| DataFusionError::Execution(format!("asr: {e}"));
        let precision: Precision = params.precision.parse().map_err(|e| fail(format!("{e}")))?;
        let device: Device = params.device.parse().map_err(|e| fail(format!("{e}")))?;
        // The model the node was fingerprinted with: this process's files are checked
        // against its hashes (once per process) before they are loaded.
        let session = SessionConfig::new(device, params.threads);
        let whisper = Whisper::shared_verified(&config.model, precision, &session)
            .map_err(|e| fail(e.to_string()))?;

        // Segments Whisper can take go to the model together; the rest get a reason.
        let mut outcome: Vec<Option<Labelled>> = vec![None; rows];
        let mut samples: Vec<(usize, Vec<f32>)> = Vec::new();
        for (i, slot) in outcome.iter_mut().enumerate() {
            if audio.is_null(i) {
                *slot = Some(Err("bad_audio: no audio".into()));
                continue;
            }
            let bytes = audio.value(i);
            if bytes.len() % 2 != 0 {
                *slot = Some(Err("bad_audio: odd PCM16 byte count".into()));
            } else if bytes.is_empty() {
                *slot = Some(Err("bad_audio: empty".into()));
            } else if bytes.len() / 2 > speechmill_models::whisper::WINDOW_SAMPLES {
                *slot = Some(Err(format!(
                    "too_long: {:.1} s segment; asr takes at most 30 s (segment with max_segment_s <= 30)",
                    bytes.len() as f64 / 32_000.0
                )));
            } else {
                let pcm = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
                    .collect();
                samples.push((i, pcm));
            }
        }
        let refs: Vec<&[f32]> = samples.iter().map(|(_, s)| s.as_slice()).collect();
        let transcripts = whisper
            .transcribe(&refs, &params.decode_options(), params.batch_size)
            .map_err(|e| fail(e.to_string()))?;
        // Cumulative since the model was loaded: the last line of a run is its total.
        tracing::debug!(target: "speechmill::profile", model = whisper.id(), "{}", whisper.profile().snapshot());
        for ((i, _), t) in samples.iter().zip(transcripts) {
            outcome[*i] = Some(if t.no_speech {
                Err(format!(
                    "no_speech: no-speech probability {:.2}",
                    t.no_speech_prob
                ))
            } else {
                Ok(t)
            });
        }
        build_output(outcome, starts, whisper.id())
    }
}

fn build_output(
    outcome: Vec<Option<Labelled>>,
    starts: &datafusion::arrow::array::Float64Array,
    model: &str,
) -> DfResult<ColumnarValue> {
    let n = outcome.len();
    let mut text = Vec::with_capacity(n);
    let mut language = Vec::with_capacity(n);
    let (mut lang_p, mut avg_lp, mut ns_p, mut cr, mut temp) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut reason = Vec::with_capacity(n);
    let mut words = WordLists::new(AsrUdf::word_fields());
    for (i, o) in outcome.into_iter().enumerate() {
        let offset = if starts.is_null(i) {
            0.0
        } else {
            starts.value(i)
        };
        match o.unwrap_or_else(|| Err("not labelled".into())) {
            Ok(t) => {
                text.push(Some(t.text));
                language.push(Some(t.language));
                lang_p.push(Some(t.language_prob));
                avg_lp.push(Some(t.avg_logprob));
                ns_p.push(Some(t.no_speech_prob));
                cr.push(Some(t.compression_ratio));
                temp.push(Some(t.temperature));
                reason.push(None);
                words.push_row(Some(
                    t.words
                        .into_iter()
                        .map(|w| (w.word, offset + w.start, offset + w.end, w.probability)),
                ));
            }
            Err(r) => {
                text.push(None);
                language.push(None);
                lang_p.push(None);
                avg_lp.push(None);
                ns_p.push(None);
                cr.push(None);
                temp.push(None);
                reason.push(Some(r));
                words.push_row(None::<Vec<_>>);
            }
        }
    }
    let models: Vec<Option<&str>> = reason
        .iter()
        .map(|r: &Option<String>| r.is_none().then_some(model))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(text)),
        Arc::new(StringArray::from(language)),
        Arc::new(Float64Array::from(lang_p)),
        Arc::new(Float64Array::from(avg_lp)),
        Arc::new(Float64Array::from(ns_p)),
        Arc::new(Float64Array::from(cr)),
        Arc::new(Float64Array::from(temp)),
        words.finish()?,
        Arc::new(StringArray::from(models)),
        Arc::new(StringArray::from(reason)),
    ];
    Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
        AsrUdf::fields(),
        columns,
        None,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(extra: &str) -> Result<Box<dyn ConfiguredStage>, String> {
        AsrStage.configure(toml::from_str(extra).unwrap())
    }

    #[test]
    fn defaults_follow_faster_whisper() {
        let p: Params = parse_params(toml::Table::new()).unwrap();
        assert_eq!(p.beam_size, 5);
        assert_eq!(p.language, "auto");
        assert_eq!(p.temperatures.len(), 6);
        assert!(p.validate().is_ok());
    }

    /// A process whose model files differ from the ones the plan was made with refuses
    /// to label, in one line naming the model, both hashes and the setup command.
    #[test]
    fn a_model_that_differs_from_the_plan_fails_the_task_in_one_line() {
        use datafusion::common::ScalarValue;
        use datafusion::common::config::ConfigOptions;

        let params: Params = parse_params(
            toml::from_str("model = \"whisper-tiny.en\"\nprecision = \"int8\"").unwrap(),
        )
        .unwrap();
        let mut model = Whisper::model_ref(&params.model, Precision::Int8)
            .unwrap_or_else(|e| panic!("these tests need the setup step: {e}"));
        let here = model.files[3].sha256.clone();
        model.files[3].sha256 = "0".repeat(64);
        let config = serde_json::to_string(&UdfConfig { params, model }).unwrap();
        let udf = AsrUdf::new();
        let field = |t: DataType| Arc::new(Field::new("x", t, true));
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Binary(Some(vec![0; 4]))),
                ColumnarValue::Scalar(ScalarValue::Float64(Some(0.0))),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(config))),
            ],
            arg_fields: vec![
                field(DataType::Binary),
                field(DataType::Float64),
                field(DataType::Utf8),
            ],
            number_rows: 1,
            return_field: field(DataType::Struct(AsrUdf::fields())),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let err = udf.invoke_with_args(args).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        for needle in [
            "whisper-tiny.en:int8",
            "decoder_int8.onnx",
            here.as_str(),
            "0".repeat(64).as_str(),
            "bash scripts/setup.sh",
        ] {
            assert!(msg.contains(needle), "{needle} not in: {msg}");
        }
    }

    #[test]
    fn bad_params_name_the_parameter() {
        let err = configure("beam_size = 0").err().unwrap();
        assert!(err.contains("beam_size"), "{err}");
        let err = configure("device = \"tpu\"").err().unwrap();
        assert!(err.contains("device"), "{err}");
        let err = configure("precision = \"fp8\"").err().unwrap();
        assert!(err.contains("precision"), "{err}");
        let err = configure("beam = 5").err().unwrap();
        assert!(err.contains("unknown parameter"), "{err}");
    }
}
