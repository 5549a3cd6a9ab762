//! The report as one HTML page: styles inline, charts inline SVG, audio as data
//! URIs; nothing to load. Text from the store is escaped, and `://` in it is written
//! as `&#58;//`, so a source URI shows as written but never reads as a link.

use std::fmt::Write;

use super::charts::{self, DagNode, FunnelRow};
use super::{Audio, Report};
use speechmill_pipeline::progress::format_hours;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 16px 24px; color: #1d2330; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #d8dce6; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d8dce6; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f5f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; }
.grid figure { flex: 0 0 auto; }
.grid figure.hist { max-width: 380px; }
figcaption { font-size: 13px; color: #333; margin-bottom: 2px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px; }
.samples td { overflow-wrap: anywhere; }
.samples td.what { width: 240px; }
.samples td.text { min-width: 280px; max-width: 480px; }
.samples td.scores { width: 210px; font-size: 12px; white-space: nowrap; }
.samples .id { color: #666; font-size: 11px; }
pre { background: #f6f7fa; padding: 6px 8px; font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 760px; margin: 4px 0; }
.dagbox { overflow-x: auto; }
audio { height: 30px; width: 220px; }
.note { color: #666; font-size: 12px; }
"#;

/// The page.
pub fn render(report: &Report) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>speechmill report: {}</title><style>{STYLE}</style></head><body>",
        escape(&report.store)
    );
    let _ = write!(
        html,
        "<h1>speechmill report</h1><p class=\"meta\">store <b>{}</b> · {} committed nodes · \
         generated {}</p>",
        escape(&report.store),
        report.nodes.len(),
        escape(&crate::cli::format_unix(report.generated_at_unix_s))
    );
    if let Some(run) = &report.latest_run {
        let _ = write!(
            html,
            "<p class=\"meta\">latest run <b>{}</b> of {} ({}): {}, started {}{}</p>",
            escape(&run.run_id),
            escape(&run.dag),
            escape(&run.mode),
            escape(&run.status),
            escape(&crate::cli::format_unix(run.started_at_unix_s)),
            run.finished_at_unix_s
                .map(|end| format!(", took {} s", end.saturating_sub(run.started_at_unix_s)))
                .unwrap_or_default()
        );
    }
    funnel(&mut html, report);
    kept(&mut html, report);
    throughput(&mut html, report);
    samples(&mut html, report);
    dag(&mut html, report);
    html.push_str("</body></html>\n");
    html
}

fn funnel(html: &mut String, report: &Report) {
    html.push_str("<section id=\"funnel\"><h2>Where the data went</h2>");
    let rows: Vec<FunnelRow> = report
        .nodes
        .iter()
        .map(|n| FunnelRow {
            label: &n.name,
            detail: format!(
                "{} kept{} · {} rejected",
                n.rows,
                n.audio_seconds
                    .map(|s| format!(" ({})", format_hours(s)))
                    .unwrap_or_default(),
                n.rejects
            ),
            kept: n.rows,
            rejects: n
                .rejects_by_reason
                .iter()
                .map(|(code, count)| (reason_index(report, code), *count))
                .collect(),
        })
        .collect();
    let _ = write!(
        html,
        "<figure class=\"chart\" data-chart=\"funnel\"><figcaption>Rows kept (green) and \
         rejected by reason, per node</figcaption>{}</figure>",
        charts::funnel(&rows)
    );
    html.push_str("<div class=\"legend\"><span><i style=\"background:#2b8a3e\"></i>kept</span>");
    for (i, reason) in report.reasons.iter().enumerate() {
        let _ = write!(
            html,
            "<span><i style=\"background:{}\"></i>{}</span>",
            charts::reason_colour(i),
            escape(reason)
        );
    }
    html.push_str("</div>");
    html.push_str(
        "<table class=\"funnel\"><tr><th>node</th><th>stage</th><th>rows kept</th>\
         <th>audio kept</th><th>rejected</th><th>rejects by reason</th></tr>",
    );
    for n in &report.nodes {
        let reasons: Vec<String> = n
            .rejects_by_reason
            .iter()
            .map(|(code, count)| format!("{count}× {}", escape(code)))
            .collect();
        let _ = write!(
            html,
            "<tr data-node=\"{name}\" data-rows=\"{rows}\" data-rejects=\"{rejects}\">\
             <td>{name}</td><td>{stage}</td><td class=\"num\">{rows}</td><td class=\"num\">{hours}</td>\
             <td class=\"num\">{rejects}</td><td>{reasons}</td></tr>",
            name = escape(&n.name),
            stage = escape(&n.stage),
            rows = n.rows,
            rejects = n.rejects,
            hours = n
                .audio_seconds
                .map(format_hours)
                .unwrap_or_else(|| "-".into()),
            reasons = if reasons.is_empty() {
                "-".to_string()
            } else {
                reasons.join(", ")
            }
        );
    }
    html.push_str("</table></section>");
}

fn reason_index(report: &Report, code: &str) -> usize {
    report.reasons.iter().position(|r| r == code).unwrap_or(0)
}

fn kept(html: &mut String, report: &Report) {
    let Some(kept) = &report.kept else { return };
    let _ = write!(
        html,
        "<section id=\"kept\"><h2>The kept set: {} ({} rows{})</h2><div class=\"grid\">",
        escape(&kept.node),
        kept.rows,
        kept.audio_seconds
            .map(|s| format!(", {}", format_hours(s)))
            .unwrap_or_default()
    );
    if !kept.languages.is_empty() {
        let items: Vec<(String, f64, String)> = kept
            .languages
            .iter()
            .map(|(language, n, prob)| {
                (
                    language.clone(),
                    *n as f64,
                    match prob {
                        Some(p) => format!("{n} · mean LID prob {p:.2}"),
                        None => n.to_string(),
                    },
                )
            })
            .collect();
        let _ = write!(
            html,
            "<figure class=\"chart\" data-chart=\"language\"><figcaption>Language \
             (segments, mean language-ID probability)</figcaption>{}</figure>",
            charts::bars(&items, false, "Segments per language")
        );
    }
    for d in &kept.distributions {
        let mut sorted = d.values.clone();
        sorted.sort_by(f64::total_cmp);
        let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        let _ = write!(
            html,
            "<figure class=\"chart hist\" data-chart=\"{source}\"><figcaption><b>{title}</b> · n {n} · \
             median {median} · p10 {p10} · p90 {p90} · mean {mean} <span class=\"note\">({source})\
             </span></figcaption>{svg}</figure>",
            source = escape(&d.source),
            title = escape(d.title),
            n = sorted.len(),
            median = charts::number(q(0.5)),
            p10 = charts::number(q(0.1)),
            p90 = charts::number(q(0.9)),
            mean = charts::number(mean),
            svg = charts::histogram(&sorted, 24, d.title)
        );
    }
    html.push_str("</div></section>");
}

fn throughput(html: &mut String, report: &Report) {
    html.push_str("<section id=\"throughput\"><h2>Where the time went</h2>");
    let items: Vec<(String, f64, String)> = report
        .throughput
        .iter()
        .filter_map(|t| {
            let rate = t.audio_seconds_per_second?;
            Some((
                t.node.clone(),
                rate,
                format!("{} audio-s/s · {:.1} s", charts::number(rate), t.wall_s),
            ))
        })
        .collect();
    if !items.is_empty() {
        let _ = write!(
            html,
            "<figure class=\"chart\" data-chart=\"throughput\"><figcaption>Audio seconds \
             processed per second of wall time (log scale)</figcaption>{}</figure>",
            charts::bars(&items, true, "Throughput per node")
        );
    }
    html.push_str(
        "<table><tr><th>node</th><th>stage</th><th>wall time</th><th>rows in</th>\
         <th>audio-s/s</th><th>executors</th><th>measured in run</th></tr>",
    );
    for t in &report.throughput {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.1} s</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&t.node),
            escape(&t.stage),
            t.wall_s,
            t.rows_in,
            t.audio_seconds_per_second
                .map(charts::number)
                .unwrap_or_else(|| "-".into()),
            if t.executors == 0 {
                "-".to_string()
            } else {
                t.executors.to_string()
            },
            t.run_id
                .as_deref()
                .map(escape)
                .unwrap_or_else(|| "commit marker".into())
        );
    }
    let _ = write!(
        html,
        "</table><p class=\"note\">{} run record(s) in the store.</p></section>",
        report.runs
    );
}

/// Columns that say which sample a row is, shown with its player.
const IDENTITY: &[&str] = &[
    "uri",
    "segment_id",
    "start_s",
    "end_s",
    "duration_s",
    "language",
    "codec",
    "sample_rate",
];
/// Columns of text, shown in full.
const TEXT: &[&str] = &["text", "asr_check_text"];

fn samples(html: &mut String, report: &Report) {
    html.push_str("<section id=\"samples\"><h2>Samples: read and listen</h2>");
    for table in &report.samples {
        let _ = write!(
            html,
            "<h3>{} <span class=\"note\">({} of {} rows)</span></h3>\
             <table class=\"samples\" data-node=\"{}\" data-reason=\"{}\"><tr><th>sample</th>",
            escape(&table.title),
            table.rows.len(),
            table.count,
            escape(&table.node),
            escape(table.reason.as_deref().unwrap_or(""))
        );
        let has_reason = table.columns.iter().any(|c| c == "reason");
        if has_reason {
            html.push_str("<th>reason</th>");
        }
        html.push_str("<th>text</th><th>scores</th></tr>");
        for row in &table.rows {
            let cell = |name: &str| {
                table
                    .columns
                    .iter()
                    .position(|c| c == name)
                    .map(|i| row.cells[i].as_str())
                    .filter(|v| !v.is_empty())
            };
            html.push_str("<tr><td class=\"what\">");
            match &row.audio {
                Audio::Clip { data_uri, seconds } => {
                    let _ = write!(
                        html,
                        "<audio controls preload=\"none\" data-seconds=\"{seconds:.2}\" \
                         src=\"{data_uri}\"></audio><br>"
                    );
                }
                Audio::OverBudget => {
                    html.push_str("<span class=\"note\">audio left out (size budget)</span><br>")
                }
                Audio::None => {}
            }
            if let Some(uri) = cell("uri") {
                let name = uri.rsplit('/').next().unwrap_or(uri);
                let _ = write!(
                    html,
                    "<span title=\"{}\">{}</span>",
                    escape(uri),
                    escape(name)
                );
            }
            let span = match (cell("start_s"), cell("end_s")) {
                (Some(a), Some(b)) => format!(" {a}–{b} s"),
                _ => cell("duration_s")
                    .map(|d| format!(" {d} s"))
                    .unwrap_or_default(),
            };
            let _ = write!(html, "{}", escape(&span));
            for extra in ["language", "codec", "sample_rate"] {
                if let Some(v) = cell(extra) {
                    let _ = write!(html, " · {}", escape(v));
                }
            }
            if let Some(id) = cell("segment_id") {
                let _ = write!(html, "<br><span class=\"id\">{}</span>", escape(id));
            }
            html.push_str("</td>");
            if has_reason {
                let _ = write!(html, "<td>{}</td>", escape(cell("reason").unwrap_or("")));
            }
            html.push_str("<td class=\"text\">");
            for (i, name) in TEXT.iter().enumerate() {
                if let Some(text) = cell(name) {
                    if i > 0 {
                        let _ = write!(html, "<br><span class=\"note\">{name}:</span> ");
                    }
                    html.push_str(&escape(text));
                }
            }
            html.push_str("</td><td class=\"scores\">");
            let scores: Vec<String> = table
                .columns
                .iter()
                .zip(&row.cells)
                .filter(|(c, v)| {
                    !v.is_empty()
                        && c.as_str() != "reason"
                        && !IDENTITY.contains(&c.as_str())
                        && !TEXT.contains(&c.as_str())
                })
                .map(|(c, v)| format!("{} {}", escape(c), escape(v)))
                .collect();
            html.push_str(&scores.join("<br>"));
            html.push_str("</td></tr>");
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
}

fn dag(html: &mut String, report: &Report) {
    let nodes: Vec<DagNode> = report
        .nodes
        .iter()
        .map(|n| DagNode {
            name: &n.name,
            stage: &n.stage,
            inputs: n.inputs.iter().map(String::as_str).collect(),
        })
        .collect();
    let _ = write!(
        html,
        "<section id=\"dag\"><h2>The DAG and its parameters</h2><figure class=\"chart\" \
         data-chart=\"dag\">{}</figure>",
        charts::dag(&nodes)
    );
    if let Some(run) = &report.latest_run {
        let _ = write!(
            html,
            "<table><tr><th>DAG file</th><td>{}</td></tr><tr><th>mode</th><td>{}</td></tr>\
             <tr><th>until</th><td>{}</td></tr><tr><th>status</th><td>{}</td></tr></table>",
            escape(&run.dag),
            escape(&run.mode),
            escape(run.until.as_deref().unwrap_or("(every node)")),
            escape(&run.status)
        );
    }
    html.push_str(
        "<table><tr><th>node</th><th>stage</th><th>inputs</th><th>fingerprint</th>\
         <th>params (as fingerprinted)</th></tr>",
    );
    for n in &report.nodes {
        let params = serde_json::to_string_pretty(&n.params).unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><details>\
             <summary>{} params</summary><pre>{}</pre></details></td></tr>",
            escape(&n.name),
            escape(&n.stage),
            escape(&n.inputs.join(", ")),
            escape(&n.fingerprint),
            n.params.as_object().map_or(0, |o| o.len()),
            escape(&params)
        );
    }
    html.push_str("</table></section>");
}

/// Text as HTML: the five special characters escaped, and `://` written as
/// `&#58;//` so that no URI from the store reads as a reference to load.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out.replace("://", "&#58;//")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Distribution, KeptView, NodeView, SampleRow, SampleTable, Throughput};

    fn node(name: &str, inputs: &[&str], rows: u64, rejects: &[(&str, u64)]) -> NodeView {
        NodeView {
            name: name.into(),
            stage: name.into(),
            fingerprint: format!("fp-{name}"),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            rows,
            rejects: rejects.iter().map(|(_, n)| n).sum(),
            audio_seconds: Some(rows as f64 * 3.0),
            rejects_by_reason: rejects.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            params: serde_json::json!({ "uri": "https://host/list.csv" }),
        }
    }

    #[test]
    fn the_page_shows_every_section_and_loads_nothing() {
        let report = Report {
            store: "s3://bucket/store".into(),
            generated_at_unix_s: 0,
            nodes: vec![
                node("ingest", &[], 10, &[("fetch_failed", 1)]),
                node(
                    "filter",
                    &["ingest"],
                    4,
                    &[("dnsmos", 5), ("language_prob", 1)],
                ),
            ],
            reasons: vec![
                "fetch_failed".into(),
                "dnsmos".into(),
                "language_prob".into(),
            ],
            kept: Some(KeptView {
                node: "filter".into(),
                rows: 4,
                audio_seconds: Some(12.0),
                distributions: vec![Distribution {
                    title: "Duration (s)",
                    source: "filter.duration_s".into(),
                    values: vec![1.0, 2.0, 3.0, 4.0],
                }],
                languages: vec![("en".into(), 3, Some(0.9)), ("de".into(), 1, None)],
            }),
            throughput: vec![Throughput {
                node: "ingest".into(),
                stage: "ingest".into(),
                wall_s: 2.0,
                audio_seconds_per_second: Some(15.0),
                rows_in: 11,
                executors: 1,
                run_id: Some("1-a".into()),
            }],
            samples: vec![SampleTable {
                title: "filter rejects: dnsmos".into(),
                node: "filter".into(),
                reason: Some("dnsmos".into()),
                count: 5,
                columns: vec!["uri".into(), "text".into()],
                rows: vec![
                    SampleRow {
                        cells: vec!["http://host/a.wav".into(), "<b>hi</b>".into()],
                        audio: Audio::Clip {
                            data_uri: "data:audio/flac;base64,AAAA".into(),
                            seconds: 1.5,
                        },
                    },
                    SampleRow {
                        cells: vec!["b".into(), "".into()],
                        audio: Audio::OverBudget,
                    },
                ],
            }],
            latest_run: None,
            runs: 0,
        };
        let html = render(&report);
        for id in ["funnel", "kept", "throughput", "samples", "dag"] {
            assert!(
                html.contains(&format!("<section id=\"{id}\"")),
                "no {id} section"
            );
        }
        assert!(html.contains("<tr data-node=\"filter\" data-rows=\"4\" data-rejects=\"6\">"));
        assert!(html.contains("data-chart=\"filter.duration_s\""));
        assert!(html.contains("src=\"data:audio/flac;base64,AAAA\""));
        assert!(html.contains("audio left out (size budget)"));
        // The URI shows as its file name, the whole URI in its title.
        assert!(
            html.contains("title=\"http&#58;//host/a.wav\">a.wav</span>"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }

    #[test]
    fn escaped_text_has_no_markup_and_no_loadable_uri() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let uri = escape("https://host/a.wav s3://b/k");
        assert_eq!(uri, "https&#58;//host/a.wav s3&#58;//b/k");
        assert!(!uri.contains("://"));
    }
}
