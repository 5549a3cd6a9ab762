//! SQL functions over text for `sql` nodes, filter rules and `speechmill sql`
//! (registered in every session, executors included). Each wraps one function of
//! `speechmill-text`, which documents the semantics:
//!
//! | function | returns |
//! |---|---|
//! | `normalize_text(text [, lang])` | NFKC, lowercase, numbers spelt out (en, fr, uk), punctuation and symbols to spaces, whitespace collapsed |
//! | `wer(ref, hyp [, lang])` | word error rate of the normalized texts (NULL when the reference is empty and the hypothesis not) |
//! | `cer(ref, hyp [, lang])` | character error rate of the normalized texts |
//! | `text_lang(text)` | ISO 639-1 code whatlang detects (NULL when it detects none) |
//! | `text_lang_prob(text)` | whatlang's confidence in that code, 0–1 |
//! | `chars_per_sec(text, duration_s)` | characters of the normalized text, spaces excluded, per second |
//!
//! A NULL argument gives NULL. They are immutable, so DataFusion may fold them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::udf::{string_array, string_values};

/// What a function computes from its arguments (each cast to text; NULL as None).
#[derive(Clone, Copy)]
enum Eval {
    Text(fn(&[&str]) -> Option<String>),
    Number(fn(&[&str]) -> Option<f64>),
}

struct TextFunction {
    name: &'static str,
    signature: Signature,
    eval: Eval,
}

impl std::fmt::Debug for TextFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

// Functions are told apart by name: one per name in a session.
impl PartialEq for TextFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for TextFunction {}
impl std::hash::Hash for TextFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for TextFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.eval {
            Eval::Text(_) => DataType::Utf8,
            Eval::Number(_) => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .map(|a| string_values(a, rows))
            .collect::<DfResult<Vec<_>>>()?;
        let row_args =
            |i: usize| -> Option<Vec<&str>> { columns.iter().map(|c| c[i].as_deref()).collect() };
        let out: ArrayRef = match self.eval {
            Eval::Text(f) => string_array((0..rows).map(|i| row_args(i).and_then(|a| f(&a)))),
            Eval::Number(f) => Arc::new(Float64Array::from_iter(
                (0..rows).map(|i| row_args(i).and_then(|a| f(&a))),
            )),
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// A text argument count (`arities`), each argument any string type.
fn strings(arities: &[usize]) -> Signature {
    let kinds = arities
        .iter()
        .flat_map(|&n| {
            [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View]
                .into_iter()
                .map(move |t| TypeSignature::Exact(vec![t; n]))
        })
        .collect();
    Signature::one_of(kinds, Volatility::Immutable)
}

fn function(name: &'static str, signature: Signature, eval: Eval) -> ScalarUDF {
    ScalarUDF::new_from_impl(TextFunction {
        name,
        signature,
        eval,
    })
}

/// The optional language argument: empty means none.
fn lang<'a>(args: &[&'a str], at: usize) -> Option<&'a str> {
    args.get(at).copied().filter(|l| !l.trim().is_empty())
}

/// Every text function, for [`crate::builtin_registry`].
pub fn udfs() -> Vec<ScalarUDF> {
    use speechmill_text as text;
    vec![
        function(
            "normalize_text",
            strings(&[1, 2]),
            Eval::Text(|a| Some(text::normalize_text(a[0], lang(a, 1)))),
        ),
        function(
            "wer",
            strings(&[2, 3]),
            Eval::Number(|a| text::wer_normalized(a[0], a[1], lang(a, 2))),
        ),
        function(
            "cer",
            strings(&[2, 3]),
            Eval::Number(|a| text::cer_normalized(a[0], a[1], lang(a, 2))),
        ),
        function(
            "text_lang",
            strings(&[1]),
            Eval::Text(|a| text::text_lang(a[0]).map(|(code, _)| code)),
        ),
        function(
            "text_lang_prob",
            strings(&[1]),
            Eval::Number(|a| text::text_lang(a[0]).map(|(_, p)| p)),
        ),
        function(
            "chars_per_sec",
            Signature::any(2, Volatility::Immutable),
            Eval::Number(|a| text::chars_per_sec(a[0], a[1].parse().ok()?)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn query(sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        for f in udfs() {
            ctx.register_udf(f);
        }
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        text.lines().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn text_functions_answer_in_sql_over_columns_and_literals() {
        let out = query(
            "SELECT normalize_text('Hello,  WORLD! I have 3 cats', 'en') AS n,
                    wer('the cat sat', 'The cat sat.') AS w0,
                    wer('the cat sat on the mat', 'the cat sat on a mat') AS w1,
                    cer('abcd', 'abed') AS c,
                    text_lang('Der schnelle braune Fuchs springt über den faulen Hund') AS l,
                    text_lang_prob('Der schnelle braune Fuchs springt über den faulen Hund') > 0.5 AS p,
                    chars_per_sec('ab cd', 2.0) AS r,
                    wer(NULL, 'x') IS NULL AS null_in",
        )
        .await
        .join("\n");
        for want in [
            "hello world i have three cats",
            "| 0.0 ",
            "0.16666666666666666",
            "0.25",
            "| de ",
            "true",
            "| 2.0 ",
        ] {
            assert!(out.contains(want), "{want} missing from\n{out}");
        }
    }

    #[tokio::test]
    async fn text_functions_filter_rows_of_a_table() {
        let out = query(
            "SELECT id FROM (VALUES (1, 'good morning', 'good morning'),
                                    (2, 'good morning', 'bad evening')) AS t(id, a, b)
             WHERE cer(a, b) <= 0.15",
        )
        .await
        .join("\n");
        assert!(out.contains("| 1 "), "{out}");
        assert!(!out.contains("| 2 "), "{out}");
    }
}
