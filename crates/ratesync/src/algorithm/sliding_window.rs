//! Sliding window with bounded state: at most `limit` units in any interval of
//! length `window`, kept as a log of (time, units) runs of at most `precision` runs
//! (`docs/design.md#sliding-window`).
//!
//! A unit admitted at `t` counts in every window `(now - window, now]` with
//! `t > now - window`; it leaves the window at exactly `t + window`. While a key's
//! admissions in a window fit in `precision` runs, the log is exact. When a new run
//! would not fit, every run moves forward to the next multiple of the merge grid
//! (`window / (precision - 2)`, rounded up to a whole microsecond) and runs at the
//! same time merge: units are counted as if admitted up to one grid step later, so
//! the window may refuse slightly early and never admits too much.

use std::collections::VecDeque;

use super::RuleError;
use crate::decision::{Decision, DeniedBy};

/// Longest window accepted (about 31 years), so that `t + window` never overflows.
pub const MAX_WINDOW_SECONDS: f64 = 1e9;

/// Runs a key keeps by default: about 1.6 KB of state, and a unit counted at most
/// about 1% of the window late once the log is full.
pub const DEFAULT_PRECISION: u32 = 100;
/// The fewest runs a log may be bounded to (the grid then spans the whole window).
pub const MIN_PRECISION: u32 = 4;
/// The most runs a log may be bounded to (about 16 KB of state).
pub const MAX_PRECISION: u32 = 1000;

/// A validated sliding-window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindow {
    limit: u32,
    window: u64,
    precision: u32,
}

impl SlidingWindow {
    /// At most `limit` units per any `window_seconds` (fractions allowed), with the
    /// default [`precision`](Self::with_precision).
    pub fn new(limit: u32, window_seconds: f64) -> Result<Self, RuleError> {
        if !window_seconds.is_finite() || window_seconds <= 0.0 {
            return Err(RuleError::NotPositive {
                field: "window_seconds",
                value: window_seconds,
            });
        }
        if window_seconds > MAX_WINDOW_SECONDS {
            return Err(RuleError::TooLarge {
                field: "window_seconds",
                max: MAX_WINDOW_SECONDS,
            });
        }
        Self::with_window_nanos(limit, (window_seconds * 1e9).round() as u64)
    }

    /// A window given directly in nanoseconds (see [`crate::TokenBucket::with_interval_nanos`]).
    pub fn with_window_nanos(limit: u32, window: u64) -> Result<Self, RuleError> {
        if limit == 0 {
            return Err(RuleError::NotPositive {
                field: "limit",
                value: 0.0,
            });
        }
        if window == 0 || window > (MAX_WINDOW_SECONDS * 1e9) as u64 {
            return Err(RuleError::TooSmall {
                field: "window_seconds",
            });
        }
        Ok(SlidingWindow {
            limit,
            window,
            precision: DEFAULT_PRECISION,
        })
    }

    /// The same rule keeping at most `precision` runs per key
    /// ([`MIN_PRECISION`]..=[`MAX_PRECISION`]): more runs, more exact decisions
    /// under heavy traffic and more state.
    pub fn with_precision(self, precision: u32) -> Result<Self, RuleError> {
        if !(MIN_PRECISION..=MAX_PRECISION).contains(&precision) {
            return Err(RuleError::OutOfRange {
                field: "precision",
                min: f64::from(MIN_PRECISION),
                max: f64::from(MAX_PRECISION),
                value: f64::from(precision),
            });
        }
        Ok(SlidingWindow { precision, ..self })
    }

    /// The most units admitted in any window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Window length in nanoseconds.
    pub fn window_nanos(&self) -> u64 {
        self.window
    }

    /// The most runs a key's log keeps.
    pub fn precision(&self) -> u32 {
        self.precision
    }

    /// The merge grid (ns): once a key's log is full, its runs move forward to the
    /// next multiple of it. `window / (precision - 2)` rounded up to a whole
    /// microsecond, so that the stores that decide in microseconds merge at the same
    /// instants; at most `precision - 1` multiples fit in any window, which leaves
    /// room for the new run. It is also the worst case of the bound: a unit is never
    /// counted a grid step or more after its admission.
    pub fn grid_nanos(&self) -> u64 {
        let step = self.window.div_ceil(u64::from(self.precision - 2));
        step.div_ceil(1_000) * 1_000
    }

    /// Decides an attempt of `cost` units at `now`, recording it in `log` when
    /// admitted. Expired runs are dropped first (that changes no decision). Returns
    /// the decision and the time of the run the admission was recorded in (for a
    /// refund). The caller has checked `1 <= cost <= limit`.
    pub fn decide(&self, log: &mut WindowLog, now: u64, cost: u32) -> (Decision, u64) {
        log.expire(now, self.window);
        let limit = u64::from(self.limit);
        if log.total + u64::from(cost) <= limit {
            let recorded = log.push(now, cost, self.precision as usize, self.grid_nanos());
            let decision = Decision::admitted(
                limit,
                limit - log.total,
                (recorded + self.window).saturating_sub(now),
            );
            return (decision, recorded);
        }
        (self.refusal(log, now, cost), 0)
    }

    /// The decision an attempt of `cost` would get at `now`, without recording it.
    pub fn peek(&self, log: &WindowLog, now: u64, cost: u32) -> Decision {
        let used = log.used(now, self.window);
        let limit = u64::from(self.limit);
        if used + u64::from(cost) <= limit {
            let reset = match used {
                0 => 0,
                _ => log
                    .newest()
                    .map_or(0, |t| (t + self.window).saturating_sub(now)),
            };
            Decision::admitted(limit, limit - used, reset)
        } else {
            self.refusal(log, now, cost)
        }
    }

    /// A refusal: the attempt fits once enough of the oldest units still in the
    /// window have left it.
    fn refusal(&self, log: &WindowLog, now: u64, cost: u32) -> Decision {
        let limit = u64::from(self.limit);
        let used = log.used(now, self.window);
        let must_leave = used + u64::from(cost) - limit;
        let leaves_at = log.time_when_oldest_leave(now, self.window, must_leave) + self.window;
        let newest = log.newest().unwrap_or(now);
        Decision::denied(
            DeniedBy::Rate,
            limit,
            limit.saturating_sub(used),
            leaves_at.saturating_sub(now),
            (newest + self.window).saturating_sub(now),
        )
    }

    /// Takes back up to `cost` units of the admission recorded at `at` (a refund or
    /// a settle): from its run, or from the grid run it was merged into. Units that
    /// have left the window (their run is gone) are not taken back twice.
    pub fn refund(&self, log: &mut WindowLog, at: u64, cost: u32) {
        let merged = at.div_ceil(self.grid_nanos()) * self.grid_nanos();
        if !log.remove(at, cost) {
            log.remove(merged, cost);
        }
    }

    /// When the newest admission of `log` leaves the window (0 for an empty log):
    /// from then on the key is indistinguishable from a fresh one.
    pub fn idle_at(&self, log: &WindowLog) -> u64 {
        log.newest().map_or(0, |t| t.saturating_add(self.window))
    }
}

/// Admission times of one key, oldest first, as runs of units recorded at one time
/// (a cost of `n` is one run of `n` units, not `n` entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowLog {
    runs: VecDeque<(u64, u32)>,
    total: u64,
}

impl WindowLog {
    /// Units currently recorded (including expired ones not yet dropped).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The recorded (time, units) runs, oldest first.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.runs.iter().copied()
    }

    /// A log rebuilt from the runs [`Self::runs`] gave (a store read it back).
    /// Runs out of order, or of zero units, are repaired (sorted, dropped), so a
    /// damaged value can never make the log unsorted or its total wrong.
    pub fn from_runs(runs: impl IntoIterator<Item = (u64, u32)>) -> Self {
        let mut runs: Vec<(u64, u32)> = runs.into_iter().filter(|(_, n)| *n > 0).collect();
        runs.sort_by_key(|(t, _)| *t);
        let mut log = WindowLog::default();
        for (t, n) in runs {
            log.total += u64::from(n);
            match log.runs.back_mut() {
                Some((last, units)) if *last == t => *units = units.saturating_add(n),
                _ => log.runs.push_back((t, n)),
            }
        }
        log
    }

    fn newest(&self) -> Option<u64> {
        self.runs.back().map(|(t, _)| *t)
    }

    fn expire(&mut self, now: u64, window: u64) {
        while let Some(&(t, n)) = self.runs.front() {
            if t.saturating_add(window) > now {
                break;
            }
            self.runs.pop_front();
            self.total -= u64::from(n);
        }
    }

    /// Units still in the window at `now`.
    fn used(&self, now: u64, window: u64) -> u64 {
        self.live(now, window).map(|(_, n)| u64::from(n)).sum()
    }

    /// The runs still in the window at `now`, oldest first.
    fn live(&self, now: u64, window: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.runs
            .iter()
            .copied()
            .skip_while(move |(t, _)| t.saturating_add(window) <= now)
    }

    /// Records `cost` units at `now` in a log of at most `capacity` runs, merging on
    /// `grid` when full; returns the time of the run they went into.
    fn push(&mut self, now: u64, cost: u32, capacity: usize, grid: u64) -> u64 {
        self.total += u64::from(cost);
        if self.runs.len() >= capacity && self.newest().is_some_and(|t| t < now) {
            self.merge_on(grid);
        }
        match self.runs.back_mut() {
            // Time that stands still, a store clock that stepped back, or a run merged
            // forward: the units join the newest run, so the log stays sorted and
            // never counts a unit earlier than it was admitted.
            Some((t, n)) if *t >= now => {
                *n += cost;
                *t
            }
            _ => {
                self.runs.push_back((now, cost));
                now
            }
        }
    }

    /// Moves every run forward to the next multiple of `grid` and merges the runs
    /// that meet. The runs of a full log all lie within one window before `now`, so
    /// at most `precision - 1` remain (`SlidingWindow::grid_nanos`).
    fn merge_on(&mut self, grid: u64) {
        let mut merged: VecDeque<(u64, u32)> = VecDeque::with_capacity(self.runs.len());
        for (t, n) in self.runs.drain(..) {
            let at = t.div_ceil(grid).saturating_mul(grid);
            match merged.back_mut() {
                Some((last, units)) if *last == at => *units += n,
                _ => merged.push_back((at, n)),
            }
        }
        self.runs = merged;
    }

    /// Takes back up to `cost` units of the run at `at`; false when there is none.
    fn remove(&mut self, at: u64, cost: u32) -> bool {
        let Ok(index) = self.runs.binary_search_by_key(&at, |(t, _)| *t) else {
            return false;
        };
        let (_, n) = &mut self.runs[index];
        let taken = (*n).min(cost);
        *n -= taken;
        self.total -= u64::from(taken);
        if *n == 0 {
            self.runs.remove(index);
        }
        true
    }

    /// Time of the run after which `units` of the oldest units still in the window
    /// at `now` are gone.
    fn time_when_oldest_leave(&self, now: u64, window: u64, units: u64) -> u64 {
        let mut seen = 0u64;
        for (t, n) in self.live(now, window) {
            seen += u64::from(n);
            if seen >= units {
                return t;
            }
        }
        self.newest().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn admits_limit_then_waits_for_the_oldest_to_leave() {
        let sw = SlidingWindow::new(3, 1.0).unwrap();
        let mut log = WindowLog::default();
        for (i, at) in [0, 100 * MS, 200 * MS].into_iter().enumerate() {
            let (d, _) = sw.decide(&mut log, at, 1);
            assert!(d.allowed());
            assert_eq!(d.remaining, 2 - i as u64);
        }
        let (d, _) = sw.decide(&mut log, 300 * MS, 1);
        assert!(!d.allowed());
        assert_eq!(d.retry_after(), Duration::from_millis(700));
        assert!(!sw.decide(&mut log, 1000 * MS - 1, 1).0.allowed());
        assert!(sw.decide(&mut log, 1000 * MS, 1).0.allowed());
    }

    #[test]
    fn cost_needs_that_many_units_to_leave() {
        let sw = SlidingWindow::new(4, 1.0).unwrap();
        let mut log = WindowLog::default();
        assert!(sw.decide(&mut log, 0, 2).0.allowed());
        assert!(sw.decide(&mut log, 500 * MS, 2).0.allowed());
        let (d, _) = sw.decide(&mut log, 600 * MS, 3);
        assert!(!d.allowed());
        // Needs 3 units gone: the first run (2) leaves at 1000ms, the second at 1500ms.
        assert_eq!(d.retry_after(), Duration::from_millis(900));
    }

    #[test]
    fn a_refund_takes_back_its_own_units_only() {
        let sw = SlidingWindow::new(3, 1.0).unwrap();
        let mut log = WindowLog::default();
        let (_, first) = sw.decide(&mut log, 0, 1);
        let (_, second) = sw.decide(&mut log, 100 * MS, 2);
        assert_eq!((first, second), (0, 100 * MS));
        sw.refund(&mut log, second, 2);
        assert_eq!(log.runs().collect::<Vec<_>>(), vec![(0, 1)]);
        sw.refund(&mut log, second, 2);
        assert_eq!(log.total(), 1, "a second refund finds nothing to take");
    }

    #[test]
    fn a_full_log_merges_forward_on_the_grid() {
        let sw = SlidingWindow::new(10, 1.0)
            .unwrap()
            .with_precision(4)
            .unwrap();
        assert_eq!(sw.grid_nanos(), 500 * MS);
        let mut log = WindowLog::default();
        for at in [0, 100 * MS, 200 * MS, 300 * MS] {
            assert_eq!(sw.decide(&mut log, at, 1).1, at, "exact while it fits");
        }
        // A fifth run does not fit: every run moves to the next grid time, and the
        // new units join the run now ahead of them.
        let (d, recorded) = sw.decide(&mut log, 400 * MS, 2);
        assert_eq!(recorded, 500 * MS);
        assert_eq!(log.runs().collect::<Vec<_>>(), vec![(0, 1), (500 * MS, 5)]);
        assert_eq!(d.reset_after(), Duration::from_millis(1100));
        // Counted late, never early: the units of 100..400 ms leave at 1500 ms.
        let (d, _) = sw.decide(&mut log, 1000 * MS, 6);
        assert!(!d.allowed());
        assert_eq!(d.retry_after(), Duration::from_millis(500));
        assert!(sw.decide(&mut log, 1000 * MS, 5).0.allowed());
        // A refund finds units merged forward in their grid run.
        sw.refund(&mut log, 300 * MS, 2);
        assert_eq!(
            log.runs().collect::<Vec<_>>(),
            vec![(500 * MS, 3), (1000 * MS, 5)]
        );
    }

    #[test]
    fn precision_is_bounded() {
        let sw = SlidingWindow::new(1, 1.0).unwrap();
        assert_eq!(sw.precision(), DEFAULT_PRECISION);
        for p in [0, 3, 1001] {
            assert!(sw.with_precision(p).is_err(), "{p}");
        }
    }

    #[test]
    fn peek_records_nothing() {
        let sw = SlidingWindow::new(1, 0.5).unwrap();
        let log = WindowLog::default();
        assert!(sw.peek(&log, 0, 1).allowed());
        assert_eq!(log.total(), 0);
    }

    #[test]
    fn invalid_rules_are_refused() {
        assert!(SlidingWindow::new(0, 1.0).is_err());
        for w in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e10, 1e-12] {
            assert!(SlidingWindow::new(1, w).is_err(), "{w}");
        }
    }
}
