//! Progress bars per node (rows, audio hours, rejects) under one line for the whole
//! run (nodes done, audio hours through the nodes, audio-seconds per second and, for
//! a node whose input audio is known, its ETA) with indicatif; hidden when stderr is
//! not a terminal, so logs and tests stay clean.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::CommitMarker;

/// The set of bars of one run.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// Bars on stderr when it is a terminal, else none.
    pub fn stderr() -> Self {
        Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }

    /// No bars at all.
    pub fn hidden() -> Self {
        Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        }
    }

    /// The run's overall line, above the node bars.
    pub fn run_line(&self, nodes: usize) -> RunLine {
        let bar = self.multi.add(ProgressBar::new(nodes as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:.bold} {pos}/{len} nodes · {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix("run");
        bar.enable_steady_tick(Duration::from_millis(500));
        RunLine {
            bar,
            state: Arc::new(Mutex::new(RunState::default())),
        }
    }

    /// A bar for one node.
    pub fn node(&self, name: &str, stage: &str) -> NodeProgress {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:<16.bold} {elapsed:>4} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{name} ({stage})"));
        bar.set_message("planning");
        bar.enable_steady_tick(Duration::from_millis(120));
        NodeProgress { bar, run: None }
    }
}

/// The whole run's line: what the node bars add up to.
#[derive(Clone)]
pub struct RunLine {
    bar: ProgressBar,
    state: Arc<Mutex<RunState>>,
}

#[derive(Default)]
struct RunState {
    /// Audio seconds of the finished nodes' inputs (outputs for source nodes).
    done_seconds: f64,
    /// The running node: its name, input audio, audio so far, start.
    node: Option<(String, Option<f64>, f64, Instant)>,
}

impl RunLine {
    /// The bar of the next node, which expects `audio_in` seconds of input audio.
    pub fn node(
        &self,
        progress: &Progress,
        name: &str,
        stage: &str,
        audio_in: Option<f64>,
    ) -> NodeProgress {
        if let Ok(mut state) = self.state.lock() {
            state.node = Some((name.to_string(), audio_in, 0.0, Instant::now()));
        }
        let mut bar = progress.node(name, stage);
        bar.run = Some(self.clone());
        self.redraw();
        bar
    }

    pub fn finish(&self) {
        self.redraw();
        self.bar.finish();
    }

    fn node_progressed(&self, seconds: f64) {
        if let Ok(mut state) = self.state.lock()
            && let Some(node) = state.node.as_mut()
        {
            node.2 = seconds;
        }
        self.redraw();
    }

    fn node_finished(&self, marker: &CommitMarker) {
        if let Ok(mut state) = self.state.lock() {
            let input = state.node.take().and_then(|n| n.1);
            state.done_seconds += input.or(marker.audio_seconds).unwrap_or(0.0);
        }
        self.bar.inc(1);
        self.redraw();
    }

    fn redraw(&self) {
        if let Ok(state) = self.state.lock() {
            self.bar.set_message(run_message(&state));
        }
    }
}

/// `0.42 h audio through nodes · asr 12.5 audio-s/s, ETA 1m05s`
fn run_message(state: &RunState) -> String {
    let mut seconds = state.done_seconds;
    let mut parts = Vec::new();
    if let Some((name, expected, done, started)) = &state.node {
        seconds += done;
        let elapsed = started.elapsed().as_secs_f64();
        if *done > 0.0 && elapsed > 0.0 {
            let rate = done / elapsed;
            let mut current = format!("{name} {rate:.1} audio-s/s");
            if let Some(expected) = expected.filter(|e| *e > *done) {
                current.push_str(&format!(", ETA {}", format_eta((expected - done) / rate)));
            }
            parts.push(current);
        } else {
            parts.push(name.clone());
        }
    }
    parts.insert(0, format!("{} audio through nodes", format_hours(seconds)));
    parts.join(" · ")
}

/// `45s`, `3m05s`, `2h07m`.
pub fn format_eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// One node's bar.
#[derive(Clone)]
pub struct NodeProgress {
    bar: ProgressBar,
    run: Option<RunLine>,
}

impl NodeProgress {
    pub fn update(&self, rows: u64, rejects: u64, audio_seconds: Option<f64>) {
        self.bar.set_message(describe(rows, rejects, audio_seconds));
        if let (Some(run), Some(seconds)) = (&self.run, audio_seconds) {
            run.node_progressed(seconds);
        }
    }

    pub fn finish(&self, marker: &CommitMarker) {
        self.bar.finish_with_message(format!(
            "done · {}",
            describe(marker.rows, marker.rejects, marker.audio_seconds)
        ));
        if let Some(run) = &self.run {
            run.node_finished(marker);
        }
    }

    pub fn finish_cached(&self, marker: &CommitMarker) {
        self.bar.finish_with_message(format!(
            "cached · {}",
            describe(marker.rows, marker.rejects, marker.audio_seconds)
        ));
        if let Some(run) = &self.run {
            run.node_finished(marker);
        }
    }
}

/// `120 rows · 1.52 h audio · 3 rejected`
pub fn describe(rows: u64, rejects: u64, audio_seconds: Option<f64>) -> String {
    let mut s = format!("{rows} rows");
    if let Some(seconds) = audio_seconds {
        s.push_str(&format!(" · {} audio", format_hours(seconds)));
    }
    s.push_str(&format!(" · {rejects} rejected"));
    s
}

/// Hours with enough precision to be useful for short demo runs too.
pub fn format_hours(seconds: f64) -> String {
    let hours = seconds / 3600.0;
    if hours >= 10.0 {
        format!("{hours:.1} h")
    } else {
        format!("{hours:.3} h")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etas_read_in_the_largest_sensible_units() {
        assert_eq!(format_eta(44.6), "45s");
        assert_eq!(format_eta(185.0), "3m05s");
        assert_eq!(format_eta(7620.0), "2h07m");
        assert_eq!(format_eta(-3.0), "0s");
    }

    #[test]
    fn the_run_line_gives_rate_and_eta_of_a_node_whose_input_audio_is_known() {
        let state = RunState {
            done_seconds: 3600.0,
            node: Some((
                "asr".into(),
                Some(1000.0),
                100.0,
                Instant::now() - Duration::from_secs(10),
            )),
        };
        let line = run_message(&state);
        assert!(
            line.starts_with("1.028 h audio through nodes · asr "),
            "{line}"
        );
        // 100 s of audio in ~10 s: ~10 audio-s/s, 900 s left: ~90 s.
        assert!(line.contains("audio-s/s, ETA 1m"), "{line}");
        let idle = RunState {
            done_seconds: 0.0,
            node: Some(("ingest".into(), None, 0.0, Instant::now())),
        };
        assert_eq!(run_message(&idle), "0.000 h audio through nodes · ingest");
    }
}
