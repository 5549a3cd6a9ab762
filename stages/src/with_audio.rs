//! Stages that read labels but need the segments' audio (`align`, `resegment`) take
//! either one input that has both, or the labels and then the `segment` node, joined
//! here on `segment_id`: the audio column rides into label tables only for the one
//! node that needs it, never through them.

use datafusion::dataframe::DataFrame;
use speechmill_pipeline::stage::StageContext;
use speechmill_pipeline::{Error, Result};

use crate::columns::quote;

/// The first input's rows with an `audio` column: its own, or the second input's
/// (LEFT-joined on `segment_id`, so a label without audio stays, to be rejected).
/// `stage` names the stage in errors.
pub async fn labels_with_audio(
    cx: &StageContext,
    stage: &str,
    inputs: Vec<DataFrame>,
) -> Result<DataFrame> {
    let has = |df: &DataFrame, c: &str| df.schema().inner().field_with_name(c).is_ok();
    let mut inputs = inputs.into_iter();
    let (Some(labels), second, None) = (inputs.next(), inputs.next(), inputs.next()) else {
        return Err(Error::node(
            &cx.node,
            format!("{stage} takes one or two inputs: the labels, then the segments' audio"),
        ));
    };
    let Some(audio) = second else {
        if has(&labels, "audio") {
            return Ok(labels);
        }
        return Err(Error::node(
            &cx.node,
            format!("{stage}: no `audio` column; give the `segment` node as the second input"),
        ));
    };
    if !has(&audio, "audio") || !has(&audio, "segment_id") || !has(&labels, "segment_id") {
        return Err(Error::node(
            &cx.node,
            format!(
                "{stage}: the second input must have `segment_id` and `audio` (the `segment` \
                 node), the first `segment_id`"
            ),
        ));
    }
    let (labels_table, audio_table) = (format!("__{stage}_labels"), format!("__{stage}_audio"));
    let keep: Vec<String> = labels
        .schema()
        .inner()
        .fields()
        .iter()
        .filter(|f| f.name() != "audio")
        .map(|f| format!("l.{}", quote(f.name())))
        .collect();
    cx.session
        .register_table(labels_table.as_str(), labels.into_view())?;
    cx.session
        .register_table(audio_table.as_str(), audio.into_view())?;
    Ok(cx
        .session
        .sql(&format!(
            "SELECT {}, a.audio AS audio FROM {labels_table} l \
             LEFT JOIN (SELECT segment_id, audio FROM {audio_table}) a \
             ON l.segment_id = a.segment_id",
            keep.join(", ")
        ))
        .await?)
}
