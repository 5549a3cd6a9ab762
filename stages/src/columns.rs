//! Carrying a stage's input columns into its output. Metadata from list files rides
//! along every stage, so an input column may share a name with a column the stage
//! adds (a list file's `language` hint meets asr's detected `language`). The stage's
//! column keeps the name; the input's is carried as `<name>_input`.

use datafusion::arrow::datatypes::{Fields, Schema};

use speechmill_pipeline::stage::REJECT_REASON_COLUMN;

/// The select list of a stage whose UDF returns the struct `result` with `fields`:
/// the input's columns (less `dropped`, colliding ones renamed), then every field
/// of `result` as a column, its `reason` field as the reject-reason column.
pub fn stage_output(input: &Schema, dropped: &[&str], result: &str, fields: &Fields) -> String {
    let produced: Vec<&str> = fields
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| *name != "reason")
        .collect();
    let mut items = vec![carried(input, dropped, &produced)];
    items.extend(
        produced
            .iter()
            .map(|name| format!("{result}['{name}'] AS {}", quote(name))),
    );
    items.push(format!("{result}['reason'] AS {REJECT_REASON_COLUMN}"));
    items.join(", ")
}

/// A SQL select list (comma-separated) of `schema`'s columns, less `dropped`, with
/// each column named in `produced` renamed to `<name>_input`.
fn carried(schema: &Schema, dropped: &[&str], produced: &[&str]) -> String {
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

/// `name` as an SQL identifier (double-quoted, inner quotes doubled).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    #[test]
    fn stage_output_lists_carried_columns_then_result_fields() {
        let input = Schema::new(vec![
            Field::new("uri", DataType::Utf8, false),
            Field::new("codec", DataType::Utf8, true),
        ]);
        let fields = Fields::from(vec![
            Field::new("codec", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, true),
        ]);
        assert_eq!(
            stage_output(&input, &[], "__r", &fields),
            "\"uri\", \"codec\" AS \"codec_input\", __r['codec'] AS \"codec\", \
             __r['reason'] AS reject_reason"
        );
    }

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
