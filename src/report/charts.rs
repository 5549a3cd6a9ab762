//! Charts as inline SVG, drawn here so the page needs no script or network: the
//! funnel (kept and rejected rows per node, rejects stacked by reason), histograms,
//! horizontal bar charts and the DAG. Every chart is one `<svg>` with its size set.

use std::fmt::Write;

use super::page::escape;

/// Colours of reject reasons, in order of first appearance.
const PALETTE: [&str; 10] = [
    "#d95f02", "#7570b3", "#e7298a", "#e6ab02", "#a6761d", "#1b9e77", "#666666", "#66a61e",
    "#e31a1c", "#1f78b4",
];
const KEPT: &str = "#2b8a3e";
const BAR: &str = "#3867d6";

/// The colour of the `index`-th reject reason.
pub fn reason_colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// One funnel row: a node, its kept rows and its rejects by (reason index, count).
pub struct FunnelRow<'a> {
    pub label: &'a str,
    pub detail: String,
    pub kept: u64,
    pub rejects: Vec<(usize, u64)>,
}

/// Horizontal stacked bars: kept in green, then each reason's rejects.
pub fn funnel(rows: &[FunnelRow]) -> String {
    let (label_w, bar_w, row_h) = (170.0, 460.0, 26.0);
    let width = label_w + bar_w + 230.0;
    let height = row_h * rows.len().max(1) as f64 + 8.0;
    let max = rows
        .iter()
        .map(|r| r.kept + r.rejects.iter().map(|(_, n)| n).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut svg = open(width, height, "Rows kept and rejected per node");
    for (i, row) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        text(&mut svg, label_w - 8.0, y + 17.0, "end", row.label);
        let mut x = label_w;
        let mut segment = |svg: &mut String, n: u64, colour: &str, title: String| {
            // A non-empty part stays visible however small it is next to the largest.
            let w = if n == 0 {
                0.0
            } else {
                (n as f64 / max * bar_w).max(2.0)
            };
            if w > 0.0 {
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{colour}"><title>{}</title></rect>"#,
                    y + 3.0,
                    row_h - 8.0,
                    escape(&title)
                );
            }
            x += w;
        };
        segment(
            &mut svg,
            row.kept,
            KEPT,
            format!("{}: {} kept", row.label, row.kept),
        );
        for (reason, n) in &row.rejects {
            segment(
                &mut svg,
                *n,
                reason_colour(*reason),
                format!("{}: {n} rejected", row.label),
            );
        }
        text(&mut svg, x + 6.0, y + 17.0, "start", &row.detail);
    }
    svg.push_str("</svg>");
    svg
}

/// A histogram of `values` in `bins` equal-width bins, with its range and the
/// largest bin's count on the axes.
pub fn histogram(values: &[f64], bins: usize, unit: &str) -> String {
    let (width, height, pad_l, pad_b) = (360.0, 150.0, 36.0, 22.0);
    let mut svg = open(width, height, unit);
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let counts = bin_counts(&finite, bins);
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_w = width - pad_l - 8.0;
    let plot_h = height - pad_b - 10.0;
    let bar_w = plot_w / counts.len().max(1) as f64;
    for (i, n) in counts.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let h = (*n as f64 / top * plot_h).max(1.5);
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{BAR}"><title>{n}</title></rect>"#,
            pad_l + i as f64 * bar_w + 0.5,
            10.0 + plot_h - h,
            (bar_w - 1.0).max(1.0),
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{pad_l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999"/>"##,
        10.0 + plot_h,
        width - 8.0,
        10.0 + plot_h
    );
    text(&mut svg, pad_l - 4.0, 20.0, "end", &top.to_string());
    text(&mut svg, pad_l - 4.0, 10.0 + plot_h, "end", "0");
    if !finite.is_empty() {
        text(&mut svg, pad_l, height - 6.0, "start", &number(lo));
        text(&mut svg, width - 8.0, height - 6.0, "end", &number(hi));
    }
    svg.push_str("</svg>");
    svg
}

/// Counts of `values` in `bins` equal-width bins over their range (one bin when
/// they are all equal; none when there are none).
pub fn bin_counts(values: &[f64], bins: usize) -> Vec<u64> {
    if values.is_empty() || bins == 0 {
        return Vec::new();
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        return vec![values.len() as u64];
    }
    let mut counts = vec![0u64; bins];
    for v in values {
        let i = (((v - lo) / (hi - lo)) * bins as f64).floor() as usize;
        counts[i.min(bins - 1)] += 1;
    }
    counts
}

/// Horizontal bars, one per `(label, value, annotation)`; `log` scales the bar
/// lengths logarithmically (throughputs span orders of magnitude).
pub fn bars(items: &[(String, f64, String)], log: bool, title: &str) -> String {
    let (label_w, bar_w, row_h) = (170.0, 360.0, 24.0);
    let width = label_w + bar_w + 210.0;
    let height = row_h * items.len().max(1) as f64 + 8.0;
    let scale = |v: f64| {
        if log {
            (1.0 + v.max(0.0)).log10()
        } else {
            v.max(0.0)
        }
    };
    let max = items
        .iter()
        .map(|(_, v, _)| scale(*v))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut svg = open(width, height, title);
    for (i, (label, value, note)) in items.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let w = (scale(*value) / max * bar_w).max(2.0);
        text(&mut svg, label_w - 8.0, y + 16.0, "end", label);
        let _ = write!(
            svg,
            r#"<rect x="{label_w}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{BAR}"><title>{}</title></rect>"#,
            y + 3.0,
            row_h - 8.0,
            escape(note)
        );
        text(&mut svg, label_w + w + 6.0, y + 16.0, "start", note);
    }
    svg.push_str("</svg>");
    svg
}

/// A node of the DAG drawing.
pub struct DagNode<'a> {
    pub name: &'a str,
    pub stage: &'a str,
    pub inputs: Vec<&'a str>,
}

/// The DAG in layers: a node's column is the length of the longest path to it.
pub fn dag(nodes: &[DagNode]) -> String {
    let (box_w, box_h, col_w, row_h) = (150.0, 40.0, 190.0, 54.0);
    let depth = depths(nodes);
    let mut rows_in_layer: Vec<usize> = Vec::new();
    let mut place = Vec::with_capacity(nodes.len());
    for d in &depth {
        if rows_in_layer.len() <= *d {
            rows_in_layer.resize(d + 1, 0);
        }
        place.push((*d, rows_in_layer[*d]));
        rows_in_layer[*d] += 1;
    }
    let layers = rows_in_layer.len().max(1);
    let tallest = rows_in_layer.iter().copied().max().unwrap_or(1).max(1);
    let width = layers as f64 * col_w + 20.0;
    let height = tallest as f64 * row_h + 20.0;
    let at = |i: usize| {
        let (col, row) = place[i];
        (10.0 + col as f64 * col_w, 10.0 + row as f64 * row_h)
    };
    let mut svg = open(width, height, "The DAG: nodes and their inputs");
    svg.push_str(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>"##,
    );
    for (i, node) in nodes.iter().enumerate() {
        for input in &node.inputs {
            if let Some(j) = nodes.iter().position(|n| n.name == *input) {
                let ((x1, y1), (x2, y2)) = (at(j), at(i));
                let _ = write!(
                    svg,
                    r##"<path d="M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {x2:.1},{:.1}" fill="none" stroke="#888" marker-end="url(#arrow)"/>"##,
                    x1 + box_w,
                    y1 + box_h / 2.0,
                    x1 + box_w + 20.0,
                    y1 + box_h / 2.0,
                    x2 - 20.0,
                    y2 + box_h / 2.0,
                    y2 + box_h / 2.0,
                );
            }
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = at(i);
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{box_w}" height="{box_h}" rx="6" fill="#eef2fb" stroke="#3867d6"/>"##
        );
        text(&mut svg, x + box_w / 2.0, y + 17.0, "middle", node.name);
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#555">{}</text>"##,
            x + box_w / 2.0,
            y + 32.0,
            escape(node.stage)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Each node's layer: 0 for a node without inputs in the drawing, else one more
/// than its deepest input. Inputs come before their nodes in `nodes`.
pub fn depths(nodes: &[DagNode]) -> Vec<usize> {
    let mut depth: Vec<usize> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let d = node
            .inputs
            .iter()
            .filter_map(|input| nodes.iter().position(|n| n.name == *input))
            .filter(|j| *j < depth.len())
            .map(|j| depth[j] + 1)
            .max()
            .unwrap_or(0);
        depth.push(d);
    }
    depth
}

fn open(width: f64, height: f64, label: &str) -> String {
    format!(
        r#"<svg width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="{}" font-family="sans-serif" font-size="12">"#,
        escape(label)
    )
}

fn text(svg: &mut String, x: f64, y: f64, anchor: &str, content: &str) {
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
        escape(content)
    );
}

/// A number with as many decimals as its size warrants.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == v.trunc() && a < 1e6 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_range_and_count_every_value_once() {
        let values = [0.0, 0.1, 0.5, 0.99, 1.0, 1.0];
        let counts = bin_counts(&values, 4);
        assert_eq!(counts, vec![2, 0, 1, 3]);
        assert_eq!(counts.iter().sum::<u64>(), values.len() as u64);
        assert_eq!(bin_counts(&[2.0, 2.0], 10), vec![2]);
        assert!(bin_counts(&[], 10).is_empty());
    }

    #[test]
    fn dag_layers_follow_the_longest_path() {
        let node = |name, inputs: Vec<&'static str>| DagNode {
            name,
            stage: "s",
            inputs,
        };
        let nodes = [
            node("ingest", vec![]),
            node("segment", vec!["ingest"]),
            node("asr", vec!["segment"]),
            node("filter", vec!["asr", "segment"]),
            node("other", vec!["missing"]),
        ];
        assert_eq!(depths(&nodes), vec![0, 1, 2, 3, 0]);
        let svg = dag(&nodes);
        assert_eq!(svg.matches("<rect").count(), 5);
        assert_eq!(svg.matches("marker-end=").count(), 4);
    }

    #[test]
    fn charts_have_a_size_and_escape_their_labels() {
        let svg = funnel(&[FunnelRow {
            label: "a<b",
            detail: "3 rows".into(),
            kept: 3,
            rejects: vec![(0, 1)],
        }]);
        assert!(svg.starts_with("<svg width=\""), "{svg}");
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
        let h = histogram(&[1.0, 2.0, 3.0], 3, "s");
        assert_eq!(h.matches("<rect").count(), 3);
    }

    #[test]
    fn numbers_keep_useful_precision() {
        assert_eq!(number(1234.4), "1234");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.4567), "0.46");
        assert_eq!(number(0.01234), "0.012");
    }
}
