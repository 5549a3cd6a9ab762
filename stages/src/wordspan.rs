//! Stage `wordspan`: real corpus speech as interleaving spans (SpiritLM-style): each
//! aligned segment is cut at word boundaries into consecutive runs of `min_words` to
//! `max_words` words, alternately spoken and written (the first run's modality and
//! the lengths seeded with `seed` and the segment id, so a segment's runs never depend
//! on the others). A spoken run keeps its own audio, cut from the segment halfway into
//! the pauses beside it (at most `pad_s`); a written run keeps only its words.
//!
//! Input: like `resegment`, an `align` node's table with the segment's audio (give the
//! `segment` node as the second input). Output per run, in the shape `tokenize` reads
//! from `textspan` and `tts` both (`inputs = ["wordspan", "wordspan", "fit_units"]`):
//! `span_id` (`<segment_id>.<k>`), `doc_id` and `segment_id` (the segment's),
//! `span_index`, `speak`, `text` (the run's words joined by spaces), `words`,
//! `start_s`, `end_s`, `duration_s`, `audio` (16 kHz PCM16, spoken runs only), and the
//! input's other columns (`language`, …). A segment without words is a reject
//! (`no_words`).

use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::ScalarUDF;
use serde::{Deserialize, Serialize};
use speechmill_pipeline::Result;
use speechmill_pipeline::stage::{ConfiguredStage, InputArity, Stage, StageContext, parse_params};

use crate::resegment::{Cut, Piece, TimedWord, extent, plan_cut};

/// `wordspan` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Words per run, at least (the segment's last run may be shorter).
    #[serde(default = "default_min_words")]
    pub min_words: usize,
    /// Words per run, at most.
    #[serde(default = "default_max_words")]
    pub max_words: usize,
    #[serde(default)]
    pub seed: u64,
    /// How far a spoken run's audio reaches into the pauses beside it, at most.
    #[serde(default = "default_pad_s")]
    pub pad_s: f64,
}

fn default_min_words() -> usize {
    3
}
fn default_max_words() -> usize {
    10
}
fn default_pad_s() -> f64 {
    0.1
}

/// A segment's runs (`[seg_start, seg_end]`, words in time order).
pub fn plan_runs(
    words: &[TimedWord],
    seg_start: f64,
    seg_end: f64,
    segment_id: &str,
    p: &Params,
) -> Vec<Piece> {
    speechmill_text::modality_runs(words.len(), p.min_words, p.max_words, p.seed, segment_id)
        .into_iter()
        .map(|(range, speak)| {
            let (first, last) = (range.start, range.end - 1);
            let (start_s, end_s) = extent(words, first, last, (seg_start, seg_end), p.pad_s);
            Piece {
                first,
                last,
                start_s,
                end_s,
                speak: Some(speak),
            }
        })
        .collect()
}

/// The `wordspan` stage.
pub struct WordspanStage;

impl Stage for WordspanStage {
    fn name(&self) -> &'static str {
        "wordspan"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        if params.min_words == 0 || params.max_words < params.min_words || params.pad_s < 0.0 {
            return Err(format!(
                "parameters `min_words` ({}), `max_words` ({}), `pad_s` ({}): need 1 ≤ min_words ≤ max_words and pad_s ≥ 0",
                params.min_words, params.max_words, params.pad_s
            ));
        }
        Ok(Box::new(ConfiguredWordspan { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        // `resegment` registers the cutting UDF both stages call.
        Vec::new()
    }
}

struct ConfiguredWordspan {
    params: Params,
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredWordspan {
    fn stage_name(&self) -> &'static str {
        "wordspan"
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
        let dropped = [
            "audio",
            "words",
            "text",
            "segment_id",
            "start_s",
            "end_s",
            "duration_s",
            "speak",
            "span_id",
            "doc_id",
            "span_index",
        ];
        let renames = [
            (
                "__piece['segment_id'] AS \"segment_id\"",
                "__piece['segment_id'] AS \"span_id\", __piece['parent_segment_id'] AS \"doc_id\"",
            ),
            (
                "__piece['parent_segment_id'] AS \"parent_segment_id\"",
                "__piece['parent_segment_id'] AS \"segment_id\"",
            ),
            (
                "__piece['piece_index'] AS \"piece_index\"",
                "__piece['piece_index'] AS \"span_index\"",
            ),
        ];
        let cut = Cut::Modality(self.params.clone());
        plan_cut(cx, "wordspan", inputs, &cut, &dropped, &renames).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<TimedWord> {
        (0..n)
            .map(|i| TimedWord {
                word: format!("w{i}"),
                start_s: 10.0 + i as f64 * 0.5,
                end_s: 10.0 + i as f64 * 0.5 + 0.3,
            })
            .collect()
    }

    #[test]
    fn runs_cover_the_words_at_their_boundaries_and_alternate() {
        let w = words(17);
        let p = Params {
            min_words: 2,
            max_words: 4,
            seed: 1,
            pad_s: 0.1,
        };
        let runs = plan_runs(&w, 9.8, 18.6, "a.wav#0", &p);
        assert_eq!(runs[0].first, 0);
        assert_eq!(runs.last().unwrap().last, 16);
        for pair in runs.windows(2) {
            assert_eq!(pair[0].last + 1, pair[1].first);
            assert_ne!(pair[0].speak, pair[1].speak);
            // The 0.2 s pause is shared: each side reaches 0.1 s into it.
            assert!((pair[0].end_s - pair[1].start_s).abs() < 1e-9);
        }
        assert!((runs[0].start_s - 9.9).abs() < 1e-9, "pad_s caps the reach");
    }

    #[test]
    fn bad_params_name_the_parameters() {
        let err = WordspanStage
            .configure(toml::from_str("min_words = 5\nmax_words = 2").unwrap())
            .err()
            .unwrap();
        assert!(
            err.contains("min_words") && err.contains("max_words"),
            "{err}"
        );
    }
}
