//! Stage `filter`: joins its inputs on `segment_id` and keeps a row only when every
//! rule holds. Rules are SQL predicates, in order; a row that fails one goes to
//! `<node>_rejects` with `reason` = the name of the first rule it failed, so every
//! input row is kept or rejected once, with the reason a person would look for.
//!
//! Inputs: any number of tables with a `segment_id` (labels, scores, a second
//! model's labels). The first one is the base: every one of its rows is kept or
//! rejected. The others are LEFT-joined to it, so a segment another input has no row
//! for (a check model that only ran on English, a score node that rejected it) meets
//! the rules with NULLs there; a rule decides what that means
//! (`asr_check_text IS NULL OR …`). Each later input has at most one row per segment.
//!
//! Columns: the base's, then each later input's. A later input's column whose name is
//! already taken is left out when it describes the segment or its source (the
//! `segment` and `ingest` columns, [`IDENTITY_COLUMNS`]: equal for equal
//! `segment_id`); any other is carried as `<input>_<column>` (`asr_check`'s `text`
//! becomes `asr_check_text`). `audio` is never carried: stages that need it (`shard`)
//! join `segment` on `segment_id`. Then the derived `columns`, in order, each an SQL
//! expression over everything before it (window functions included, e.g. a
//! per-language percentile), carried into the output like the rest.
//!
//! A predicate that is NULL fails its rule, as in SQL's `WHERE`. A rule may name the
//! columns it `needs` (list-file metadata that not every corpus has): without them
//! it is left out rather than failing the node.

use datafusion::arrow::datatypes::Schema;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::ScalarUDF;
use serde::{Deserialize, Serialize};
use speechmill_pipeline::stage::{
    ConfiguredStage, InputArity, REJECT_REASON_COLUMN, Stage, StageContext, parse_params,
};
use speechmill_pipeline::{Error, Result};

use crate::columns::quote;

/// The column every input is joined on.
pub const JOIN_COLUMN: &str = "segment_id";

/// Columns that describe a segment and its source (written by `ingest` and
/// `segment`): the same in every input for one `segment_id`, so they are taken from
/// the first input that has them.
pub const IDENTITY_COLUMNS: &[&str] = &[
    "source_id",
    "uri",
    "origin",
    "blob",
    "size_bytes",
    "duplicate_uris",
    "segment_index",
    "start_s",
    "end_s",
    "duration_s",
    "speech_s",
    "speech_prob",
    "source_duration_s",
];

/// `filter` node params.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Derived columns, computed in order before the rules.
    #[serde(default)]
    pub columns: Vec<Derived>,
    /// The rules, in order; a row is kept when all of them hold.
    pub rules: Vec<Rule>,
}

/// One derived column: `{ name = "speech_rate", value = "chars_per_sec(text, duration_s)" }`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    pub name: String,
    /// An SQL expression over the joined columns and the derived columns before it.
    pub value: String,
}

/// One rule: `{ name = "dnsmos", keep = "dnsmos_ovrl >= 3.0" }`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The reject reason of rows that fail it.
    pub name: String,
    /// An SQL predicate; the row is kept only if it is true.
    pub keep: String,
    /// Columns the rule needs that not every corpus has (a list file's metadata, say):
    /// without any of them in the joined table the rule is left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Params {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.rules.is_empty() {
            return Err("parameter `rules`: give at least one `{ name = \"…\", keep = \"<SQL predicate>\" }`".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !is_identifier(&rule.name) {
                return Err(format!(
                    "parameter `rules[{i}].name`: `{}` is not a reason code (lowercase letters, digits and `_`, starting with a letter)",
                    rule.name
                ));
            }
            if !seen.insert(rule.name.as_str()) {
                return Err(format!(
                    "parameter `rules[{i}].name`: `{}` names two rules",
                    rule.name
                ));
            }
            if rule.keep.trim().is_empty() {
                return Err(format!(
                    "parameter `rules[{i}].keep`: rule `{}` has an empty predicate",
                    rule.name
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, column) in self.columns.iter().enumerate() {
            if !is_identifier(&column.name) || column.name == REJECT_REASON_COLUMN {
                return Err(format!(
                    "parameter `columns[{i}].name`: `{}` is not a column name (lowercase letters, digits and `_`)",
                    column.name
                ));
            }
            if !seen.insert(column.name.as_str()) {
                return Err(format!(
                    "parameter `columns[{i}].name`: `{}` is defined twice",
                    column.name
                ));
            }
            if column.value.trim().is_empty() {
                return Err(format!(
                    "parameter `columns[{i}].value`: column `{}` has an empty expression",
                    column.name
                ));
            }
        }
        Ok(())
    }
}

/// The `filter` stage.
pub struct FilterStage;

impl Stage for FilterStage {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn configure(
        &self,
        params: toml::Table,
    ) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        let params: Params = parse_params(params)?;
        params.validate()?;
        Ok(Box::new(ConfiguredFilter { params }))
    }

    fn udfs(&self) -> Vec<ScalarUDF> {
        Vec::new()
    }
}

struct ConfiguredFilter {
    params: Params,
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The select list that joins `schemas` (one per input, named `inputs`, aliased
/// `i0`, `i1`, …) into one row per base row, and the FROM clause.
fn joined(inputs: &[String], schemas: &[&Schema]) -> std::result::Result<(String, String), String> {
    let mut taken: Vec<String> = Vec::new();
    let mut items = Vec::new();
    for (k, (input, schema)) in inputs.iter().zip(schemas).enumerate() {
        if schema.field_with_name(JOIN_COLUMN).is_err() {
            return Err(format!(
                "input `{input}` has no `{JOIN_COLUMN}` column (filter joins its inputs on it)"
            ));
        }
        for field in schema.fields() {
            let name = field.name();
            if name == "audio" || name == REJECT_REASON_COLUMN {
                continue;
            }
            let source = format!("i{k}.{}", quote(name));
            if !taken.contains(name) {
                taken.push(name.clone());
                items.push(format!("{source} AS {}", quote(name)));
            } else if name != JOIN_COLUMN && !IDENTITY_COLUMNS.contains(&name.as_str()) {
                let renamed = format!("{input}_{name}");
                if taken.contains(&renamed) {
                    return Err(format!(
                        "column `{name}` of input `{input}` would be carried as `{renamed}`, which another input already has"
                    ));
                }
                items.push(format!("{source} AS {}", quote(&renamed)));
                taken.push(renamed);
            }
        }
    }
    let mut from = format!("{} AS i0", quote(&inputs[0]));
    for (k, input) in inputs.iter().enumerate().skip(1) {
        from.push_str(&format!(
            " LEFT JOIN {} AS i{k} ON i0.{join} = i{k}.{join}",
            quote(input),
            join = quote(JOIN_COLUMN)
        ));
    }
    Ok((items.join(", "), from))
}

#[async_trait::async_trait]
impl ConfiguredStage for ConfiguredFilter {
    fn stage_name(&self) -> &'static str {
        "filter"
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
        let fail = |e: String| Error::node(&cx.node, e);
        if inputs.len() != cx.inputs.len() || inputs.is_empty() {
            return Err(fail("filter needs at least one input".into()));
        }
        let schemas: Vec<&Schema> = inputs
            .iter()
            .map(|df| df.schema().inner().as_ref())
            .collect();
        let (select, from) = joined(&cx.inputs, &schemas).map_err(fail)?;

        // One CTE per derived column, so each may use the ones before it.
        let mut ctes = vec![format!("__f0 AS (SELECT {select} FROM {from})")];
        for (i, column) in self.params.columns.iter().enumerate() {
            let previous = format!("__f{i}");
            let query = format!(
                "WITH {} SELECT ({}) FROM {previous}",
                ctes.join(", "),
                column.value
            );
            cx.session.sql(&query).await.map_err(|e| {
                fail(format!(
                    "column `{}` = `{}`: {}",
                    column.name,
                    column.value,
                    speechmill_pipeline::error::one_line(&e.to_string())
                ))
            })?;
            ctes.push(format!(
                "__f{} AS (SELECT *, ({}) AS {} FROM {previous})",
                i + 1,
                column.value,
                quote(&column.name)
            ));
        }
        let last = format!("__f{}", self.params.columns.len());
        let available = cx
            .session
            .sql(&format!("WITH {} SELECT * FROM {last}", ctes.join(", ")))
            .await?;
        let available = available.schema();
        let rules: Vec<&Rule> = self
            .params
            .rules
            .iter()
            .filter(|r| {
                let missing: Vec<&String> = r
                    .needs
                    .iter()
                    .filter(|c| available.field_with_unqualified_name(c).is_err())
                    .collect();
                if !missing.is_empty() {
                    tracing::info!(node = %cx.node, rule = %r.name, ?missing, "rule left out: its columns are absent");
                }
                missing.is_empty()
            })
            .collect();
        // Each rule on its own first, so that a bad one is named.
        for rule in &rules {
            let query = format!(
                "WITH {} SELECT ({}) FROM {last}",
                ctes.join(", "),
                rule.keep
            );
            let df = cx.session.sql(&query).await.map_err(|e| {
                fail(format!(
                    "rule `{}` (keep = `{}`): {}",
                    rule.name,
                    rule.keep,
                    speechmill_pipeline::error::one_line(&e.to_string())
                ))
            })?;
            let field = df.schema().field(0);
            if field.data_type() != &datafusion::arrow::datatypes::DataType::Boolean {
                return Err(fail(format!(
                    "rule `{}` (keep = `{}`): is {}, not a predicate (true keeps the row)",
                    rule.name,
                    rule.keep,
                    field.data_type()
                )));
            }
        }
        let branches: String = rules
            .iter()
            .map(|r| {
                format!(
                    " WHEN NOT COALESCE(({}), FALSE) THEN {}",
                    r.keep,
                    literal(&r.name)
                )
            })
            .collect();
        let reason = if rules.is_empty() {
            "CAST(NULL AS VARCHAR)".to_string()
        } else {
            format!("CASE{branches} END")
        };
        let query = format!(
            "WITH {} SELECT *, {reason} AS {REJECT_REASON_COLUMN} FROM {last}",
            ctes.join(", ")
        );
        Ok(cx.session.sql(&query).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::prelude::{SessionContext, col};

    use super::*;

    fn configure(params: &str) -> std::result::Result<Box<dyn ConfiguredStage>, String> {
        FilterStage.configure(toml::from_str(params).unwrap())
    }

    #[test]
    fn bad_rules_name_the_parameter() {
        let err = configure("rules = []").err().unwrap();
        assert!(err.contains("`rules`"), "{err}");
        let err = configure("rules = [{ name = \"Bad Name\", keep = \"true\" }]")
            .err()
            .unwrap();
        assert!(err.contains("rules[0].name"), "{err}");
        let err = configure(
            "rules = [{ name = \"a\", keep = \"true\" }, { name = \"a\", keep = \"false\" }]",
        )
        .err()
        .unwrap();
        assert!(
            err.contains("rules[1].name") && err.contains("two rules"),
            "{err}"
        );
        let err = configure("rules = [{ name = \"a\", keep = \"\" }]")
            .err()
            .unwrap();
        assert!(err.contains("rules[0].keep"), "{err}");
        let err = configure("rules = [{ name = \"a\", when = \"x\" }]")
            .err()
            .unwrap();
        assert!(err.contains("unknown parameter"), "{err}");
    }

    /// A table of string columns and then float columns.
    fn table(strings: &[(&str, &[Option<&str>])], floats: &[(&str, &[f64])]) -> RecordBatch {
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (name, values) in strings {
            fields.push(Field::new(*name, DataType::Utf8, true));
            arrays.push(Arc::new(StringArray::from(values.to_vec())));
        }
        for (name, values) in floats {
            fields.push(Field::new(*name, DataType::Float64, true));
            arrays.push(Arc::new(Float64Array::from(values.to_vec())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    /// Plans a filter node over `tables` (its inputs, in order) in a session with the
    /// SQL text functions.
    async fn plan(params: &str, tables: Vec<(&str, RecordBatch)>) -> Result<DataFrame> {
        let session = SessionContext::new();
        for f in crate::text_functions::udfs() {
            session.register_udf(f);
        }
        let mut frames = Vec::new();
        let mut inputs = Vec::new();
        for (name, batch) in tables {
            session.register_batch(name, batch).unwrap();
            frames.push(session.table(name).await.unwrap());
            inputs.push(name.to_string());
        }
        let dir = tempfile::tempdir().unwrap();
        let store = speechmill_pipeline::RunStore::open(dir.path().to_str().unwrap())
            .await
            .unwrap();
        let cx = StageContext {
            session,
            store,
            node: "filter".into(),
            inputs,
        };
        configure(params).unwrap().plan(&cx, frames).await
    }

    /// One column of the plan's rows, ordered by `segment_id`, as strings.
    async fn column(df: DataFrame, name: &str) -> Vec<Option<String>> {
        let batches = df
            .sort(vec![col(JOIN_COLUMN).sort(true, false)])
            .unwrap()
            .select_columns(&[name])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            let a = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
            let a = a.as_any().downcast_ref::<StringArray>().unwrap();
            out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())));
        }
        out
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values
            .iter()
            .map(|v| (!v.is_empty()).then(|| v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn the_first_failing_rule_is_the_reason_and_later_inputs_join_under_their_name() {
        let asr = table(
            &[
                ("segment_id", &[Some("a"), Some("b"), Some("c"), Some("d")]),
                ("uri", &[Some("x.wav"); 4]),
                (
                    "text",
                    &[
                        Some("hello world"),
                        Some("hello world"),
                        Some("good day"),
                        Some("hi"),
                    ],
                ),
            ],
            &[("language_prob", &[0.99, 0.95, 0.5, 0.9])],
        );
        // The check model labelled a, b and d only, and disagrees on b.
        let check = table(
            &[
                ("segment_id", &[Some("a"), Some("b"), Some("d")]),
                ("uri", &[Some("x.wav"); 3]),
                (
                    "text",
                    &[Some("Hello, world!"), Some("yellow word"), Some("hi")],
                ),
            ],
            &[],
        );
        let params = r#"
            columns = [{ name = "check_cer", value = "cer(normalize_text(text, 'en'), normalize_text(asr_check_text, 'en'))" }]
            rules = [
              { name = "language_prob", keep = "language_prob >= 0.8" },
              { name = "asr_agreement", keep = "asr_check_text IS NULL OR check_cer <= 0.15" },
            ]"#;
        let df = plan(params, vec![("asr", asr), ("asr_check", check)])
            .await
            .unwrap();
        let schema = df.schema().inner().clone();
        // The check's text is carried under its input's name; its `uri` (the same
        // segment's) is not carried twice.
        assert!(schema.field_with_name("asr_check_text").is_ok());
        assert!(schema.field_with_name("asr_check_uri").is_err());
        assert!(schema.field_with_name("check_cer").is_ok());
        assert_eq!(
            column(df.clone(), REJECT_REASON_COLUMN).await,
            some(&["", "asr_agreement", "language_prob", ""])
        );
        assert_eq!(
            column(df, "asr_check_text").await,
            some(&["Hello, world!", "yellow word", "", "hi"])
        );
    }

    #[tokio::test]
    async fn derived_columns_may_use_window_functions_such_as_a_per_language_fence() {
        // Speech rates per language; one outlier in each.
        let ids: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let ids: Vec<Option<&str>> = ids.iter().map(|s| Some(s.as_str())).collect();
        let langs = [Some("en"); 5]
            .into_iter()
            .chain([Some("fr"); 5])
            .collect::<Vec<_>>();
        let rates = [14.0, 15.0, 15.5, 16.0, 60.0, 10.0, 11.0, 11.5, 12.0, 0.5];
        let labels = table(
            &[("segment_id", &ids), ("language", &langs)],
            &[("rate", &rates)],
        );
        let params = r#"
            columns = [
              { name = "q1", value = "percentile_cont(rate, 0.25) OVER (PARTITION BY language)" },
              { name = "q3", value = "percentile_cont(rate, 0.75) OVER (PARTITION BY language)" },
            ]
            rules = [{ name = "speech_rate", keep = "rate BETWEEN q1 - 1.5 * (q3 - q1) AND q3 + 1.5 * (q3 - q1)" }]"#;
        let df = plan(params, vec![("asr", labels)]).await.unwrap();
        assert_eq!(
            column(df, REJECT_REASON_COLUMN).await,
            some(&["", "", "", "", "speech_rate", "", "", "", "", "speech_rate"])
        );
    }

    #[tokio::test]
    async fn a_rule_whose_needed_columns_are_absent_is_left_out() {
        let labels = || {
            table(
                &[
                    ("segment_id", &[Some("a"), Some("b")]),
                    ("language", &[Some("en"), Some("de")]),
                ],
                &[],
            )
        };
        let params = r#"rules = [
            { name = "hint", keep = "language_input = language", needs = ["language_input"] },
            { name = "english", keep = "language = 'en'" },
        ]"#;
        let df = plan(params, vec![("asr", labels())]).await.unwrap();
        assert_eq!(
            column(df, REJECT_REASON_COLUMN).await,
            some(&["", "english"])
        );
        let hinted = table(
            &[
                ("segment_id", &[Some("a"), Some("b")]),
                ("language", &[Some("en"), Some("de")]),
                ("language_input", &[Some("fr"), Some("de")]),
            ],
            &[],
        );
        let df = plan(params, vec![("asr", hinted)]).await.unwrap();
        assert_eq!(
            column(df, REJECT_REASON_COLUMN).await,
            some(&["hint", "english"])
        );
    }

    #[tokio::test]
    async fn a_bad_rule_or_column_is_an_error_naming_it() {
        let labels = || table(&[("segment_id", &[Some("a")])], &[("score", &[1.0])]);
        let err = plan(
            "rules = [{ name = \"quality\", keep = \"dnsmos_ovrl >= 3\" }]",
            vec![("asr", labels())],
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("rule `quality`") && err.contains("dnsmos_ovrl"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        let err = plan(
            "rules = [{ name = \"score\", keep = \"score + 1\" }]",
            vec![("asr", labels())],
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("not a predicate"), "{err}");
        let err = plan(
            "columns = [{ name = \"x\", value = \"nope(score)\" }]\nrules = [{ name = \"a\", keep = \"true\" }]",
            vec![("asr", labels())],
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("column `x`"), "{err}");
        let no_id = table(&[("uri", &[Some("a")])], &[]);
        let err = plan(
            "rules = [{ name = \"a\", keep = \"true\" }]",
            vec![("asr", no_id)],
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("segment_id") && err.contains("`asr`"), "{err}");
    }
}
