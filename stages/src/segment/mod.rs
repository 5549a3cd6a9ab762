//! Stage `segment`: cuts every ingested source into speech segments of at most
//! `max_segment_s` with Silero VAD, the WhisperX way (see [`cut`]).
//!
//! Each source is decoded with the backbone decoder ([`crate::audio`], 16 kHz mono),
//! run through Silero VAD (512-sample chunks with 64 samples of context; the sources
//! of one UDF call advance together, many chunks per model call), and cut & merged.
//! One source gives many rows: the UDF `speechmill_segment` returns a list of
//! segment structs per source and the plan unnests it. A source that cannot be used
//! returns a one-element list whose `reason` is set (`corrupt: …`, `no_speech`, …),
//! which becomes the row's `reject_reason`, so the UDF runs once per source and every
//! source ends up in `segment` or `segment_rejects`.
//!
//! Output: the input's columns, then `segment_id` (`<source_id>:<start in ms, 9
//! digits>`), `segment_index`, `start_s`, `end_s`, `duration_s`, `speech_s` (detected
//! speech inside, before padding), `speech_prob` (mean VAD probability over the
//! segment), `source_duration_s`, `audio` (16 kHz mono PCM16 little-endian samples of
//! `[start_s, end_s)`), ordered by `uri, start_s`.
//!
//! Memory: a UDF call holds its sources' 16 kHz PCM16 (32 kB per second of audio) and
//! their segments' audio, so a call is `batch_sources` sources (default 2) and
//! `max_duration_s` bounds one source.

pub mod cut;

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, LargeBinaryBuilder, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_models::vad::{self, MODEL_NAME};
use speechmill_models::{
    CHUNK, ModelError, ModelRef, SAMPLE_RATE, SessionConfig, SileroVad, VadStream,
};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::audio::{DecodeOptions, decode_file_16k, f32_to_s16};
use crate::blob::local_blob;
use crate::columns::stage_output;
use crate::udf::{literal_json, run_async, string_array, string_values};

use cut::{CutParams, Segment};

/// `segment` node params. Defaults are Silero's `get_speech_timestamps` defaults as
/// WhisperX calls it (threshold, min speech, min silence) and WhisperX's 30 s chunk;
/// `pad_s` is wider than Silero's 30 ms (see the README).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A 32 ms chunk with speech probability ≥ this is speech.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// While in speech, a chunk below this starts a silence (default `threshold − 0.15`).
    #[serde(default)]
    pub neg_threshold: Option<f64>,
    /// Speech regions no longer than this (seconds) are dropped.
    #[serde(default = "default_min_speech_s")]
    pub min_speech_s: f64,
    /// A silence must last this long (seconds) to end a speech region.
    #[serde(default = "default_min_silence_s")]
    pub min_silence_s: f64,
    /// Seconds of audio kept on each side of a speech region.
    #[serde(default = "default_pad_s")]
    pub pad_s: f64,
    /// Longest segment (seconds); longer speech is split at its least-speech point.
    #[serde(default = "default_max_segment_s")]
    pub max_segment_s: f64,
    /// Neighbouring regions further apart than this are not merged (default: any gap,
    /// like WhisperX).
    #[serde(default)]
    pub max_gap_s: Option<f64>,
    /// Sources longer than this (seconds) are rejected as `too_long`.
    #[serde(default = "default_max_duration_s")]
    pub max_duration_s: f64,
    /// Sources per UDF call (decoded together, VAD batched across them).
    #[serde(default = "default_batch_sources")]
    pub batch_sources: usize,
}

fn default_threshold() -> f64 {
    0.5
}
fn default_min_speech_s() -> f64 {
    0.25
}
fn default_min_silence_s() -> f64 {
    0.1
}
fn default_pad_s() -> f64 {
    0.2
}
fn default_max_segment_s() -> f64 {
    30.0
}
fn default_max_duration_s() -> f64 {
    6.0 * 3600.0
}
fn default_batch_sources() -> usize {
    2
}

impl Params {
    /// Checks ranges and fills in `neg_threshold`; errors name the parameter.
    fn validate(mut self) -> Result<Self, String> {
        let bad = |name: &str, why: &str| Err(format!("parameter `{name}`: {why}"));
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return bad("threshold", "must be between 0 and 1 (exclusive)");
        }
        let neg = self
            .neg_threshold
            .unwrap_or((self.threshold - 0.15).max(0.01));
        if !(neg > 0.0 && neg <= self.threshold) {
            return bad("neg_threshold", "must be above 0 and at most `threshold`");
        }
        self.neg_threshold = Some(neg);
        for (name, v) in [
            ("min_speech_s", self.min_speech_s),
            ("min_silence_s", self.min_silence_s),
            ("pad_s", self.pad_s),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(name, "must be a non-negative number of seconds");
            }
        }
        if let Some(g) = self.max_gap_s
            && !(g >= 0.0 && g.is_finite())
        {
            return bad("max_gap_s", "must be a non-negative number of seconds");
        }
        if !(self.max_segment_s.is_finite() && self.max_segment_s >= 2.0 * self.pad_s + 1.0) {
            return Err(format!(
                "parameter `max_segment_s`: must be at least 2 × pad_s + 1 s ({} s here)",
                2.0 * self.pad_s + 1.0
            ));
        }
        if !(self.max_duration_s > 0.0 && self.max_duration_s.is_finite()) {
            return bad("max_duration_s", "must be a positive number of seconds");
        }
        if !(1..=64).contains(&self.batch_sources) {
            return bad("batch_sources", "must be between 1 and 64");
        }
        Ok(self)
    }
}

/// The `segment` stage.
pub struct SegmentStage;

impl Stage for SegmentStage {
    fn name(&self) -> &'static str {
        "segment"
    }

    fn configure(&self, params: toml::Table) -> Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        Ok(Box::new(ConfiguredSegment {
            params: params.validate()?,
        }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(SegmentUdf::new())]
    }
}

struct ConfiguredSegment {
    params: Params,
}

/// The VAD graph this node runs, hashed in this (the client's) process.
fn vad_model(cx: &StageContext) -> Result<ModelRef> {
    vad::model_ref().map_err(|e| Error::node(&cx.node, format!("Silero VAD: {e}")))
}

/// What the UDF gets as its literal configuration argument.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentConfig {
    store: String,
    /// The VAD graph with the sha256 the node was fingerprinted with; the process that
    /// runs the UDF checks its own file against it.
    vad: ModelRef,
    max_duration_s: f64,
    threshold: f64,
    neg_threshold: f64,
    min_speech_s: f64,
    min_silence_s: f64,
    pad_s: f64,
    max_segment_s: f64,
    max_gap_s: Option<f64>,
}

impl SegmentConfig {
    fn cut_params(&self) -> CutParams {
        let samples = |s: f64| (s * SAMPLE_RATE as f64).round() as usize;
        CutParams {
            threshold: self.threshold as f32,
            neg_threshold: self.neg_threshold as f32,
            min_speech: samples(self.min_speech_s),
            min_silence: samples(self.min_silence_s),
            pad: samples(self.pad_s),
            max_segment: samples(self.max_segment_s),
            max_gap: self.max_gap_s.map(samples),
        }
    }
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredSegment {
    fn stage_name(&self) -> &'static str {
        "segment"
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
        &["batch_sources"]
    }

    async fn fingerprint_material(&self, cx: &StageContext) -> Result<serde_json::Value> {
        let sha = vad_model(cx)?.sha256();
        Ok(serde_json::json!({ "vad_model": MODEL_NAME, "vad_sha256": sha }))
    }

    fn batch_rows(&self) -> Option<usize> {
        // Each row is a whole source, decoded and held in memory during the call.
        Some(self.params.batch_sources)
    }

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        let Some(input) = inputs.into_iter().next() else {
            return Err(Error::node(&cx.node, "segment needs one input"));
        };
        let schema = input.schema();
        for column in ["source_id", "uri", "blob"] {
            if schema.inner().column_with_name(column).is_none() {
                return Err(Error::node(
                    &cx.node,
                    format!("the input has no `{column}` column (segment reads an ingest node)"),
                ));
            }
        }
        let p = &self.params;
        let config = serde_json::to_string(&SegmentConfig {
            store: cx.store.url().to_string(),
            vad: vad_model(cx)?,
            max_duration_s: p.max_duration_s,
            threshold: p.threshold,
            neg_threshold: p.neg_threshold.unwrap_or(p.threshold - 0.15),
            min_speech_s: p.min_speech_s,
            min_silence_s: p.min_silence_s,
            pad_s: p.pad_s,
            max_segment_s: p.max_segment_s,
            max_gap_s: p.max_gap_s,
        })
        .map_err(|e| Error::node(&cx.node, e))?;
        let select = stage_output(schema.inner(), &[], "__seg", &SegmentUdf::fields());
        // No repartition here: DataFusion's optimizer spreads the sources over the
        // partitions round-robin (one source's segments always come from one
        // partition, since the UDF cuts a whole source), and on a cluster the
        // runner turns that exchange into a hash on `source_id`, which Ballista
        // keeps (`speechmill_pipeline::cluster::distributable`).
        cx.session
            .register_table("__segment_input", input.into_view())?;
        // The volatile UDF runs once per source; UNNEST turns its list into rows,
        // a source's segments together and in time order. No ORDER BY across
        // sources: sorting would hold every segment's audio until the last source
        // is cut, so memory would grow with the corpus.
        let df = cx
            .session
            .sql(&format!(
                "WITH segmented AS (
                    SELECT *, speechmill_segment(source_id, blob, '{}') AS __segs FROM __segment_input),
                 flat AS (SELECT * EXCEPT (__segs), unnest(__segs) AS __seg FROM segmented)
                 SELECT {select}
                 FROM flat",
                config.replace('\'', "''")
            ))
            .await?;
        Ok(df)
    }
}

/// Speech probability of every 512-sample chunk of each source (16 kHz PCM16). The
/// sources advance together, a block of chunks per model call; each block is converted
/// to f32 on the way, so no f32 copy of a whole source is held.
pub fn vad_probabilities(vad: &SileroVad, sources: &[&[i16]]) -> Result<Vec<Vec<f32>>, ModelError> {
    const BLOCK: usize = 512 * CHUNK; // 16 s of audio per source per step
    let n = sources.len();
    let mut streams = vec![VadStream::new(); n];
    let mut probs: Vec<Vec<f32>> = sources
        .iter()
        .map(|s| Vec::with_capacity(s.len().div_ceil(CHUNK)))
        .collect();
    let longest = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut buffers: Vec<Vec<f32>> = vec![Vec::with_capacity(BLOCK); n];
    for at in (0..longest).step_by(BLOCK) {
        for (buffer, source) in buffers.iter_mut().zip(sources) {
            buffer.clear();
            let block = &source[at.min(source.len())..(at + BLOCK).min(source.len())];
            buffer.extend(block.iter().map(|&s| s as f32 / 32768.0));
        }
        let pieces: Vec<&[f32]> = buffers.iter().map(Vec::as_slice).collect();
        let mut refs: Vec<&mut VadStream> = streams.iter_mut().collect();
        for (p, out) in probs
            .iter_mut()
            .zip(vad.process_streams(&mut refs, &pieces)?)
        {
            p.extend(out);
        }
    }
    Ok(probs)
}

/// A decoded source: 16 kHz mono PCM16 and its decoded duration (source rate).
struct Decoded {
    samples: Vec<i16>,
    duration_s: f64,
}

fn decode_source(store: &str, blob: Option<&str>, opts: &DecodeOptions) -> Result<Decoded, String> {
    let key = blob.ok_or_else(|| "missing_blob".to_string())?;
    let local = run_async(local_blob(store, key))?;
    let mut samples: Vec<i16> = Vec::new();
    let info = decode_file_16k(&local.path, opts, |chunk| {
        samples.extend(chunk.iter().map(|&s| f32_to_s16(s)));
    })
    .map_err(|e| format!("{}: {e}", e.reason_code()))?;
    Ok(Decoded {
        samples,
        duration_s: info.duration_s,
    })
}

/// One element of the UDF's list: a segment, or a rejection of the whole source.
struct Row {
    segment: Option<(String, i32, Segment)>,
    source_duration_s: Option<f64>,
    audio: Option<Vec<u8>>,
    reason: Option<String>,
}

/// `speechmill_segment(source_id, blob, config_json)`: decodes a stored source, runs
/// Silero VAD and returns its segments as a list of structs (one element with a
/// `reason` when the source is rejected).
#[derive(Debug, PartialEq, Eq, Hash)]
struct SegmentUdf {
    signature: Signature,
}

impl SegmentUdf {
    fn new() -> Self {
        SegmentUdf {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
                Volatility::Volatile,
            ),
        }
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new("segment_id", DataType::Utf8, true),
            Field::new("segment_index", DataType::Int32, true),
            Field::new("start_s", DataType::Float64, true),
            Field::new("end_s", DataType::Float64, true),
            Field::new("duration_s", DataType::Float64, true),
            Field::new("speech_s", DataType::Float64, true),
            Field::new("speech_prob", DataType::Float64, true),
            Field::new("source_duration_s", DataType::Float64, true),
            Field::new("audio", DataType::LargeBinary, true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }

    fn item() -> Arc<Field> {
        Arc::new(Field::new_list_field(
            DataType::Struct(Self::fields()),
            true,
        ))
    }

    /// Segments (or the rejection) of each source.
    fn segment_sources(
        source_ids: &[Option<String>],
        blobs: &[Option<String>],
        config: &SegmentConfig,
    ) -> DfResult<Vec<Vec<Row>>> {
        let opts = DecodeOptions {
            max_duration_s: Some(config.max_duration_s),
            ..DecodeOptions::default()
        };
        let decoded: Vec<Result<Decoded, String>> = blobs
            .iter()
            .map(|b| decode_source(&config.store, b.as_deref(), &opts))
            .collect();
        let audio: Vec<&[i16]> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok().map(|d| d.samples.as_slice()))
            .collect();
        let model_error = |e: ModelError| DataFusionError::Execution(format!("Silero VAD: {e}"));
        // One session per concurrent caller, of the graph the plan names (this
        // process's file verified against its hash once).
        let pool = SileroVad::pool(&config.vad, &SessionConfig::default()).map_err(model_error)?;
        let mut probs = pool
            .with(|vad| vad_probabilities(vad, &audio))
            .and_then(|r| r)
            .map_err(model_error)?
            .into_iter();
        let cut_params = config.cut_params();
        let reject = |reason: String, duration: Option<f64>| Row {
            segment: None,
            source_duration_s: duration,
            audio: None,
            reason: Some(reason),
        };
        let mut out = Vec::with_capacity(decoded.len());
        for (i, d) in decoded.into_iter().enumerate() {
            let d = match d {
                Ok(d) => d,
                Err(reason) => {
                    out.push(vec![reject(reason, None)]);
                    continue;
                }
            };
            let probs = probs.next().unwrap_or_default();
            let segments = cut::cut(&probs, d.samples.len(), &cut_params);
            if segments.is_empty() {
                out.push(vec![reject("no_speech".to_string(), Some(d.duration_s))]);
                continue;
            }
            let source_id = source_ids[i].as_deref().unwrap_or("");
            let rows = segments
                .into_iter()
                .enumerate()
                .map(|(k, s)| {
                    let start_ms = s.start as u64 * 1000 / SAMPLE_RATE as u64;
                    let audio: Vec<u8> = d.samples[s.start..s.end]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    Row {
                        segment: Some((format!("{source_id}:{start_ms:09}"), k as i32, s)),
                        source_duration_s: Some(d.duration_s),
                        audio: Some(audio),
                        reason: None,
                    }
                })
                .collect();
            out.push(rows);
        }
        Ok(out)
    }
}

impl ScalarUDFImpl for SegmentUdf {
    fn name(&self) -> &str {
        "speechmill_segment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Self::item()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let source_ids = string_values(&args.args[0], rows)?;
        let blobs = string_values(&args.args[1], rows)?;
        let config: SegmentConfig = literal_json(&args.args[2], self.name())?;
        let per_source = Self::segment_sources(&source_ids, &blobs, &config)?;

        let total: usize = per_source.iter().map(Vec::len).sum();
        let seconds = |v: usize| v as f64 / SAMPLE_RATE as f64;
        let mut ids = Vec::with_capacity(total);
        let mut index = Vec::with_capacity(total);
        let (mut start, mut end, mut duration, mut speech, mut prob, mut source_duration) = (
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
        );
        let audio_bytes: usize = per_source
            .iter()
            .flatten()
            .map(|r| r.audio.as_ref().map_or(0, Vec::len))
            .sum();
        let mut audio = LargeBinaryBuilder::with_capacity(total, audio_bytes);
        let mut reason = Vec::with_capacity(total);
        let mut lengths = Vec::with_capacity(per_source.len());
        for rows in per_source {
            lengths.push(rows.len());
            for r in rows {
                match &r.segment {
                    Some((id, k, s)) => {
                        ids.push(Some(id.clone()));
                        index.push(Some(*k));
                        start.push(Some(seconds(s.start)));
                        end.push(Some(seconds(s.end)));
                        duration.push(Some(seconds(s.end - s.start)));
                        speech.push(Some(seconds(s.speech)));
                        prob.push(Some(s.speech_prob as f64));
                    }
                    None => {
                        ids.push(None);
                        index.push(None);
                        start.push(None);
                        end.push(None);
                        duration.push(None);
                        speech.push(None);
                        prob.push(None);
                    }
                }
                source_duration.push(r.source_duration_s);
                audio.append_option(r.audio.as_deref());
                reason.push(r.reason);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            string_array(ids),
            Arc::new(Int32Array::from(index)),
            Arc::new(Float64Array::from(start)),
            Arc::new(Float64Array::from(end)),
            Arc::new(Float64Array::from(duration)),
            Arc::new(Float64Array::from(speech)),
            Arc::new(Float64Array::from(prob)),
            Arc::new(Float64Array::from(source_duration)),
            Arc::new(audio.finish()),
            string_array(reason),
        ];
        let values = StructArray::try_new(Self::fields(), columns, None)?;
        let list = ListArray::try_new(
            Self::item(),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(values),
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(params: &str) -> Result<Params, String> {
        let table: toml::Table = toml::from_str(params).map_err(|e| e.to_string())?;
        parse_params::<Params>(table)?.validate()
    }

    #[test]
    fn params_default_and_validate() {
        let p = configure("").unwrap();
        assert_eq!(p.threshold, 0.5);
        assert!((p.neg_threshold.unwrap() - 0.35).abs() < 1e-12);
        assert_eq!((p.min_speech_s, p.min_silence_s, p.pad_s), (0.25, 0.1, 0.2));
        assert_eq!((p.max_segment_s, p.batch_sources), (30.0, 2));
        assert_eq!(p.max_gap_s, None);
        assert_eq!(configure("max_segment_s = 20").unwrap().max_segment_s, 20.0);

        for (params, names) in [
            ("threshold = 1.5", "`threshold`"),
            ("threshold = 0.5\nneg_threshold = 0.7", "`neg_threshold`"),
            ("min_speech_s = -1", "`min_speech_s`"),
            ("min_silence_s = nan", "`min_silence_s`"),
            ("pad_s = inf", "`pad_s`"),
            ("max_segment_s = 1.2", "`max_segment_s`"),
            ("max_gap_s = -0.5", "`max_gap_s`"),
            ("max_duration_s = 0", "`max_duration_s`"),
            ("batch_sources = 0", "`batch_sources`"),
            ("max_segment_s = \"long\"", "`max_segment_s`"),
            ("treshold = 0.4", "unknown parameter `treshold`"),
        ] {
            let e = configure(params).unwrap_err();
            assert!(e.contains(names), "{params}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    /// A process whose VAD graph differs from the one the plan was made with refuses to
    /// segment, in one line naming the model, both hashes and the setup command.
    #[test]
    fn a_vad_graph_that_differs_from_the_plan_fails_the_task_in_one_line() {
        use datafusion::common::ScalarValue;
        use datafusion::common::config::ConfigOptions;

        let mut vad =
            vad::model_ref().unwrap_or_else(|e| panic!("these tests need the setup step: {e}"));
        let here = vad.files[0].sha256.clone();
        vad.files[0].sha256 = "0".repeat(64);
        let p = configure("").unwrap();
        let config = serde_json::to_string(&SegmentConfig {
            store: "file:///nonexistent/".into(),
            vad,
            max_duration_s: p.max_duration_s,
            threshold: p.threshold,
            neg_threshold: 0.35,
            min_speech_s: p.min_speech_s,
            min_silence_s: p.min_silence_s,
            pad_s: p.pad_s,
            max_segment_s: p.max_segment_s,
            max_gap_s: None,
        })
        .unwrap();
        let utf8 = |v: Option<String>| ColumnarValue::Scalar(ScalarValue::Utf8(v));
        let field = Arc::new(Field::new("x", DataType::Utf8, true));
        let args = ScalarFunctionArgs {
            // One source without a blob: it is rejected, but the VAD is loaded first.
            args: vec![utf8(Some("s".into())), utf8(None), utf8(Some(config))],
            arg_fields: vec![field.clone(), field.clone(), field],
            number_rows: 1,
            return_field: Arc::new(Field::new("r", DataType::List(SegmentUdf::item()), true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let err = SegmentUdf::new().invoke_with_args(args).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        for needle in [
            MODEL_NAME,
            vad::SEQUENCE_MODEL,
            here.as_str(),
            "0".repeat(64).as_str(),
            "bash scripts/setup.sh",
        ] {
            assert!(msg.contains(needle), "{needle} not in: {msg}");
        }
    }

    #[test]
    fn config_converts_seconds_to_samples() {
        let c = SegmentConfig {
            store: String::new(),
            vad: ModelRef {
                name: MODEL_NAME.into(),
                location: vad::SEQUENCE_MODEL.into(),
                files: Vec::new(),
            },
            max_duration_s: 10.0,
            threshold: 0.5,
            neg_threshold: 0.35,
            min_speech_s: 0.25,
            min_silence_s: 0.1,
            pad_s: 0.2,
            max_segment_s: 30.0,
            max_gap_s: Some(1.5),
        };
        let p = c.cut_params();
        assert_eq!(
            (p.min_speech, p.min_silence, p.pad, p.max_segment, p.max_gap),
            (4000, 1600, 3200, 480_000, Some(24_000))
        );
    }
}
