//! Stage `fit_units`: the codebook of discrete speech units that `tokenize` assigns,
//! learnt by k-means over Whisper encoder frames of a sample of audio.
//!
//! Input: any node with `audio` (16 kHz PCM16; `tts`, `segment`). Up to `max_frames`
//! frames (after pooling to `rate_hz`) are taken from the rows in the order of their
//! audio's sha256 (so the sample never depends on partitioning), then
//! `speechmill_models::units::Codebook::fit` (k-means++ seeded by `seed`, Lloyd
//! iterations). The node's table is the artifact: one row with `codebook` (its bytes),
//! `codebook_sha256`, `k`, `dim`, `rate_hz`, `frames` (fitted on) and `encoder`. As a
//! node, it is reused by every rerun with the same input and params, and refit when
//! `k` (or anything else that changes it) changes.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, LargeBinaryArray, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::ScalarUDF;
use serde::{Deserialize, Serialize};
use speechmill_models::units::{Codebook, pool};
use speechmill_models::whisper::{Precision, Whisper};
use speechmill_models::{Device, SessionConfig};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::udf::{pcm16, string_array};

/// Whisper's encoder frame rate.
pub const ENCODER_HZ: f64 = 50.0;

/// `fit_units` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Units in the codebook.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Unit rate: 25 or 12.5 per second (encoder frames mean-pooled by 2 or 4).
    #[serde(default = "default_rate")]
    pub rate_hz: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// Frames (after pooling) the fit sees at most.
    #[serde(default = "default_max_frames")]
    pub max_frames: usize,
    /// The Whisper model whose encoder gives the frames.
    #[serde(default = "default_model")]
    pub model: String,
    #[serde(default = "default_precision")]
    pub precision: String,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_k() -> usize {
    500
}
fn default_rate() -> f64 {
    25.0
}
fn default_max_iter() -> usize {
    50
}
fn default_max_frames() -> usize {
    200_000
}
pub(crate) fn default_model() -> String {
    "whisper-base".into()
}
pub(crate) fn default_precision() -> String {
    "fp32".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_threads() -> usize {
    2
}

/// The `fit_units` stage.
pub struct FitUnitsStage;

impl Stage for FitUnitsStage {
    fn name(&self) -> &'static str {
        "fit_units"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if params.k < 2 {
            return Err("parameter `k`: at least 2 units".into());
        }
        if !(params.rate_hz > 0.0 && (ENCODER_HZ / params.rate_hz).fract() == 0.0) {
            return Err(format!(
                "parameter `rate_hz`: {} does not divide the encoder's {ENCODER_HZ} frames per second (25 or 12.5)",
                params.rate_hz
            ));
        }
        params
            .precision
            .parse::<Precision>()
            .map_err(|e| format!("parameter `precision`: {e}"))?;
        params
            .device
            .parse::<Device>()
            .map_err(|e| format!("parameter `device`: {e}"))?;
        Ok(Box::new(ConfiguredFitUnits { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        Vec::new()
    }
}

struct ConfiguredFitUnits {
    params: Params,
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredFitUnits {
    fn stage_name(&self) -> &'static str {
        "fit_units"
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
        let precision: Precision = self
            .params
            .precision
            .parse()
            .map_err(|e| Error::node(&cx.node, e))?;
        let model = Whisper::model_ref(&self.params.model, precision)
            .map_err(|e| Error::node(&cx.node, e))?;
        Ok(serde_json::json!({ "encoder": model.sha256() }))
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let node = |e: String| Error::node(&cx.node, e);
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| node("fit_units takes one input with `audio`".into()))?;
        if input.schema().inner().field_with_name("audio").is_err() {
            return Err(node("fit_units: the input has no `audio` column".into()));
        }
        cx.session
            .register_table("__fit_units_input", input.into_view())?;
        let batches = cx
            .session
            .sql("SELECT audio FROM __fit_units_input WHERE audio IS NOT NULL ORDER BY sha256(audio)")
            .await?
            .collect()
            .await?;
        let p = &self.params;
        let precision: Precision = p.precision.parse().map_err(|e| node(format!("{e}")))?;
        let device: Device = p.device.parse().map_err(|e| node(format!("{e}")))?;
        let model = Whisper::model_ref(&p.model, precision).map_err(|e| node(e.to_string()))?;
        let whisper =
            Whisper::shared_verified(&model, precision, &SessionConfig::new(device, p.threads))
                .map_err(|e| node(e.to_string()))?;
        let mut frames: Vec<f32> = Vec::new();
        let mut dim = 0;
        'rows: for batch in &batches {
            let audio = datafusion::arrow::compute::cast(batch.column(0), &DataType::LargeBinary)?;
            let audio = audio.as_binary::<i64>();
            for i in 0..audio.len() {
                let Ok(samples) = pcm16((!audio.is_null(i)).then(|| audio.value(i))) else {
                    continue;
                };
                let (features, d) = whisper
                    .encoder_frames(&samples)
                    .map_err(|e| node(e.to_string()))?;
                dim = d;
                let pooled = pool(&features, d, ENCODER_HZ, p.rate_hz).map_err(node)?;
                frames.extend(pooled);
                if frames.len() / d >= p.max_frames {
                    frames.truncate(p.max_frames * d);
                    break 'rows;
                }
            }
        }
        if dim == 0 {
            return Err(node(
                "fit_units: the input has no audio to learn units from".into(),
            ));
        }
        let n = frames.len() / dim;
        let codebook = Codebook::fit(&frames, dim, p.k, p.seed, p.max_iter).map_err(|e| {
            node(format!(
                "fit_units: {e} ({n} frames at {} Hz; lower `k` or give more audio)",
                p.rate_hz
            ))
        })?;
        let bytes = codebook.to_bytes();
        let schema = Arc::new(Schema::new(vec![
            Field::new("codebook", DataType::LargeBinary, false),
            Field::new("codebook_sha256", DataType::Utf8, false),
            Field::new("k", DataType::Int64, false),
            Field::new("dim", DataType::Int64, false),
            Field::new("rate_hz", DataType::Float64, false),
            Field::new("frames", DataType::Int64, false),
            Field::new("encoder", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(LargeBinaryArray::from_iter_values([bytes.as_slice()])),
            string_array([Some(codebook.sha256())]),
            Arc::new(Int64Array::from(vec![p.k as i64])),
            Arc::new(Int64Array::from(vec![dim as i64])),
            Arc::new(Float64Array::from(vec![p.rate_hz])),
            Arc::new(Int64Array::from(vec![n as i64])),
            string_array([Some(whisper.id().to_string())]),
        ];
        let batch =
            RecordBatch::try_new(schema, columns).map_err(|e| Error::Store(e.to_string()))?;
        Ok(cx.session.read_batch(batch)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_params_name_the_parameter() {
        for (params, name) in [
            ("k = 1", "k"),
            ("rate_hz = 20.0", "rate_hz"),
            ("precision = \"fp8\"", "precision"),
        ] {
            let err = FitUnitsStage
                .configure(toml::from_str(params).unwrap())
                .err()
                .unwrap();
            assert!(err.contains(name), "{err}");
        }
        assert!(
            FitUnitsStage
                .configure(toml::from_str("rate_hz = 12.5").unwrap())
                .is_ok()
        );
    }
}
