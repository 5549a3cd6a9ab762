//! Progress bars per node (rows, audio hours, rejects) with indicatif; hidden when
//! stderr is not a terminal, so logs and tests stay clean.

use std::time::Duration;

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
        NodeProgress { bar }
    }
}

/// One node's bar.
#[derive(Clone)]
pub struct NodeProgress {
    bar: ProgressBar,
}

impl NodeProgress {
    pub fn update(&self, rows: u64, rejects: u64, audio_seconds: Option<f64>) {
        self.bar.set_message(describe(rows, rejects, audio_seconds));
    }

    pub fn finish(&self, marker: &CommitMarker) {
        self.bar.finish_with_message(format!(
            "done · {}",
            describe(marker.rows, marker.rejects, marker.audio_seconds)
        ));
    }

    pub fn finish_cached(&self, marker: &CommitMarker) {
        self.bar.finish_with_message(format!(
            "cached · {}",
            describe(marker.rows, marker.rejects, marker.audio_seconds)
        ));
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
