//! Exact sliding window: at most `limit` admissions in any interval of length
//! `window`, kept as a log of admission times.
//!
//! An admission at `t` counts in every window `(now - window, now]` with
//! `t > now - window`; it leaves the window at exactly `t + window`.

use std::collections::VecDeque;

use super::RuleError;
use crate::decision::{Decision, DeniedBy};

/// Longest window accepted (about 31 years), so that `t + window` never overflows.
pub const MAX_WINDOW_SECONDS: f64 = 1e9;

/// A validated sliding-window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindow {
    limit: u32,
    window: u64,
}

impl SlidingWindow {
    /// At most `limit` units per any `window_seconds` (fractions allowed).
    pub fn new(limit: u32, window_seconds: f64) -> Result<Self, RuleError> {
        if limit == 0 {
            return Err(RuleError::NotPositive {
                field: "limit",
                value: 0.0,
            });
        }
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
        let window = (window_seconds * 1e9).round() as u64;
        if window == 0 {
            return Err(RuleError::TooSmall {
                field: "window_seconds",
            });
        }
        Ok(SlidingWindow { limit, window })
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
        Ok(SlidingWindow { limit, window })
    }

    /// The most units admitted in any window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Window length in nanoseconds.
    pub fn window_nanos(&self) -> u64 {
        self.window
    }

    /// Decides an attempt of `cost` units at `now`, appending to `log` when admitted.
    /// Expired entries are dropped first (that changes no decision). Returns the
    /// decision and the time of the run the admission was recorded in (for a
    /// refund). The caller has checked `1 <= cost <= limit`.
    pub fn decide(&self, log: &mut WindowLog, now: u64, cost: u32) -> (Decision, u64) {
        log.expire(now, self.window);
        let used = log.total;
        let limit = u64::from(self.limit);
        if used + u64::from(cost) <= limit {
            let recorded = log.push(now, cost);
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
        let mut log = log.clone();
        log.expire(now, self.window);
        if log.total + u64::from(cost) <= u64::from(self.limit) {
            let newest = log
                .newest()
                .map_or(0, |t| (t + self.window).saturating_sub(now));
            let limit = u64::from(self.limit);
            Decision::admitted(limit, limit - log.total, newest)
        } else {
            self.refusal(&log, now, cost)
        }
    }

    fn refusal(&self, log: &WindowLog, now: u64, cost: u32) -> Decision {
        let limit = u64::from(self.limit);
        // The attempt fits once enough of the oldest units have left the window.
        let must_leave = log.total + u64::from(cost) - limit;
        let leaves_at = log.time_when_oldest_leave(must_leave) + self.window;
        let newest = log.newest().unwrap_or(now);
        Decision::denied(
            DeniedBy::Rate,
            limit,
            limit.saturating_sub(log.total),
            leaves_at.saturating_sub(now),
            (newest + self.window).saturating_sub(now),
        )
    }

    /// When the newest admission of `log` leaves the window (0 for an empty log):
    /// from then on the key is indistinguishable from a fresh one.
    pub fn idle_at(&self, log: &WindowLog) -> u64 {
        log.newest().map_or(0, |t| t.saturating_add(self.window))
    }
}

/// Admission times of one key, oldest first, with equal times merged into one run
/// (`cost` n at one instant is one entry of count n, not n entries).
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
            log.push(t, n);
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

    /// Records `cost` units at `now`; returns the time of the run they went into.
    fn push(&mut self, now: u64, cost: u32) -> u64 {
        self.total += u64::from(cost);
        match self.runs.back_mut() {
            // Time that stands still (or a store clock that stepped back) merges into
            // the newest run: the log stays sorted and never admits earlier than it did.
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

    /// Takes back up to `cost` units recorded in the run at `at` (a refund). Units
    /// that have left the window (their run is gone) are not taken back twice.
    pub(crate) fn remove(&mut self, at: u64, cost: u32) {
        let Ok(index) = self.runs.binary_search_by_key(&at, |(t, _)| *t) else {
            return;
        };
        let (_, n) = &mut self.runs[index];
        let taken = (*n).min(cost);
        *n -= taken;
        self.total -= u64::from(taken);
        if *n == 0 {
            self.runs.remove(index);
        }
    }

    /// Time of the admission after which `units` of the oldest units are gone.
    fn time_when_oldest_leave(&self, units: u64) -> u64 {
        let mut seen = 0u64;
        for &(t, n) in &self.runs {
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
        log.remove(second, 2);
        assert_eq!(log.runs().collect::<Vec<_>>(), vec![(0, 1)]);
        log.remove(second, 2);
        assert_eq!(log.total(), 1, "a second refund finds nothing to take");
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
