//! What the demo shows: achieved rates comparable to the configured ones, live on
//! stderr and as a final table.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ratesync::algorithm::Windows;
use ratesync::{FixedWindow, Limiter, Rule};

use super::builtin::Drive;
use super::worker::Stats;
use crate::output;

/// One driven limiter.
pub struct Row {
    pub limiter: Limiter,
    pub drive: Drive,
    pub stats: Arc<Stats>,
}

/// A snapshot of one row.
pub struct Figures {
    admitted: u64,
    refused: u64,
    errors: u64,
    waiting: u64,
    peak_in_flight: u64,
    /// Achieved units per second, measured so it compares with the configured rate.
    achieved: Option<f64>,
    /// `achieved / configured − 1`, when the rate (not concurrency) is what binds.
    deviation: Option<f64>,
}

impl Row {
    pub fn figures(&self) -> Figures {
        let s = &self.stats;
        let admitted = s.admitted.load(Relaxed);
        let config = self.limiter.config();
        let achieved = match (config.max_concurrent, &config.rule) {
            (None, Some(Rule::TokenBucket(tb))) => self.steady_rate(admitted, tb.burst()),
            (None, Some(Rule::SlidingWindow(_))) => self.window_rate(),
            (None, Some(Rule::FixedWindow(fw))) => self.fixed_rate(fw),
            _ => self.average_rate(admitted),
        };
        let configured = output::configured_rate(config.rule.as_ref());
        Figures {
            admitted,
            refused: s.refused.load(Relaxed),
            errors: s.errors.load(Relaxed),
            waiting: s.waiting.load(Relaxed),
            peak_in_flight: s.peak_in_flight.load(Relaxed),
            achieved,
            deviation: achieved
                .zip(configured)
                .filter(|_| config.max_concurrent.is_none())
                .map(|(a, configured)| a / configured - 1.0),
        }
    }

    /// Token bucket: the first `burst` units come at once, then one per interval.
    /// Leaving out the burst and measuring from the first admission to the last gives
    /// the refill rate, independent of when the snapshot is taken.
    fn steady_rate(&self, admitted: u64, burst: u32) -> Option<f64> {
        let (first, last) = self.stats.span()?;
        let steady = admitted.checked_sub(u64::from(burst)).filter(|n| *n > 0)?;
        (last > first).then(|| steady as f64 * 1e9 / (last - first) as f64)
    }

    /// Sliding window: saturated, it admits `limit` at the start of each window.
    /// Counting over whole windows that end mid-way between two such batches (never
    /// on a batch) gives `limit / window` exactly when the limiter holds.
    fn window_rate(&self) -> Option<f64> {
        let Some(Rule::SlidingWindow(sw)) = self.limiter.config().rule else {
            return None;
        };
        let (first, _) = self.stats.span()?;
        let window = sw.window_nanos();
        let elapsed = self.stats.now_ns().saturating_sub(first);
        let windows = elapsed.checked_sub(window / 2)? / window + 1;
        let end = first + windows * window - window / 2;
        let counted = self.stats.admitted_before(end)?;
        Some(counted as f64 * 1e9 / (windows * window) as f64)
    }

    /// Fixed window: saturated, it admits `limit` at the start of each window, and
    /// the windows fall on the calendar (`docs/design.md#fixed-windows`), not on the
    /// first admission. Counting over whole windows from mid-way before a boundary
    /// after the first admission (leaving out the first, partial window) gives
    /// `limit / window` exactly when the limiter holds; nothing before one whole
    /// window has passed (a daily quota shows no rate in a demo), nor for months,
    /// whose length varies.
    fn fixed_rate(&self, fw: &FixedWindow) -> Option<f64> {
        let Windows::Every { length, .. } = fw.windows() else {
            return None;
        };
        let (first, _) = self.stats.span()?;
        let unix_base = self.stats.unix_base_ns();
        let (_, boundary) = fw.bounds(unix_base + first);
        let mut start = (boundary - unix_base).saturating_sub(length / 2);
        if start <= first {
            start += length;
        }
        let windows = self.stats.now_ns().checked_sub(start)? / length;
        if windows == 0 {
            return None;
        }
        let counted = self
            .stats
            .admitted_between(start, start + windows * length)?;
        Some(counted as f64 * 1e9 / (windows * length) as f64)
    }

    /// Concurrency-bound: plain admissions per second since the first.
    fn average_rate(&self, admitted: u64) -> Option<f64> {
        let (first, _) = self.stats.span()?;
        let elapsed = self.stats.now_ns().saturating_sub(first);
        (elapsed > 0).then(|| admitted as f64 * 1e9 / elapsed as f64)
    }

    fn configured(&self) -> String {
        output::limit(self.limiter.config())
    }

    fn in_flight(&self, f: &Figures) -> String {
        match self.limiter.config().max_concurrent {
            Some(max) => format!("{} of {max}", f.peak_in_flight),
            None => "-".to_owned(),
        }
    }
}

fn achieved(f: &Figures) -> String {
    f.achieved.map_or_else(|| "-".to_owned(), output::rate)
}

fn deviation(f: &Figures) -> String {
    f.deviation
        .map_or_else(|| "-".to_owned(), |d| format!("{:+.2}%", d * 100.0))
}

/// The live view on stderr: a time bar and one line per limiter, redrawn in place.
pub struct Live {
    bars: Vec<ProgressBar>,
    clock: ProgressBar,
    _multi: MultiProgress,
}

impl Live {
    pub fn new(rows: &[Row], duration: Duration) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let clock = multi.add(ProgressBar::new(duration.as_millis() as u64));
        clock.set_style(
            ProgressStyle::with_template("[{bar:40}] {elapsed} of {msg}")
                .expect("constant template is valid")
                .progress_chars("=> "),
        );
        clock.set_message(format!("{} s", duration.as_secs_f64()));
        let bars = rows
            .iter()
            .map(|_| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("{msg}").expect("constant template"));
                bar
            })
            .collect();
        Live {
            bars,
            clock,
            _multi: multi,
        }
    }

    pub fn update(&self, rows: &[Row], elapsed: Duration) {
        self.clock.set_position(elapsed.as_millis() as u64);
        for (row, bar) in rows.iter().zip(&self.bars) {
            let f = row.figures();
            bar.set_message(format!(
                "{:<10} {:<28} achieved {:>10} {:>8}   admitted {:>6}   waiting {:>3}   refused {:>6}",
                row.limiter.name(),
                row.configured(),
                achieved(&f),
                deviation(&f),
                f.admitted,
                f.waiting,
                f.refused,
            ));
        }
    }

    pub fn finish(self) {
        self.clock.finish_and_clear();
        for bar in self.bars {
            bar.finish_and_clear();
        }
    }
}

/// The final table on stdout.
pub fn final_table(rows: &[Row], figures: &[Figures]) -> comfy_table::Table {
    let mut table = output::table([
        "limiter",
        "configured",
        "achieved",
        "deviation",
        "admitted",
        "refused",
        "errors",
        "peak in flight",
        "workers",
    ]);
    for (row, f) in rows.iter().zip(figures) {
        table.add_row([
            row.limiter.name().to_owned(),
            row.configured(),
            achieved(f),
            deviation(f),
            f.admitted.to_string(),
            f.refused.to_string(),
            f.errors.to_string(),
            row.in_flight(f),
            row.drive.workers.to_string(),
        ]);
    }
    table
}
