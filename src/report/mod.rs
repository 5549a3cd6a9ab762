//! `speechmill report`: one self-contained HTML page about a store: where the data
//! went (the funnel, rejects by reason), what the kept set looks like, how fast each
//! node ran, samples to read and listen to from every bucket, and the DAG with its
//! parameters. It reads only what the store holds (committed nodes, their rejects,
//! the run records), so it works on any store, local or `s3://`, whatever its nodes.
//!
//! [`gather`] queries the store into a [`Report`]; [`page::render`] writes the HTML
//! with the charts of [`charts`]. Audio is embedded as FLAC data URIs, clipped and
//! within a byte budget, so the page stays small whatever the store's size.

pub mod charts;
pub mod page;

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema};
use datafusion::prelude::SessionContext;
use speechmill_pipeline::RunStore;
use speechmill_pipeline::inspect;
use speechmill_pipeline::runs::{self, NodeRecord, RunRecord};
use speechmill_pipeline::store::CommitMarker;
use speechmill_stages::columns::quote;

/// How much the page embeds.
#[derive(Clone, Debug)]
pub struct Options {
    /// Sample rows per reject reason.
    pub samples_per_reason: usize,
    /// Sample rows of the kept set.
    pub kept_samples: usize,
    /// Seconds of audio per embedded clip (its start).
    pub clip_seconds: f64,
    /// Bytes of embedded audio (base64) in all; later clips are left out.
    pub audio_budget_bytes: usize,
    /// Reject reasons sampled per node, most frequent first.
    pub reasons_per_node: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            samples_per_reason: 3,
            kept_samples: 6,
            clip_seconds: 6.0,
            audio_budget_bytes: 4 * 1024 * 1024,
            reasons_per_node: 6,
        }
    }
}

/// Everything the page shows.
pub struct Report {
    pub store: String,
    pub generated_at_unix_s: u64,
    /// Committed nodes, inputs before the nodes that read them.
    pub nodes: Vec<NodeView>,
    /// Reject reason codes (the part before `:`), in order of first appearance:
    /// their index is their colour.
    pub reasons: Vec<String>,
    pub kept: Option<KeptView>,
    pub throughput: Vec<Throughput>,
    pub samples: Vec<SampleTable>,
    pub latest_run: Option<RunRecord>,
    pub runs: usize,
}

pub struct NodeView {
    pub name: String,
    pub stage: String,
    pub fingerprint: String,
    pub inputs: Vec<String>,
    pub rows: u64,
    pub rejects: u64,
    pub audio_seconds: Option<f64>,
    /// (reason code, count), most frequent first.
    pub rejects_by_reason: Vec<(String, u64)>,
    pub params: serde_json::Value,
}

/// The kept set: the last `filter` node, else the last node with segments.
pub struct KeptView {
    pub node: String,
    pub rows: u64,
    pub audio_seconds: Option<f64>,
    pub distributions: Vec<Distribution>,
    /// (language, segments, mean language probability).
    pub languages: Vec<(String, u64, Option<f64>)>,
}

pub struct Distribution {
    pub title: &'static str,
    /// Where the values come from (`filter.dnsmos_ovrl`).
    pub source: String,
    pub values: Vec<f64>,
}

pub struct Throughput {
    pub node: String,
    pub stage: String,
    pub wall_s: f64,
    pub audio_seconds_per_second: Option<f64>,
    pub rows_in: u64,
    pub executors: usize,
    /// The run this was measured in.
    pub run_id: Option<String>,
}

pub struct SampleTable {
    pub title: String,
    pub node: String,
    /// The reason code, for a reject bucket.
    pub reason: Option<String>,
    /// Rows in the bucket.
    pub count: u64,
    pub columns: Vec<String>,
    pub rows: Vec<SampleRow>,
}

pub struct SampleRow {
    pub cells: Vec<String>,
    pub audio: Audio,
}

pub enum Audio {
    /// The row has no audio in this store (a source-level reject, no segment node).
    None,
    /// `data:audio/flac;base64,…` of the clip, and its length in seconds.
    Clip { data_uri: String, seconds: f64 },
    /// Left out: the page's audio budget was spent.
    OverBudget,
}

/// Columns a sample row shows, where its table has them, in this order.
const SAMPLE_COLUMNS: &[&str] = &[
    "reason",
    "uri",
    "segment_id",
    "start_s",
    "end_s",
    "duration_s",
    "language",
    "language_prob",
    "text",
    "asr_check_text",
    "check_cer",
    "speech_rate",
    "dnsmos_ovrl",
    "snr_db",
    "avg_logprob",
    "no_speech_prob",
    "align_score",
    "codec",
    "sample_rate",
];

/// Distributions of the kept set: title and the columns that hold it, first found.
const METRICS: &[(&str, &[&str])] = &[
    ("Duration (s)", &["duration_s"]),
    ("Speech rate (characters/s)", &["speech_rate"]),
    ("Language ID probability", &["language_prob"]),
    ("DNSMOS OVRL", &["dnsmos_ovrl"]),
    ("SNR (dB)", &["snr_db"]),
    ("Loudness (LUFS)", &["loudness_lufs"]),
    ("Two-model CER", &["check_cer", "cer"]),
    (
        "Alignment score (log-prob per phoneme below the best label)",
        &["align_score"],
    ),
];

/// Reads the store into a [`Report`].
pub async fn gather(
    session: &SessionContext,
    store: &RunStore,
    options: &Options,
) -> anyhow::Result<Report> {
    // Registers every node's tables, then counts their rejects by reason.
    let summaries = inspect::inspect(session, store).await?;
    let markers = store.current_nodes().await?;
    if markers.is_empty() {
        anyhow::bail!(
            "{}: no committed node in this store; run a DAG first (speechmill run DAG --store {})",
            store.url(),
            store.url()
        );
    }
    let all_runs = runs::list(store).await?;
    let markers = in_dependency_order(markers);
    let mut schemas: HashMap<String, Schema> = HashMap::new();
    for m in &markers {
        for table in [m.node.clone(), format!("{}_rejects", m.node)] {
            if let Ok(t) = session.table(table.as_str()).await {
                schemas.insert(table, t.schema().as_arrow().clone());
            }
        }
    }

    let mut reasons: Vec<String> = Vec::new();
    let nodes: Vec<NodeView> = markers
        .iter()
        .map(|m| {
            let mut by_code: Vec<(String, u64)> = Vec::new();
            let summary = summaries.iter().find(|s| s.node == m.node);
            for (reason, n) in summary
                .map(|s| s.rejects_by_reason.as_slice())
                .unwrap_or(&[])
            {
                let code = reason_code(reason).to_string();
                match by_code.iter_mut().find(|(c, _)| *c == code) {
                    Some(entry) => entry.1 += *n as u64,
                    None => by_code.push((code, *n as u64)),
                }
            }
            by_code.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (code, _) in &by_code {
                if !reasons.contains(code) {
                    reasons.push(code.clone());
                }
            }
            NodeView {
                name: m.node.clone(),
                stage: m.stage.clone(),
                fingerprint: m.fingerprint.clone(),
                inputs: input_names(m),
                rows: m.rows,
                rejects: m.rejects,
                audio_seconds: m.audio_seconds,
                rejects_by_reason: by_code,
                params: m
                    .fingerprint_material
                    .get("params")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
            }
        })
        .collect();

    let has = |table: &str, column: &str| {
        schemas
            .get(table)
            .is_some_and(|s| s.field_with_name(column).is_ok())
    };
    let kept_node = nodes
        .iter()
        .rev()
        .find(|n| n.stage == "filter")
        .or_else(|| nodes.iter().rev().find(|n| has(&n.name, "segment_id")))
        .or_else(|| nodes.iter().rev().find(|n| has(&n.name, "duration_s")))
        .or(nodes.last());
    let kept = match kept_node {
        Some(node) => Some(kept_view(session, node, &nodes, &has).await?),
        None => None,
    };

    let throughput = throughput(&markers, &all_runs);

    // Audio lives in the segment table (or any table with segment ids and audio).
    let audio_table = nodes
        .iter()
        .find(|n| n.stage == "segment" && has(&n.name, "audio"))
        .or_else(|| {
            nodes
                .iter()
                .find(|n| has(&n.name, "audio") && has(&n.name, "segment_id"))
        })
        .map(|n| n.name.clone());
    let mut budget = options.audio_budget_bytes;
    let mut samples = Vec::new();
    if let Some(node) = kept_node {
        let table = node.name.clone();
        if let Some(schema) = schemas.get(&table) {
            samples.push(
                sample_table(
                    session,
                    SampleQuery {
                        title: format!("Kept set ({table})"),
                        node: &table,
                        table: &table,
                        schema,
                        reason: None,
                        count: node.rows,
                        limit: options.kept_samples,
                    },
                    audio_table.as_deref(),
                    options,
                    &mut budget,
                )
                .await?,
            );
        }
    }
    for node in &nodes {
        let table = format!("{}_rejects", node.name);
        let Some(schema) = schemas.get(&table) else {
            continue;
        };
        for (code, count) in node.rejects_by_reason.iter().take(options.reasons_per_node) {
            samples.push(
                sample_table(
                    session,
                    SampleQuery {
                        title: format!("{} rejects: {code}", node.name),
                        node: &node.name,
                        table: &table,
                        schema,
                        reason: Some(code),
                        count: *count,
                        limit: options.samples_per_reason,
                    },
                    audio_table.as_deref(),
                    options,
                    &mut budget,
                )
                .await?,
            );
        }
    }

    Ok(Report {
        store: store.url().to_string(),
        generated_at_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        nodes,
        reasons,
        kept,
        throughput,
        samples,
        latest_run: all_runs.last().cloned(),
        runs: all_runs.len(),
    })
}

/// The reason code of a reject: the text before the first `:`.
pub fn reason_code(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason).trim()
}

fn input_names(marker: &CommitMarker) -> Vec<String> {
    marker
        .fingerprint_material
        .get("inputs")
        .and_then(|i| i.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Markers with every node after the inputs it read (commit order breaks ties).
fn in_dependency_order(mut markers: Vec<CommitMarker>) -> Vec<CommitMarker> {
    markers.sort_by(|a, b| {
        a.committed_at_unix_s
            .cmp(&b.committed_at_unix_s)
            .then(a.node.cmp(&b.node))
    });
    let names: Vec<String> = markers.iter().map(|m| m.node.clone()).collect();
    let mut placed: Vec<CommitMarker> = Vec::with_capacity(markers.len());
    let mut pending = markers;
    while !pending.is_empty() {
        let ready = pending.iter().position(|m| {
            input_names(m)
                .iter()
                .all(|i| !names.contains(i) || placed.iter().any(|p| &p.node == i))
        });
        // A cycle cannot be committed; should one appear, keep commit order.
        let next = ready.unwrap_or(0);
        placed.push(pending.remove(next));
    }
    placed
}

async fn kept_view(
    session: &SessionContext,
    node: &NodeView,
    nodes: &[NodeView],
    has: &impl Fn(&str, &str) -> bool,
) -> anyhow::Result<KeptView> {
    let kept = node.name.as_str();
    let mut distributions = Vec::new();
    for (title, columns) in METRICS {
        let mut query = None;
        for column in *columns {
            if has(kept, column) {
                query = Some((
                    format!("{kept}.{column}"),
                    format!(
                        "SELECT CAST({} AS DOUBLE) FROM {} WHERE {} IS NOT NULL",
                        quote(column),
                        quote(kept),
                        quote(column)
                    ),
                ));
                break;
            }
            // Elsewhere, restricted to the kept segments.
            if has(kept, "segment_id")
                && let Some(other) = nodes
                    .iter()
                    .find(|n| has(&n.name, column) && has(&n.name, "segment_id"))
            {
                query = Some((
                    format!("{}.{column}", other.name),
                    format!(
                        "SELECT CAST(o.{c} AS DOUBLE) FROM {t} o WHERE o.{c} IS NOT NULL \
                         AND o.segment_id IN (SELECT segment_id FROM {k})",
                        c = quote(column),
                        t = quote(&other.name),
                        k = quote(kept)
                    ),
                ));
                break;
            }
        }
        if query.is_none()
            && *title == "Speech rate (characters/s)"
            && has(kept, "text")
            && has(kept, "duration_s")
        {
            query = Some((
                format!("chars_per_sec({kept}.text, {kept}.duration_s)"),
                format!(
                    "SELECT chars_per_sec(text, duration_s) FROM {} WHERE text IS NOT NULL",
                    quote(kept)
                ),
            ));
        }
        let Some((source, sql)) = query else { continue };
        let values = floats(session, &sql).await?;
        if !values.is_empty() {
            distributions.push(Distribution {
                title,
                source,
                values,
            });
        }
    }
    let mut languages = Vec::new();
    if has(kept, "language") {
        let prob = if has(kept, "language_prob") {
            "avg(language_prob)"
        } else {
            "CAST(NULL AS DOUBLE)"
        };
        let sql = format!(
            "SELECT coalesce(CAST(language AS VARCHAR), 'unknown'), count(*), {prob} FROM {} \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 30",
            quote(kept)
        );
        for batch in session.sql(&sql).await?.collect().await? {
            let names = strings(batch.column(0))?;
            let counts = cast(batch.column(1), &DataType::UInt64)?;
            let counts = counts.as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
            let probs = cast(batch.column(2), &DataType::Float64)?;
            let probs = probs.as_primitive::<Float64Type>();
            for (i, name) in names.into_iter().enumerate() {
                languages.push((
                    name.unwrap_or_default(),
                    counts.value(i),
                    (!probs.is_null(i)).then(|| probs.value(i)),
                ));
            }
        }
    }
    Ok(KeptView {
        node: kept.to_string(),
        rows: node.rows,
        audio_seconds: node.audio_seconds,
        distributions,
        languages,
    })
}

/// Each node's latest computed record with the fingerprint it has now; without one
/// (a store written before run records, or by another DAG), its commit marker.
fn throughput(markers: &[CommitMarker], all_runs: &[RunRecord]) -> Vec<Throughput> {
    let by_node: HashMap<&str, &CommitMarker> =
        markers.iter().map(|m| (m.node.as_str(), m)).collect();
    markers
        .iter()
        .map(|m| {
            let record: Option<(&RunRecord, &NodeRecord)> = all_runs.iter().rev().find_map(|run| {
                run.nodes
                    .iter()
                    .find(|n| n.node == m.node && !n.cached && n.fingerprint == m.fingerprint)
                    .map(|n| (run, n))
            });
            match record {
                Some((run, n)) => Throughput {
                    node: n.node.clone(),
                    stage: n.stage.clone(),
                    wall_s: n.wall_s,
                    audio_seconds_per_second: n.audio_seconds_per_second(),
                    rows_in: n.rows_in,
                    executors: n.executors,
                    run_id: Some(run.run_id.clone()),
                },
                None => {
                    let inputs: Vec<&CommitMarker> = input_names(m)
                        .iter()
                        .filter_map(|i| by_node.get(i.as_str()).copied())
                        .collect();
                    let n = NodeRecord::new(m, &inputs, false, m.elapsed_s, 0);
                    Throughput {
                        node: n.node.clone(),
                        stage: n.stage.clone(),
                        wall_s: n.wall_s,
                        audio_seconds_per_second: n.audio_seconds_per_second(),
                        rows_in: n.rows_in,
                        executors: 0,
                        run_id: None,
                    }
                }
            }
        })
        .collect()
}

struct SampleQuery<'a> {
    title: String,
    node: &'a str,
    table: &'a str,
    schema: &'a Schema,
    reason: Option<&'a str>,
    count: u64,
    limit: usize,
}

async fn sample_table(
    session: &SessionContext,
    q: SampleQuery<'_>,
    audio_table: Option<&str>,
    options: &Options,
    budget: &mut usize,
) -> anyhow::Result<SampleTable> {
    let columns: Vec<&str> = SAMPLE_COLUMNS
        .iter()
        .copied()
        .filter(|c| q.schema.field_with_name(c).is_ok())
        .collect();
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            let field = q.schema.field_with_name(c).ok();
            match field.map(|f| f.data_type()) {
                Some(DataType::Float32 | DataType::Float64) => {
                    format!("CAST(round({q}, 3) AS VARCHAR) AS {q}", q = quote(c))
                }
                _ => format!("CAST({q} AS VARCHAR) AS {q}", q = quote(c)),
            }
        })
        .collect();
    let key = ["segment_id", "uri", "source_id"]
        .into_iter()
        .find(|c| q.schema.field_with_name(c).is_ok());
    let has_segment = q.schema.field_with_name("segment_id").is_ok();
    let mut sql = format!(
        "SELECT {}{} FROM {}",
        if has_segment {
            "CAST(segment_id AS VARCHAR) AS __sample_segment, "
        } else {
            "CAST(NULL AS VARCHAR) AS __sample_segment, "
        },
        if select.is_empty() {
            "CAST(NULL AS VARCHAR) AS __no_columns".to_string()
        } else {
            select.join(", ")
        },
        quote(q.table)
    );
    if let Some(code) = q.reason {
        sql.push_str(&format!(
            " WHERE trim(split_part(reason, ':', 1)) = '{}'",
            code.replace('\'', "''")
        ));
    }
    // A spread over the table rather than its first rows, the same on every render.
    if let Some(key) = key {
        sql.push_str(&format!(" ORDER BY md5(CAST({} AS VARCHAR))", quote(key)));
    }
    sql.push_str(&format!(" LIMIT {}", q.limit));
    let mut found: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for batch in session.sql(&sql).await?.collect().await? {
        let segment_ids = strings(batch.column(0))?;
        let cells: Vec<Vec<Option<String>>> = (1..batch.num_columns())
            .map(|i| strings(batch.column(i)))
            .collect::<anyhow::Result<_>>()?;
        for (row, segment_id) in segment_ids.into_iter().enumerate() {
            found.push((
                segment_id,
                cells
                    .iter()
                    .map(|c| c[row].clone().map(|v| shorten(&v, 400)).unwrap_or_default())
                    .collect(),
            ));
        }
    }
    let ids: Vec<&str> = found.iter().filter_map(|(id, _)| id.as_deref()).collect();
    let clips = match audio_table {
        Some(table) if !ids.is_empty() => {
            audio_clips(session, table, &ids, options.clip_seconds).await?
        }
        _ => BTreeMap::new(),
    };
    let rows = found
        .into_iter()
        .map(|(id, cells)| {
            let audio = match id.as_deref().and_then(|id| clips.get(id)) {
                None => Audio::None,
                Some((uri, seconds)) if uri.len() <= *budget => {
                    *budget -= uri.len();
                    Audio::Clip {
                        data_uri: uri.clone(),
                        seconds: *seconds,
                    }
                }
                Some(_) => Audio::OverBudget,
            };
            SampleRow { cells, audio }
        })
        .collect();
    Ok(SampleTable {
        title: q.title,
        node: q.node.to_string(),
        reason: q.reason.map(str::to_string),
        count: q.count,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    })
}

/// FLAC data URIs of the first `clip_seconds` of each segment's audio (16 kHz mono
/// PCM16, as `segment` stores it), by segment id.
async fn audio_clips(
    session: &SessionContext,
    table: &str,
    ids: &[&str],
    clip_seconds: f64,
) -> anyhow::Result<BTreeMap<String, (String, f64)>> {
    let list: Vec<String> = ids
        .iter()
        .map(|id| format!("'{}'", id.replace('\'', "''")))
        .collect();
    let sql = format!(
        "SELECT CAST(segment_id AS VARCHAR), audio FROM {} WHERE segment_id IN ({})",
        quote(table),
        list.join(", ")
    );
    let rate = speechmill_stages::shard::SAMPLE_RATE as f64;
    let max_bytes = ((clip_seconds.max(0.1) * rate) as usize) * 2;
    let mut clips = BTreeMap::new();
    for batch in session.sql(&sql).await?.collect().await? {
        let segment_ids = strings(batch.column(0))?;
        let audio = cast(batch.column(1), &DataType::LargeBinary)?;
        let audio = audio.as_binary::<i64>();
        for (i, id) in segment_ids.into_iter().enumerate() {
            let (Some(id), false) = (id, audio.is_null(i)) else {
                continue;
            };
            let pcm = audio.value(i);
            let pcm = &pcm[..pcm.len().min(max_bytes) & !1];
            if pcm.is_empty() {
                continue;
            }
            let flac = speechmill_stages::shard::flac(pcm).map_err(anyhow::Error::msg)?;
            let uri = format!(
                "data:audio/flac;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(flac)
            );
            clips.insert(id, (uri, pcm.len() as f64 / 2.0 / rate));
        }
    }
    Ok(clips)
}

async fn floats(session: &SessionContext, sql: &str) -> anyhow::Result<Vec<f64>> {
    let mut values = Vec::new();
    for batch in session.sql(sql).await?.collect().await? {
        let column = cast(batch.column(0), &DataType::Float64)?;
        values.extend(column.as_primitive::<Float64Type>().iter().flatten());
    }
    Ok(values)
}

fn strings(array: &dyn Array) -> anyhow::Result<Vec<Option<String>>> {
    let utf8 = cast(array, &DataType::Utf8)?;
    Ok(utf8
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(node: &str, inputs: &[&str], at: u64) -> CommitMarker {
        let inputs: serde_json::Map<String, serde_json::Value> = inputs
            .iter()
            .map(|i| (i.to_string(), serde_json::json!("fp")))
            .collect();
        CommitMarker {
            node: node.into(),
            stage: "s".into(),
            fingerprint: "fp".into(),
            fingerprint_material: serde_json::json!({ "inputs": inputs }),
            rows: 1,
            rejects: 0,
            audio_seconds: None,
            data_files: vec![],
            reject_files: vec![],
            committed_at_unix_s: at,
            elapsed_s: 1.0,
        }
    }

    #[test]
    fn nodes_come_after_their_inputs_whatever_their_commit_times() {
        // `asr` was committed before `segment` by an earlier DAG: inputs still lead.
        let order = in_dependency_order(vec![
            marker("asr", &["segment"], 1),
            marker("filter", &["asr", "quality"], 5),
            marker("segment", &["ingest"], 3),
            marker("ingest", &[], 2),
            marker("report", &["gone"], 0),
        ]);
        let names: Vec<&str> = order.iter().map(|m| m.node.as_str()).collect();
        assert_eq!(names, ["report", "ingest", "segment", "asr", "filter"]);
    }

    #[test]
    fn reason_codes_are_the_text_before_the_first_colon() {
        assert_eq!(reason_code("unsupported: codec opus in mp4"), "unsupported");
        assert_eq!(reason_code("dnsmos"), "dnsmos");
        assert_eq!(shorten("héllo wörld", 5), "héllo…");
        assert_eq!(shorten("short", 10), "short");
    }
}
