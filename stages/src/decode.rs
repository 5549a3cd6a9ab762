//! Stage `decode`: probes every ingested source by decoding it completely
//! (streaming, bounded memory) and fills `codec`, `container`, `sample_rate`,
//! `channels` and `duration_s` of the source as stored. Sources that do not decode
//! are rejected with the decoder's reason (`corrupt`, `unsupported_codec`,
//! `too_long`, …). The same decoder, with resampling to 16 kHz mono, feeds
//! `segment`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int32Array, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::Result as DfResult;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::Partitioning;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::audio::{DecodeOptions, probe_file};
use crate::blob::local_blob;
use crate::columns::stage_output;
use crate::udf::{literal_json, run_async, string_array, string_values};

/// `decode` node params.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Sources longer than this (seconds) are rejected as `too_long`.
    #[serde(default = "default_max_duration_s")]
    pub max_duration_s: f64,
}

fn default_max_duration_s() -> f64 {
    6.0 * 3600.0
}

/// The `decode` stage.
pub struct DecodeStage;

impl Stage for DecodeStage {
    fn name(&self) -> &'static str {
        "decode"
    }

    fn configure(&self, params: toml::Table) -> Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if params.max_duration_s.is_nan() || params.max_duration_s <= 0.0 {
            return Err("parameter `max_duration_s`: must be a positive number of seconds".into());
        }
        Ok(Box::new(ConfiguredDecode { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(ProbeUdf::new())]
    }
}

struct ConfiguredDecode {
    params: Params,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProbeConfig {
    store: String,
    max_duration_s: f64,
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredDecode {
    fn stage_name(&self) -> &'static str {
        "decode"
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

    fn batch_rows(&self) -> Option<usize> {
        // Decoding is heavy per row: small batches spread sources over all cores.
        Some(1)
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let Some(input) = inputs.into_iter().next() else {
            return Err(Error::node(&cx.node, "decode needs one input"));
        };
        let config = serde_json::to_string(&ProbeConfig {
            store: cx.store.url().to_string(),
            max_duration_s: self.params.max_duration_s,
        })
        .map_err(|e| Error::node(&cx.node, e))?;
        let select = stage_output(input.schema().inner(), &[], "__probe", &ProbeUdf::fields());
        let partitions = cx.session.state().config().target_partitions();
        let input = input.repartition(Partitioning::RoundRobinBatch(partitions))?;
        cx.session
            .register_table("__decode_input", input.into_view())?;
        let df = cx
            .session
            .sql(&format!(
                "WITH probed AS (SELECT *, speechmill_probe(blob, '{}') AS __probe FROM __decode_input)
                 SELECT {select} FROM probed ORDER BY uri",
                config.replace('\'', "''")
            ))
            .await?;
        Ok(df)
    }
}

/// `speechmill_probe(blob, config_json)`: decodes a stored source and returns
/// `{codec, container, sample_rate, channels, duration_s, reason}`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ProbeUdf {
    signature: Signature,
}

impl ProbeUdf {
    fn new() -> Self {
        ProbeUdf {
            signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Volatile),
        }
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("codec", DataType::Utf8, true),
            Field::new("container", DataType::Utf8, true),
            Field::new("sample_rate", DataType::Int32, true),
            Field::new("channels", DataType::Int32, true),
            Field::new("duration_s", DataType::Float64, true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }
}

impl ScalarUDFImpl for ProbeUdf {
    fn name(&self) -> &str {
        "speechmill_probe"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let blobs = string_values(&args.args[0], rows)?;
        let config: ProbeConfig = literal_json(&args.args[1], self.name())?;
        let options = DecodeOptions {
            max_duration_s: Some(config.max_duration_s),
            ..DecodeOptions::default()
        };
        let (mut codec, mut container, mut rate, mut channels, mut duration, mut reason) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for blob in blobs {
            let result = match blob {
                None => Err("missing blob".to_string()),
                Some(key) => run_async(local_blob(&config.store, &key)).and_then(|local| {
                    probe_file(&local.path, &options)
                        .map_err(|e| format!("{}: {e}", e.reason_code()))
                }),
            };
            match result {
                Ok(info) => {
                    codec.push(Some(info.codec.to_string()));
                    container.push(Some(info.container.to_string()));
                    rate.push(Some(info.sample_rate as i32));
                    channels.push(Some(info.channels as i32));
                    duration.push(Some(info.duration_s));
                    reason.push(None);
                }
                Err(r) => {
                    codec.push(None);
                    container.push(None);
                    rate.push(None);
                    channels.push(None);
                    duration.push(None);
                    reason.push(Some(r));
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            string_array(codec),
            string_array(container),
            Arc::new(Int32Array::from(rate)),
            Arc::new(Int32Array::from(channels)),
            Arc::new(Float64Array::from(duration)),
            string_array(reason),
        ];
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            Self::fields(),
            columns,
            None,
        )?)))
    }
}
