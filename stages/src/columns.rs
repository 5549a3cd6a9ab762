//! Carrying a stage's input columns into its output. Metadata from list files rides
//! along every stage, so an input column may share a name with a column the stage
//! adds (a list file's `language` hint meets asr's detected `language`). The stage's
//! column keeps the name; the input's is carried as `<name>_input`.

use datafusion::arrow::datatypes::Schema;

/// A SQL select list (comma-separated) of `schema`'s columns, less `dropped`, with
/// each column named in `produced` renamed to `<name>_input`.
pub fn carried(schema: &Schema, dropped: &[&str], produced: &[&str]) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| !dropped.contains(name))
        .map(|name| {
            let quoted = quote(name);
            if produced.contains(&name) {
                format!("{quoted} AS {}", quote(&format!("{name}_input")))
            } else {
                quoted
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    #[test]
    fn colliding_input_columns_are_renamed_and_dropped_ones_left_out() {
        let schema = Schema::new(vec![
            Field::new("uri", DataType::Utf8, false),
            Field::new("language", DataType::Utf8, true),
            Field::new("audio", DataType::Binary, true),
            Field::new("odd\"name", DataType::Utf8, true),
        ]);
        assert_eq!(
            carried(&schema, &["audio"], &["language", "text"]),
            "\"uri\", \"language\" AS \"language_input\", \"odd\"\"name\""
        );
    }
}
