//! Stage `tts`: speech for the spans `textspan` chose to speak (`speak = true`),
//! through a Piper voice or espeak-ng per language (param `voices`).
//!
//! Backends: `piper:<voice>` — a Piper (VITS) voice run through ONNX Runtime,
//! phonemes by espeak-ng and the voice's `phoneme_id_map`
//! (`speechmill_models::tts::PiperVoice`; `<voice>` is the registry's
//! `piper-en_US-joe-medium` or a path to a `.onnx` file with its `.onnx.json`);
//! `espeak:<voice>` — espeak-ng's own synthesis, for every language it speaks.
//! Defaults: English by the registry's Piper voice, every other language by the
//! espeak-ng voice of its code. Audio is resampled to 16 kHz PCM16, like segments.
//!
//! Columns: the span's (`span_id`, `doc_id`, `span_index`, `text`, `language`, …),
//! then `audio`, `sample_rate`, `duration_s`, `backend`, `voice`, `words` (each word's
//! `{word, start_s, end_s, score}` from the Piper voice's phoneme durations, `score` 0:
//! the synthesizer's own times; NULL for espeak-ng, or where espeak-ng's words are not
//! the text's one for one) and `start_s` (0: a span's audio is its own source, so it
//! feeds `asr`, `quality` or `resegment` like a segment). Rejects:
//! `no_voice` (no backend speaks the language), `tts_failed`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int32Array, LargeBinaryArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_models::phoneme_ctc::espeak_voice;
use speechmill_models::tts::{self, PIPER_VOICE, PiperVoice, Speech, SpokenWord};
use speechmill_models::{Device, ModelRef, SessionConfig};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::audio::TARGET_RATE;
use crate::columns::{quote, stage_output};
use crate::udf::{WordLists, string_array, string_values};

/// `tts` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Language → `piper:<voice>` or `espeak:<voice>`; languages not named use the
    /// defaults (English: the registry's Piper voice; others: espeak-ng).
    #[serde(default)]
    pub voices: BTreeMap<String, String>,
    /// Piper's variation of the audio (default: the voice's own).
    #[serde(default)]
    pub noise_scale: Option<f32>,
    /// Piper's duration scale: above 1 slower (default: the voice's own).
    #[serde(default)]
    pub length_scale: Option<f32>,
    /// Piper's variation of phoneme durations (default: the voice's own).
    #[serde(default)]
    pub noise_w: Option<f32>,
    /// Speaker id of a multi-speaker Piper voice.
    #[serde(default)]
    pub speaker: Option<i64>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// ONNX Runtime threads per session.
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_threads() -> usize {
    1
}

/// Spans per UDF call, spoken in parallel (longest first) over as many sessions as
/// the cores hold: a call's spans end together, where spans dealt round-robin to
/// partitions one by one would leave one partition the long ones.
const SPANS_PER_CALL: usize = 32;

/// A backend as a `voices` entry names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Backend {
    Piper(String),
    Espeak(String),
}

impl Backend {
    fn parse(spec: &str) -> std::result::Result<Self, String> {
        match spec.split_once(':') {
            Some(("piper", v)) if !v.is_empty() => Ok(Backend::Piper(v.to_string())),
            Some(("espeak", v)) if !v.is_empty() => Ok(Backend::Espeak(v.to_string())),
            _ => Err(format!(
                "`{spec}`: want `piper:<voice name or .onnx path>` or `espeak:<espeak-ng voice>`"
            )),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdfConfig {
    params: Params,
    /// The Piper voices the node uses, by their `voices` location.
    piper: BTreeMap<String, ModelRef>,
}

/// The `tts` stage.
pub struct TtsStage;

impl Stage for TtsStage {
    fn name(&self) -> &'static str {
        "tts"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        for (language, spec) in &params.voices {
            Backend::parse(spec).map_err(|e| format!("parameter `voices.{language}`: {e}"))?;
        }
        params
            .device
            .parse::<Device>()
            .map_err(|e| format!("parameter `device`: {e}"))?;
        Ok(Box::new(ConfiguredTts { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(TtsUdf::new())]
    }
}

struct ConfiguredTts {
    params: Params,
}

/// The backend for `language`: the node's `voices` entry, else the default.
fn backend_for(voices: &BTreeMap<String, String>, language: &str) -> Backend {
    let primary = language.split(['-', '_']).next().unwrap_or(language);
    match voices.get(language).or_else(|| voices.get(primary)) {
        Some(spec) => {
            Backend::parse(spec).unwrap_or_else(|_| Backend::Espeak(espeak_voice(language)))
        }
        None if primary == "en" => Backend::Piper(PIPER_VOICE.to_string()),
        None => Backend::Espeak(espeak_voice(language)),
    }
}

impl ConfiguredTts {
    /// Every Piper voice the node may use, hashed: the default English voice and
    /// those `voices` names.
    fn piper_models(&self, cx: &StageContext) -> Result<BTreeMap<String, ModelRef>> {
        let mut locations = std::collections::BTreeSet::new();
        if !self.params.voices.contains_key("en") {
            locations.insert(PIPER_VOICE.to_string());
        }
        for spec in self.params.voices.values() {
            if let Ok(Backend::Piper(v)) = Backend::parse(spec) {
                locations.insert(v);
            }
        }
        locations
            .into_iter()
            .map(|l| {
                let model = PiperVoice::model_ref(&l)
                    .map_err(|e| Error::node(&cx.node, format!("Piper voice `{l}`: {e}")))?;
                Ok((l, model))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredTts {
    fn stage_name(&self) -> &'static str {
        "tts"
    }

    fn version(&self) -> u32 {
        // 2: `words`.
        2
    }

    fn input_arity(&self) -> InputArity {
        InputArity::Exactly(1)
    }

    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or_default()
    }

    fn speed_only_params(&self) -> &'static [&'static str] {
        &["device", "threads"]
    }

    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        let voices: BTreeMap<String, String> = self
            .piper_models(cx)?
            .into_iter()
            .map(|(l, m)| (l, m.sha256()))
            .collect();
        Ok(serde_json::json!({ "piper": voices, "espeak": espeak_version() }))
    }

    fn batch_rows(&self) -> Option<usize> {
        Some(SPANS_PER_CALL)
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::node(&cx.node, "tts takes one input: the textspan node"))?;
        let schema = input.schema().inner().clone();
        for column in ["text", "language"] {
            if schema.field_with_name(column).is_err() {
                return Err(Error::node(
                    &cx.node,
                    format!("tts: the input has no column `{column}` (give it a textspan node)"),
                ));
            }
        }
        cx.session
            .register_table("__tts_input", input.into_view())?;
        let spoken = if schema.field_with_name("speak").is_ok() {
            "WHERE speak"
        } else {
            ""
        };
        let config = serde_json::to_string(&UdfConfig {
            params: self.params.clone(),
            piper: self.piper_models(cx)?,
        })
        .map_err(|e| Error::node(&cx.node, e))?;
        let select = stage_output(&schema, &[], "__tts", &TtsUdf::fields());
        Ok(cx
            .session
            .sql(&format!(
                "WITH spoken AS (
                   SELECT *, speechmill_tts({}, {}, '{}') AS __tts FROM __tts_input {spoken})
                 SELECT {select}, CAST(0.0 AS DOUBLE) AS start_s FROM spoken",
                quote("text"),
                quote("language"),
                config.replace('\'', "''")
            ))
            .await?)
    }
}

/// espeak-ng's version line: a new espeak-ng reads text differently.
fn espeak_version() -> Option<String> {
    let out = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `speechmill_tts(text, language, config_json)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TtsUdf {
    signature: Signature,
}

impl TtsUdf {
    fn new() -> Self {
        TtsUdf {
            signature: Signature::any(3, Volatility::Volatile),
        }
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("audio", DataType::LargeBinary, true),
            Field::new("sample_rate", DataType::Int32, true),
            Field::new("duration_s", DataType::Float64, true),
            Field::new("backend", DataType::Utf8, true),
            Field::new("voice", DataType::Utf8, true),
            Field::new(
                "words",
                DataType::List(Arc::new(Field::new_list_field(
                    DataType::Struct(Self::word_fields()),
                    true,
                ))),
                true,
            ),
            Field::new("reason", DataType::Utf8, true),
        ])
    }

    fn word_fields() -> Fields {
        crate::udf::word_fields("score")
    }
}

/// One span spoken: 16 kHz PCM16 bytes, seconds, backend and voice.
struct Spoken {
    pcm: Vec<u8>,
    duration_s: f64,
    backend: &'static str,
    voice: String,
    words: Option<Vec<SpokenWord>>,
}

fn to_pcm16_16k(speech: &Speech) -> std::result::Result<(Vec<u8>, f64), String> {
    let samples = crate::audio::resample_to_16k(&speech.samples, speech.sample_rate)
        .map_err(|e| format!("tts_failed: resampling: {e}"))?;
    let duration = samples.len() as f64 / TARGET_RATE as f64;
    let pcm = samples
        .iter()
        .flat_map(|&s| crate::audio::f32_to_s16(s).to_le_bytes())
        .collect();
    Ok((pcm, duration))
}

impl ScalarUDFImpl for TtsUdf {
    fn name(&self) -> &str {
        "speechmill_tts"
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
        let texts = string_values(&args.args[0], rows)?;
        let languages = string_values(&args.args[1], rows)?;
        let fail = |e: String| DataFusionError::Execution(format!("tts: {e}"));
        let params = &config.params;
        let device: Device = params.device.parse().map_err(|e| fail(format!("{e}")))?;
        let session = SessionConfig::new(device, params.threads);
        let speak = |i: usize| -> DfResult<std::result::Result<Spoken, String>> {
            let (Some(text), Some(language)) = (texts[i].as_deref(), languages[i].as_deref())
            else {
                return Ok(Err("no_text: the span has no text or language".into()));
            };
            let spoken = match backend_for(&params.voices, language) {
                Backend::Piper(location) => {
                    let model = config.piper.get(&location).ok_or_else(|| {
                        fail(format!("Piper voice `{location}` is not in the plan"))
                    })?;
                    let voice =
                        PiperVoice::shared(model, &session).map_err(|e| fail(e.to_string()))?;
                    let defaults = voice.default_options();
                    let options = tts::PiperOptions {
                        noise_scale: params.noise_scale.unwrap_or(defaults.noise_scale),
                        length_scale: params.length_scale.unwrap_or(defaults.length_scale),
                        noise_w: params.noise_w.unwrap_or(defaults.noise_w),
                        speaker: params.speaker.or(defaults.speaker),
                        ..defaults
                    };
                    voice
                        .synthesize(text, &options)
                        .map_err(|e| format!("tts_failed: {e}"))
                        .and_then(|speech| {
                            let (pcm, duration_s) = to_pcm16_16k(&speech)?;
                            Ok(Spoken {
                                pcm,
                                duration_s,
                                backend: "piper",
                                voice: model.name.clone(),
                                words: speech.words,
                            })
                        })
                }
                Backend::Espeak(voice) => {
                    if !tts::espeak_has_voice(&voice) {
                        Err(format!(
                            "no_voice: no Piper voice is set for language `{language}` and espeak-ng has no voice `{voice}` (param `voices`)"
                        ))
                    } else {
                        tts::espeak_synthesize(text, &voice)
                            .map_err(|e| format!("tts_failed: {e}"))
                            .and_then(|speech| to_pcm16_16k(&speech))
                            .map(|(pcm, duration_s)| Spoken {
                                pcm,
                                duration_s,
                                backend: "espeak",
                                voice: voice.clone(),
                                words: None,
                            })
                    }
                }
            };
            Ok(spoken.and_then(|s| {
                if s.pcm.is_empty() {
                    Err("tts_failed: no audio came out".into())
                } else {
                    Ok(s)
                }
            }))
        };
        // Longest first over as many workers as sessions run at once, so the call's
        // spans end together.
        let mut order: Vec<usize> = (0..rows).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].as_ref().map_or(0, String::len)));
        let workers = session.sessions_per_cores().min(rows).max(1);
        let out = crate::udf::parallel_map(&order, workers, |&i| speak(i))?;
        let mut out: Vec<_> = order.into_iter().zip(out).collect();
        out.sort_by_key(|(i, _)| *i);
        let out: Vec<std::result::Result<Spoken, String>> =
            out.into_iter().map(|(_, o)| o).collect();
        let ms = |s: f64| (s * 1000.0).round() / 1000.0;
        let mut words = WordLists::new(TtsUdf::word_fields());
        for o in &out {
            words.push_row(o.as_ref().ok().and_then(|s| s.words.as_ref()).map(|w| {
                w.iter()
                    .map(|w| (w.word.clone(), ms(w.start_s), ms(w.end_s), 0.0))
                    .collect::<Vec<_>>()
            }));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(LargeBinaryArray::from_iter(
                out.iter()
                    .map(|o| o.as_ref().ok().map(|s| s.pcm.as_slice())),
            )),
            Arc::new(Int32Array::from_iter(
                out.iter()
                    .map(|o| o.as_ref().ok().map(|_| TARGET_RATE as i32)),
            )),
            Arc::new(Float64Array::from_iter(
                out.iter().map(|o| o.as_ref().ok().map(|s| s.duration_s)),
            )),
            string_array(
                out.iter()
                    .map(|o| o.as_ref().ok().map(|s| s.backend.to_string())),
            ),
            string_array(out.iter().map(|o| o.as_ref().ok().map(|s| s.voice.clone()))),
            words.finish()?,
            string_array(out.iter().map(|o| o.as_ref().err().cloned())),
        ];
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            Self::fields(),
            columns,
            None,
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_get_their_voice_or_the_default() {
        let mut voices = BTreeMap::new();
        voices.insert("de".to_string(), "espeak:de".to_string());
        voices.insert("fr".to_string(), "piper:/voices/fr.onnx".to_string());
        assert_eq!(
            backend_for(&voices, "en"),
            Backend::Piper(PIPER_VOICE.into())
        );
        assert_eq!(
            backend_for(&voices, "en-GB"),
            Backend::Piper(PIPER_VOICE.into())
        );
        assert_eq!(
            backend_for(&voices, "fr"),
            Backend::Piper("/voices/fr.onnx".into())
        );
        assert_eq!(backend_for(&voices, "es"), Backend::Espeak("es".into()));
        assert_eq!(backend_for(&voices, "zh"), Backend::Espeak("cmn".into()));
    }

    #[test]
    fn bad_voice_entries_name_the_parameter() {
        let err = TtsStage
            .configure(toml::from_str("voices = { de = \"festival:de\" }").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("voices.de"), "{err}");
        assert!(TtsStage.configure(toml::Table::new()).is_ok());
    }
}
