//! Stage `resegment`: cuts aligned segments at word boundaries into sentence-like
//! pieces of `min_s` to `max_s` seconds (default 1–20 s), so they can feed `quality`,
//! `filter` and `shard` like any segment.
//!
//! Input: one table with `words` (list of `{word, start_s, end_s, …}` in the source's
//! time, as `align` writes them), `segment_id`, `start_s`, `end_s` and the segment's
//! `audio` (16 kHz PCM16 starting at `start_s`): `align`'s output joined with
//! `segment`'s audio, or give both (`inputs = ["align", "segment"]`).
//!
//! Where to cut: a dynamic program over the gaps between words chooses the pieces.
//! Every piece costs 1, so the fewest pieces win unless something is worth a cut:
//! a cut after a word ending a sentence (. ! ? … and their CJK forms) earns 2, a cut
//! in a pause earns up to 1 (its length, capped at 1 s), a cut between words with no
//! pause earns nothing; a piece outside `min_s..=max_s` costs 10 more, so it happens
//! only when no cut can avoid it (a single word longer than `max_s`, a segment
//! shorter than `min_s`). A piece reaches halfway into the pauses on either side
//! (at most `pad_s`, default 0.15 s), never past its parent.
//!
//! Output per piece: the input's columns except `audio` and `words`, with
//! `segment_id` = `<parent's>.<piece index>`, `parent_segment_id`, `piece_index`,
//! `start_s`, `end_s`, `duration_s`, `text` (the piece's words joined by spaces),
//! `words` (the piece's) and `audio` (its samples). A segment without words is a
//! reject (`no_words`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, LargeBinaryArray, ListArray,
    StringArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type};
use datafusion::common::Result as DfResult;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::{Deserialize, Serialize};
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};
use speechmill_pipeline::{Error, Result};

use crate::columns::stage_output;
use crate::udf::string_values;
use crate::with_audio::labels_with_audio;

/// `resegment` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_min_s")]
    pub min_s: f64,
    #[serde(default = "default_max_s")]
    pub max_s: f64,
    #[serde(default = "default_pad_s")]
    pub pad_s: f64,
}

fn default_min_s() -> f64 {
    1.0
}
fn default_max_s() -> f64 {
    20.0
}
fn default_pad_s() -> f64 {
    0.15
}

/// One word of a segment, in the source's time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedWord {
    pub word: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// A piece: words `first..=last`, its extent in the source's time, and (for
/// `wordspan`'s runs) whether it is spoken.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub first: usize,
    pub last: usize,
    pub start_s: f64,
    pub end_s: f64,
    pub speak: Option<bool>,
}

/// How the UDF cuts a segment: its literal configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Cut {
    /// `resegment`: sentence-like pieces.
    Sentences(Params),
    /// `wordspan`: alternately spoken and written runs of words.
    Modality(crate::wordspan::Params),
}

/// The extent of words `a..=b` of a segment `[seg_start, seg_end]`: halfway into the
/// pauses on either side, at most `pad_s`, never past the segment.
pub fn extent(words: &[TimedWord], a: usize, b: usize, seg: (f64, f64), pad_s: f64) -> (f64, f64) {
    let n = words.len();
    let before = if a == 0 {
        words[0].start_s - seg.0
    } else {
        (words[a].start_s - words[a - 1].end_s).max(0.0) / 2.0
    };
    let after = if b + 1 == n {
        seg.1 - words[b].end_s
    } else {
        (words[b + 1].start_s - words[b].end_s).max(0.0) / 2.0
    };
    (
        (words[a].start_s - before.clamp(0.0, pad_s)).max(seg.0),
        (words[b].end_s + after.clamp(0.0, pad_s)).min(seg.1),
    )
}

fn ends_sentence(word: &str) -> bool {
    let w = word.trim_end_matches(['"', '\'', '”', '’', ')', '»', ']']);
    w.ends_with(['.', '!', '?', '…', '。', '！', '？', '؟', '।'])
}

/// The pieces of a segment `[seg_start, seg_end]` with `words` (in time order).
pub fn plan_pieces(words: &[TimedWord], seg_start: f64, seg_end: f64, p: &Params) -> Vec<Piece> {
    let n = words.len();
    if n == 0 {
        return Vec::new();
    }
    let gap_after = |i: usize| {
        if i + 1 < n {
            (words[i + 1].start_s - words[i].end_s).max(0.0)
        } else {
            0.0
        }
    };
    let extent = |a: usize, b: usize| extent(words, a, b, (seg_start, seg_end), p.pad_s);
    let cut_reward = |b: usize| {
        if b + 1 == n {
            return 0.0;
        }
        let sentence = if ends_sentence(&words[b].word) {
            2.0
        } else {
            0.0
        };
        sentence + gap_after(b).min(1.0)
    };
    // best[k]: least cost of cutting words 0..k into pieces; from[k]: where the
    // last piece starts.
    let mut best = vec![f64::INFINITY; n + 1];
    let mut from = vec![0usize; n + 1];
    best[0] = 0.0;
    for b in 0..n {
        for a in (0..=b).rev() {
            let (start, end) = extent(a, b);
            let duration = end - start;
            // Pieces only grow longer as `a` moves left.
            if duration > p.max_s && a < b {
                break;
            }
            let outside = if duration < p.min_s || duration > p.max_s {
                10.0
            } else {
                0.0
            };
            let cost = best[a] + 1.0 + outside - cut_reward(b);
            if cost < best[b + 1] {
                best[b + 1] = cost;
                from[b + 1] = a;
            }
        }
    }
    let mut pieces = Vec::new();
    let mut k = n;
    while k > 0 {
        let a = from[k];
        let (start_s, end_s) = extent(a, k - 1);
        pieces.push(Piece {
            first: a,
            last: k - 1,
            start_s,
            end_s,
            speak: None,
        });
        k = a;
    }
    pieces.reverse();
    pieces
}

/// The `resegment` stage.
pub struct ResegmentStage;

impl Stage for ResegmentStage {
    fn name(&self) -> &'static str {
        "resegment"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if !(params.min_s >= 0.0 && params.max_s > params.min_s && params.pad_s >= 0.0) {
            return Err(format!(
                "parameters `min_s` ({}), `max_s` ({}), `pad_s` ({}): need 0 ≤ min_s < max_s and pad_s ≥ 0",
                params.min_s, params.max_s, params.pad_s
            ));
        }
        Ok(Box::new(ConfiguredResegment { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        vec![ScalarUDF::new_from_impl(ResegmentUdf::new())]
    }
}

struct ConfiguredResegment {
    params: Params,
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredResegment {
    fn stage_name(&self) -> &'static str {
        "resegment"
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

    async fn plan(&self, cx: &StageContext, inputs: Vec<DataFrame>) -> Result<DataFrame> {
        // The piece's own columns replace the parent's.
        let dropped = [
            "audio",
            "words",
            "text",
            "segment_id",
            "start_s",
            "end_s",
            "duration_s",
        ];
        let renames = [(", __piece['speak'] AS \"speak\"", "")];
        let cut = Cut::Sentences(self.params.clone());
        plan_cut(cx, "resegment", inputs, &cut, &dropped, &renames).await
    }
}

/// The plan of a stage that cuts aligned segments (`resegment`, `wordspan`): the
/// labels joined with their audio, cut by the UDF as `cut` says, one row per piece:
/// the input's columns less `dropped`, then the piece's (each select item renamed
/// as `renames` says), `words` sliced to the piece's.
pub(crate) async fn plan_cut(
    cx: &StageContext,
    stage: &str,
    inputs: Vec<DataFrame>,
    cut: &Cut,
    dropped: &[&str],
    renames: &[(&str, &str)],
) -> Result<DataFrame> {
    let joined = labels_with_audio(cx, stage, inputs).await?;
    for c in ["words", "segment_id", "start_s", "end_s"] {
        if joined.schema().inner().field_with_name(c).is_err() {
            return Err(Error::node(
                &cx.node,
                format!("{stage}: the first input has no `{c}` (it reads an `align` node)"),
            ));
        }
    }
    let schema = joined.schema().inner().clone();
    let table = format!("__{stage}_input");
    cx.session.register_table(&table, joined.into_view())?;
    let config = serde_json::to_string(cut).map_err(|e| Error::node(&cx.node, e))?;
    let mut select = stage_output(&schema, dropped, "__piece", &ResegmentUdf::fields());
    select = select.replace(
        "__piece['first_word'] AS \"first_word\"",
        "array_slice(words, __piece['first_word'] + 1, __piece['last_word'] + 1) AS \"words\"",
    );
    select = select.replace(", __piece['last_word'] AS \"last_word\"", "");
    for (from, to) in renames {
        select = select.replace(from, to);
    }
    Ok(cx
        .session
        .sql(&format!(
            "WITH cut AS (
               SELECT *, speechmill_resegment(segment_id, start_s, end_s, words, audio, '{}') AS __pieces
               FROM {table}),
             flat AS (SELECT * EXCEPT (__pieces), unnest(__pieces) AS __piece FROM cut)
             SELECT {select} FROM flat",
            config.replace('\'', "''")
        ))
        .await?)
}

/// `speechmill_resegment(segment_id, start_s, end_s, words, audio, config)`: a list of
/// pieces per segment (one element with a `reason` when it cannot be cut), cut as
/// the config's [`Cut`] says (`resegment` and `wordspan` both call it).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ResegmentUdf {
    signature: Signature,
}

impl ResegmentUdf {
    pub(crate) fn new() -> Self {
        ResegmentUdf {
            signature: Signature::any(6, Volatility::Volatile),
        }
    }

    pub(crate) fn fields() -> Fields {
        Fields::from(vec![
            Field::new("segment_id", DataType::Utf8, true),
            Field::new("parent_segment_id", DataType::Utf8, true),
            Field::new("piece_index", DataType::Int32, true),
            Field::new("start_s", DataType::Float64, true),
            Field::new("end_s", DataType::Float64, true),
            Field::new("duration_s", DataType::Float64, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("first_word", DataType::Int32, true),
            Field::new("last_word", DataType::Int32, true),
            Field::new("speak", DataType::Boolean, true),
            Field::new("audio", DataType::LargeBinary, true),
            Field::new("reason", DataType::Utf8, true),
        ])
    }
}

/// A segment's words from a `words` list value.
pub(crate) fn timed_words(list: &ListArray, row: usize) -> Vec<TimedWord> {
    if list.is_null(row) {
        return Vec::new();
    }
    let value = list.value(row);
    let Some(items) = value.as_struct_opt() else {
        return Vec::new();
    };
    let column = |name: &str| items.column_by_name(name).cloned();
    let (Some(word), Some(start), Some(end)) = (column("word"), column("start_s"), column("end_s"))
    else {
        return Vec::new();
    };
    let (Ok(word), Ok(start), Ok(end)) = (
        datafusion::arrow::compute::cast(&word, &DataType::Utf8),
        datafusion::arrow::compute::cast(&start, &DataType::Float64),
        datafusion::arrow::compute::cast(&end, &DataType::Float64),
    ) else {
        return Vec::new();
    };
    let (word, start, end) = (
        word.as_string::<i32>(),
        start.as_primitive::<Float64Type>(),
        end.as_primitive::<Float64Type>(),
    );
    (0..items.len())
        .filter(|&i| !word.is_null(i) && !start.is_null(i) && !end.is_null(i))
        .map(|i| TimedWord {
            word: word.value(i).to_string(),
            start_s: start.value(i),
            end_s: end.value(i),
        })
        .collect()
}

impl ScalarUDFImpl for ResegmentUdf {
    fn name(&self) -> &str {
        "speechmill_resegment"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(Self::fields()),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let cut: Cut = crate::udf::literal_json(&args.args[5], self.name())?;
        let ids = string_values(&args.args[0], rows)?;
        let float = |i: usize| -> DfResult<Float64Array> {
            let a = args.args[i].to_array(rows)?;
            Ok(datafusion::arrow::compute::cast(&a, &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .clone())
        };
        let (starts, ends) = (float(1)?, float(2)?);
        let words = args.args[3].to_array(rows)?;
        let words = words.as_list_opt::<i32>().ok_or_else(|| {
            datafusion::common::DataFusionError::Execution(
                "resegment: `words` is not a list".into(),
            )
        })?;
        let audio = args.args[4].to_array(rows)?;
        let audio = datafusion::arrow::compute::cast(&audio, &DataType::LargeBinary)?;
        let audio = audio.as_binary::<i64>();

        let mut out = Pieces::default();
        let mut offsets = vec![0i32];
        for (row, id) in ids.into_iter().enumerate() {
            let id = id.unwrap_or_default();
            let timed = timed_words(words, row);
            let (start, end) = (starts.value(row), ends.value(row));
            if timed.is_empty() || starts.is_null(row) || ends.is_null(row) {
                out.reject(&id, "no_words: the segment has no aligned words");
            } else if audio.is_null(row) {
                out.reject(&id, "bad_audio: no audio");
            } else {
                let pcm = audio.value(row);
                let pieces = match &cut {
                    Cut::Sentences(params) => plan_pieces(&timed, start, end, params),
                    Cut::Modality(params) => {
                        crate::wordspan::plan_runs(&timed, start, end, &id, params)
                    }
                };
                for (k, piece) in pieces.iter().enumerate() {
                    let byte = |t: f64| {
                        ((((t - start) * 16_000.0).round() as usize) * 2).min(pcm.len() & !1)
                    };
                    let text: Vec<&str> = timed[piece.first..=piece.last]
                        .iter()
                        .map(|w| w.word.as_str())
                        .collect();
                    // A written run needs no audio.
                    let samples = (piece.speak != Some(false))
                        .then(|| &pcm[byte(piece.start_s)..byte(piece.end_s)]);
                    out.piece(&id, k, piece, text.join(" "), samples);
                }
            }
            offsets.push(out.len() as i32);
        }
        let items = out.finish()?;
        Ok(ColumnarValue::Array(Arc::new(ListArray::try_new(
            Arc::new(Field::new_list_field(
                DataType::Struct(Self::fields()),
                true,
            )),
            OffsetBuffer::new(offsets.into()),
            Arc::new(items),
            None,
        )?)))
    }
}

#[derive(Default)]
struct Pieces {
    id: Vec<Option<String>>,
    parent: Vec<Option<String>>,
    index: Vec<Option<i32>>,
    start: Vec<Option<f64>>,
    end: Vec<Option<f64>>,
    duration: Vec<Option<f64>>,
    text: Vec<Option<String>>,
    first: Vec<Option<i32>>,
    last: Vec<Option<i32>>,
    speak: Vec<Option<bool>>,
    audio: Vec<Option<Vec<u8>>>,
    reason: Vec<Option<String>>,
}

impl Pieces {
    fn len(&self) -> usize {
        self.id.len()
    }

    fn piece(&mut self, parent: &str, k: usize, p: &Piece, text: String, pcm: Option<&[u8]>) {
        let ms = |s: f64| (s * 1000.0).round() / 1000.0;
        self.id.push(Some(format!("{parent}.{k}")));
        self.parent.push(Some(parent.to_string()));
        self.index.push(Some(k as i32));
        self.start.push(Some(ms(p.start_s)));
        self.end.push(Some(ms(p.end_s)));
        self.duration.push(Some(ms(p.end_s - p.start_s)));
        self.text.push(Some(text));
        self.first.push(Some(p.first as i32));
        self.last.push(Some(p.last as i32));
        self.speak.push(p.speak);
        self.audio.push(pcm.map(<[u8]>::to_vec));
        self.reason.push(None);
    }

    fn reject(&mut self, parent: &str, reason: &str) {
        self.id.push(Some(parent.to_string()));
        self.parent.push(Some(parent.to_string()));
        self.index.push(None);
        self.start.push(None);
        self.end.push(None);
        self.duration.push(None);
        self.text.push(None);
        self.first.push(None);
        self.last.push(None);
        self.speak.push(None);
        self.audio.push(None);
        self.reason.push(Some(reason.to_string()));
    }

    fn finish(self) -> DfResult<StructArray> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.id)),
            Arc::new(StringArray::from(self.parent)),
            Arc::new(Int32Array::from(self.index)),
            Arc::new(Float64Array::from(self.start)),
            Arc::new(Float64Array::from(self.end)),
            Arc::new(Float64Array::from(self.duration)),
            Arc::new(StringArray::from(self.text)),
            Arc::new(Int32Array::from(self.first)),
            Arc::new(Int32Array::from(self.last)),
            Arc::new(BooleanArray::from(self.speak)),
            Arc::new(LargeBinaryArray::from_iter(self.audio)),
            Arc::new(StringArray::from(self.reason)),
        ];
        Ok(StructArray::try_new(ResegmentUdf::fields(), columns, None)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(spec: &[(&str, f64, f64)]) -> Vec<TimedWord> {
        spec.iter()
            .map(|(w, s, e)| TimedWord {
                word: w.to_string(),
                start_s: *s,
                end_s: *e,
            })
            .collect()
    }

    fn params(min_s: f64, max_s: f64) -> Params {
        Params {
            min_s,
            max_s,
            pad_s: 0.15,
        }
    }

    #[test]
    fn pieces_end_at_sentences_when_their_lengths_allow() {
        let w = words(&[
            ("Hello", 0.0, 0.5),
            ("there.", 0.6, 1.2),
            ("How", 1.25, 1.5),
            ("are", 1.55, 1.8),
            ("you?", 1.85, 2.4),
        ]);
        let pieces = plan_pieces(&w, 0.0, 2.6, &params(0.5, 20.0));
        let spans: Vec<(usize, usize)> = pieces.iter().map(|p| (p.first, p.last)).collect();
        assert_eq!(spans, [(0, 1), (2, 4)]);
        // Halfway into the pause between them, never past the parent.
        assert!((pieces[0].end_s - 1.225).abs() < 1e-9, "{pieces:?}");
        assert!((pieces[1].start_s - 1.225).abs() < 1e-9);
        assert_eq!(pieces[0].start_s, 0.0);
        assert!((pieces[1].end_s - 2.55).abs() < 1e-9);
    }

    #[test]
    fn without_punctuation_long_segments_cut_at_the_longest_pauses() {
        // Ten 1 s words; the pause after word 4 is long, the others short.
        let spec: Vec<(String, f64, f64)> = (0..10)
            .map(|i| {
                let start = i as f64 * 1.1 + if i >= 5 { 0.8 } else { 0.0 };
                (format!("w{i}"), start, start + 1.0)
            })
            .collect();
        let spec: Vec<(&str, f64, f64)> =
            spec.iter().map(|(w, s, e)| (w.as_str(), *s, *e)).collect();
        let w = words(&spec);
        let pieces = plan_pieces(&w, 0.0, 12.0, &params(1.0, 7.0));
        let spans: Vec<(usize, usize)> = pieces.iter().map(|p| (p.first, p.last)).collect();
        assert_eq!(spans, [(0, 4), (5, 9)]);
        for p in &pieces {
            assert!(p.end_s - p.start_s <= 7.0, "{p:?}");
        }
        // Short enough as a whole: one piece.
        assert_eq!(plan_pieces(&w, 0.0, 12.0, &params(1.0, 20.0)).len(), 1);
    }

    #[test]
    fn a_word_longer_than_max_s_is_a_piece_of_its_own() {
        let w = words(&[("a", 0.0, 0.5), ("long", 0.6, 30.0), ("b", 30.1, 30.6)]);
        let pieces = plan_pieces(&w, 0.0, 31.0, &params(0.2, 20.0));
        assert!(
            pieces.iter().any(|p| p.first == 1 && p.last == 1),
            "{pieces:?}"
        );
        assert!(plan_pieces(&[], 0.0, 1.0, &params(1.0, 20.0)).is_empty());
        assert!(ends_sentence("done.\"") && ends_sentence("好。") && !ends_sentence("Mr"));
    }
}
