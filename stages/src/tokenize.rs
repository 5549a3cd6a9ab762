//! Stage `tokenize`: every span as tokens, text or speech.
//!
//! Inputs: the spans (`textspan`, or `wordspan` for real speech), their speech (`tts`,
//! or `wordspan` again; joined on `span_id`) and the
//! codebook (`fit_units`; not with `speech_tokenizer = "onnx:<path>"`, a user's
//! CosyVoice S3Tokenizer-style model: Whisper's 128-bin log-mel in, integer tokens
//! below `speech_vocab_size` out, `speechmill_models::speech_tokenizer`). A span with `speak` and audio becomes speech units: Whisper
//! encoder frames (50 Hz, the codebook's encoder), mean-pooled to the codebook's
//! `rate_hz`, each the index of its nearest centroid, runs collapsed when `dedup`.
//! Every other span becomes text tokens of the `tokenizers` crate from
//! `text_tokenizer` (a Whisper model's `tokenizer.json` by default, or any
//! `tokenizer.json`, e.g. an LLM's), encoded with a leading space after a
//! document's first span so that a document's text tokens decode to its text.
//!
//! Columns: the span's, then `modality` (`text` / `speech`), `tokens` (list of int32:
//! token ids, or unit indices below `k` for speech), `n_tokens`, `speech_s`,
//! `text_vocab_size` and `speech_vocab_size` (the codebook's `k`). Rejects:
//! `no_speech_audio` (a spoken span whose synthesis failed), `no_text`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int32Builder, ListBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int64Type};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_models::speech_tokenizer::{self, OnnxSpeechTokenizer};
use speechmill_models::tokenizers::Tokenizer;
use speechmill_models::units::{Codebook, dedup, pool};
use speechmill_models::whisper::{Precision, Whisper};
use speechmill_models::{Device, ModelRef, SessionConfig, model_sha256};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::columns::stage_output;
use crate::fit_units::ENCODER_HZ;
use crate::udf::{pcm16, string_array, string_values};

/// `tokenize` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A Whisper model name or directory (its `tokenizer.json`), or a path to a
    /// `tokenizer.json`.
    #[serde(default = "crate::fit_units::default_model")]
    pub text_tokenizer: String,
    /// `units`: k-means units of the `fit_units` input; `onnx:<path>`: a CosyVoice
    /// S3Tokenizer-style ONNX model (128-bin log-mel in, integer tokens out).
    #[serde(default = "default_speech_tokenizer")]
    pub speech_tokenizer: String,
    /// The ONNX speech tokenizer's vocabulary size (its tokens are below it).
    #[serde(default)]
    pub speech_vocab_size: Option<u32>,
    /// Collapse runs of the same unit.
    #[serde(default)]
    pub dedup: bool,
    /// The Whisper model whose encoder gives the frames (the codebook's).
    #[serde(default = "crate::fit_units::default_model")]
    pub model: String,
    #[serde(default = "crate::fit_units::default_precision")]
    pub precision: String,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_speech_tokenizer() -> String {
    "units".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_threads() -> usize {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdfConfig {
    params: Params,
    encoder: ModelRef,
    /// The ONNX speech tokenizer (`speech_tokenizer = "onnx:…"`).
    speech_model: Option<ModelRef>,
    /// The tokenizer.json to load, and its sha256.
    tokenizer: (String, String),
}

/// Spans per UDF call.
const SPANS_PER_CALL: usize = 8;

/// The `tokenize` stage.
pub struct TokenizeStage;

impl Stage for TokenizeStage {
    fn name(&self) -> &'static str {
        "tokenize"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        match onnx_tokenizer(&params) {
            Some("") => {
                return Err("parameter `speech_tokenizer`: `onnx:` needs a path".into());
            }
            Some(_) if params.speech_vocab_size.is_none() => {
                return Err(
                    "parameter `speech_vocab_size`: an ONNX speech tokenizer needs its vocabulary size"
                        .into(),
                );
            }
            Some(_) => {}
            None if params.speech_tokenizer == "units" => {}
            None => {
                return Err(format!(
                    "parameter `speech_tokenizer`: `{}` is not one (units, onnx:<path>)",
                    params.speech_tokenizer
                ));
            }
        }
        params
            .precision
            .parse::<Precision>()
            .map_err(|e| format!("parameter `precision`: {e}"))?;
        params
            .device
            .parse::<Device>()
            .map_err(|e| format!("parameter `device`: {e}"))?;
        Ok(Box::new(ConfiguredTokenize { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(TokenizeUdf::new())]
    }
}

struct ConfiguredTokenize {
    params: Params,
}

/// The path of `speech_tokenizer = "onnx:<path>"`.
fn onnx_tokenizer(params: &Params) -> Option<&str> {
    params.speech_tokenizer.strip_prefix("onnx:")
}

/// The tokenizer.json `text_tokenizer` names, resolved in this process.
fn tokenizer_file(location: &str) -> std::result::Result<PathBuf, String> {
    let path = PathBuf::from(location);
    if path.is_file() {
        return Ok(path);
    }
    let dir = Whisper::resolve(location).map_err(|e| e.to_string())?;
    let file = dir.join("tokenizer.json");
    if file.is_file() {
        Ok(file)
    } else {
        Err(format!("{} has no tokenizer.json", dir.display()))
    }
}

impl ConfiguredTokenize {
    fn config(&self, cx: &StageContext) -> Result<UdfConfig> {
        let node = |e: String| Error::node(&cx.node, e);
        let precision: Precision = self
            .params
            .precision
            .parse()
            .map_err(|e| node(format!("{e}")))?;
        let encoder =
            Whisper::model_ref(&self.params.model, precision).map_err(|e| node(e.to_string()))?;
        let file = tokenizer_file(&self.params.text_tokenizer)
            .map_err(|e| node(format!("parameter `text_tokenizer`: {e}")))?;
        let sha = model_sha256(&file).map_err(|e| node(e.to_string()))?;
        let speech_model = onnx_tokenizer(&self.params)
            .map(|path| {
                speech_tokenizer::model_ref(path)
                    .map_err(|e| node(format!("parameter `speech_tokenizer`: {e}")))
            })
            .transpose()?;
        Ok(UdfConfig {
            params: self.params.clone(),
            encoder,
            speech_model,
            tokenizer: (file.display().to_string(), sha),
        })
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredTokenize {
    fn stage_name(&self) -> &'static str {
        "tokenize"
    }

    fn version(&self) -> u32 {
        1
    }

    fn input_arity(&self) -> InputArity {
        InputArity::AtLeast(2)
    }

    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).unwrap_or_default()
    }

    fn speed_only_params(&self) -> &'static [&'static str] {
        &["device", "threads"]
    }

    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        let config = self.config(cx)?;
        Ok(serde_json::json!({
            "encoder": config.encoder.sha256(),
            "tokenizer": config.tokenizer.1,
            "speech_tokenizer": config.speech_model.map(|m| m.sha256()),
        }))
    }

    fn batch_rows(&self) -> Option<usize> {
        Some(SPANS_PER_CALL)
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let units = onnx_tokenizer(&self.params).is_none();
        let mut inputs = inputs.into_iter();
        let (Some(spans), Some(speech), codebook, None) =
            (inputs.next(), inputs.next(), inputs.next(), inputs.next())
        else {
            return Err(Error::node(
                &cx.node,
                "tokenize takes textspan, tts and (for units) fit_units",
            ));
        };
        if units != codebook.is_some() {
            return Err(Error::node(
                &cx.node,
                if units {
                    "tokenize: speech_tokenizer `units` needs the fit_units node as third input"
                } else {
                    "tokenize: an ONNX speech tokenizer takes two inputs (textspan, tts), no codebook"
                },
            ));
        }
        let has = |df: &DataFrame, c: &str| df.schema().inner().field_with_name(c).is_ok();
        let mut checks = vec![
            (
                &spans,
                &["span_id", "doc_id", "span_index", "text"][..],
                "the first (textspan)",
            ),
            (&speech, &["span_id", "audio"][..], "the second (tts)"),
        ];
        if let Some(c) = &codebook {
            checks.push((
                c,
                &["codebook", "k", "rate_hz"][..],
                "the third (fit_units)",
            ));
        }
        for (df, columns, what) in checks {
            if let Some(c) = columns.iter().find(|c| !has(df, c)) {
                return Err(Error::node(
                    &cx.node,
                    format!("tokenize: {what} input has no column `{c}`"),
                ));
            }
        }
        let schema = spans.schema().inner().clone();
        cx.session
            .register_table("__tokenize_spans", spans.into_view())?;
        cx.session
            .register_table("__tokenize_speech", speech.into_view())?;
        let (codebook_join, codebook_args) = match codebook {
            Some(c) => {
                cx.session
                    .register_table("__tokenize_codebook", c.into_view())?;
                (
                    "CROSS JOIN (SELECT codebook, rate_hz FROM __tokenize_codebook) c",
                    "c.codebook AS __codebook, c.rate_hz AS __rate",
                )
            }
            None => (
                "",
                "CAST(NULL AS BYTEA) AS __codebook, CAST(NULL AS DOUBLE) AS __rate",
            ),
        };
        let speak = if schema.field_with_name("speak").is_ok() {
            "speak"
        } else {
            "FALSE"
        };
        let config =
            serde_json::to_string(&self.config(cx)?).map_err(|e| Error::node(&cx.node, e))?;
        // Spans that carry their own audio (`wordspan`) leave it here: tokens only.
        let select = stage_output(&schema, &["audio"], "__tokens", &TokenizeUdf::fields());
        Ok(cx
            .session
            .sql(&format!(
                "WITH joined AS (
                   SELECT s.*, t.audio AS __audio, {codebook_args}
                   FROM __tokenize_spans s
                   LEFT JOIN (SELECT span_id, audio FROM __tokenize_speech) t ON s.span_id = t.span_id
                   {codebook_join}),
                 tokenized AS (
                   SELECT *, speechmill_tokenize(text, span_index, {speak}, __audio, __codebook, __rate, '{}') AS __tokens
                   FROM joined)
                 SELECT {select} FROM tokenized",
                config.replace('\'', "''")
            ))
            .await?)
    }
}

static TOKENIZERS: LazyLock<Mutex<HashMap<String, Arc<Tokenizer>>>> =
    LazyLock::new(Default::default);
static CODEBOOKS: LazyLock<Mutex<HashMap<Vec<u8>, Arc<Codebook>>>> =
    LazyLock::new(Default::default);

/// The tokenizer at `path` (with its sha256), loaded once per process.
fn tokenizer(path: &str, sha256: &str) -> std::result::Result<Arc<Tokenizer>, String> {
    let key = format!("{path}|{sha256}");
    if let Some(t) = TOKENIZERS.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(t);
    }
    let here = model_sha256(std::path::Path::new(path)).map_err(|e| e.to_string())?;
    if here != sha256 {
        return Err(format!(
            "{path}: sha256 {here}, but the plan was made with {sha256}"
        ));
    }
    let t = Arc::new(Tokenizer::from_file(path).map_err(|e| format!("{path}: {e}"))?);
    if let Ok(mut m) = TOKENIZERS.lock() {
        m.insert(key, Arc::clone(&t));
    }
    Ok(t)
}

/// The codebook of these bytes, parsed once per process.
fn codebook(bytes: &[u8]) -> std::result::Result<Arc<Codebook>, String> {
    if let Some(c) = CODEBOOKS.lock().ok().and_then(|m| m.get(bytes).cloned()) {
        return Ok(c);
    }
    let c = Arc::new(Codebook::from_bytes(bytes)?);
    if let Ok(mut m) = CODEBOOKS.lock() {
        m.insert(bytes.to_vec(), Arc::clone(&c));
    }
    Ok(c)
}

/// `speechmill_tokenize(text, span_index, speak, audio, codebook, rate_hz, config)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TokenizeUdf {
    signature: Signature,
}

impl TokenizeUdf {
    fn new() -> Self {
        TokenizeUdf {
            signature: Signature::any(7, Volatility::Volatile),
        }
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("modality", DataType::Utf8, true),
            Field::new(
                "tokens",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                true,
            ),
            Field::new("n_tokens", DataType::Int32, true),
            Field::new("speech_s", DataType::Float64, true),
            Field::new("text_vocab_size", DataType::Int32, true),
            Field::new("speech_vocab_size", DataType::Int32, true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }
}

/// One span's tokens: modality, tokens, seconds of speech.
type Tokens = (&'static str, Vec<u32>, Option<f64>);

impl ScalarUDFImpl for TokenizeUdf {
    fn name(&self) -> &str {
        "speechmill_tokenize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let config: UdfConfig = crate::udf::literal_json(&args.args[6], self.name())?;
        let fail = |e: String| DataFusionError::Execution(format!("tokenize: {e}"));
        let texts = string_values(&args.args[0], rows)?;
        let index =
            datafusion::arrow::compute::cast(&args.args[1].to_array(rows)?, &DataType::Int64)?;
        let index = index.as_primitive::<Int64Type>();
        let speak =
            datafusion::arrow::compute::cast(&args.args[2].to_array(rows)?, &DataType::Boolean)?;
        let speak = speak.as_boolean();
        let audio = datafusion::arrow::compute::cast(
            &args.args[3].to_array(rows)?,
            &DataType::LargeBinary,
        )?;
        let audio = audio.as_binary::<i64>();
        let books = datafusion::arrow::compute::cast(
            &args.args[4].to_array(rows)?,
            &DataType::LargeBinary,
        )?;
        let books = books.as_binary::<i64>();
        let rates =
            datafusion::arrow::compute::cast(&args.args[5].to_array(rows)?, &DataType::Float64)?;
        let rates = rates.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let text_tokenizer = tokenizer(&config.tokenizer.0, &config.tokenizer.1).map_err(fail)?;
        let text_vocab = text_tokenizer.get_vocab_size(true) as i32;
        let p = &config.params;
        let mut whisper = None;
        let onnx = match &config.speech_model {
            Some(model) => {
                let device: Device = p.device.parse().map_err(|e| fail(format!("{e}")))?;
                Some(
                    OnnxSpeechTokenizer::pool(model, &SessionConfig::new(device, p.threads))
                        .map_err(|e| fail(e.to_string()))?,
                )
            }
            None => None,
        };
        let mut out: Vec<std::result::Result<Tokens, String>> = Vec::with_capacity(rows);
        let mut k = Vec::with_capacity(rows);
        for (i, text) in texts.iter().enumerate() {
            let book = if books.is_null(i) {
                None
            } else {
                Some(codebook(books.value(i)).map_err(fail)?)
            };
            k.push(match (&book, p.speech_vocab_size) {
                (_, Some(v)) if onnx.is_some() => Some(v as i32),
                (Some(b), _) => Some(b.k as i32),
                _ => None,
            });
            let spoken = !speak.is_null(i) && speak.value(i);
            if spoken {
                let Ok(samples) = pcm16((!audio.is_null(i)).then(|| audio.value(i))) else {
                    out.push(Err("no_speech_audio: the span is to be spoken but has no audio (see the tts rejects)".into()));
                    continue;
                };
                if let Some(pool) = &onnx {
                    let tokens = pool
                        .with(|m| m.tokens(&samples))
                        .and_then(|r| r)
                        .map_err(|e| fail(e.to_string()))?;
                    let vocab = p.speech_vocab_size.unwrap_or(u32::MAX);
                    if let Some(t) = tokens.iter().find(|&&t| t >= vocab) {
                        return Err(fail(format!(
                            "the speech tokenizer gave token {t}, not below `speech_vocab_size` {vocab}"
                        )));
                    }
                    out.push(Ok((
                        "speech",
                        tokens,
                        Some(samples.len() as f64 / 16_000.0),
                    )));
                    continue;
                }
                let book =
                    book.ok_or_else(|| fail("no codebook (the fit_units input is empty)".into()))?;
                if whisper.is_none() {
                    let precision: Precision =
                        p.precision.parse().map_err(|e| fail(format!("{e}")))?;
                    let device: Device = p.device.parse().map_err(|e| fail(format!("{e}")))?;
                    whisper = Some(
                        Whisper::shared_verified(
                            &config.encoder,
                            precision,
                            &SessionConfig::new(device, p.threads),
                        )
                        .map_err(|e| fail(e.to_string()))?,
                    );
                }
                let w = whisper.as_ref().expect("loaded above");
                let (frames, dim) = w
                    .encoder_frames(&samples)
                    .map_err(|e| fail(e.to_string()))?;
                if dim != book.dim {
                    return Err(fail(format!(
                        "the codebook has {}-dimensional units, {} gives {dim}: fit_units and tokenize must name the same `model`",
                        book.dim,
                        w.id()
                    )));
                }
                let pooled = pool(&frames, dim, ENCODER_HZ, rates.value(i)).map_err(fail)?;
                let mut units = book.assign(&pooled);
                if p.dedup {
                    units = dedup(&units);
                }
                out.push(Ok(("speech", units, Some(samples.len() as f64 / 16_000.0))));
            } else {
                let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) else {
                    out.push(Err("no_text: the span has no text".into()));
                    continue;
                };
                let first = index.is_null(i) || index.value(i) == 0;
                let text = if first {
                    text.to_string()
                } else {
                    format!(" {text}")
                };
                let encoding = text_tokenizer
                    .encode(text, false)
                    .map_err(|e| fail(e.to_string()))?;
                out.push(Ok(("text", encoding.get_ids().to_vec(), None)));
            }
        }
        let mut tokens = ListBuilder::new(Int32Builder::new());
        for o in &out {
            match o {
                Ok((_, t, _)) => {
                    tokens
                        .values()
                        .append_slice(&t.iter().map(|&x| x as i32).collect::<Vec<_>>());
                    tokens.append(true);
                }
                Err(_) => tokens.append(false),
            }
        }
        let columns: Vec<ArrayRef> = vec![
            string_array(out.iter().map(|o| o.as_ref().ok().map(|t| t.0.to_string()))),
            Arc::new(tokens.finish()),
            Arc::new(Int32Array::from_iter(
                out.iter()
                    .map(|o| o.as_ref().ok().map(|t| t.1.len() as i32)),
            )),
            Arc::new(Float64Array::from_iter(
                out.iter().map(|o| o.as_ref().ok().and_then(|t| t.2)),
            )),
            Arc::new(Int32Array::from_iter(
                out.iter().map(|o| o.as_ref().ok().map(|_| text_vocab)),
            )),
            Arc::new(Int32Array::from_iter(
                out.iter().zip(&k).map(|(o, k)| o.as_ref().ok().and(*k)),
            )),
            string_array(out.iter().map(|o| o.as_ref().err().cloned())),
        ];
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            Self::fields(),
            columns,
            None,
        )?)))
    }
}
